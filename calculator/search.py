"""Searches over ``calculator.fit``: the longest context, the best format, the GPUs and GPU sets that fit,
the largest model of a family.

Each search calls ``fit`` with the same ``FitOptions`` for every candidate and skips the max-context
bisection it does not need, so a search costs one placement per candidate. "Best" format means highest
quality in ``calculator.quality.QUALITY_ORDER`` (llama.cpp's KLD scoreboard); "smallest" GPU set means
least total memory as sold, or least launch price (``assets/gpus.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum

from calculator.fit import FitOptions, FitResult, as_setup, fit
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
