"""Placement by the tensor-parallel rule: training runs, and the serving engines that shard every layer over
the devices (``calculator.engines`` places llama.cpp, Ollama and MLX runs by their own rules).

With everything on the GPU(s), each of ``n`` devices holds::

    weights / n  +  its KV cache share  +  runtime overhead (CUDA context + compute buffer + extra)

Tensor parallel: weights ``1/n`` each, the KV cache by KV heads (a head is never split, so MQA caches
are replicated; MLA latents are replicated, as vLLM does), and every device pays its own CUDA context and
compute buffer. A training mode replaces weights + KV cache by ``calculator.training`` (states sharded
ZeRO-3/FSDP style, activations and logits on every device; no offload).

If inference does not fit, llama.cpp-style CPU offload is tried: the non-repeating tensors (token
embedding, output) and the first blocks stay in CPU RAM with their KV cache, the last ``gpu_layers``
blocks go to the GPU (llama.cpp ``-ngl``, which counts the output layer as one more, so "all on GPU" is
``-ngl n_layers + 1``; ``llama_model::load_tensors`` starts the GPU at ``n_layer - n_gpu_layers``).
Offload needs at least one block on the GPU and, when ``cpu_ram_bytes`` is given, the rest must fit
in RAM. Unified-memory machines cannot offload (CPU and GPU share the RAM).

The runtime settings of ``FitOptions`` become bytes in one place: ``inference_terms`` (the KV-cache and
buffer breakdowns, ``calculator.runtime``) and ``inference_device_bytes`` (their per-device sum, which
``place_inference`` asserts equal; the max-context bisection calls only the sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from calculator.hardware import GpuSetup
from calculator.memory import WeightFacts
from calculator.models import ModelSpec
from calculator.runtime import KVCache, Overhead, compute_stages, kv_cache, kv_cache_bytes, runtime_overhead
from calculator.training import TrainingMemory, training_memory
from calculator.units import ceil_div

if TYPE_CHECKING:
    from calculator.fit import FitOptions


class Verdict(StrEnum):
    """The answer to "will it fit?"."""

    FITS = "fits"
    """Everything on the GPU(s)."""
    OFFLOAD = "fits_with_cpu_offload"
    """Runs with ``gpu_layers`` blocks on the GPU and the rest in CPU RAM (llama.cpp ``-ngl``)."""
    DOES_NOT_FIT = "does_not_fit"
    """Not even with offload (or offload is impossible: unified memory, training, too little RAM)."""


@dataclass(frozen=True)
class Placement:
    """Where the run's bytes go: the fullest device, the blocks on the GPU, what stays in CPU RAM."""

    verdict: Verdict
    per_device: int
    gpu_layers: int
    cpu_bytes: int
    weight_bytes: int
    overhead_total: int
    kv: KVCache | None = None
    overhead: Overhead | None = None
    training: TrainingMemory | None = None
    why_no_offload: str = ""


def inference_terms(spec: ModelSpec, context: int, batch: int, o: FitOptions) -> tuple[KVCache, Overhead]:
    """The KV cache and the per-device runtime overhead of one inference run (calculator.runtime)."""
    kv = kv_cache(spec, context, batch, o.kv_type)
    overhead = runtime_overhead(
        spec,
        context,
        batch,
        ubatch=o.ubatch,
        flash_attention=o.flash_attention,
        cuda_context_bytes=o.cuda_context_bytes,
        extra_bytes=o.extra_overhead_bytes,
    )
    return kv, overhead


def inference_device_bytes(
    spec: ModelSpec, wf: WeightFacts, n: int, context: int, batch: int, o: FitOptions
) -> int:
    """Bytes on each of ``n`` devices with everything on the GPUs: the sums of ``inference_terms`` without
    building their breakdowns (the max-context bisection calls this ~17 times per fit)."""
    kv = kv_cache_bytes(spec, context, batch, o.kv_type)
    _, _, output, attention, ffn = compute_stages(spec, context * batch, o.ubatch, o.flash_attention)
    overhead = o.cuda_context_bytes + o.extra_overhead_bytes + max(output, attention, ffn)
    return ceil_div(wf.total_bytes, n) + kv_per_device(spec, kv, n) + overhead


def kv_per_device(spec: ModelSpec, kv_bytes: int, n: int) -> int:
    """A device's share of the KV cache: whole KV heads (MQA heads and MLA latents are replicated)."""
    if n == 1 or spec.kv_lora_rank:
        return kv_bytes
    return ceil_div(kv_bytes * ceil_div(spec.n_kv_heads, n), spec.n_kv_heads)


def place_training(spec: ModelSpec, setup: GpuSetup, context: int, batch: int, o: FitOptions) -> Placement:
    """States sharded over the devices (ZeRO-3 / FSDP), activations and logits on each; no offload."""
    tm = training_memory(
        spec,
        o.mode,
        seq_len=context,
        batch=batch,
        optimizer=o.optimizer,
        precision=o.precision,
        gradient_checkpointing=o.gradient_checkpointing,
        flash_attention=o.flash_attention,
        lora_rank=o.lora_rank,
        lora_targets=o.lora_targets,
    )
    fixed = o.cuda_context_bytes + o.extra_overhead_bytes
    per_device = ceil_div(tm.state_bytes, setup.count) + tm.activation_bytes + tm.logits_bytes + fixed
    fits = per_device <= setup.gpu.usable_bytes
    return Placement(
        verdict=Verdict.FITS if fits else Verdict.DOES_NOT_FIT,
        per_device=per_device,
        gpu_layers=spec.n_layers if fits else 0,
        cpu_bytes=0,
        weight_bytes=tm.weight_bytes,
        overhead_total=fixed * setup.count,
        training=tm,
    )


def place_inference(
    spec: ModelSpec, wf: WeightFacts, setup: GpuSetup, context: int, batch: int, o: FitOptions
) -> Placement:
    """All on the GPU(s) if it fits; else the most trailing blocks that fit, with the rest in CPU RAM."""
    n, usable = setup.count, setup.gpu.usable_bytes
    kv, ov = inference_terms(spec, context, batch, o)
    per_device = inference_device_bytes(spec, wf, n, context, batch, o)
    assert per_device == ceil_div(wf.total_bytes, n) + kv_per_device(spec, kv.total_bytes, n) + ov.total_bytes

    def placed(verdict: Verdict, device_bytes: int, layers: int = 0, cpu: int = 0, why: str = "") -> Placement:
        return Placement(
            verdict, device_bytes, layers, cpu, wf.total_bytes, ov.total_bytes * n, kv, ov, why_no_offload=why
        )

    if per_device <= usable:
        return placed(Verdict.FITS, per_device, spec.n_layers)
    if setup.gpu.unified_memory:
        return placed(Verdict.DOES_NOT_FIT, per_device, why="unified memory: CPU offload frees nothing")
    budget = n * (usable - ov.total_bytes)
    on_gpu = layers = 0
    for i in reversed(range(spec.n_layers)):  # llama.cpp offloads the last -ngl blocks
        cost = wf.layer_bytes[i] + kv.layer_bytes[i]
        if on_gpu + cost > budget:
            break
        on_gpu += cost
        layers += 1
    cpu_bytes = wf.total_bytes + kv.total_bytes - on_gpu
    if layers == 0:
        why = "not even one block fits on the GPU"
        if budget < 0:
            why = "the runtime overhead alone exceeds the GPU memory"
        return placed(Verdict.DOES_NOT_FIT, per_device, cpu=cpu_bytes, why=why)
    if setup.cpu_ram_bytes is not None and cpu_bytes > setup.cpu_ram_bytes:
        return placed(Verdict.DOES_NOT_FIT, per_device, cpu=cpu_bytes, why="the offloaded part exceeds the CPU RAM")
    return placed(Verdict.OFFLOAD, ov.total_bytes + ceil_div(on_gpu, n), layers, cpu_bytes)


def largest_context(
    spec: ModelSpec, wf: WeightFacts | None, setup: GpuSetup, batch: int, o: FitOptions
) -> int | None:
    """Largest context (up to the model's maximum) that fits entirely on the GPU(s); 0 if none.

    Everything on the devices only grows with the context (KV cache, compute buffer, activations), so
    "fits" is monotone and bisection is exact: about 17 placements for a 131,072-token model.
    """
    hi = spec.max_context
    if not hi:
        return None

    def fits(ctx: int) -> bool:
        if wf is None:
            return place_training(spec, setup, ctx, batch, o).verdict is Verdict.FITS
        return inference_device_bytes(spec, wf, setup.count, ctx, batch, o) <= setup.gpu.usable_bytes

    if fits(hi):
        return hi
    if not fits(1):
        return 0
    lo = 1  # invariant: fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


