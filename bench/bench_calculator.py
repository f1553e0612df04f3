"""Print how long the calculator takes: the full format x preset grid in-process, one GGUF file type of the
largest models with every cache cold, and the CLI.

Goals (issue 2): grid < 20 ms in-process, one CLI call < 1 s; (issue 14) sizing one file type of a 1,200-tensor
model a few ms, as a link may bring a model no cache has seen. Run: `.venv/bin/python bench/bench_calculator.py`.
"""

from __future__ import annotations

import subprocess
import sys
import time

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from calculator.memory import weight_memory
from calculator.models import list_presets, load_preset, spec_from_config

LARGEST_LINK = {"model_type": "llama", "hidden_size": 16384, "num_hidden_layers": 133, "num_attention_heads": 128,
                "num_key_value_heads": 8, "vocab_size": 128256, "intermediate_size": 53248,
                "max_position_embeddings": 2**27, "tie_word_embeddings": False}
"""The largest config.json a link may carry (1,200 tensors; tests/hostile/test_links.py WORST_CONFIG)."""


def clear_caches() -> None:
    """Every functools cache of the calculator's modules, as tests/hostile's cold views clear them."""
    for name, module in list(sys.modules.items()):
        if name == "calculator" or name.startswith("calculator."):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def cold_file_types(build, file_types: list[str], repeat: int = 5) -> tuple[float, float]:
    """(CPU seconds for the first file type with every cache cold, then for all of ``file_types``), best of
    ``repeat``; the spec is rebuilt each time (``build``) and hashed before the clock starts."""
    first = every = float("inf")
    for _ in range(repeat):
        clear_caches()
        spec = build()
        hash(spec)
        t0 = time.process_time()
        weight_memory(spec, file_types[0])
        t1 = time.process_time()
        for ft in file_types[1:]:
            try:
                weight_memory(spec, ft)
            except ValueError:
                pass
        t2 = time.process_time()
        first, every = min(first, t1 - t0), min(every, t2 - t0)
    return first, every


def grid() -> tuple[int, int]:
    ok = failed = 0
    specs = [load_preset(name) for name in list_presets()]
    for spec in specs:
        for fmt in list(FORMATS) + list(FILE_TYPES):
            try:
                weight_memory(spec, fmt)
                ok += 1
            except ValueError:
                failed += 1  # e.g. a GGUF tensor type whose block does not divide a row
    return ok, failed


def main() -> None:
    t0 = time.perf_counter()
    ok, failed = grid()
    cold = time.perf_counter() - t0
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        grid()
        runs.append(time.perf_counter() - t0)
    n_presets = len(list_presets())
    print(f"grid: {n_presets} presets x {len(FORMATS) + len(FILE_TYPES)} formats/file types = {ok + failed} "
          f"cells ({failed} not storable, e.g. rows not divisible by a GGUF block)")
    print(f"grid first run (specs built, cold caches): {cold * 1000:.1f} ms")
    print(f"grid warm, best of 3: {min(runs) * 1000:.1f} ms  ({min(runs) / (ok + failed) * 1e6:.1f} us per cell)")
    per_preset = min(runs) / n_presets
    print(f"per preset, all formats: {per_preset * 1000:.2f} ms")
    file_types = ["Q4_K_M", *[ft for ft in FILE_TYPES if ft != "Q4_K_M"]]
    for label, build in (("llama-3.1-405b preset (1,137 tensors)", lambda: load_preset("llama-3.1-405b")),
                         ("largest link config (1,200 tensors)", lambda: spec_from_config(LARGEST_LINK, "link"))):
        first, every = cold_file_types(build, file_types)
        print(f"{label}, caches cold: Q4_K_M {first * 1000:.1f} ms CPU; all {len(file_types)} file types "
              f"{every * 1000:.0f} ms CPU (best of 5)")
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "calculator", "weights", "--params", "70B", "--format", "int4",
                        "--json"], check=True, capture_output=True)
        cli.append(time.perf_counter() - t0)
    print(f"CLI `weights --params 70B --format int4 --json`, best of 3: {min(cli) * 1000:.0f} ms (process start incl.)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "calculator", "gguf", "--config", "llama-3.1-8b", "--quant", "Q4_K_M",
                    "--json"], check=True, capture_output=True)
    print(f"CLI `gguf --config llama-3.1-8b --quant Q4_K_M --json`: {(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
