"""vLLM's per-GPU memory besides the KV cache: weights as it shards them, the profiling run's peak,
non-torch memory, CUDA graphs, and which quantizations a GPU generation runs.

Pinned to vLLM 0.19.0 V1 (``vllm serve``); every calibrated constant is fitted on the 26 llm-d-planner
H100 start-up logs (llm-d-incubation/llm-d-planner@d3121e059da88662db39a926a3ead964be97359b
``accuracy/results/v0.19.0/logs/``), whose DEBUG line "Memory profiling takes ... torch peak memory
increase: A GiB; non-torch forward increase memory: N GiB; weights memory: W GiB" splits the budget:
``Available KV cache memory = gpu_memory_utilization x total - (W + A + N)``
(``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``; ``vllm/utils/mem_utils.py``
``memory_profiling`` @ a6d5c39009eb73797b276cc557ca9659c396ca14).

- **Weights** ("Model loading took W GiB"): every tensor as ``calculator.memory`` sizes it, embeddings
  and lm_head of a quantized model kept in 16 bits (vLLM quantizes the Linear layers inside the blocks;
  Llama-3.1-8B with ``--quantization fp8`` loads 8.49 GiB, 8.46 predicted), then sharded
  as vLLM shards it: vocabulary padded to a multiple of 64 and split over the ranks
  (``vocab_parallel_embedding.py`` @ 7f5d141a0abde5fdedc220f55d9f19831c9a5b9e, ``DEFAULT_VOCAB_PADDING_SIZE
  = 64``), K/V projections by KV heads (one replicated head per rank below one head each), norms and
  routers replicated, everything else split ``1/tp``; pipeline stages hold the layers of
  ``get_pp_indices`` (``vllm/distributed/utils.py``, code-search index id 2246836: the remainder goes to
  all but the last stage), the first stage the embedding, the last the final norm and lm_head.
  Checked: Llama-3.3-70B FP8 33.83 GiB at TP2 (logged 33.88), gemma-2-27b 50.71 (50.72).
- **Peak activation** of ``profile_run`` (``vllm/v1/worker/gpu_model_runner.py``, code-search index id
  53341076904): a forward pass of ``max_num_batched_tokens`` tokens, then the sampler on the last token
  of ``min(max_num_seqs, max_num_batched_tokens)`` dummy requests. The sampler dominates: its logits,
  their fp32 copy, the top-k/top-p sort (values and int64 indices) and probabilities --
  ``rows x vocab x (dtype + 12.5) bytes + 0.23 GiB``, fitted on 23 logs (max error 0.17 GiB: Llama-3.1-8B
  1.89 GiB logged, 2.00 predicted; gemma-3-27b 3.99 / 3.86).
- **Non-torch memory** ("non-torch forward increase"): 0.25 GiB with one GPU (0.24-0.26 in 21 logs;
  granite 0.46), 2.1 GiB with tensor parallelism (custom all-reduce and NCCL buffers: 2.07-2.21).
- **Before the snapshot** (CUDA context, and NCCL with TP; outside the budget): 0.51 GiB with one GPU
  (78.68 of 79.19 GiB free at start), 1.53 GiB with TP (77.66 free: Llama-3.3-70B and Mistral-Small at
  TP2; 77.12-77.18 for gpt-oss-20b and Llama-4-Scout).
- **CUDA graphs** ("Graph capturing finished ..., took X GiB"), outside the budget in 0.19 (captured after
  the KV cache is fixed): 0.40 GiB + 15.5 MiB per layer on the rank, fitted on 22 logs (rms 0.14 GiB,
  max 0.34 GiB; gpt-oss-20b's 1.84 GiB is not modelled). From v0.21 vLLM subtracts its estimate from
  the budget (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1``, PR #30515): ``cuda_graphs_in_budget``.
- **Quantization gates** (``_get_quantization_config``: "The quantization method {m} is not supported for
  the current GPU. Minimum capability: {min}. Current capability: {cc}."): FP8 needs 8.0
  (``fp8.py`` @ 1436674bcb3f46f4c960d09334cf7dd1534943ca) and runs weight-only through Marlin below 8.9;
  AWQ 7.5 (issue text "Minimum capability: 75. Current capability: 70."); bitsandbytes 7.0 (issue
  #14154); MXFP4 8.0, Marlin weight-only FP4 below 10.0 (issue #23278); bf16 needs 8.0
  (``gpu_worker.py`` ``_check_if_gpu_supports_dtype``).
"""

from __future__ import annotations

import re

from calculator import units
from calculator.engines import _cuda
from calculator.engines._vllm_kv import KVPool
from calculator.formats import Family, get_format
from calculator.gguf_recipes import FILE_TYPES
from calculator.hardware import GpuSpec
from calculator.memory import weight_memory
from calculator.models import ModelSpec
from calculator.stored import StoredWeights
from calculator.units import ceil_div

VOCAB_PADDING = 64
SAMPLER_BYTES_PER_LOGIT = 12.5
"""Sampler bytes per (row x vocab) logit beyond the logits' own dtype (fitted, module docstring)."""
PROFILE_BASE_BYTES = round(0.23 * units.GiB)
NON_TORCH_BYTES_SINGLE = round(0.25 * units.GiB)
NON_TORCH_BYTES_PARALLEL = round(2.1 * units.GiB)
CONTEXT_BYTES_SINGLE = round(0.51 * units.GiB)
CONTEXT_BYTES_PARALLEL = round(1.53 * units.GiB)
CUDA_GRAPH_BASE_BYTES = round(0.40 * units.GiB)
CUDA_GRAPH_BYTES_PER_LAYER = round(15.5 * units.MiB)

_REPLICATED_ROLES = frozenset({"attn_kv_a_mqa", "attn_q_a", "ffn_gate_inp", "ffn_gate_inp_shexp"})
"""Replicated on every rank (vLLM ``ReplicatedLinear``: MLA down-projections, MoE routers)."""


def pp_layer_counts(n_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage (``get_pp_indices``): 80 over 3 -> (27, 27, 26)."""
    counts = [n_layers // pp] * pp
    for i in range(2, n_layers % pp + 2):
        counts[-i] += 1
    return tuple(counts)


def model_dtype_bytes(fmt: str | StoredWeights) -> int:
    """Bytes of the activations and of ``kv_cache_dtype=auto``: 4 for fp32 weights, else 2."""
    return 4 if str(fmt).strip().lower() in ("fp32", "f32", "float32") else 2


def _shard(role: str, n_bytes: int, rows: int, spec: ModelSpec, tp: int) -> int:
    if role in ("token_embd", "output"):
        padded = ceil_div(spec.vocab_size, VOCAB_PADDING) * VOCAB_PADDING
        return ceil_div(n_bytes * padded // max(rows, 1), tp)
    if role in _REPLICATED_ROLES:
        return n_bytes
    if role in ("attn_k", "attn_v"):
        return ceil_div(n_bytes * max(1, spec.n_kv_heads // tp), spec.n_kv_heads)
    if role == "attn_qkv":  # fused q/k/v (Phi-3): q split, K/V by heads
        per_head = n_bytes // (spec.n_heads + 2 * spec.n_kv_heads)
        return per_head * (spec.n_heads // tp + 2 * max(1, spec.n_kv_heads // tp))
    return ceil_div(n_bytes, tp)


def weights_per_stage(spec: ModelSpec, fmt: str | StoredWeights, tp: int, pp: int) -> tuple[int, ...]:
    """Weight bytes on one GPU of each pipeline stage (the same on every tensor-parallel rank)."""
    wm = weight_memory(spec, fmt, quantize_embeddings=_quant_method(fmt) == "")
    counts = pp_layer_counts(spec.n_layers, pp)
    starts = [sum(counts[:i]) for i in range(pp)]
    stage_of = {}
    for stage, (start, count) in enumerate(zip(starts, counts, strict=True)):
        for layer in range(start, start + count):
            stage_of[layer] = stage
    by_name = {t.name: t for t in spec.tensors}
    totals = [0] * pp
    for t in wm.tensors:
        ts = by_name[t.name]
        if len(ts.shape) == 1:
            share = t.bytes  # norms and biases: replicated (a few MB at most)
        else:
            share = _shard(ts.role, t.bytes, ts.shape[0], spec, tp)
        if ts.layer is not None:
            totals[stage_of[ts.layer]] += share
        elif ts.role in ("token_embd", "position_embd"):
            totals[0] += share
            if ts.role == "token_embd" and spec.tie_word_embeddings and pp > 1:
                totals[-1] += share  # the last stage builds its own lm_head
        else:
            totals[-1] += share
    return tuple(totals)


def activation_peak_bytes(spec: ModelSpec, fmt: str, max_num_seqs: int, max_num_batched_tokens: int,
                          last_stage: bool = True) -> int:
    """Peak of ``profile_run`` above the weights (module docstring); forward-only stages get the base."""
    if not last_stage:
        return PROFILE_BASE_BYTES
    rows = min(max_num_seqs, max_num_batched_tokens)
    per_logit = model_dtype_bytes(fmt) + SAMPLER_BYTES_PER_LOGIT
    return round(rows * spec.vocab_size * per_logit) + PROFILE_BASE_BYTES


def non_torch_bytes(tp: int, pp: int) -> int:
    return NON_TORCH_BYTES_PARALLEL if tp * pp > 1 else NON_TORCH_BYTES_SINGLE


def context_bytes(tp: int, pp: int) -> int:
    """Memory in use before vLLM's snapshot (CUDA context, NCCL): outside the budget, inside the card."""
    return CONTEXT_BYTES_PARALLEL if tp * pp > 1 else CONTEXT_BYTES_SINGLE


def cuda_graph_bytes(layers_on_rank: int, enforce_eager: bool) -> int:
    return 0 if enforce_eager else CUDA_GRAPH_BASE_BYTES + CUDA_GRAPH_BYTES_PER_LAYER * layers_on_rank


# Quantization gates


def _quant_method(fmt: str | StoredWeights) -> str:
    """vLLM's name for how a quantfit format is served (``fp8``, ``awq``, ``gguf`` ...; ``""`` = unquantized;
    ``"stored"``: a real checkpoint's bytes, loaded as stored)."""
    if isinstance(fmt, StoredWeights):
        return "stored"
    name = fmt.strip()
    try:
        f = get_format(name)
    except ValueError:
        if name.upper() in FILE_TYPES:
            return "gguf"
        raise
    if f.family is Family.FLOAT:
        return "fp8" if f.name.startswith("fp8") else ""
    return {Family.GPTQ: "gptq", Family.AWQ: "awq", Family.BNB: "bitsandbytes", Family.EXL2: "exl2",
            Family.MICROSCALING: f.name, Family.GGUF: "gguf"}.get(f.family, "compressed-tensors")


_VLLM_GGUF_DOC = "docs.vllm.ai/en/latest/features/quantization/gguf"
_SPLIT_PART = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


def _stored_gguf_check(stored: StoredWeights) -> str:
    """A GGUF file as stored: vLLM "only supports loading single-file GGUF models" and its GGUF support "is
    highly experimental and under-optimized" (``_VLLM_GGUF_DOC``). A split file is refused in one line; a
    single file is sized as stored, with that warning. A safetensors checkpoint as stored passes ("")."""
    if not stored.source.startswith("GGUF header of "):
        return ""
    name = stored.source.removeprefix("GGUF header of ")
    if _SPLIT_PART.search(name):
        raise ValueError(f"vLLM loads single-file GGUF models only, and {name} is one part of a split file: merge "
                         f"the parts with llama-gguf-split --merge, or use --engine llama.cpp ({_VLLM_GGUF_DOC})")
    return (f"vLLM's GGUF support is highly experimental and under-optimized ({_VLLM_GGUF_DOC}): {name} is "
            "sized as stored; llama.cpp is the engine GGUF files are made for")


_MIN_CAPABILITY = {"fp8": (8, 0), "awq": (7, 5), "bitsandbytes": (7, 0), "mxfp4": (8, 0)}
_MARLIN = "Weight-only {} compression will be used leveraging the Marlin kernel"
_NATIVE_CAPABILITY = {"fp8": ((8, 9), "FP8", _MARLIN.format("FP8")), "mxfp4": ((10, 0), "FP4", _MARLIN.format("FP4"))}


def quantization_check(fmt: str | StoredWeights, gpu_name: str, capability: tuple[int, int] | None) -> str:
    """Raise ValueError where vLLM refuses ``fmt`` on this GPU; return its fallback warning ("" if none)."""
    method = _quant_method(fmt)
    if method == "exl2":
        raise ValueError(f"vLLM cannot load EXL2 ({fmt}); serve it with ExLlamaV2/TabbyAPI, or pick GPTQ/AWQ/FP8")
    if method == "stored":
        return _stored_gguf_check(fmt)
    if capability is None:
        return ""
    major, minor = capability
    if method == "" and str(fmt).strip().lower() in ("bf16", "bfloat16") and capability < (8, 0):
        raise ValueError(
            f"Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your {gpu_name} GPU "
            f"has compute capability {major}.{minor}. You can use float16 instead by explicitly setting the "
            "`dtype` flag in CLI, for example: --dtype=half."
        )
    need = _MIN_CAPABILITY.get(method)
    if need and capability < need:
        raise ValueError(
            f"The quantization method {method} is not supported for the current GPU. Minimum capability: "
            f"{need[0]}{need[1]}. Current capability: {major}{minor}."
        )
    if method in _NATIVE_CAPABILITY and capability < _NATIVE_CAPABILITY[method][0]:
        _, kind, fallback = _NATIVE_CAPABILITY[method]
        return (f"Your GPU does not have native support for {kind} computation but {kind} quantization is being "
                f"used. {fallback}. This may degrade performance for compute-heavy workloads.")
    return ""


def startup_warnings(spec: ModelSpec, gpu: GpuSpec, total: int, total_source: str, ctx: int, requested: int,
                     graphs: int, graphs_in_budget: bool, pool: KVPool, seqs: int, mnbt: int) -> list[str]:
    """What a user should know besides the verdict (the logged total, padding, sliding windows, slack)."""
    out = []
    if gpu.name not in _cuda.LOGGED_TOTAL_BYTES:
        out.append(f"GPU total {total / units.GiB:.2f} GiB: {total_source}")
    if _cuda.compute_capability(gpu) is None and gpu.category.value != "custom":
        out.append(f"{gpu.name} is not an NVIDIA GPU: vLLM's CUDA quantization gates were not checked")
    for kind, pad, pct in pool.padding_layers:
        out.append(f"Add {pad} padding layers, may waste at most {pct:.2f}% KV cache memory ({kind} layers)")
    if spec.sliding_window and spec.arch not in ("gemma2", "gemma3_text"):
        out.append(f"{spec.name}'s sliding window ({spec.sliding_window}) is counted as full attention")
    slack = total - ctx - requested - (0 if graphs_in_budget else graphs)
    warm_up = min(seqs, mnbt) * spec.vocab_size * 4  # the sampler warm-up's fp32 logits
    if slack < warm_up:
        out.append(
            f"only {slack / units.GiB:.2f} GiB left outside --gpu-memory-utilization for CUDA graphs' "
            f"aftermath and the sampler warm-up ({warm_up / units.GiB:.2f} GiB of logits): vLLM may run out of "
            "memory after allocating the KV cache (gpt-oss-20b did at 0.95 on an H100); lower the utilization"
        )
    return out
