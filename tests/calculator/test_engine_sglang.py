"""SGLang engine against real start-up logs: token pool sizes, K/V buffer sizes, request slots, the
refusal and the minimum ``--mem-fraction-static`` (each log cited where it is used)."""

from __future__ import annotations

import pytest

from calculator import units
from calculator.engines.sglang import (
    SglangSettings,
    cell_size_bytes,
    default_mem_fraction_static,
    max_num_reqs,
    pool_tokens,
    sglang_startup,
)
from calculator.engines.vllm import VllmSettings, vllm_startup
from calculator.hardware import get_gpu
from calculator.models import load_preset, spec_from_config

GiB = units.GiB

QWEN3_235B = {  # code-search index id 22176531064 (Qwen3-235B-A22B config.json)
    "model_type": "qwen3_moe", "head_dim": 128, "hidden_size": 4096, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "moe_intermediate_size": 1536, "num_attention_heads": 64, "num_experts": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 94, "num_key_value_heads": 4, "tie_word_embeddings": False,
    "vocab_size": 151936, "decoder_sparse_step": 1, "mlp_only_layers": [],
}
QWEN3_30B_A3B = {  # code-search index id 71463455676 (Qwen/Qwen3-30B-A3B config.json fields)
    "model_type": "qwen3_moe", "decoder_sparse_step": 1, "head_dim": 128, "hidden_size": 2048,
    "intermediate_size": 6144, "max_position_embeddings": 40960, "mlp_only_layers": [], "moe_intermediate_size": 768,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "tie_word_embeddings": False, "vocab_size": 151936,
}


def _gib_2(n_bytes: int) -> str:
    return f"{n_bytes / GiB:.2f}"


def test_qwen3_235b_fp8_tp4_k_and_v_sizes():
    # vllm-project/vllm issue #21348 (SGLang --tp 4 --mem-fraction-static 0.93, 4x H100):
    # "KV Cache is allocated. #tokens: 367404, K size: 8.23 GB, V size: 8.23 GB"
    spec = spec_from_config(QWEN3_235B, name="qwen3-235b-a22b")
    cell = cell_size_bytes(spec, 4)
    assert cell == 1 * (128 + 128) * 94 * 2 == 48_128  # 4 KV heads over 4 ranks: one each
    assert _gib_2(367_404 * cell // 2) == "8.23"
    # the same machine under vLLM (default 0.9): 8.11 GiB of KV; SGLang's flat reserve leaves 2x as much
    assert 367_404 * cell / (8.11 * GiB) > 2


def test_qwen3_omni_thinker_tp4_k_and_v_sizes():
    # sgl-project/sglang PR #15909: "KV Cache is allocated. #tokens: 2090351, K size: 23.92 GB, V size: 23.92 GB"
    # exact for 48 layers x 1 KV head per rank x 128 (Qwen3-30B-A3B's attention, 4 KV heads over --tp 4)
    spec = spec_from_config(QWEN3_30B_A3B, name="qwen3-30b-a3b")
    assert _gib_2(2_090_351 * cell_size_bytes(spec, 4) // 2) == "23.92"


def test_mla_cell_pool_and_request_slots():
    # sgl-project/sglang PR #14071 (2-layer MLA test model, TP 4, --max-total-tokens 60000):
    # "MLA(kv_lora=512, rope=64) layers=2 dtype=torch.bfloat16 2.25KB/tok ... rest=35.9GB max_tokens=16725761"
    # "req_to_token_pool: slots=4096 (heuristic=52268, clamp=[2048,4096], ..., context_len=163840)"
    # "KV Cache is allocated. #tokens: 60000, KV size: 0.13 GB, layout=(60001, 1, 576)"
    spec = load_preset("deepseek-v2-lite")
    cell_2_layers = cell_size_bytes(spec, 4) // spec.n_layers * 2
    assert cell_2_layers == (512 + 64) * 2 * 2 == 2304  # 2.25 KB, the same on every rank
    lo = pool_tokens(round(35.85 * GiB), round(35.85 * GiB), 1.0 - 1e-12, cell_2_layers)
    hi = pool_tokens(round(35.95 * GiB), round(35.95 * GiB), 1.0 - 1e-12, cell_2_layers)
    assert lo <= 16_725_761 <= hi
    assert int(16_725_761 / 163_840 * 512) == 52_268 and max_num_reqs(16_725_761, 163_840) == 4096
    assert pool_tokens(10 * GiB, 10 * GiB, 0.99, cell_2_layers, max_total_tokens=60_000) == 60_000
    assert _gib_2(60_001 * 576 * 2 * 2) == "0.13"


def test_fp8_kv_full_attention_layers():
    # noonghunna/club-3090 issue #1261 (2x RTX 5090, fp8 KV, hybrid model: 16 full-attention layers, 4 KV
    # heads x 256 over TP 2): "KV Cache is allocated. dtype: torch.float8_e4m3fn, #tokens: 454112, K size: 3.46 GB"
    assert _gib_2(454_112 * 16 * 2 * 256 * 1) == "3.46"


def test_weights_that_fill_the_fraction_refuse_and_name_the_minimum():
    # SemiAnalysisAI/InferenceX issue #2128 (DeepSeek-V4-Pro FP8, 8x H200, --mem-fraction-static 0.88):
    # "Load weight end. ... avail mem=12.25 GB, mem usage=125.65 GB." -> "Loaded weights leave no GPU memory for
    # the KV cache under --mem-fraction-static=0.88", minimum "0.9113" for the non-speculative script
    free_before = round((125.65 + 12.25) * GiB)
    after = round(12.25 * GiB)
    assert pool_tokens(free_before, after, 0.88, 1000) < 0
    minimum = (free_before - after) / free_before
    assert minimum == pytest.approx(0.9113, abs=0.0002)
    assert pool_tokens(free_before, after, 0.9113, 1000) > 0


def test_default_fraction_follows_the_gpu_size():
    # PR #10975 worked example: H100 (81,559 MiB) at TP 1 reserves 512 + 8192 x 1.5 + 256 x 2 + 128 MB = 13,440
    assert default_mem_fraction_static(81_559 * units.MiB, 1) == round((81_559 - 13_440) / 81_559, 3) == 0.835
    assert default_mem_fraction_static(24_564 * units.MiB, 1) == round((24_564 - 512 - 3_072 - 48 - 128) / 24_564, 3)
    assert default_mem_fraction_static(81_559 * units.MiB, 8) < default_mem_fraction_static(81_559 * units.MiB, 1)


def test_startup_end_to_end_and_against_vllm():
    spec = load_preset("llama-3.1-8b")
    h100 = get_gpu("H100 SXM")
    r = sglang_startup(spec, "bf16", h100, 1, SglangSettings(mem_fraction_static=0.88, context_length=16384))
    assert r.starts and r.cell_size_bytes == 32 * 8 * 256 * 2 == 131_072
    expected = (r.free_before_weights_bytes - r.weights_bytes_per_gpu
                - int(r.free_before_weights_bytes * (1 - 0.88))) // 131_072
    assert r.max_total_num_tokens == expected
    assert r.kv_cache_bytes == r.max_total_num_tokens * 131_072
    assert r.max_concurrency == pytest.approx(r.max_total_num_tokens / 16384)
    assert r.concurrency_at(8192) == pytest.approx(2 * r.max_concurrency) and r.concurrency_at(20000) == 0.0
    v = vllm_startup(spec, "bf16", h100, 1, VllmSettings(gpu_memory_utilization=0.88, max_model_len=16384))
    assert r.max_total_num_tokens > v.pool.tokens  # no profiled activation peak: a bigger pool at the same share
    fp8 = sglang_startup(spec, "bf16", h100, 1, SglangSettings(0.88, 16384, kv_cache_dtype="fp8_e4m3"))
    assert fp8.max_total_num_tokens in (2 * r.max_total_num_tokens, 2 * r.max_total_num_tokens + 1)
    assert r.to_dict()["kv_tokens"] == r.max_total_num_tokens


def test_refusals_and_bad_input():
    spec = load_preset("llama-3.1-70b")
    r = sglang_startup(spec, "bf16", get_gpu("H100 SXM"), 1, SglangSettings(mem_fraction_static=0.9,
                                                                            context_length=8192))
    assert not r.starts and r.refusal.startswith("Not enough memory. Please try to increase --mem-fraction-static.")
    assert r.minimum_mem_fraction_static > 1  # 131 GiB of weights on a 79 GiB card
    with pytest.raises(ValueError, match=r"64 attention heads do not split over --tp 3"):
        sglang_startup(spec, "bf16", get_gpu("H100 SXM"), 3)
    with pytest.raises(ValueError, match=r"--context-length 200000 is above llama-3.1-70b's 131072 positions"):
        sglang_startup(spec, "bf16", get_gpu("H100 SXM"), 4, SglangSettings(context_length=200000))
    with pytest.raises(ValueError, match=r"--mem-fraction-static 1\.0 must be in \(0, 1\)"):
        SglangSettings(mem_fraction_static=1.0)
    with pytest.raises(ValueError, match=r"--kv-cache-dtype 'q8_0' is not auto, fp8_e4m3 or fp8_e5m2"):
        SglangSettings(kv_cache_dtype="q8_0")


def test_cli_json_and_batch_beyond_the_pool(capsys):
    import json

    from calculator.cli import main

    argv = ["fit", "--engine", "sglang", "--model", "llama-3.1-8b", "--format", "bf16", "--gpu", "H100 SXM",
            "--context", "16384", "--mem-fraction-static", "0.88", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    r = sglang_startup(load_preset("llama-3.1-8b"), "bf16", get_gpu("H100 SXM"), 1,
                       SglangSettings(mem_fraction_static=0.88, context_length=16384))
    assert data["fits"] and data["kv_tokens"] == r.max_total_num_tokens and data["kv_cache_bytes"] == r.kv_cache_bytes
    assert main([*argv[:-1], "--batch", "100", "--json"]) == 0
    crowded = json.loads(capsys.readouterr().out)
    assert not crowded["fits"] and any("its pool holds" in w for w in crowded["warnings"])
    assert crowded["advice"][0]["value"] == int(r.max_concurrency)
