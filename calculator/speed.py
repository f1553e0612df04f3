"""How fast: decode tokens/s and prefill seconds as rooflines, each with a visible efficiency factor.

- Decode is memory-bound: tokens/s = batch / (bytes read per step / (bandwidth x ``decode_efficiency``)).
  A step reads every weight once (routed experts: ``experts_used / experts`` of them; the token embedding
  only one row unless it is tied to the output; ``memory.WeightFacts``) plus the whole KV cache at the
  given context. Layers offloaded to the CPU are read at the host's bandwidth. Default efficiency 0.6:
  llama.cpp reaches 0.57-0.68 of peak bandwidth -- Llama-3.1-8B Q4_K_M at 111.95 tok/s on an RTX 3080
  (dmatora/LLM-inference-speed-benchmarks issue #12; 4.63 GB read per token, 760 GB/s -> 0.68) and
  Llama-3-8B Q6_K at 93 tok/s on an RTX 4090 (issue #10 there; 6.17 GB per token, 1008 GB/s -> 0.57).
- Prefill is compute-bound: seconds = batch x context x (2 N + 2 n_layer x context x d_attn) FLOPs
  (Kaplan et al. 2020, arXiv 2001.08361, Table 1: forward FLOPs per token, N = non-embedding matmul
  parameters incl. the output projection) / (fp16 TFLOPS x ``prefill_efficiency``). Default 0.5:
  llama.cpp's pp512 of llama 8B Q4_0 on an RTX 4090 is 10,358.75 tok/s (ggml-org/llama.cpp PR #7676)
  = 156 TFLOPS of the card's 330 dense FP16 -> 0.47.

With ``n`` GPUs both rooflines scale by ``n`` (tensor parallel: every device works on every token).
"""

from __future__ import annotations

import functools

from calculator.hardware import GpuSetup
from calculator.memory import WeightFacts
from calculator.models import ModelSpec
from calculator.runtime import KVCache

DECODE_BANDWIDTH_EFFICIENCY = 0.6
"""Share of peak memory bandwidth a decode step achieves (see module docstring for the measurements)."""

PREFILL_COMPUTE_EFFICIENCY = 0.5
"""Share of peak dense FP16 throughput prompt processing achieves (see module docstring)."""


def decode_tokens_per_s(
    weights: WeightFacts,
    kv: KVCache,
    setup: GpuSetup,
    batch: int,
    efficiency: float = DECODE_BANDWIDTH_EFFICIENCY,
    *,
    gpu_layers: int | None = None,
) -> float | None:
    """Tokens/s of ``batch`` sequences decoding together; None when the GPU's bandwidth is unknown.

    ``gpu_layers=None``: everything on the GPU(s). Otherwise llama.cpp's offload: the last ``gpu_layers``
    blocks on the GPU, the first blocks and the non-repeating tensors in CPU RAM, read at
    ``setup.cpu_bandwidth_gb_per_s``.
    """
    gpu_bw = setup.gpu.bandwidth_gb_per_s
    if gpu_bw is None:
        return None
    if gpu_layers is None:
        gpu_read = sum(weights.layer_read_bytes) + weights.nonrepeating_read_bytes + kv.total_bytes
        cpu_read = 0
    else:
        first_gpu = len(weights.layer_bytes) - gpu_layers
        gpu_read = sum(weights.layer_read_bytes[first_gpu:]) + sum(kv.layer_bytes[first_gpu:])
        cpu_read = (
            sum(weights.layer_read_bytes[:first_gpu])
            + sum(kv.layer_bytes[:first_gpu])
            + weights.nonrepeating_read_bytes
        )
    seconds = gpu_read / (setup.count * gpu_bw * 1e9 * efficiency)
    seconds += cpu_read / (setup.cpu_bandwidth_gb_per_s * 1e9 * efficiency)
    return batch / seconds


@functools.lru_cache(maxsize=4096)
def matmul_params(spec: ModelSpec) -> int:
    """Kaplan's N: active matmul parameters, embeddings excluded, output projection included."""
    embd = {t.role: t.numel for t in spec.tensors if t.layer is None}
    n = spec.active_params - embd.get("token_embd", 0) - embd.get("position_embd", 0)
    return n + (embd.get("token_embd", 0) if spec.tie_word_embeddings else 0)


def prefill_seconds(
    spec: ModelSpec, setup: GpuSetup, context: int, batch: int, efficiency: float = PREFILL_COMPUTE_EFFICIENCY
) -> float | None:
    """Seconds to process ``batch`` prompts of ``context`` tokens; None when the GPU's TFLOPS are unknown."""
    tflops = setup.gpu.fp16_tflops
    if tflops is None:
        return None
    d_attn = spec.n_heads * spec.head_dim
    flops = batch * context * (2 * matmul_params(spec) + 2 * spec.n_layers * context * d_attn)
    return flops / (setup.count * tflops * 1e12 * efficiency)
