"""Verdicts, offload, max context, searches and speed estimates on real presets and catalogue GPUs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import units
from calculator.fit import (
    DECODE_BANDWIDTH_EFFICIENCY,
    QUALITY_KLD,
    QUALITY_ORDER,
    Verdict,
    as_setup,
    best_format,
    fit,
    gpus_that_fit,
    largest_model_that_fits,
    max_context,
    smallest_gpu_set,
)
from calculator.hardware import GpuSetup, GpuSpec, catalogue, get_gpu
from calculator.memory import weight_memory
from calculator.models import load_preset, spec_from_params
from calculator.runtime import kv_cache, runtime_overhead


@pytest.fixture(scope="module")
def llama8b():
    return load_preset("llama-3.1-8b")


@pytest.fixture(scope="module")
def llama70b():
    return load_preset("llama-2-70b")


# The examples


def test_llama_3_1_8b_q4_k_m_8k_fits_rtx_4090(llama8b):
    r = fit(llama8b, "Q4_K_M", "RTX 4090", context=8192, batch=1)
    assert r.fits and r.verdict is Verdict.FITS
    assert r.weight_bytes == weight_memory(llama8b, "Q4_K_M").total_bytes
    assert r.kv_cache_bytes == 1_073_741_824
    assert r.overhead_bytes == runtime_overhead(llama8b, 8192).total_bytes
    assert r.total_bytes == r.per_device_bytes == r.weight_bytes + r.kv_cache_bytes + r.overhead_bytes
    assert r.headroom_bytes == 24 * units.GB - r.total_bytes > 0
    assert r.headroom_pct == pytest.approx(100 * r.headroom_bytes / 24e9)
    assert r.gpu_layers == r.n_layers == 32 and r.cpu_offload_bytes == 0
    assert r.warnings == ()


def test_llama_2_70b_fp16_needs_two_h100(llama70b):
    one = fit(llama70b, "fp16", "H100 SXM", context=4096)
    assert not one.fits and one.verdict is Verdict.OFFLOAD  # only with ~60 GB in CPU RAM
    no_ram = fit(llama70b, "fp16", GpuSetup(get_gpu("H100 SXM"), 1, cpu_ram_bytes=0), context=4096)
    assert no_ram.verdict is Verdict.DOES_NOT_FIT and no_ram.headroom_bytes < 0
    two = fit(llama70b, "fp16", GpuSetup(get_gpu("H100 SXM"), 2), context=4096)
    assert two.fits and two.gpu_count == 2
    # tensor parallel: half the weights and half the KV heads per device, each with its own overhead
    ov = runtime_overhead(llama70b, 4096).total_bytes
    assert two.per_device_bytes == math.ceil(two.weight_bytes / 2) + two.kv_cache_bytes // 2 + ov
    assert two.overhead_bytes == 2 * ov


def test_70b_q4_k_m_on_24gb_needs_offload():
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q4_K_M", "RTX 4090", context=4096)
    assert r.verdict is Verdict.OFFLOAD and not r.fits
    assert 0 < r.gpu_layers < r.n_layers
    assert r.per_device_bytes <= 24 * units.GB
    assert r.cpu_offload_bytes > 0
    assert r.cpu_offload_bytes + (r.per_device_bytes - r.overhead_bytes) == r.weight_bytes + r.kv_cache_bytes
    assert any("CPU RAM not given" in w for w in r.warnings)
    assert r.decode_tokens_per_s is not None and r.prefill_seconds is None


def test_offload_places_whole_blocks_like_llama_cpp():
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q4_K_M", "RTX 4090", context=4096)
    wm = weight_memory(spec, "Q4_K_M")
    kv = kv_cache(spec, 4096)
    layer = {t.name: t.layer for t in spec.tensors}
    first = spec.n_layers - r.gpu_layers
    on_gpu = sum(t.bytes for t in wm.tensors if layer[t.name] is not None and layer[t.name] >= first)
    on_gpu += sum(kv.layer_bytes[first:])
    assert r.per_device_bytes == r.overhead_bytes + on_gpu
    # one more block would not fit
    extra = sum(t.bytes for t in wm.tensors if layer[t.name] == first - 1) + kv.layer_bytes[first - 1]
    assert r.per_device_bytes + extra > 24 * units.GB


def test_too_little_cpu_ram_means_no_fit():
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q4_K_M", GpuSetup(get_gpu("RTX 4090"), cpu_ram_bytes=8 * units.GB))
    assert r.verdict is Verdict.DOES_NOT_FIT
    assert any("exceeds the CPU RAM" in w for w in r.warnings)
    ok = fit(spec, "Q4_K_M", GpuSetup(get_gpu("RTX 4090"), cpu_ram_bytes=64 * units.GB))
    assert ok.verdict is Verdict.OFFLOAD and not any("CPU RAM" in w for w in ok.warnings)


def test_unified_memory_cannot_offload():
    r = fit(load_preset("llama-3.1-405b"), "Q4_K_M", "Apple M2 Ultra 192GB")
    assert r.verdict is Verdict.DOES_NOT_FIT
    assert any("unified memory" in w for w in r.warnings)


def test_gpu_too_small_for_a_single_block():
    r = fit(load_preset("llama-3.1-70b"), "fp16", "custom:1GiB")
    assert r.verdict is Verdict.DOES_NOT_FIT and r.gpu_layers == 0


# Bad input


def test_context_above_model_maximum_warns_but_answers(llama8b):
    r = fit(llama8b, "Q4_K_M", "H200", context=200_000)
    assert r.verdict in set(Verdict)
    assert any("above llama-3.1-8b's maximum of 131,072" in w for w in r.warnings)


@pytest.mark.parametrize("context, batch", [(0, 1), (-1, 1), (1024, 0)])
def test_zero_or_negative_context(llama8b, context, batch):
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        fit(llama8b, "Q4_K_M", "RTX 4090", context=context, batch=batch)


def test_unknown_gpu_and_format(llama8b):
    with pytest.raises(ValueError, match="did you mean"):
        fit(llama8b, "Q4_K_M", "RTX 4099")
    with pytest.raises(ValueError, match="unknown format"):
        fit(llama8b, "Q4_K_MM", "RTX 4090")


def test_bare_parameter_count_is_refused():
    with pytest.raises(ValueError, match="model config"):
        fit(spec_from_params(7_000_000_000), "fp16", "RTX 4090")


def test_bad_efficiency(llama8b):
    with pytest.raises(ValueError, match="decode efficiency"):
        fit(llama8b, "Q4_K_M", "RTX 4090", decode_efficiency=1.5)


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
    m = max_context(spec, fmt, gpu, kv_type=kv_type)
    assert m == fit(spec, fmt, gpu, context=1, kv_type=kv_type).max_context
    if m == spec.max_context:
        assert fit(spec, fmt, gpu, context=m, kv_type=kv_type, with_max_context=False).fits
    else:
        assert 0 < m < spec.max_context
        assert fit(spec, fmt, gpu, context=m, kv_type=kv_type, with_max_context=False).fits
        assert not fit(spec, fmt, gpu, context=m + 1, kv_type=kv_type, with_max_context=False).fits


def test_max_context_zero_when_weights_do_not_fit(llama70b):
    assert max_context(llama70b, "fp16", "RTX 4090") == 0


def test_max_context_capped_at_model_maximum(llama8b):
    assert max_context(llama8b, "Q4_K_M", "H200") == llama8b.max_context == 131_072


# Speed


def test_decode_roofline_arithmetic(llama8b):
    r = fit(llama8b, "Q4_K_M", "custom:24GB:1000GB/s:100TFLOPS", context=8192)
    wm = weight_memory(llama8b, "Q4_K_M")
    embd = next(t.bytes for t in wm.tensors if t.name == "token_embd.weight")  # one row per token, untied
    read = wm.total_bytes - embd + r.kv_cache_bytes
    assert r.decode_tokens_per_s == pytest.approx(1000e9 * DECODE_BANDWIDTH_EFFICIENCY / read)
    # prefill: Kaplan forward FLOPs per token = 2 N + 2 n_layer n_ctx d_attn, N excl. embeddings
    n = llama8b.total_params - 128256 * 4096
    flops = 8192 * (2 * n + 2 * 32 * 8192 * 4096)
    assert r.prefill_seconds == pytest.approx(flops / (100e12 * 0.5))


def test_moe_decode_reads_only_active_experts():
    spec = load_preset("mixtral-8x7b")
    r = fit(spec, "Q4_K_M", "H100 SXM", context=1024)
    dense_equivalent = get_gpu("H100 SXM").bandwidth_gb_per_s * 1e9 * 0.6 / r.weight_bytes
    assert r.decode_tokens_per_s > 2.5 * dense_equivalent  # 2 of 8 experts per token


def test_batch_raises_throughput(llama8b):
    one = fit(llama8b, "Q4_K_M", "RTX 4090", context=2048, batch=1)
    eight = fit(llama8b, "Q4_K_M", "RTX 4090", context=2048, batch=8)
    assert eight.decode_tokens_per_s > 5 * one.decode_tokens_per_s
    assert eight.kv_cache_bytes == 8 * one.kv_cache_bytes


def test_custom_gpu_without_bandwidth_has_no_speed(llama8b):
    r = fit(llama8b, "Q4_K_M", "custom:24GiB")
    assert r.fits and r.decode_tokens_per_s is None and r.prefill_seconds is None
    assert any("no memory bandwidth" in w for w in r.warnings)


def test_offload_is_slower_than_full_gpu():
    spec = load_preset("llama-3.1-70b")
    offload = fit(spec, "Q4_K_M", "RTX 4090")
    full = fit(spec, "Q4_K_M", GpuSetup(get_gpu("RTX 4090"), 2))
    assert full.fits and offload.decode_tokens_per_s < full.decode_tokens_per_s / 5


# Training through fit


def test_training_verdicts(llama8b):
    full = fit(llama8b, "bf16", "A100 80GB SXM", context=2048, mode="full")
    assert full.verdict is Verdict.DOES_NOT_FIT and full.training is not None
    assert full.weight_bytes == 6 * llama8b.total_params and full.kv_cache_bytes == 0
    qlora = fit(llama8b, "nf4", "RTX 4090", context=2048, mode="qlora", gradient_checkpointing=True)
    assert qlora.fits
    assert (
        qlora.per_device_bytes == qlora.training.total_bytes + runtime_overhead(llama8b, 1).cuda_context_bytes
    )
    assert qlora.decode_tokens_per_s is None
    # ZeRO-3 / FSDP: states shard over 8 devices, activations do not
    sharded = fit(
        llama8b,
        "bf16",
        GpuSetup(get_gpu("A100 80GB SXM"), 8),
        context=2048,
        mode="full",
        gradient_checkpointing=True,
    )
    assert sharded.fits
    tm = sharded.training
    assert sharded.per_device_bytes == (
        math.ceil(tm.state_bytes / 8) + tm.activation_bytes + tm.logits_bytes + 512 * units.MiB
    )


def test_training_ignores_the_download_format(llama8b):
    a = fit(llama8b, "int4", "H200", mode="full", with_max_context=False)
    b = fit(llama8b, "fp16", "H200", mode="full", with_max_context=False)
    assert a.total_bytes == b.total_bytes


# Searches


def test_quality_order_comes_from_the_kld_table():
    assert QUALITY_ORDER[:4] == ("fp32", "bf16", "fp16", "Q8_0")
    assert QUALITY_ORDER.index("Q4_K_M") < QUALITY_ORDER.index("Q4_0") < QUALITY_ORDER.index("Q2_K")
    klds = [QUALITY_KLD[f] for f in QUALITY_ORDER]
    assert klds == sorted(klds)


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
    cheap = smallest_gpu_set(llama70b, "fp16", 4096, by="price")
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
    with pytest.raises(ValueError, match="by="):
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


def test_mqa_cache_is_replicated_under_tensor_parallelism():
    spec = load_preset("falcon-7b")  # one KV head
    one = fit(spec, "fp16", "RTX 4090", 2048)
    two = fit(spec, "fp16", GpuSetup(get_gpu("RTX 4090"), 2), 2048)
    assert (
        two.per_device_bytes - math.ceil(two.weight_bytes / 2) - two.overhead_bytes // 2 == one.kv_cache_bytes
    )
    assert any(
        "do not split evenly" in w for w in fit(spec, "fp16", GpuSetup(get_gpu("RTX 4090"), 3)).warnings
    )


def test_as_setup_accepts_names_specs_and_setups():
    g = get_gpu("L4")
    assert as_setup("L4").gpu is g and as_setup(g).gpu is g
    s = GpuSetup(g, 2)
    assert as_setup(s) is s
    with pytest.raises(ValueError, match="expected a GPU name"):
        as_setup(42)


# Properties

PRESETS = ["llama-3.1-8b", "gemma-2-9b", "mixtral-8x7b", "deepseek-v2-lite", "qwen2.5-14b", "phi-3-mini-4k"]
FORMATS = ["fp16", "Q8_0", "Q4_K_M", "IQ2_XS", "int4-g128", "nf4"]


@settings(max_examples=60, deadline=None)
@given(
    preset=st.sampled_from(PRESETS),
    fmt=st.sampled_from(FORMATS),
    mem_a=st.integers(1, 200),
    mem_b=st.integers(1, 200),
    context=st.integers(1, 32_768),
    batch=st.integers(1, 8),
    count=st.sampled_from([1, 2, 4]),
)
def test_more_vram_never_flips_fits_to_does_not_fit(preset, fmt, mem_a, mem_b, context, batch, count):
    spec = load_preset(preset)
    small, big = sorted((mem_a, mem_b))
    rank = {Verdict.DOES_NOT_FIT: 0, Verdict.OFFLOAD: 1, Verdict.FITS: 2}
    a = fit(
        spec,
        fmt,
        GpuSetup(GpuSpec("a", "t", small * units.GB, 1000.0), count),
        context,
        batch,
        with_max_context=False,
    )
    b = fit(
        spec,
        fmt,
        GpuSetup(GpuSpec("b", "t", big * units.GB, 1000.0), count),
        context,
        batch,
        with_max_context=False,
    )
    assert rank[b.verdict] >= rank[a.verdict]
    if a.fits:
        assert b.headroom_bytes - a.headroom_bytes == (big - small) * units.GB


@settings(max_examples=40, deadline=None)
@given(
    preset=st.sampled_from(PRESETS),
    fmt=st.sampled_from(FORMATS),
    a=st.integers(1, 65_536),
    b=st.integers(1, 65_536),
    gpu=st.sampled_from(["RTX 4060", "RTX 4090", "L40S", "H100 SXM"]),
)
def test_longer_context_never_helps(preset, fmt, a, b, gpu):
    spec = load_preset(preset)
    lo, hi = sorted((a, b))
    short = fit(spec, fmt, gpu, lo, with_max_context=False)
    long = fit(spec, fmt, gpu, hi, with_max_context=False)
    assert long.total_bytes >= short.total_bytes
    if long.fits:
        assert short.fits
