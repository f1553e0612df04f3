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
import math
from collections.abc import Sequence
from dataclasses import dataclass

from calculator.hardware import Backend, GpuSetup
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



# Engine execution: devices one after another (layer split) or together (row split, tensor parallel)


@dataclass(frozen=True)
class SpeedModel:
    """One engine on one backend. A decode step on a device takes ``bytes read / (bandwidth x
    bandwidth_efficiency) + blocks x per_layer_seconds``; under a layer split the devices run one after
    another and each boundary adds ``hop_seconds``. Prompt processing reaches ``prefill_efficiency`` of
    the device's dense FP16 rate."""

    bandwidth_efficiency: float
    per_layer_seconds: float
    hop_seconds: float
    prefill_efficiency: float
    source: str


_XD = "XiongjieDai/GPU-Benchmarks-on-LLM-Inference@aa72e0ec86c356c41f8281c9733e9a13c3675800"

LLAMA_CPP_CUDA = SpeedModel(
    bandwidth_efficiency=0.927,
    per_layer_seconds=83.7e-6,
    hop_seconds=0.364e-3,
    prefill_efficiency=0.305,
    source=(
        f"fitted to llama-bench rows of {_XD}: Llama-3-8B Q4_K_M tg 512 130.58 t/s on one RTX 4090 "
        "(LLaMA 3/Gaming GPUs/4090_v3.ipynb) and 124.65 on two, Llama-3-70B Q4_K_M tg 512 19.22 on two "
        "(4090_2_v3.ipynb), pp 512 7138.99 on one (README.md); tests/calculator/test_speed.py states the error "
        "on the rows not fitted"
    ),
)
"""llama.cpp on CUDA (also used, uncalibrated, for ROCm and SYCL)."""

LLAMA_CPP_METAL = SpeedModel(
    bandwidth_efficiency=0.784,
    per_layer_seconds=165e-6,
    hop_seconds=0.0,
    prefill_efficiency=0.515,
    source=(
        f"fitted to llama-bench rows of {_XD}: Llama-3-8B and 70B Q4_K_M tg 512 78.81 and 12.48 t/s, pp 512 "
        "994.04 on an M2 Ultra 192GB (LLaMA 3/Mac/M2ultra_192GB.ipynb); M1, M1 Max and M3 Max rows are the check"
    ),
)
"""llama.cpp on Metal: a smaller share of an Apple chip's bandwidth than CUDA reaches of a GeForce card's."""

CPU_BANDWIDTH_EFFICIENCY = DECODE_BANDWIDTH_EFFICIENCY
"""Blocks left in CPU RAM: no published tg row with -ngl below the block count was found, so the generic 0.6."""


def llama_cpp_model(backend: Backend) -> SpeedModel:
    return LLAMA_CPP_METAL if backend is Backend.METAL else LLAMA_CPP_CUDA


@functools.lru_cache(maxsize=4096)
def layer_matmul_params(spec: ModelSpec) -> tuple[int, ...]:
    """Per block, the matrix parameters one token multiplies (routed experts: ``used / experts`` of them)."""
    out = [0] * spec.n_layers
    for t in spec.tensors:
        if t.layer is None or not t.is_matrix:
            continue
        n = t.numel
        if t.role.endswith("_exps") and spec.n_experts:
            n = n // spec.n_experts * spec.n_experts_used
        out[t.layer] += n
    return tuple(out)


def split_speed(
    spec: ModelSpec,
    weights: WeightFacts,
    setup: GpuSetup,
    kv_layer_bytes: Sequence[int],
    layer_devices: Sequence[int],
    *,
    output_device: int,
    parallel: bool,
    pipelined: bool,
    context: int,
    ubatch: int,
    sequences: int,
    decode_efficiency: float | None = None,
    prefill_efficiency: float | None = None,
) -> tuple[float | None, float | None]:
    """(decode tokens/s of ``sequences`` decoding together, prefill seconds of a ``context``-token prompt)
    for blocks placed on devices (``layer_devices[i]``: index into ``setup.gpus``, -1 = CPU).

    Decode: each device reads its blocks' weights (``WeightFacts.layer_read_bytes``) and KV cache, the
    output device the output matrix too. Layer split: the device times add, plus ``hop_seconds`` per
    boundary (two RTX 4090s decode an 8B model slower than one: 124.65 vs 130.58 t/s). Row split / tensor
    parallel (``parallel``): the slowest device sets the pace. Blocks on the CPU run at the host's
    bandwidth. Prefill: Kaplan's 2 N + 2 n_ctx d_attn FLOPs per token and block (module docstring) at each
    device's FP16 rate; with pipeline parallelism the micro-batches of a long prompt overlap across devices
    (``(n_ub - 1) x slowest + sum`` over ``n_ub`` micro-batches); None with blocks on the CPU.
    """
    models = [llama_cpp_model(g.backend) for g in setup.gpus]
    base = models[0]
    n_dev = setup.count
    read = [0.0] * n_dev
    layers = [0] * n_dev
    host_read, host_layers = 0.0, 0
    for i, d in enumerate(layer_devices):
        cost = weights.layer_read_bytes[i] + kv_layer_bytes[i]
        if d < 0:
            host_read += cost
            host_layers += 1
        else:
            read[d] += cost
            layers[d] += 1
    if output_device >= 0:
        read[output_device] += weights.nonrepeating_read_bytes
    else:
        host_read += weights.nonrepeating_read_bytes
    used = [d for d in range(n_dev) if layers[d] or d == output_device]
    decode = None
    if all(setup.gpus[d].bandwidth_gb_per_s for d in used):
        times = []
        for d in used:
            eff = decode_efficiency or models[d].bandwidth_efficiency
            bw = setup.gpus[d].bandwidth_gb_per_s * 1e9 * eff
            times.append(read[d] / bw + layers[d] * models[d].per_layer_seconds)
        gpu_time = max(times, default=0.0) if parallel else sum(times) + base.hop_seconds * max(len(times) - 1, 0)
        host_time = 0.0
        if host_read:
            host_bw = setup.cpu_bandwidth_gb_per_s * 1e9 * (decode_efficiency or CPU_BANDWIDTH_EFFICIENCY)
            host_time = host_read / host_bw + host_layers * base.per_layer_seconds + (base.hop_seconds if used else 0)
        decode = sequences / (gpu_time + host_time)
    prefill = None
    if host_layers == 0 and used and all(setup.gpus[d].fp16_tflops for d in used):
        per_token = layer_matmul_params(spec)
        d_attn = spec.n_heads * spec.head_dim
        flops = [0.0] * n_dev
        for i, d in enumerate(layer_devices):
            flops[d] += context * (2 * per_token[i] + 2 * context * d_attn)
        rate = {d: setup.gpus[d].fp16_tflops * 1e12 * (prefill_efficiency or models[d].prefill_efficiency)
                for d in used}
        if parallel:
            prefill = sum(flops) / sum(rate.values())
        else:
            t = [flops[d] / rate[d] for d in used]
            n_ub = math.ceil(context / ubatch)
            prefill = (sum(t) + max(t) * (n_ub - 1)) / n_ub if pipelined and n_ub > 1 else sum(t)
    return decode, prefill
