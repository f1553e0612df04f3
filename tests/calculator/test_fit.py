"""Verdicts, placement, offload and FitOptions on real presets and catalogue GPUs (speed: test_speed.py,
searches and max context: test_search.py, the quality ranking: test_quality.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import placement, units
from calculator.fit import FitOptions, Verdict, as_setup, fit
from calculator.hardware import GpuSetup, GpuSpec, get_gpu
from calculator.memory import weight_facts, weight_memory
from calculator.models import load_preset, spec_from_params
from calculator.runtime import CacheType
from calculator.training import Optimizer, TrainingMode


@pytest.fixture(scope="module")
def llama8b():
    return load_preset("llama-3.1-8b")


@pytest.fixture(scope="module")
def llama70b():
    return load_preset("llama-2-70b")


# The examples


def test_llama_3_1_8b_q4_k_m_8k_fits_rtx_4090(llama8b):
    r = fit(llama8b, "Q4_K_M", "RTX 4090", context=8192, batch=1)
    assert r.fits and r.verdict is Verdict.FITS and r.engine == "llama.cpp"
    # llama.cpp's quantize README: 4,912,898,304 bytes, which includes rope_freqs.weight (64 F32 = 256 bytes)
    assert r.weight_bytes == 4_912_898_304 - 256
    assert r.kv_cache_bytes == 2 * 32 * 8 * 128 * 8192 * 2 == 1_073_741_824
    # llama.cpp keeps token_embd (Q4_K: 128,256 x 4,096 x 144 / 256 bytes) in host memory; the GPU holds the rest
    gpu, host = r.devices[0], r.host
    token_embd = 128_256 * 4_096 * 144 // 256
    assert host.weights_bytes == token_embd and gpu.weights_bytes == r.weight_bytes - token_embd
    assert gpu.kv_cache_bytes == r.kv_cache_bytes and gpu.context_bytes == 512 * 2**20
    # current llama-server, flash attention on: the FFN stage (512 x (2 x 14,336 + 4,096) x 4) beats the one-row
    # logits; + the positions and output ids it is given (2 x 512 x 4 bytes)
    assert gpu.compute_bytes == 512 * (2 * 14_336 + 4_096) * 4 + 2 * 512 * 4
    assert host.output_bytes == 128_256 * 4  # "CUDA_Host output buffer size = 0.49 MiB"
    assert r.per_device_bytes == gpu.total_bytes and r.total_bytes == gpu.total_bytes + host.total_bytes
    assert r.total_bytes == r.weight_bytes + r.kv_cache_bytes + r.overhead_bytes
    assert r.headroom_bytes == 24 * units.GB - r.per_device_bytes > 0
    assert r.headroom_pct == pytest.approx(100 * r.headroom_bytes / 24e9)
    assert r.gpu_layers == r.n_layers == 32 and r.cpu_offload_bytes == 0
    assert r.warnings == ()


def test_llama_2_70b_fp16_needs_two_h100(llama70b):
    one = fit(llama70b, "fp16", "H100 SXM", context=4096)
    assert not one.fits and one.verdict is Verdict.OFFLOAD  # only with ~60 GB in CPU RAM
    no_ram = fit(llama70b, "fp16", GpuSetup(get_gpu("H100 SXM"), 1, cpu_ram_bytes=0), context=4096)
    assert no_ram.verdict is Verdict.DOES_NOT_FIT and any("exceeds the CPU RAM" in w for w in no_ram.warnings)
    two = fit(llama70b, "fp16", GpuSetup(get_gpu("H100 SXM"), 2), context=4096)
    assert two.fits and two.gpu_count == 2
    # llama.cpp's layer split by free memory, equal cards: block il goes to CUDA0 while il / 81 < 1/2, so
    # 41 blocks there and 39 + the output layer on CUDA1; each card its own CUDA context and compute buffer
    a, b = two.devices
    assert (a.layers, b.layers, a.holds_output, b.holds_output) == (41, 39, False, True)
    assert a.kv_cache_bytes == 41 * 2 * 8 * 128 * 4096 * 2 and b.kv_cache_bytes == 39 * 2 * 8 * 128 * 4096 * 2
    assert a.context_bytes == b.context_bytes == 512 * 2**20 and a.compute_bytes > 0 and b.compute_bytes > 0
    assert two.per_device_bytes == max(a.total_bytes, b.total_bytes)


def test_70b_q4_k_m_on_24gb_needs_offload():
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q4_K_M", "RTX 4090", context=4096)
    assert r.verdict is Verdict.OFFLOAD and not r.fits
    assert 0 < r.gpu_layers < r.n_layers
    assert r.per_device_bytes <= 24 * units.GB
    gpu, host = r.devices[0], r.host
    token_embd = next(t.bytes for t in weight_memory(spec, "Q4_K_M").tensors if t.name == "token_embd.weight")
    assert r.cpu_offload_bytes == host.weights_bytes + host.kv_cache_bytes - token_embd > 0
    assert gpu.weights_bytes + host.weights_bytes == r.weight_bytes
    assert any("CPU RAM not given" in w for w in r.warnings)
    assert r.decode_tokens_per_s is not None and r.prefill_seconds is None


def test_offload_places_whole_blocks_like_llama_cpp():
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q4_K_M", "RTX 4090", context=4096)
    wm = weight_memory(spec, "Q4_K_M")
    layer = {t.name: t.layer for t in spec.tensors}
    first = spec.n_layers - r.gpu_layers  # llama.cpp offloads the LAST -ngl blocks; the output stays on the CPU
    on_gpu = sum(t.bytes for t in wm.tensors if layer[t.name] is not None and layer[t.name] >= first)
    gpu = r.devices[0]
    assert gpu.weights_bytes == on_gpu and gpu.layers == r.gpu_layers and not gpu.holds_output
    assert gpu.kv_cache_bytes == sum(r.kv.layer_bytes[first:])
    assert r.host.kv_cache_bytes == sum(r.kv.layer_bytes[:first])
    # one more block would not fit
    extra = sum(t.bytes for t in wm.tensors if layer[t.name] == first - 1) + r.kv.layer_bytes[first - 1]
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
    # llama.cpp pads n_ctx to 256 cells: 200,192 x 128 KiB per token (2 x 32 layers x 8 KV heads x 128 x 2 bytes)
    assert r.fits and r.kv_cache_bytes == 200_192 * 131_072
    assert any("above llama-3.1-8b's maximum of 131,072" in w for w in r.warnings)


@pytest.mark.parametrize("context, batch", [(0, 1), (-1, 1), (1024, 0)])
def test_zero_or_negative_context(llama8b, context, batch):
    with pytest.raises(ValueError, match="must be a whole number (>= 1|from 1 to)"):
        fit(llama8b, "Q4_K_M", "RTX 4090", context=context, batch=batch)


def test_unknown_gpu_and_format(llama8b):
    with pytest.raises(ValueError, match="did you mean"):
        fit(llama8b, "Q4_K_M", "RTX 4099")
    with pytest.raises(ValueError, match="unknown format"):
        fit(llama8b, "Q4_K_MM", "RTX 4090")


def test_bare_parameter_count_is_refused():
    with pytest.raises(ValueError, match="model config"):
        fit(spec_from_params(7_000_000_000), "fp16", "RTX 4090")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(decode_efficiency=1.5), r"decode efficiency 1\.5 must be in \(0, 1\], e\.g\. 0\.6"),
        (dict(engine="vllm-ish"), "engine 'vllm-ish' is not known; choose one of llama.cpp, ollama, mlx"),
        (dict(prefill_efficiency=0), r"prefill efficiency 0 must be in \(0, 1\]"),
        (dict(kv_type="q9"), "KV cache type 'q9' is not known; choose one of fp32, fp16"),
        (dict(mode="pretrain"), "mode 'pretrain' is not known; choose one of inference, full"),
        (dict(optimizer="lion"), "optimizer 'lion' is not known"),
        (dict(ubatch=0), r"ubatch \(prompt tokens per step\) 0 must be a whole number (>= 1|from 1 to)"),
        (dict(cuda_context_bytes=-1), "CUDA context bytes -1 must be a whole number >= 0"),
        (dict(extra_overhead_bytes=1.5), "extra overhead bytes 1.5 must be a whole number >= 0"),
        (dict(lora_rank=0), "LoRA rank 0 must be a whole number (>= 1|from 1 to)"),
        (dict(flash_attention="yes"), "flash_attention 'yes' must be True or False"),
    ],
)
def test_fit_options_refuse_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        FitOptions(**options)


def test_fit_options_take_enum_values_as_strings():
    o = FitOptions(kv_type="Q8_0", mode="qlora", optimizer="adamw-8bit", lora_targets="all-linear", ubatch=None)
    assert (o.kv_type, o.mode, o.optimizer) == (CacheType.Q8_0, TrainingMode.QLORA, Optimizer.ADAMW_8BIT)
    assert o.lora_targets == ("all-linear",) and o.ubatch is None
    assert FitOptions() == FitOptions(kv_type="fp16", mode="inference")  # frozen, comparable, hashable
    assert hash(FitOptions()) == hash(FitOptions(kv_type="f16"))


def test_fit_refuses_options_of_the_wrong_type(llama8b):
    with pytest.raises(ValueError, match="options must be a FitOptions, got dict"):
        fit(llama8b, "Q4_K_M", "RTX 4090", 4096, 1, options={"kv_type": "q8_0"})


def test_a_quantized_kv_cache_and_no_flash_attention_change_the_bytes(llama8b):
    base = fit(llama8b, "Q4_K_M", "RTX 4090", 8192)
    q8 = fit(llama8b, "Q4_K_M", "RTX 4090", 8192, options=FitOptions(kv_type="q8_0"))
    # llama.cpp logs "KV self size = 544.00 MiB" for Llama-3-8B at 8192 tokens in q8_0 (34 bytes per 32 values)
    assert q8.kv_cache_bytes == 544 * 2**20 and base.kv_cache_bytes == 1024 * 2**20
    no_fa = fit(llama8b, "Q4_K_M", "RTX 4090", 8192, options=FitOptions(flash_attention=False))
    # llama.cpp logs a 560.00 MiB compute buffer for Llama-3-8B at n_ctx 8192 without flash attention
    assert f"{no_fa.devices[0].compute_bytes / 2**20:.2f}" == "560.00"
    assert no_fa.overhead.compute_buffer_bytes == no_fa.devices[0].compute_bytes


# Training through fit


def test_training_verdicts(llama8b):
    full = fit(llama8b, "bf16", "A100 80GB SXM", context=2048, options=FitOptions(mode="full"))
    assert full.verdict is Verdict.DOES_NOT_FIT and full.training is not None
    assert full.weight_bytes == 6 * 8_030_261_248 and full.kv_cache_bytes == 0  # fp32 master + 16-bit copy
    qlora = fit(llama8b, "nf4", "RTX 4090", 2048, options=FitOptions(mode="qlora", gradient_checkpointing=True))
    assert qlora.fits
    assert qlora.per_device_bytes == qlora.training.total_bytes + 512 * 2**20
    assert qlora.decode_tokens_per_s is None
    # ZeRO-3 / FSDP: the 18 bytes per parameter of mixed-precision AdamW (HF "Model training anatomy") shard
    # over 8 devices; each keeps its own checkpointed activations (Korthikanti et al.: 2sbh per layer + one
    # layer's 34sbh), fp32 logits and their gradient (2 x s x vocab x 4) and a 512 MiB CUDA context.
    sharded = fit(
        llama8b,
        "bf16",
        GpuSetup(get_gpu("A100 80GB SXM"), 8),
        context=2048,
        options=FitOptions(mode="full", gradient_checkpointing=True),
    )
    assert sharded.fits
    s, h = 2048, 4096
    states = 18 * 8_030_261_248 // 8
    activations = 32 * 2 * s * h + 34 * s * h
    assert sharded.per_device_bytes == states + activations + 2 * s * 128_256 * 4 + 512 * 2**20 == 21_528_388_608


def test_training_ignores_the_download_format(llama8b):
    full = FitOptions(mode="full")
    a = fit(llama8b, "int4", "H200", options=full, with_max_context=False)
    b = fit(llama8b, "fp16", "H200", options=full, with_max_context=False)
    assert a.total_bytes == b.total_bytes


def test_tensor_parallel_rule_replicates_mqa_caches():
    # The tensor-parallel placement (training, and the serving engines that shard by heads) stays in
    # calculator.placement: weights 1/n each, the KV cache by whole KV heads, so a single-head MQA cache is
    # replicated on every device.
    spec = load_preset("falcon-7b")  # one KV head
    wf = weight_facts(spec, "fp16")
    o = FitOptions()
    one = placement.place_inference(spec, wf, GpuSetup(get_gpu("RTX 4090")), 2048, 1, o)
    two = placement.place_inference(spec, wf, GpuSetup(get_gpu("RTX 4090"), 2), 2048, 1, o)
    assert two.per_device - math.ceil(wf.total_bytes / 2) - two.overhead_total // 2 == one.kv.total_bytes
    qlora = FitOptions(mode="qlora", lora_targets="all-linear")
    assert any("do not split evenly" in w for w in fit(spec, "nf4", GpuSetup(get_gpu("RTX 4090"), 3),
                                                       options=qlora).warnings)


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
    # (total bytes need not grow: once llama.cpp leaves the output layer on the CPU, a tied output matrix is
    # no longer duplicated on the GPU)
    assert long.kv_cache_bytes >= short.kv_cache_bytes and long.gpu_layers <= short.gpu_layers
    if long.fits:
        assert short.fits


# The max-context search: the largest context that fits, whatever the estimate that started the bracket


def _bisected(engine, spec, fmt, wf, setup, batch, o) -> int | None:
    """Plain bisection over [1, the engine's limit] (the search before its estimate): the reference."""
    hi = engine.context_limit(spec, batch, o)
    if not hi:
        return None
    if engine.fits(spec, fmt, wf, setup, hi, batch, o):
        return hi
    if not engine.fits(spec, fmt, wf, setup, 1, batch, o):
        return 0
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if engine.fits(spec, fmt, wf, setup, mid, batch, o) else (lo, mid)
    return lo


@settings(max_examples=40, deadline=None)
@given(
    preset=st.sampled_from(PRESETS),
    fmt=st.sampled_from(["Q8_0", "Q4_K_M", "IQ2_XS", "int4-g128"]),
    engine=st.sampled_from(["llama.cpp", "ollama", "vllm", "mlx", "sglang", "transformers"]),
    gpu=st.sampled_from(["RTX 4060", "RTX 4090", "H100 SXM", "M4 Max"]),
    count=st.sampled_from([1, 2, 8, 64]),
    batch=st.sampled_from([1, 3, 64, 4096]),
    kv=st.sampled_from(["f16", "q8_0", "q4_0"]),
    context=st.integers(1, 131_072),
)
def test_max_context_is_the_largest_that_fits(preset, fmt, engine, gpu, count, batch, kv, context):
    from calculator.engines.registry import get_engine

    spec = load_preset(preset)
    o = FitOptions(engine=engine, kv_type=kv)
    setup = GpuSetup(get_gpu(gpu), count)
    try:
        r = fit(spec, fmt, setup, context, batch, options=o)
    except ValueError:
        return  # a combination the engine refuses (a format it cannot load, a Mac in a group)
    eng = get_engine(engine)
    wf = weight_facts(spec, fmt)
    limit = eng.context_limit(spec, batch, o)
    assert r.max_context == _bisected(eng, spec, fmt, wf, setup, batch, o)
    if r.max_context:
        assert eng.fits(spec, fmt, wf, setup, r.max_context, batch, o)
        assert r.max_context == limit or not eng.fits(spec, fmt, wf, setup, r.max_context + 1, batch, o)
    elif r.max_context == 0:
        assert not eng.fits(spec, fmt, wf, setup, 1, batch, o)


def test_max_context_of_the_largest_link_on_64_gpus():
    """The worst Fit link (133 layers, 2^27 tokens, batch 4,096, q4_0 KV, 64 H100s): the estimate-started
    search gives what plain bisection gives."""
    from calculator.engines.registry import get_engine
    from calculator.models import spec_from_config

    spec = spec_from_config({"model_type": "llama", "hidden_size": 16384, "num_hidden_layers": 133,
                             "num_attention_heads": 128, "num_key_value_heads": 8, "vocab_size": 128256,
                             "intermediate_size": 53248, "max_position_embeddings": 2**27,
                             "tie_word_embeddings": False}, name="largest link")
    o = FitOptions(kv_type="q4_0")
    setup = GpuSetup(get_gpu("H100 SXM"), 64)
    r = fit(spec, "Q4_K_M", setup, 10_000_000, 4096, options=o)
    assert r.max_context == 20_975_360
    assert r.max_context == _bisected(get_engine("llama.cpp"), spec, "Q4_K_M", weight_facts(spec, "Q4_K_M"),
                                      setup, 4096, o)
