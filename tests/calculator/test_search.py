"""Searches over fit: max context, best format, GPUs and GPU sets that fit, the largest model of a family.
Each answer is checked by brute force with ``fit`` itself (nothing better was skipped)."""

from __future__ import annotations

import pytest

from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, catalogue, get_gpu
from calculator.models import load_preset
from calculator.quality import QUALITY_ORDER
from calculator.search import (
    SetCost,
    best_format,
    gpus_that_fit,
    largest_model_that_fits,
    max_context,
    smallest_gpu_set,
)


@pytest.fixture(scope="module")
def llama8b():
    return load_preset("llama-3.1-8b")


@pytest.fixture(scope="module")
def llama70b():
    return load_preset("llama-2-70b")


# Max context


@pytest.mark.parametrize(
    "preset, fmt, gpu, kv_type",
    [
        ("llama-3.1-8b", "Q4_K_M", "RTX 4060 Ti 16GB", "fp16"),
        ("llama-3.1-8b", "Q8_0", "RTX 3060 12GB", "q8_0"),
        ("gemma-2-9b", "Q4_K_M", "RTX 3080 10GB", "fp16"),
        ("deepseek-v2-lite", "Q4_K_M", "RTX 4070", "fp16"),
        ("qwen2.5-32b", "Q4_K_M", "RTX 4090", "fp16"),
    ],
)
def test_max_context_is_the_boundary(preset, fmt, gpu, kv_type):
    spec = load_preset(preset)
    options = FitOptions(kv_type=kv_type)
    m = max_context(spec, fmt, gpu, options=options)
    assert m == fit(spec, fmt, gpu, context=1, options=options).max_context
    if m == spec.max_context:
        assert fit(spec, fmt, gpu, context=m, options=options, with_max_context=False).fits
    else:
        assert 0 < m < spec.max_context
        assert fit(spec, fmt, gpu, context=m, options=options, with_max_context=False).fits
        assert not fit(spec, fmt, gpu, context=m + 1, options=options, with_max_context=False).fits


def test_max_context_zero_when_weights_do_not_fit(llama70b):
    assert max_context(llama70b, "fp16", "RTX 4090") == 0


def test_max_context_capped_at_model_maximum(llama8b):
    assert max_context(llama8b, "Q4_K_M", "H200") == llama8b.max_context == 131_072


def test_best_format(llama8b):
    assert best_format(llama8b, "RTX 4090", 8192).format.lower() == "bf16"
    small = best_format(llama8b, "custom:6GB", 4096)
    assert small is not None and small.fits
    rank = QUALITY_ORDER.index(small.format) if small.format in QUALITY_ORDER else None
    assert rank is not None
    better = [f for f in QUALITY_ORDER[:rank]]
    assert not any(fit(llama8b, f, "custom:6GB", 4096, with_max_context=False).fits for f in better)
    assert best_format(load_preset("llama-3.1-405b"), "RTX 4060", 4096) is None


def test_best_format_among_candidates(llama8b):
    r = best_format(llama8b, "RTX 3060 12GB", 4096, candidates=["Q4_0", "Q8_0", "Q2_K"])
    assert r.format == "Q8_0"
    with pytest.raises(ValueError, match="no published quality rank for int4-g128"):
        best_format(llama8b, "RTX 4090", candidates=["int4-g128"])


def test_gpus_that_fit(llama8b):
    found = gpus_that_fit(llama8b, "Q4_K_M", 32_768)
    assert found and all(r.fits for r in found)
    memory = [get_gpu(r.gpu).memory_bytes for r in found]
    assert memory == sorted(memory)
    fitting = {r.gpu for r in found}
    for g in catalogue():
        if g.name not in fitting:
            assert not fit(llama8b, "Q4_K_M", g, 32_768, with_max_context=False).fits


def test_smallest_and_cheapest_gpu_set(llama70b):
    best = smallest_gpu_set(llama70b, "fp16", 4096)
    assert best.fits
    total = best.gpu_count * get_gpu(best.gpu).memory_bytes
    for g in catalogue():  # brute force: nothing with less total memory fits
        for n in (1, 2, 4, 8):
            if n * g.memory_bytes < total:
                assert not fit(llama70b, "fp16", GpuSetup(g, n), 4096, with_max_context=False).fits, (
                    g.name,
                    n,
                )
    cheap = smallest_gpu_set(llama70b, "fp16", 4096, by=SetCost.PRICE)
    cost = cheap.gpu_count * get_gpu(cheap.gpu).price_usd
    for g in catalogue():
        if g.price_usd is None:
            continue
        for n in (1, 2, 4, 8):
            if n * g.price_usd < cost:
                assert not fit(llama70b, "fp16", GpuSetup(g, n), 4096, with_max_context=False).fits, (
                    g.name,
                    n,
                )
    with pytest.raises(ValueError, match="by=.speed. must be one of memory, price"):
        smallest_gpu_set(llama70b, "fp16", by="speed")


def test_largest_model_of_a_family():
    r = largest_model_that_fits("llama-3", "Q4_K_M", "RTX 4090", 8192)
    assert r is not None and r.fits and r.model.startswith("llama-3")
    mine = load_preset(r.model).total_params
    for name in ("llama-3-70b", "llama-3.1-70b", "llama-3.1-405b"):
        spec = load_preset(name)
        assert spec.total_params > mine
        assert not fit(spec, "Q4_K_M", "RTX 4090", 8192, with_max_context=False).fits
    assert largest_model_that_fits("qwen2.5", "Q4_K_M", "H200").model == "qwen2.5-72b"
    with pytest.raises(ValueError, match="no preset matches family 'gpt-9'"):
        largest_model_that_fits("gpt-9", "Q4_K_M", "RTX 4090")


def test_max_context_with_a_quantized_cache_is_longer(llama8b):
    fp16 = max_context(llama8b, "Q4_K_M", "RTX 3060 12GB")
    q4 = max_context(llama8b, "Q4_K_M", "RTX 3060 12GB", options=FitOptions(kv_type="q4_0"))
    # q4_0 stores 18 bytes per 32 values instead of 64: the KV budget holds ~3.5x the tokens
    assert 0 < fp16 < q4 <= llama8b.max_context


def test_searches_pass_their_options_to_every_fit(llama8b):
    options = FitOptions(kv_type="q8_0", ubatch=256)
    best = best_format(llama8b, "RTX 3060 12GB", 8192, options=options)
    assert best.kv.cache_type.value == "q8_0" and best.overhead.step_tokens == 256
    assert all(r.kv.cache_type.value == "q8_0" for r in gpus_that_fit(llama8b, "Q4_K_M", 8192, options=options))
