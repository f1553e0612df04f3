"""KV cache and runtime overhead: golden bytes for real configs, llama.cpp log calibration, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import units
from calculator.models import load_preset, spec_from_config
from calculator.runtime import (
    CacheType,
    kv_cache,
    kv_cache_bytes,
    parse_cache_type,
    runtime_overhead,
)

MiB = units.MiB


# KV cache: golden numbers


def test_llama_3_1_8b_fp16_8k_is_exactly_one_gib():
    # 2 (K,V) x 32 layers x 8 KV heads x 128 head_dim x 8192 tokens x 1 sequence x 2 bytes
    kv = kv_cache(load_preset("llama-3.1-8b"), 8192, 1, "fp16")
    assert kv.total_bytes == 1_073_741_824 == 2 * 32 * 8 * 128 * 8192 * 2
    assert kv.full_layers == 32 and kv.sliding_layers == 0 and not kv.mla


@pytest.mark.parametrize(
    "preset, context, expected",
    [
        # MHA, 32 heads: llama.cpp logs "KV self size = 256.00 MiB" for llama 7B at n_ctx 512
        ("llama-2-7b", 512, 256 * MiB),
        ("llama-2-7b", 4096, 2 * 32 * 32 * 128 * 4096 * 2),
        # GQA, 8 of 64 heads: 80 layers x 8 x 128
        ("llama-2-70b", 4096, 2 * 80 * 8 * 128 * 4096 * 2),
        # MQA: Falcon-7B has one KV head of 64
        ("falcon-7b", 2048, 2 * 32 * 1 * 64 * 2048 * 2),
        # Qwen2.5-7B: 4 KV heads
        ("qwen2.5-7b", 8192, 2 * 28 * 4 * 128 * 8192 * 2),
    ],
)
def test_gqa_mqa_golden(preset, context, expected):
    assert kv_cache(load_preset(preset), context).total_bytes == expected


def test_mla_caches_latent_plus_rope_key_per_layer():
    # DeepSeek-V3: 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes, no separate V
    spec = load_preset("deepseek-v3")
    assert (spec.kv_lora_rank, spec.qk_rope_head_dim, spec.n_layers) == (512, 64, 61)
    kv = kv_cache(spec, 8192)
    assert kv.mla and kv.total_bytes == 61 * 576 * 2 * 8192 == 575_668_224
    # The uncompressed cache would be 128 heads x (192 + 128) per layer: ~71x larger
    assert 2 * 61 * 128 * 160 * 2 * 8192 / kv.total_bytes > 70
    lite = load_preset("deepseek-v2-lite")
    assert kv_cache(lite, 8192).total_bytes == 27 * 576 * 2 * 8192


def test_sliding_window_all_layers_mistral():
    # Mistral-7B-v0.1: sliding_window 4096 on every layer -> cache stops growing at 4096 tokens
    spec = load_preset("mistral-7b-v0.1")
    per_token = 2 * 32 * 8 * 128 * 2
    assert kv_cache(spec, 2048).total_bytes == per_token * 2048
    assert kv_cache(spec, 8192).total_bytes == per_token * 4096 == kv_cache(spec, 4096).total_bytes
    assert kv_cache(spec, 8192).sliding_layers == 32


def test_gemma2_alternates_local_and_global_layers():
    # Gemma-2-9B: 42 layers, even ones slide over 4096 tokens, odd ones are global; head_dim 256
    kv = kv_cache(load_preset("gemma-2-9b"), 8192)
    per_layer_token = 2 * 8 * 256 * 2
    assert (kv.full_layers, kv.sliding_layers, kv.sliding_window) == (21, 21, 4096)
    assert kv.full_attention_bytes == 21 * per_layer_token * 8192
    assert kv.sliding_window_bytes == 21 * per_layer_token * 4096
    assert kv.total_bytes == 2_113_929_216


def test_gemma3_five_local_to_one_global():
    transformers = pytest.importorskip("transformers")
    # transformers' own Gemma3TextConfig defaults: 26 layers, every 6th global, window 4096, head_dim 256
    spec = spec_from_config(transformers.Gemma3TextConfig().to_dict(), "gemma3-text-default")
    kv = kv_cache(spec, 8192)
    assert (kv.full_layers, kv.sliding_layers) == (4, 22)
    assert kv.total_bytes == 4 * 4096 * 8192 + 22 * 4096 * 4096 == 503_316_480
    assert kv.layer_bytes[5] == 4096 * 8192 and kv.layer_bytes[0] == 4096 * 4096


@pytest.mark.parametrize(
    "cache_type, expected",
    [
        ("fp32", 2_147_483_648),
        ("fp16", 1_073_741_824),
        ("bf16", 1_073_741_824),
        ("fp8", 536_870_912),
        # Q8_0: 34 bytes per 32 values; llama.cpp logs "KV self size = 544.00 MiB" for Llama-3-8B, 8192, q8_0
        ("q8_0", 544 * MiB),
        ("q4_0", 288 * MiB),  # 18 bytes per 32
    ],
)
def test_cache_types_take_block_overhead_from_format_table(cache_type, expected):
    assert kv_cache(load_preset("llama-3.1-8b"), 8192, 1, cache_type).total_bytes == expected


def test_every_cache_type_is_in_the_format_table():
    spec = load_preset("llama-3.1-8b")
    sizes = {ct: kv_cache_bytes(spec, 1024, 1, ct) for ct in CacheType}
    assert sizes[CacheType.FP32] > sizes[CacheType.FP16] > sizes[CacheType.Q8_0] > sizes[CacheType.Q4_0]
    assert sizes[CacheType.FP8] < sizes[CacheType.Q8_0]


def test_quantized_cache_needs_rows_divisible_by_block():
    config = {
        "model_type": "llama",
        "hidden_size": 320,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "vocab_size": 1000,
        "intermediate_size": 640,
    }
    spec = spec_from_config(config, "odd-head-dim")  # head_dim 80: a K row of 80 values
    assert kv_cache(spec, 16, 1, "fp16").total_bytes == 2 * 2 * 80 * 16 * 2
    with pytest.raises(ValueError, match="blocks of 32 values.*80 values"):
        kv_cache(spec, 16, 1, "q8_0")


def test_cache_type_parsing():
    assert parse_cache_type("F16") is CacheType.FP16
    assert parse_cache_type("Q8_0") is CacheType.Q8_0
    assert parse_cache_type("fp8_e4m3") is CacheType.FP8
    with pytest.raises(ValueError, match="'q9'.*fp16"):
        parse_cache_type("q9")


@pytest.mark.parametrize("context, batch", [(0, 1), (-5, 1), (8, 0)])
def test_bad_context_or_batch(context, batch):
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        kv_cache(load_preset("llama-3.1-8b"), context, batch)


def test_params_only_spec_has_no_kv():
    from calculator.models import spec_from_params

    with pytest.raises(ValueError, match="no layer facts"):
        kv_cache(spec_from_params(7_000_000_000), 1024)


@settings(max_examples=40, deadline=None)
@given(
    preset=st.sampled_from(["llama-3.1-8b", "gemma-2-9b", "mistral-7b-v0.1", "deepseek-v3", "falcon-7b"]),
    context=st.integers(1, 200_000),
    batch=st.integers(1, 64),
    cache=st.sampled_from(list(CacheType)),
)
def test_kv_linear_in_batch(preset, context, batch, cache):
    spec = load_preset(preset)
    one = kv_cache(spec, context, 1, cache).total_bytes
    assert (
        kv_cache(spec, context, batch, cache).total_bytes
        == batch * one
        == kv_cache_bytes(spec, context, batch, cache)
    )


@settings(max_examples=40, deadline=None)
@given(
    preset=st.sampled_from(["llama-3.1-8b", "qwen2.5-7b", "deepseek-v3", "falcon-7b", "llama-2-70b"]),
    a=st.integers(1, 100_000),
    b=st.integers(1, 100_000),
    cache=st.sampled_from(list(CacheType)),
)
def test_kv_linear_in_context_without_sliding_layers(preset, a, b, cache):
    spec = load_preset(preset)
    assert kv_cache(spec, a + b, 1, cache).total_bytes == (
        kv_cache(spec, a, 1, cache).total_bytes + kv_cache(spec, b, 1, cache).total_bytes
    )


@settings(max_examples=40, deadline=None)
@given(a=st.integers(1, 50_000), b=st.integers(1, 50_000))
def test_sliding_models_never_shrink_and_are_capped(a, b):
    spec = load_preset("gemma-2-9b")
    lo, hi = sorted((a, b))
    assert kv_cache(spec, lo).total_bytes <= kv_cache(spec, hi).total_bytes
    assert kv_cache(spec, hi).sliding_window_bytes <= kv_cache(spec, 4096).sliding_window_bytes


# Runtime overhead


@pytest.mark.parametrize(
    "preset, context, expected_mib",
    [
        # llama.cpp start-up logs, n_ubatch 512, flash_attn = 0, quoted in public GitHub issues:
        ("llama-3-8b", 512, 258.50),  # "CUDA0 compute buffer size = 258.50 MiB" (n_ctx 512)
        ("llama-3-8b", 8192, 560.00),  # "CUDA0 compute buffer size = 560.00 MiB" (n_ctx 8192, KV 1024.00 MiB)
        ("llama-2-7b", 512, 70.50),  # "Metal/CPU compute buffer size = 70.50 MiB" (n_ctx 512)
        # fedora-copr/logdetective PR #106 (Mistral-7B, freq_base 1e6):
        # 164.00 MiB at n_ctx 2048, 2144.00 MiB at n_ctx 32768
        ("mistral-7b-v0.3", 2048, 164.00),
        ("mistral-7b-v0.3", 32768, 2144.00),
    ],
)
def test_compute_buffer_matches_llama_cpp_logs(preset, context, expected_mib):
    ov = runtime_overhead(load_preset(preset), context, flash_attention=False)
    assert ov.compute_buffer_bytes == expected_mib * MiB


def test_overhead_terms_are_named_and_changeable():
    spec = load_preset("llama-3.1-8b")
    ov = runtime_overhead(spec, 8192)
    assert ov.cuda_context_bytes == 512 * MiB and ov.extra_bytes == 0 and ov.flash_attention
    # the output stage (512 tokens of 128256 fp32 logits + one 4096 row each) dominates under flash attention
    assert ov.logits_bytes == 512 * 128256 * 4
    assert ov.compute_buffer_bytes == 512 * (128256 + 4096) * 4
    assert ov.total_bytes == ov.cuda_context_bytes + ov.compute_buffer_bytes
    custom = runtime_overhead(spec, 8192, cuda_context_bytes=300 * MiB, extra_bytes=units.GiB)
    assert custom.total_bytes == 300 * MiB + ov.compute_buffer_bytes + units.GiB


def test_unchunked_prefill_holds_all_logits():
    # transformers-style: the whole 8192-token prompt in one forward -> 8192 x 128256 x 4 bytes of logits
    ov = runtime_overhead(load_preset("llama-3.1-8b"), 8192, ubatch=None)
    assert ov.step_tokens == 8192
    assert ov.logits_bytes == 8192 * 128256 * 4 == 4_202_692_608


def test_short_prompts_use_a_smaller_step():
    ov = runtime_overhead(load_preset("llama-3.1-8b"), 100)
    assert ov.step_tokens == 100 and ov.logits_bytes == 100 * 128256 * 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ubatch": 0}, "ubatch"),
        ({"cuda_context_bytes": -1}, "CUDA context"),
        ({"extra_bytes": -5}, "extra"),
    ],
)
def test_overhead_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        runtime_overhead(load_preset("llama-3.1-8b"), 1024, **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    preset=st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b", "deepseek-v3"]),
    a=st.integers(1, 131_072),
    b=st.integers(1, 131_072),
    fa=st.booleans(),
    ubatch=st.sampled_from([None, 128, 512, 2048]),
)
def test_overhead_never_shrinks_with_context(preset, a, b, fa, ubatch):
    spec = load_preset(preset)
    lo, hi = sorted((a, b))
    assert (
        runtime_overhead(spec, lo, ubatch=ubatch, flash_attention=fa).total_bytes
        <= runtime_overhead(spec, hi, ubatch=ubatch, flash_attention=fa).total_bytes
    )
