"""vLLM engine against real start-up logs: the block/concurrency arithmetic exactly, the whole budget
within 5 %, vLLM's refusals word for word, and bad input as vLLM refuses it.

Golden data: ``tests/calculator/data/vllm_v019_logs.json`` -- 25 vLLM 0.19.0 H100 start-ups from
llm-d-incubation/llm-d-planner@d3121e059da88662db39a926a3ead964be97359b (each with its log URL), the
model configs with their sources. Other logs are cited where they are used.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from calculator import units
from calculator.engines import _vllm_kv, _vllm_memory
from calculator.engines._vllm_kv import AttentionKind, LayerKind
from calculator.engines.vllm import VllmSettings, default_batching, vllm_startup
from calculator.hardware import get_gpu
from calculator.models import TensorSpec, list_presets, load_preset, spec_from_config

GiB = units.GiB
DATA = json.loads((Path(__file__).parent / "data" / "vllm_v019_logs.json").read_text())
LOGS = DATA["logs"]
BUILDABLE = [lg for lg in LOGS if lg["model"]]
H100 = get_gpu("H100 SXM")


def _spec(name: str):
    if name in list_presets():
        return load_preset(name)
    entry = DATA["configs"][name]
    spec = spec_from_config(entry["config"], name=name, source=entry["source"])
    if "checkpoint_params" in entry:  # vision tower and projector: one replicated bf16 tensor
        rest = entry["checkpoint_params"] - spec.total_params
        spec = dataclasses.replace(spec, tensors=spec.tensors + (TensorSpec("vision_tower.weight", (rest,)),))
    return spec


def _layers(layout: dict) -> tuple[LayerKind, ...]:
    page = _vllm_kv.attention_page_bytes(16, layout["kv_heads_per_rank"], layout["head_dim"], layout["head_dim"],
                                         layout["dtype_bytes"])
    return tuple(LayerKind(AttentionKind(kind), n, page, window) for kind, n, window in layout["layers"])


def _startup(lg: dict):
    settings = VllmSettings(gpu_memory_utilization=lg["gpu_memory_utilization"], max_model_len=lg["max_model_len"])
    return vllm_startup(_spec(lg["model"]), lg["format"], H100, lg["tp"], settings)


# The arithmetic part: from the logged budget to the logged tokens and concurrency, exactly


@pytest.mark.parametrize("lg", LOGS, ids=[lg["name"] for lg in LOGS])
def test_blocks_tokens_and_concurrency_follow_the_logged_budget_exactly(lg):
    layers = _layers(lg["layout"])
    logged = lg["logged"]
    # "Available KV cache memory" is printed to 0.01 GiB: the budget is known to +-0.005 GiB
    lo, hi = (_vllm_kv.kv_pool(round((logged["available_kv_gib"] + d) * GiB), layers,
                               max_model_len=lg["max_model_len"], max_num_batched_tokens=8192) for d in (-0.005, 0.005))
    # tokens = blocks // groups x 16: the logged count pins the blocks to one of n_groups values
    first = logged["kv_tokens"] // 16 * lo.n_groups
    candidates = [b for b in range(first, first + lo.n_groups) if lo.num_blocks <= b <= hi.num_blocks]
    matching = [b for b in candidates if f"{b / lo.blocks_per_request:.2f}" == f"{logged['max_concurrency']:.2f}"]
    assert matching, (lg["name"], lo.num_blocks, hi.num_blocks, candidates)
    pool = dataclasses.replace(lo, num_blocks=matching[0])
    assert pool.tokens == logged["kv_tokens"]
    assert f"{pool.max_concurrency:.2f}" == f"{logged['max_concurrency']:.2f}"


def test_gemma_3_padding_warnings_match_the_logs():
    # L19: "Add 1 padding layers, may waste at most 3.45% KV cache memory"; L21: "Add 8 ... 15.38%"
    g4 = _vllm_kv.group_layers(_layers(LOGS[18]["layout"]))
    g27 = _vllm_kv.group_layers(_layers(LOGS[20]["layout"]))
    assert (g4.group_size, len(g4.groups), g4.padding_layers) == (5, 7, ((AttentionKind.SLIDING, 1, 3.45),))
    assert (g27.group_size, len(g27.groups), g27.padding_layers) == (10, 7, ((AttentionKind.SLIDING, 8, 15.38),))


# The whole budget: weights, activation, non-torch from first principles


@pytest.mark.parametrize("lg", BUILDABLE, ids=[lg["name"] for lg in BUILDABLE])
def test_available_kv_cache_within_5_percent_of_the_log(lg):
    r = _startup(lg)
    logged = lg["logged"]
    assert r.starts and r.total_memory_bytes == round(79.19 * GiB)
    assert r.available_kv_bytes / GiB == pytest.approx(logged["available_kv_gib"], rel=0.05)
    assert r.pool.tokens == pytest.approx(logged["kv_tokens"], rel=0.05)
    assert r.max_concurrency == pytest.approx(logged["max_concurrency"], rel=0.05)
    # weights within 3 %, except gemma-3-4b (8.01 vs 8.58 GiB: vLLM holds ~0.57 GiB more for the multimodal
    # parts than the checkpoint's bf16 parameter count; its KV budget is still within 1 %)
    weights_tolerance = 0.07 if "3-4b" in lg["name"] else 0.03
    assert r.weights_bytes_per_gpu / GiB == pytest.approx(logged["weights_gib"], rel=weights_tolerance)
    assert r.activation_peak_bytes / GiB == pytest.approx(logged["activation_gib"], abs=0.17)
    assert r.non_torch_bytes / GiB == pytest.approx(logged["non_torch_gib"], abs=0.22)
    assert r.cuda_graph_bytes / GiB == pytest.approx(logged["cuda_graph_gib"], abs=0.35)


def test_golden_table_errors_stay_small():
    """The report's table: every buildable log, |error| of the predicted KV budget; most within 0.7 %."""
    errors = {lg["name"]: _startup(lg).available_kv_bytes / GiB / lg["logged"]["available_kv_gib"] - 1
              for lg in BUILDABLE}
    assert max(abs(e) for e in errors.values()) < 0.03
    assert sum(abs(e) < 0.007 for e in errors.values()) >= 17


def test_llama_8b_breakdown_as_the_log_prints_it():
    # L1: 75.23 GiB requested = 0.95 x 79.19; 14.99 weights, 1.89 activation, 0.25 non-torch -> 58.11
    r = _startup(LOGS[0])
    assert r.requested_memory_bytes == int(round(79.19 * GiB) * 0.95)
    assert r.requested_memory_bytes / GiB == pytest.approx(75.23, abs=0.005)
    assert r.available_kv_bytes == (r.requested_memory_bytes - r.weights_bytes_per_gpu - r.activation_peak_bytes
                                    - r.non_torch_bytes)
    assert r.kv_cache_bytes == r.pool.num_blocks * 32 * 65_536  # 32 layers x 16 tokens x 8 heads x 256 x 2 B
    assert (r.max_num_batched_tokens, r.max_num_seqs) == (8192, 1024)  # "Defaulting ... for OPENAI_API_SERVER"
    assert r.verdict.startswith("serves 29.01 concurrent requests of 16,384 tokens")


def test_weights_shard_as_vllm_shards_them():
    spec = load_preset("llama-3.1-70b")
    (tp2,) = _vllm_memory.weights_per_stage(spec, "fp8_e4m3", 2, 1)
    (tp4,) = _vllm_memory.weights_per_stage(spec, "fp8_e4m3", 4, 1)
    assert tp2 / GiB == pytest.approx(33.88, abs=0.06) and tp4 / GiB == pytest.approx(16.96, abs=0.05)
    # TP 16 > 8 KV heads: each rank keeps one whole KV head (replicated), so K/V do not shrink below 1/8
    kv_proj = sum(t.numel for t in spec.tensors if t.role in ("attn_k", "attn_v"))
    (tp16,) = _vllm_memory.weights_per_stage(spec, "bf16", 16, 1)
    (tp8,) = _vllm_memory.weights_per_stage(spec, "bf16", 8, 1)
    assert tp16 - (tp8 // 2) == pytest.approx(kv_proj * 2 // 16, rel=0.01)
    # pipeline stages: 80 layers over 3 -> 27, 27, 26 (get_pp_indices); embedding first, lm_head last
    assert _vllm_memory.pp_layer_counts(80, 3) == (27, 27, 26)
    assert _vllm_memory.pp_layer_counts(30, 4) == (7, 8, 8, 7)
    stages = _vllm_memory.weights_per_stage(spec, "bf16", 1, 2)
    assert sum(stages) == _vllm_memory.weights_per_stage(spec, "bf16", 1, 1)[0]


# Refusals, as vLLM words them


def test_gpt_oss_120b_refusal_needs_4_54_gib():
    # vllm-project/vllm issue #27508: 18 full + 18 sliding (128) layers, 8 KV heads x 64, bf16, mnbt 1024:
    # "(4.54 GiB KV cache is needed, which is larger than the available KV cache memory (1.71 GiB)"
    layers = _layers({"kv_heads_per_rank": 8, "head_dim": 64, "dtype_bytes": 2,
                      "layers": [["full", 18, None], ["sliding", 18, 128]]})
    pool = _vllm_kv.kv_pool(round(1.71 * GiB), layers, max_model_len=131072, max_num_batched_tokens=1024)
    assert pool.needed_bytes == 4_874_895_360
    message = _vllm_kv.refusal(pool, layers, 1024)
    assert message.startswith("To serve at least one request with the model's max seq len (131072), (4.54 GiB KV "
                              "cache is needed, which is larger than the available KV cache memory (1.71 GiB).")


def test_fp8_kv_refusal_estimates_the_logged_max_model_len():
    # vllm-project/vllm issue #25350 (--kv-cache-dtype fp8; 48 layers x 4 KV heads x 128): at 221000 tokens
    # "(10.12 GiB KV cache is needed ... (5.59 GiB). ... the estimated maximum model length is 122080."
    page = _vllm_kv.attention_page_bytes(16, 4, 128, 128, 1)
    layers = (LayerKind(AttentionKind.FULL, 48, page),)
    pool = _vllm_kv.kv_pool(round(5.5888 * GiB), layers, max_model_len=221000, max_num_batched_tokens=8192)
    message = _vllm_kv.refusal(pool, layers, 8192)
    assert "(10.12 GiB KV cache is needed" in message and "(5.59 GiB)" in message
    assert "the estimated maximum model length is 122080." in message
    # the same model at 100,000 tokens starts: "GPU KV cache size: 230,528 tokens ... 2.31x" from 10.55 GiB
    lo, hi = (_vllm_kv.kv_pool(round((10.55 + d) * GiB), layers, max_model_len=100000, max_num_batched_tokens=8192)
              for d in (-0.005, 0.005))
    assert lo.num_blocks <= 230_528 // 16 <= hi.num_blocks
    assert f"{dataclasses.replace(lo, num_blocks=230_528 // 16).max_concurrency:.2f}" == "2.31"


def test_mla_needs_one_latent_per_token():
    # vllm-project/vllm issue #15871 (DeepSeek-V2-Lite, V1): "(0.95 GiB KV cache is needed, ... (0.93 GiB)"
    spec = load_preset("deepseek-v2-lite")
    layers = _vllm_kv_layers(spec)
    pool = _vllm_kv.kv_pool(round(0.93 * GiB), layers, max_model_len=32768, max_num_batched_tokens=8192)
    assert pool.needed_bytes == 27 * 576 * 2 * 32768 == 1_019_215_872
    assert "(0.95 GiB KV cache is needed" in _vllm_kv.refusal(pool, layers, 8192)


def _vllm_kv_layers(spec):
    from calculator.engines.vllm import kv_layers

    return kv_layers(spec, 4, range(spec.n_layers), 2, 16)


def test_negative_budget_is_no_memory_for_the_cache():
    # vllm-project/vllm issue #23278: gpt-oss-120b on one H100, "Available KV cache memory: -2.14 GiB"
    layers = (LayerKind(AttentionKind.FULL, 36, 32_768),)
    pool = _vllm_kv.kv_pool(round(-2.14 * GiB), layers, max_model_len=131072, max_num_batched_tokens=8192)
    assert pool.num_blocks == 0
    assert _vllm_kv.refusal(pool, layers, 8192).startswith("No available memory for the cache blocks.")


def test_too_long_a_context_does_not_start_and_names_the_largest():
    spec = load_preset("llama-3.1-8b")
    r = vllm_startup(spec, "bf16", get_gpu("RTX 4090"), 1, VllmSettings(max_model_len=131072))
    assert not r.starts and r.refusal.startswith("To serve at least one request with the model's max seq len (131072)")
    assert 0 < r.largest_max_model_len < 131072 and str(r.largest_max_model_len) in r.refusal
    ok = vllm_startup(spec, "bf16", get_gpu("RTX 4090"), 1, VllmSettings(max_model_len=r.largest_max_model_len))
    assert ok.starts and ok.max_concurrency >= 1.0
    assert ok.concurrency_at(1024) > ok.concurrency_at(4096) > 0 and ok.concurrency_at(131072) == 0.0
    # the refused run's pool still answers for the lengths it would accept (the app's concurrency chart)
    assert r.concurrency_at(r.largest_max_model_len) >= 1.0 and r.concurrency_at(131072) == 0.0


def test_utilization_above_the_free_memory_is_refused():
    r = vllm_startup(load_preset("llama-3.1-8b"), "bf16", H100, 1,
                     VllmSettings(gpu_memory_utilization=1.0, max_model_len=8192))
    assert not r.starts and r.refusal.startswith("Free memory on device (78.68/79.19 GiB) on startup is less than "
                                                 "desired GPU memory utilization (1.0, 79.19 GiB).")
    assert r.largest_max_model_len == 0 and r.concurrency_at(1024) == 0.0


# Bad input: one line each, as vLLM says it


def test_tensor_parallel_must_divide_the_heads():
    with pytest.raises(ValueError, match=r"Total number of attention heads \(32\) must be divisible by tensor "
                                         r"parallel size \(3\)\."):
        vllm_startup(load_preset("qwen3-8b"), "bf16", H100, 3)


def test_max_model_len_above_the_model_limit():
    with pytest.raises(ValueError, match=r"User-specified max_model_len \(200000\) is greater than the derived "
                                         r"max_model_len \(max_position_embeddings=131072"):
        vllm_startup(load_preset("llama-3.1-8b"), "bf16", H100, 1, VllmSettings(max_model_len=200000))


def test_fp8_below_ampere_is_refused_and_marlin_below_ada():
    spec = load_preset("llama-3.1-8b")
    with pytest.raises(ValueError, match=r"The quantization method fp8 is not supported for the current GPU\. "
                                         r"Minimum capability: 80\. Current capability: 75\."):
        vllm_startup(spec, "fp8_e4m3", get_gpu("T4"), 1, VllmSettings(max_model_len=4096))
    a100 = vllm_startup(spec, "fp8_e4m3", get_gpu("A100 80GB SXM"), 1, VllmSettings(max_model_len=8192))
    assert a100.starts and any("Weight-only FP8 compression will be used leveraging the Marlin kernel" in w
                               for w in a100.warnings)
    assert not any("Marlin" in w for w in vllm_startup(spec, "fp8_e4m3", H100, 1,
                                                       VllmSettings(max_model_len=8192)).warnings)


def test_bf16_before_ampere_awq_before_turing_exl2_and_apple():
    spec = load_preset("llama-3.1-8b")
    with pytest.raises(ValueError, match=r"Bfloat16 is only supported on GPUs with compute capability of at least "
                                         r"8\.0\. Your V100 32GB GPU has compute capability 7\.0"):
        vllm_startup(spec, "bf16", get_gpu("V100 32GB"), 1, VllmSettings(max_model_len=4096))
    with pytest.raises(ValueError, match=r"quantization method awq .* Minimum capability: 75\. Current capability: 70"):
        vllm_startup(spec, "awq-4b-g128", get_gpu("V100 32GB"), 1, VllmSettings(max_model_len=4096))
    with pytest.raises(ValueError, match=r"vLLM cannot load EXL2"):
        vllm_startup(spec, "exl2-4.0", H100, 1)
    with pytest.raises(ValueError, match=r"vLLM needs a CUDA or ROCm GPU; Apple M2 Ultra 192GB is Apple silicon"):
        vllm_startup(spec, "bf16", get_gpu("M2 Ultra"), 1)


def test_settings_are_validated():
    with pytest.raises(ValueError, match=r"--gpu-memory-utilization 1\.2 must be in \(0, 1\]"):
        VllmSettings(gpu_memory_utilization=1.2)
    with pytest.raises(ValueError, match=r"--kv-cache-dtype 'int4' is not auto or fp8"):
        VllmSettings(kv_cache_dtype="int4")
    with pytest.raises(ValueError, match=r"--block-size 0 must be a whole number >= 1"):
        VllmSettings(block_size=0)
    with pytest.raises(ValueError, match=r"--tensor-parallel-size 2 x --pipeline-parallel-size 2 = 4 GPUs, but "
                                         r"--gpus is 2"):
        vllm_startup(load_preset("llama-3.1-8b"), "bf16", H100, 2, VllmSettings(tensor_parallel_size=2,
                                                                                pipeline_parallel_size=2))


# Settings move the numbers the way vLLM's rules say


def test_fp8_kv_cache_doubles_the_blocks_and_eager_drops_the_graphs():
    spec = load_preset("llama-3.1-8b")
    auto = vllm_startup(spec, "bf16", H100, 1, VllmSettings(max_model_len=8192))
    fp8 = vllm_startup(spec, "bf16", H100, 1, VllmSettings(max_model_len=8192, kv_cache_dtype="fp8"))
    assert fp8.pool.page_bytes * 2 == auto.pool.page_bytes
    assert fp8.pool.num_blocks in (2 * auto.pool.num_blocks, 2 * auto.pool.num_blocks + 1)
    eager = vllm_startup(spec, "bf16", H100, 1, VllmSettings(max_model_len=8192, enforce_eager=True))
    assert eager.cuda_graph_bytes == 0 and auto.cuda_graph_bytes > 0
    inside = vllm_startup(spec, "bf16", H100, 1, VllmSettings(max_model_len=8192, cuda_graphs_in_budget=True))
    assert inside.available_kv_bytes == auto.available_kv_bytes - auto.cuda_graph_bytes


def test_defaults_follow_the_gpu_size_and_a100_exception():
    assert default_batching(round(79.19 * GiB), "H100 SXM") == (8192, 1024)
    assert default_batching(round(78.4 * GiB), "A100 80GB SXM") == (2048, 256)
    assert default_batching(round(23.58 * GiB), "RTX 3090") == (2048, 256)


@pytest.mark.parametrize("util", [0.5, 0.7, 0.9])
def test_more_utilization_never_fewer_blocks(util):
    spec = load_preset("qwen2.5-7b")
    lower = vllm_startup(spec, "bf16", H100, 1, VllmSettings(gpu_memory_utilization=util, max_model_len=8192))
    higher = vllm_startup(spec, "bf16", H100, 1, VllmSettings(gpu_memory_utilization=util + 0.05, max_model_len=8192))
    assert higher.pool.num_blocks > lower.pool.num_blocks
    assert higher.to_dict()["kv_blocks"] == higher.pool.num_blocks


# The CLI: the keys, vLLM's flags, one line for bad input


def _cli_json(capsys, *argv: str) -> dict:
    from calculator.cli import main

    assert main(["fit", "--engine", "vllm", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_json_has_the_serving_keys(capsys):
    data = _cli_json(capsys, "--model", "llama-3.1-8b", "--format", "bf16", "--gpu", "H100 SXM", "--gpus", "1",
                     "--context", "16384", "--gpu-memory-utilization", "0.95")
    r = _startup(LOGS[0])
    assert data["fits"] is True and data["verdict"] == "fits" and data["engine"] == "vllm"
    assert data["kv_cache_bytes"] == r.kv_cache_bytes  # the whole KV pool of one GPU
    for key in ("kv_blocks", "kv_tokens", "activation_peak_bytes", "cuda_graph_bytes", "non_torch_bytes",
                "weights_bytes_per_gpu"):
        assert data[key] == r.to_dict()[key], key
    assert data["max_concurrency"] == 29.01 and data["summary"].startswith("serves 29.01 concurrent requests")
    assert data["devices"][0]["kv_cache_bytes"] == r.kv_cache_bytes


def test_cli_vllm_flags_and_aliases(capsys):
    data = _cli_json(capsys, "--model", "llama-3.1-70b", "--format", "fp8_e4m3", "--gpu", "H100 SXM",
                     "--tensor-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.95",
                     "--kv-cache-dtype", "fp8", "--enforce-eager", "--max-num-seqs", "256")
    assert (data["gpu_count"], data["context"], data["tensor_parallel_size"]) == (2, 8192, 2)
    assert data["cuda_graph_bytes"] == 0 and data["max_num_seqs"] == 256
    assert data["kv_tokens"] > 2 * 244_304 * 0.95  # fp8 KV: about twice L5's bf16 pool


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "qwen3-8b", "--format", "bf16", "--gpu", "H100 SXM", "--gpus", "3"],
         "Total number of attention heads (32) must be divisible by tensor parallel size (3)."),
        (["--model", "llama-3.1-8b", "--format", "bf16", "--gpu", "H100 SXM", "--max-model-len", "200000"],
         "User-specified max_model_len (200000) is greater than the derived max_model_len"),
        (["--model", "llama-3.1-8b", "--format", "bf16", "--gpu", "H100 SXM", "--gpu-memory-utilization", "1.5"],
         "--gpu-memory-utilization 1.5 must be in (0, 1]"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, argv, message):
    from calculator.cli import main

    assert main(["fit", "--engine", "vllm", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_fp8_on_turing_does_not_fit_in_vllms_words(capsys):
    data = _cli_json(capsys, "--model", "llama-3.1-8b", "--format", "fp8_e4m3", "--gpu", "T4", "--context", "4096")
    assert data["fits"] is False
    assert any("Minimum capability: 80. Current capability: 75." in w for w in data["warnings"])
