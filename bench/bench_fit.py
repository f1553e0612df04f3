"""Time a full sweep: every preset x a set of formats x every catalogue GPU through ``calculator.fit.fit``.

Run: ``.venv/bin/python bench/bench_fit.py`` (``--formats`` to change the list, ``--no-max-context`` to
skip the per-combination max-context search, ``--engine llama.cpp|ollama|mlx`` for the engine whose rules
place each run; default llama.cpp). Weight bytes per (model, format) are computed once
(``calculator.memory.weight_facts``: ``weight_memory`` with GGUF recipes replayed tensor by tensor, split
per block) and timed separately, as the app caches them; the fit logic itself is then timed over the grid.
Last, the max-context search of the worst Fit link (133 layers, 2^27 tokens, batch 4,096, q4_0 KV, 64 H100s):
placements (``fits`` calls) and CPU time, against plain bisection (issue 14).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from calculator.engines import engine_names
from calculator.engines.registry import get_engine
from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, catalogue, get_gpu
from calculator.memory import weight_facts
from calculator.models import list_presets, load_preset, spec_from_config

LARGEST_LINK = {"model_type": "llama", "hidden_size": 16384, "num_hidden_layers": 133, "num_attention_heads": 128,
                "num_key_value_heads": 8, "vocab_size": 128256, "intermediate_size": 53248,
                "max_position_embeddings": 2**27, "tie_word_embeddings": False}


def largest_link_max_context() -> None:
    spec = spec_from_config(LARGEST_LINK, "largest link")
    o = FitOptions(kv_type="q4_0")
    setup = GpuSetup(get_gpu("H100 SXM"), 64)
    engine = get_engine(o.engine)
    wf = weight_facts(spec, "Q4_K_M")
    calls = [0]
    fits = engine.fits

    def counted(*args):
        calls[0] += 1
        return fits(*args)

    def bisected() -> int:
        hi, lo = engine.context_limit(spec, 4096, o), 1
        assert not counted(spec, "Q4_K_M", wf, setup, hi, 4096, o) and counted(spec, "Q4_K_M", wf, setup, 1, 4096, o)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if counted(spec, "Q4_K_M", wf, setup, mid, 4096, o) else (lo, mid)
        return lo

    engine.fits = counted
    try:
        t0 = time.process_time()
        plain = bisected()
        t1 = time.process_time()
        n_plain, calls[0] = calls[0], 0
        with_search = fit(spec, "Q4_K_M", setup, 10_000_000, 4096, options=o).max_context
        without = fit(spec, "Q4_K_M", setup, 10_000_000, 4096, options=o, with_max_context=False)
        calls[0] = 0
        t2 = time.process_time()
        fit(spec, "Q4_K_M", setup, 10_000_000, 4096, options=o)
        t3 = time.process_time()
    finally:
        del engine.fits
    assert plain == with_search and without.max_context is None
    print(f"max context of the largest link on 64 H100s ({plain:,} tokens): plain bisection {n_plain} placements "
          f"{(t1 - t0) * 1000:.0f} ms CPU; fit's search {calls[0]} placements, whole fit {(t3 - t2) * 1000:.0f} ms CPU")

DEFAULT_FORMATS = (
    "fp16",
    "bf16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "IQ4_XS",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
    "IQ2_XS",
    "int8-ch",
    "int4-g128",
    "gptq-4b-g128",
    "awq-4b-g128",
    "nf4",
    "fp8_e4m3",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS))
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--no-max-context", action="store_true")
    parser.add_argument("--engine", default="llama.cpp", choices=engine_names())
    args = parser.parse_args()
    options = FitOptions(engine=args.engine)
    formats = [f for f in args.formats.split(",") if f]

    t0 = time.perf_counter()
    specs = [load_preset(name) for name in list_presets()]
    t1 = time.perf_counter()
    pairs = []
    for spec in specs:
        for fmt in formats:
            try:
                weight_facts(spec, fmt)
                pairs.append((spec, fmt))
            except ValueError:
                pass  # e.g. a block format whose block does not divide this model's rows
    t2 = time.perf_counter()
    gpus = catalogue()
    verdicts: Counter[str] = Counter()
    for spec, fmt in pairs:
        for gpu in gpus:
            result = fit(spec, fmt, gpu, args.context, options=options, with_max_context=not args.no_max_context)
            verdicts[result.verdict.value] += 1
    t3 = time.perf_counter()
    n = len(pairs) * len(gpus)
    print(
        f"presets: {len(specs)}  formats: {len(formats)}  (model, format) pairs: {len(pairs)}  "
        f"GPUs: {len(gpus)}  engine: {args.engine}"
    )
    print(f"load presets:                  {t1 - t0:8.3f} s")
    print(f"weight bytes (once per pair):  {t2 - t1:8.3f} s")
    print(
        f"fit verdicts ({n:,} combos, context {args.context}, max-context search "
        f"{'off' if args.no_max_context else 'on'}): {t3 - t2:8.3f} s = {1e6 * (t3 - t2) / n:.1f} us each"
    )
    print(f"full sweep:                    {t3 - t0:8.3f} s")
    print("verdicts:", dict(verdicts))
    largest_link_max_context()


if __name__ == "__main__":
    main()
