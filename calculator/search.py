"""Searches over ``calculator.fit``: the longest context, the best format, the GPUs and GPU sets that fit,
the largest model of a family, and ``advise`` (the cheapest changes that make a run fit, or how far a fitting
run stretches), each as typed rows the CLI prints and the app renders as buttons.

Each search calls ``fit`` with the same ``FitOptions`` for every candidate and skips the max-context
bisection it does not need, so a search costs one placement per candidate. "Best" format means highest
quality in ``calculator.quality.QUALITY_ORDER`` (llama.cpp's KLD scoreboard); "smallest" GPU set means
least total memory as sold, or least launch price (``assets/gpus.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from calculator.engines.registry import get_engine
from calculator.fit import FitOptions, FitResult, Verdict, as_setup, fit
from calculator.hardware import GpuSetup, GpuSpec, catalogue
from calculator.models import ModelSpec, list_presets, load_preset
from calculator.quality import QUALITY_KLD, QUALITY_ORDER
from calculator.units import check_int

DEFAULT_SET_SIZES = (1, 2, 4, 8)
"""GPU counts ``smallest_gpu_set`` tries (the sizes servers come in)."""


class SetCost(StrEnum):
    """What ``smallest_gpu_set`` minimises."""

    MEMORY = "memory"
    """Total memory of the set, as sold (count x memory)."""
    PRICE = "price"
    """Total launch price of the set (devices without a price are skipped)."""


def max_context(
    spec: ModelSpec,
    fmt: str,
    gpu_setup: GpuSetup | GpuSpec | str,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
) -> int | None:
    """Largest context (<= the model's maximum) for which ``fit`` says FITS; 0 if not even 1 token fits,
    None if the model has no maximum context."""
    return fit(spec, fmt, gpu_setup, 1, batch, options=options).max_context


def best_format(
    spec: ModelSpec,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
    candidates: Iterable[str] | None = None,
) -> FitResult | None:
    """The highest-quality format (``QUALITY_ORDER``) that fits entirely on the GPU(s); None if none does."""
    names = QUALITY_ORDER if candidates is None else tuple(candidates)
    unknown = [c for c in names if c not in QUALITY_KLD]
    if unknown:
        raise ValueError(
            f"no published quality rank for {', '.join(unknown)}; rankable formats: {', '.join(QUALITY_ORDER)}"
        )
    setup = as_setup(gpu_setup)
    for name in sorted(names, key=QUALITY_ORDER.index):
        result = fit(spec, name, setup, context, batch, options=options, with_max_context=False)
        if result.fits:
            return result
    return None


def gpus_that_fit(
    spec: ModelSpec,
    fmt: str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
    gpus: Iterable[GpuSpec] | None = None,
    count: int = 1,
    cpu_ram_bytes: int | None = None,
) -> list[FitResult]:
    """Every device (default: the catalogue) on which ``count`` copies fit, smallest memory first."""
    devices = list(catalogue() if gpus is None else gpus)
    out = []
    for g in devices:
        setup = GpuSetup(g, count, cpu_ram_bytes)
        result = fit(spec, fmt, setup, context, batch, options=options, with_max_context=False)
        if result.fits:
            out.append(result)
    order = {g.name: (g.memory_bytes, g.price_usd or math.inf) for g in devices}
    return sorted(out, key=lambda r: order[r.gpu])


def smallest_gpu_set(
    spec: ModelSpec,
    fmt: str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
    by: SetCost | str = SetCost.MEMORY,
    gpus: Iterable[GpuSpec] | None = None,
    counts: Iterable[int] = DEFAULT_SET_SIZES,
) -> FitResult | None:
    """The set of identical GPUs that fits at the least total memory or launch price (``by``); ties go to
    fewer devices, then to more bandwidth. None if nothing fits."""
    try:
        by = SetCost(by)
    except ValueError:
        raise ValueError(f"by={by!r} must be one of {', '.join(c.value for c in SetCost)}") from None
    sizes = sorted({check_int("GPU count", n, example="--gpus 2") for n in counts})
    best: tuple[tuple, FitResult] | None = None
    for g in catalogue() if gpus is None else gpus:
        if by is SetCost.PRICE and g.price_usd is None:
            continue
        for n in sizes:  # the smallest count that fits; a bigger set of the same device only costs more
            result = fit(spec, fmt, GpuSetup(g, n), context, batch, options=options, with_max_context=False)
            if result.fits:
                cost = n * (g.memory_bytes if by is SetCost.MEMORY else g.price_usd)
                key = (cost, n, -(g.bandwidth_gb_per_s or 0))
                if best is None or key < best[0]:
                    best = (key, result)
                break
    return best[1] if best else None


def largest_model_that_fits(
    family: str,
    fmt: str,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
) -> FitResult | None:
    """Of the presets whose name contains ``family`` (e.g. "llama-3", "qwen2.5"), the one with the most
    parameters that fits; None if none does."""
    key = (family or "").strip().lower()
    names = [p for p in list_presets() if key and key in p.lower()]
    if not names:
        raise ValueError(f"no preset matches family {family!r}; presets: {', '.join(list_presets())}")
    setup = as_setup(gpu_setup)
    for spec in sorted((load_preset(p) for p in names), key=lambda s: s.total_params, reverse=True):
        result = fit(spec, fmt, setup, context, batch, options=options, with_max_context=False)
        if result.fits:
            return result
    return None


# Advice: what to change when it does not fit, how far it stretches when it does


class AdviceKind(StrEnum):
    """One kind of change ``advise`` proposes."""

    KV_CACHE_TYPE = "kv_cache_type"
    """A quantized KV cache (q8_0 / q4_0; MLX --kv-bits)."""
    FEWER_SLOTS = "fewer_slots"
    """Fewer sequences decoded together (each keeps its context)."""
    SHORTER_CONTEXT = "shorter_context"
    """The longest context that fits."""
    FEWER_GPU_LAYERS = "fewer_gpu_layers"
    """Leave blocks in CPU RAM (llama.cpp -ngl): fits, slower."""
    SMALLER_FORMAT = "smaller_format"
    """The highest-quality smaller file type that fits."""
    LONGEST_CONTEXT = "longest_context"
    """It fits: the longest context that still does."""
    MOST_SLOTS = "most_slots"
    """It fits: the most sequences of this context that still do."""


@dataclass(frozen=True)
class Advice:
    """One change and what it gives: the verdict, the fullest device, the speed (and its cost)."""

    kind: AdviceKind
    change: str
    """What to type: ``--kv-type q8_0 --flash-attention on``, ``--context 6144``, ``--n-gpu-layers 40``."""
    setting: str
    """The input it changes: ``kv_type``, ``batch``, ``context``, ``n_gpu_layers``, ``format``."""
    value: object
    result: FitResult
    speed_change_pct: float | None = None
    """Decode speed against the run as asked (or, for offload, against all on the GPU), in percent."""

    def to_dict(self) -> dict:
        r = self.result
        return {
            "kind": self.kind.value,
            "change": self.change,
            "setting": self.setting,
            "value": self.value,
            "verdict": r.verdict.value,
            "per_device_bytes": r.per_device_bytes,
            "headroom_bytes": r.headroom_bytes,
            "kv_cache_bytes": r.kv_cache_bytes,
            "decode_tokens_per_s": r.decode_tokens_per_s,
            "speed_change_pct": self.speed_change_pct,
        }


MAX_ADVISED_SLOTS = 256
"""``advise`` looks for the most slots up to this many."""


def _largest(ok, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with ok(n), given ok(lo) and ok monotone decreasing."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _pct(new: float | None, old: float | None) -> float | None:
    return None if not new or not old else round(100.0 * (new / old - 1.0), 1)


def advise(
    spec: ModelSpec,
    fmt: str,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
    result: FitResult | None = None,
) -> tuple[Advice, ...]:
    """What to change. Does not fit entirely on the GPU(s): the cheapest single changes that make it fit, in
    order (a quantized KV cache, fewer slots, a shorter context, fewer GPU layers with the speed they cost, a
    smaller file type), each with its resulting numbers. Fits: the longest context and the most slots that
    still fit. ``result``: the fit of these inputs, if already computed. Inference only (training: ``()``)."""
    o = FitOptions() if options is None else options
    if not o.inference:
        return ()
    setup = as_setup(gpu_setup)
    engine = get_engine(o.engine)
    here = result or fit(spec, fmt, setup, context, batch, options=o, with_max_context=False)
    o, batch = engine.slots_as_batch(o, batch)

    def run(ctx: int = context, n: int = batch, opts: FitOptions = o, f: str = fmt) -> FitResult:
        return fit(spec, f, setup, ctx, n, options=opts, with_max_context=False)

    def fits(ctx: int, n: int) -> bool:
        return run(ctx, n).fits

    out: list[Advice] = []
    if here.fits:
        longest = fit(spec, fmt, setup, 1, batch, options=o).max_context
        if longest and longest > context:
            r = run(longest)
            out.append(Advice(AdviceKind.LONGEST_CONTEXT, f"--context {longest}", "context", longest, r,
                              _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
        if fits(engine.slot_context(context, batch, batch + 1, o), batch + 1):
            hi = batch + 1
            while hi < MAX_ADVISED_SLOTS:
                n = min(2 * hi, MAX_ADVISED_SLOTS)
                if not fits(engine.slot_context(context, batch, n, o), n):
                    break
                hi = n
            top = hi if hi == MAX_ADVISED_SLOTS else _largest(
                lambda n: fits(engine.slot_context(context, batch, n, o), n), hi, min(2 * hi, MAX_ADVISED_SLOTS) - 1)
            ctx = engine.slot_context(context, batch, top, o)
            r = run(ctx, top)
            out.append(Advice(AdviceKind.MOST_SLOTS, f"--batch {top} --context {ctx}", "batch", top, r,
                              _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
        return tuple(out)
    for flag, opts in engine.quantized_kv(o):
        r = run(opts=opts)
        if r.fits:
            out.append(Advice(AdviceKind.KV_CACHE_TYPE, flag, "kv_type", opts.kv_type.value, r,
                              _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
            break
    if batch > 1 and fits(engine.slot_context(context, batch, 1, o), 1):
        n = _largest(lambda k: fits(engine.slot_context(context, batch, k, o), k), 1, batch - 1)
        ctx = engine.slot_context(context, batch, n, o)
        r = run(ctx, n)
        out.append(Advice(AdviceKind.FEWER_SLOTS, f"--batch {n} --context {ctx}", "batch", n, r,
                          _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
    longest = fit(spec, fmt, setup, 1, batch, options=o).max_context
    if longest:
        r = run(longest)
        out.append(Advice(AdviceKind.SHORTER_CONTEXT, f"--context {longest}", "context", longest, r,
                          _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
    if engine.offloads and here.verdict is Verdict.OFFLOAD:
        full = here.decode_tokens_per_s and _all_on_gpu_speed(spec, fmt, setup, context, batch, o)
        out.append(Advice(AdviceKind.FEWER_GPU_LAYERS, f"--n-gpu-layers {here.gpu_layers}", "n_gpu_layers",
                          here.gpu_layers, here, _pct(here.decode_tokens_per_s, full)))
    rank = QUALITY_ORDER.index(here.format) if here.format in QUALITY_ORDER else -1
    for name in QUALITY_ORDER[rank + 1:] if rank >= 0 else ():
        r = run(f=name)
        if r.fits:
            out.append(Advice(AdviceKind.SMALLER_FORMAT, f"--format {name}", "format", name, r,
                              _pct(r.decode_tokens_per_s, here.decode_tokens_per_s)))
            break
    return tuple(out)


def _all_on_gpu_speed(spec, fmt, setup, context, batch, o) -> float | None:
    """Decode speed as if every block were on the GPU(s) (what offloading gives up)."""
    from calculator.engines.llama_cpp import LlamaCppOptions
    from calculator.memory import weight_facts

    engine = get_engine(o.engine)
    eo = engine.options(o.engine_options)
    if hasattr(eo, "n_gpu_layers"):
        eo = replace(eo, n_gpu_layers=spec.n_layers + 1)
    elif hasattr(eo, "num_gpu"):
        eo = replace(eo, num_gpu=spec.n_layers + 1)
    else:
        return None
    forced = replace(o, engine_options=eo if not isinstance(eo, type(None)) else LlamaCppOptions())
    wf = weight_facts(spec, fmt)
    lay = engine.layout(spec, fmt, wf, setup, context, batch, forced)
    return engine.speed(spec, wf, setup, lay, context, batch, forced)[0]
