"""Searches over ``calculator.fit``: the longest context, the best format, the GPUs and GPU sets that fit,
the largest model of a family, and ``advise`` (the cheapest changes that make a run fit, or how far a fitting
run stretches), each as typed rows the CLI prints and the app renders as buttons.

Each search asks the same ``FitOptions`` of every candidate, and only whether it fits (``_fits``: the engine's
own probe, one placement, where ``fit`` of a run that does not fit searches for an offload split, ~10
placements); ``fit`` then runs once for each answer. "Best" format means highest quality in
``calculator.quality.QUALITY_ORDER`` (llama.cpp's KLD scoreboard); "smallest" GPU set means least total memory
as sold, or least launch price (``assets/gpus.csv``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from calculator.engines.registry import get_engine
from calculator.fit import FitOptions, FitResult, Verdict, as_setup, fit
from calculator.hardware import GpuSetup, GpuSpec, catalogue
from calculator.memory import weight_facts
from calculator.models import ModelSpec, list_presets, load_preset
from calculator.quality import QUALITY_KLD, QUALITY_ORDER
from calculator.training import TrainingMode
from calculator.units import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_GPU_COUNT, check_int

DEFAULT_SET_SIZES = (1, 2, 4, 8)
"""GPU counts ``smallest_gpu_set`` tries (the sizes servers come in)."""


class SetCost(StrEnum):
    """What ``smallest_gpu_set`` minimises."""

    MEMORY = "memory"
    """Total memory of the set, as sold (count x memory)."""
    PRICE = "price"
    """Total launch price of the set (devices without a price are skipped)."""


def _fits(spec: ModelSpec, fmt: str, setup: GpuSetup, context: int, batch: int, o: FitOptions) -> bool:
    """``fit(...).fits`` as the engine's ``fits`` probe answers it (the one the max-context bisection asks): one
    placement instead of the offload search of a run that does not fit. The same checks and messages as ``fit``."""
    _check(context, batch, o)
    if not o.inference or not spec.n_layers:  # training, or fit's own error for a bare parameter count
        return fit(spec, fmt, setup, context, batch, options=o, with_max_context=False).fits
    return get_engine(o.engine).fits(spec, fmt, weight_facts(spec, fmt), setup, context, batch, o)


def _check(context: int, batch: int, o: object) -> None:
    """``fit``'s own input checks, before a probe (or a cache key) uses the values."""
    check_int("context", context, high=MAX_CONTEXT_TOKENS, example="8192 tokens")
    check_int("batch", batch, high=MAX_BATCH, example="1 sequence")
    if not isinstance(o, FitOptions):
        raise ValueError(f"options must be a FitOptions, got {type(o).__name__}: FitOptions(kv_type='q8_0', ...)")


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
    """The highest-quality format (``QUALITY_ORDER``) that fits entirely on the GPU(s); None if none does.
    Cached (the app's best-format metric and ``advise`` ask the same question of one run)."""
    names = QUALITY_ORDER if candidates is None else tuple(candidates)
    unknown = [c for c in names if c not in QUALITY_KLD]
    if unknown:
        raise ValueError(
            f"no published quality rank for {', '.join(unknown)}; rankable formats: {', '.join(QUALITY_ORDER)}"
        )
    o = FitOptions() if options is None else options
    _check(context, batch, o)
    return _best_format(spec, as_setup(gpu_setup), context, batch, o, tuple(sorted(names, key=QUALITY_ORDER.index)))


@functools.lru_cache(maxsize=256)
def _best_format(spec: ModelSpec, setup: GpuSetup, context: int, batch: int, o: FitOptions, names: tuple[str, ...]
                 ) -> FitResult | None:
    for name in names:
        if _fits(spec, name, setup, context, batch, o):
            return fit(spec, name, setup, context, batch, options=o, with_max_context=False)
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
    """Every device (default: the catalogue) on which ``count`` copies fit, smallest memory first. A device the
    engine refuses (vLLM on Apple silicon, heads that do not split over ``count``) is not one of them; if the
    engine refuses every device, its first error is raised."""
    devices = list(catalogue() if gpus is None else gpus)
    o = FitOptions() if options is None else options
    out = []
    refused: list[ValueError] = []
    for g in devices:
        setup = GpuSetup(g, count, cpu_ram_bytes)
        try:
            ok = _fits(spec, fmt, setup, context, batch, o)
        except ValueError as err:
            refused.append(err)
            continue
        if ok:
            out.append(fit(spec, fmt, setup, context, batch, options=o, with_max_context=False))
    if devices and len(refused) == len(devices):
        raise refused[0]
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
    o = FitOptions() if options is None else options
    best: tuple[tuple, GpuSetup] | None = None
    for g in catalogue() if gpus is None else gpus:
        if by is SetCost.PRICE and g.price_usd is None:
            continue
        for n in sizes:  # the smallest count that fits; a bigger set of the same device only costs more
            if _fits(spec, fmt, GpuSetup(g, n), context, batch, o):
                cost = n * (g.memory_bytes if by is SetCost.MEMORY else g.price_usd)
                key = (cost, n, -(g.bandwidth_gb_per_s or 0))
                if best is None or key < best[0]:
                    best = (key, GpuSetup(g, n))
                break
    return fit(spec, fmt, best[1], context, batch, options=o, with_max_context=False) if best else None


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
    o = FitOptions() if options is None else options
    for spec in sorted((load_preset(p) for p in names), key=lambda s: s.total_params, reverse=True):
        if _fits(spec, fmt, setup, context, batch, o):
            return fit(spec, fmt, setup, context, batch, options=o, with_max_context=False)
    return None


# Advice: what to change when it does not fit, how far it stretches when it does


class AdviceKind(StrEnum):
    """One kind of change ``advise`` proposes."""

    KV_CACHE_TYPE = "kv_cache_type"
    """A quantized KV cache (q8_0 / q4_0; MLX --kv-bits)."""
    GRADIENT_CHECKPOINTING = "gradient_checkpointing"
    """Training: recompute activations in the backward pass instead of keeping them."""
    QLORA = "qlora"
    """Training: adapters on a frozen 4-bit (NF4) base."""
    FEWER_SLOTS = "fewer_slots"
    """Fewer sequences decoded together (each keeps its context); training: a smaller batch."""
    SHORTER_CONTEXT = "shorter_context"
    """The longest context that fits."""
    FEWER_GPU_LAYERS = "fewer_gpu_layers"
    """Leave blocks in CPU RAM (llama.cpp -ngl): fits, slower."""
    SMALLER_FORMAT = "smaller_format"
    """The highest-quality file type that fits (``best_format``)."""
    MORE_GPUS = "more_gpus"
    """The fewest identical GPUs (up to ``advise``'s ``max_gpus``) on which it fits."""
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
    """The input it changes: ``kv_type``, ``batch``, ``context``, ``n_gpu_layers``, ``format``, ``gpu_count``,
    ``gradient_checkpointing``, ``mode`` (``batch`` may change ``context`` too: ``result.context``)."""
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
    max_gpus: int | None = None,
    with_best_format: bool = True,
) -> tuple[Advice, ...]:
    """What to change. Does not fit entirely on the GPU(s): the cheapest single changes that make it fit, in
    order (a quantized KV cache, fewer slots, a shorter context, fewer GPU layers with the speed they cost, the
    best file type that fits, and, with ``max_gpus``, the fewest identical GPUs up to that many), each with its
    resulting numbers; in a training mode gradient checkpointing and QLoRA come first, and there is no KV or
    file-type advice. Fits: the longest context and the most slots that still fit (inference).
    ``result``: the fit of these inputs, if already computed (its ``max_context`` is reused when it has one).
    ``with_best_format=False`` skips the file-type search (it sizes up to 30 file types)."""
    o = FitOptions() if options is None else options
    _check(context, batch, o)
    if max_gpus is not None:
        check_int("max_gpus", max_gpus, high=MAX_GPU_COUNT, example="8")
    setup = as_setup(gpu_setup)
    engine = get_engine(o.engine)
    here = result or fit(spec, fmt, setup, context, batch, options=o, with_max_context=False)
    asked = (o, batch)
    if o.inference:
        o, batch = engine.slots_as_batch(o, batch)

    def run(ctx: int = context, n: int = batch, opts: FitOptions = o, f: str = fmt,
            on: GpuSetup = setup) -> FitResult:
        return fit(spec, f, on, ctx, n, options=opts, with_max_context=False)

    def fits(ctx: int, n: int) -> bool:
        return _fits(spec, fmt, setup, ctx, n, o)

    def slot_context(n: int) -> int:  # training: each sequence keeps its context
        return engine.slot_context(context, batch, n, o) if o.inference else context

    def advice(kind: AdviceKind, change: str, setting: str, value: object, r: FitResult) -> Advice:
        return Advice(kind, change, setting, value, r, _pct(r.decode_tokens_per_s, here.decode_tokens_per_s))

    def longest_context() -> int | None:
        if result is not None and result.max_context is not None and (o, batch) == asked:
            return result.max_context
        return fit(spec, fmt, setup, 1, batch, options=o).max_context

    out: list[Advice] = []
    if here.fits:
        if not o.inference:
            return ()
        longest = longest_context()
        if longest and longest > context:
            out.append(advice(AdviceKind.LONGEST_CONTEXT, f"--context {longest}", "context", longest, run(longest)))
        if fits(slot_context(batch + 1), batch + 1):
            hi = batch + 1
            while hi < MAX_ADVISED_SLOTS:
                n = min(2 * hi, MAX_ADVISED_SLOTS)
                if not fits(slot_context(n), n):
                    break
                hi = n
            top = hi if hi == MAX_ADVISED_SLOTS else _largest(
                lambda n: fits(slot_context(n), n), hi, min(2 * hi, MAX_ADVISED_SLOTS) - 1)
            ctx = slot_context(top)
            out.append(advice(AdviceKind.MOST_SLOTS, f"--batch {top} --context {ctx}", "batch", top, run(ctx, top)))
        return tuple(out)
    if o.inference:
        for flag, opts in engine.quantized_kv(o):
            r = run(opts=opts)
            if r.fits:  # the type the engine caches in (Ollama's and vLLM's own settings hold theirs)
                kv_type = r.kv.cache_type if r.kv is not None else opts.kv_type
                out.append(advice(AdviceKind.KV_CACHE_TYPE, flag, "kv_type", kv_type.value, r))
                break
    else:
        if not o.gradient_checkpointing:
            r = run(opts=replace(o, gradient_checkpointing=True))
            if r.fits:
                out.append(advice(AdviceKind.GRADIENT_CHECKPOINTING, "--gradient-checkpointing",
                                  "gradient_checkpointing", True, r))
        if o.mode is not TrainingMode.QLORA:
            r = run(opts=replace(o, mode=TrainingMode.QLORA))
            if r.fits:
                out.append(advice(AdviceKind.QLORA, "--mode qlora", "mode", TrainingMode.QLORA.value, r))
    if batch > 1 and fits(slot_context(1), 1):
        n = _largest(lambda k: fits(slot_context(k), k), 1, batch - 1)
        ctx = slot_context(n)
        change = f"--batch {n} --context {ctx}" if o.inference else f"--batch {n}"
        out.append(advice(AdviceKind.FEWER_SLOTS, change, "batch", n, run(ctx, n)))
    longest = longest_context()
    if longest:
        out.append(advice(AdviceKind.SHORTER_CONTEXT, f"--context {longest}", "context", longest, run(longest)))
    if o.inference and engine.offloads and here.verdict is Verdict.OFFLOAD:
        full = here.decode_tokens_per_s and _all_on_gpu_speed(spec, fmt, setup, context, batch, o)
        out.append(Advice(AdviceKind.FEWER_GPU_LAYERS, f"--n-gpu-layers {here.gpu_layers}", "n_gpu_layers",
                          here.gpu_layers, here, _pct(here.decode_tokens_per_s, full)))
    if o.inference and with_best_format:
        best = best_format(spec, setup, context, batch, options=o)
        if best is not None and best.format != here.format:
            out.append(advice(AdviceKind.SMALLER_FORMAT, f"--format {best.format}", "format", best.format, best))
    if max_gpus is not None and setup.homogeneous:
        for n in range(setup.count + 1, max_gpus + 1):
            more = GpuSetup(setup.gpu, n, setup.cpu_ram_bytes, setup.cpu_bandwidth_gb_per_s)
            try:
                ok = _fits(spec, fmt, more, context, batch, o)
            except ValueError:  # a count the engine refuses (vLLM: 32 heads over 3 GPUs): not advice
                continue
            if ok:
                out.append(advice(AdviceKind.MORE_GPUS, f"--gpus {n}", "gpu_count", n, run(on=more)))
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
