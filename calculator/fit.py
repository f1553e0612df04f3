"""Will it fit? Verdicts, headroom, max context, best format, GPU searches and speed estimates.

``fit(spec, fmt, gpu_setup, context, batch)`` adds up, per device::

    weights / n_gpus  +  KV cache share  +  runtime overhead (calculator.runtime)

and compares it with the device's usable memory (``calculator.hardware``). With ``n`` GPUs the model
is split tensor-parallel: weights ``1/n`` each, the KV cache by KV heads (a head is never split, so
MQA caches are replicated; MLA latents are replicated, as vLLM does), and every device pays its own
CUDA context and compute buffer. A training ``mode`` replaces weights + KV cache by
``calculator.training`` (states sharded ZeRO-3/FSDP style, activations per device).

If the model does not fit, llama.cpp-style CPU offload is tried: the non-repeating tensors (token
embedding, output) and the first blocks stay in CPU RAM with their KV cache, the last ``gpu_layers``
blocks go to the GPU (llama.cpp ``-ngl``; it counts the output layer as one more, so "all on GPU" is
``-ngl n_layers + 1``). Offload needs at least one block on the GPU and, when ``cpu_ram_bytes`` is
given, the rest must fit in RAM. Unified-memory machines cannot offload (CPU and GPU share the RAM).

Speed (rooflines, each with a visible efficiency factor):

- decode tokens/s = batch / (bytes read per step / (bandwidth x ``decode_efficiency``)). A step reads
  every weight once (routed experts: ``experts_used / experts`` of them; the token embedding only one
  row unless tied to the output) plus the whole KV cache at the given context. Offloaded layers are
  read at CPU bandwidth. Default efficiency 0.6: llama.cpp reaches 0.57-0.68 of peak bandwidth --
  Llama-3.1-8B Q4_K_M at 111.95 tok/s on an RTX 3080 (dmatora/LLM-inference-speed-benchmarks issue
  #12; 4.63 GB read per token, 760 GB/s -> 0.68) and Llama-3-8B Q6_K at 93 tok/s on an RTX 4090 (issue
  #10 there; 6.17 GB per token, 1008 GB/s -> 0.57).
- prefill seconds = batch x context x (2 N + 2 n_layer x context x d_attn) FLOPs (Kaplan et al. 2020,
  arXiv 2001.08361, Table 1: forward FLOPs per token, N = non-embedding matmul parameters incl. the
  output projection) / (fp16 TFLOPS x ``prefill_efficiency``). Default 0.5: llama.cpp's pp512 of
  llama 8B Q4_0 on an RTX 4090 is 10,358.75 tok/s (ggml-org/llama.cpp PR #7676) = 156 TFLOPS of the
  card's 330 dense FP16 -> 0.47.

Format quality order (``QUALITY_KLD``): mean KL divergence to the FP16 model on wikitext-2, from
llama.cpp's "LLaMA 3 8b Scoreboard" (ggerganov/llama.cpp examples/perplexity/README.md
@c392e5094deaf2d1a7c18683214f007fad3fe42b, copied in /work/shared/reference/quant_quality.csv),
taking each type's lowest published KLD (several types were measured only with an importance matrix).
fp32 is the reference and bf16 the checkpoint's native dtype, so both score 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from calculator.hardware import GpuSetup, GpuSpec, catalogue, get_gpu
from calculator.memory import weight_memory
from calculator.models import ModelSpec, list_presets, load_preset
from calculator.runtime import (
    DEFAULT_CUDA_CONTEXT_BYTES,
    DEFAULT_UBATCH,
    CacheType,
    KVCache,
    Overhead,
    check_count,
    compute_stages,
    kv_cache,
    kv_cache_bytes,
    parse_cache_type,
    runtime_overhead,
    spec_memo,
)
from calculator.training import (
    PEFT_DEFAULT_TARGETS,
    Optimizer,
    Precision,
    TrainingMemory,
    TrainingMode,
    parse_mode,
    training_memory,
)

DECODE_BANDWIDTH_EFFICIENCY = 0.6
"""Share of peak memory bandwidth a decode step achieves (see module docstring for the measurements)."""

PREFILL_COMPUTE_EFFICIENCY = 0.5
"""Share of peak dense FP16 throughput prompt processing achieves (see module docstring)."""

QUALITY_KLD: dict[str, float] = {
    "fp32": 0.0,
    "bf16": 0.0,
    "fp16": 0.000551,
    "Q8_0": 0.001355,
    "Q6_K": 0.005452,
    "Q5_K_M": 0.010762,
    "Q5_K_S": 0.016595,
    "Q5_1": 0.018045,
    "Q5_0": 0.022239,
    "Q4_K_M": 0.028152,
    "Q4_K_S": 0.031951,
    "IQ4_NL": 0.035742,
    "IQ4_XS": 0.036334,
    "Q4_1": 0.071683,
    "Q4_0": 0.071940,
    "Q3_K_L": 0.073077,
    "Q3_K_M": 0.084358,
    "IQ3_M": 0.102534,
    "IQ3_S": 0.111278,
    "IQ3_XS": 0.138693,
    "IQ3_XXS": 0.183625,
    "Q3_K_S": 0.199821,
    "IQ2_M": 0.325989,
    "Q2_K": 0.331393,
    "Q2_K_S": 0.403360,
    "IQ2_S": 0.439197,
    "IQ2_XS": 0.546290,
    "IQ2_XXS": 0.812022,
    "IQ1_M": 1.393084,
    "IQ1_S": 2.211278,
}
"""Mean KLD vs FP16 on Llama-3-8B (llama.cpp scoreboard; see module docstring). Lower = better."""

QUALITY_ORDER: tuple[str, ...] = tuple(sorted(QUALITY_KLD, key=lambda name: QUALITY_KLD[name]))
"""Formats from highest to lowest quality (ties keep the table order: fp32 before bf16)."""

_DEFAULT_SET_SIZES = (1, 2, 4, 8)


class Verdict(StrEnum):
    """The answer to "will it fit?"."""

    FITS = "fits"
    """Everything on the GPU(s)."""
    OFFLOAD = "fits_with_cpu_offload"
    """Runs with ``gpu_layers`` blocks on the GPU and the rest in CPU RAM (llama.cpp ``-ngl``)."""
    DOES_NOT_FIT = "does_not_fit"
    """Not even with offload (or offload is impossible: unified memory, training, too little RAM)."""


@dataclass(frozen=True)
class FitResult:
    """Everything the verdict rests on, in bytes. ``per_device_bytes`` is compared to ``usable_bytes``."""

    model: str
    format: str
    gpu: str
    gpu_count: int
    mode: TrainingMode
    context: int
    batch: int
    verdict: Verdict
    weight_bytes: int
    """All weights (for training: trainable + frozen weights)."""
    kv_cache_bytes: int
    overhead_bytes: int
    """Runtime overhead summed over devices (CUDA context + compute buffer + extra, each per device)."""
    training_bytes: int
    """Gradients + optimizer states + activations + logits (0 for inference)."""
    per_device_bytes: int
    """What the fullest device holds (after offload, if any)."""
    usable_bytes: int
    """Usable memory of one device."""
    gpu_layers: int
    n_layers: int
    cpu_offload_bytes: int
    max_context: int | None
    decode_tokens_per_s: float | None
    prefill_seconds: float | None
    warnings: tuple[str, ...]
    kv: KVCache | None = field(default=None, repr=False)
    overhead: Overhead | None = field(default=None, repr=False)
    training: TrainingMemory | None = field(default=None, repr=False)

    @property
    def fits(self) -> bool:
        return self.verdict is Verdict.FITS

    @property
    def total_bytes(self) -> int:
        """Every byte of the run, all devices and CPU RAM together."""
        return self.weight_bytes + self.kv_cache_bytes + self.overhead_bytes + self.training_bytes

    @property
    def headroom_bytes(self) -> int:
        """Free bytes on the fullest device (negative: how much is missing)."""
        return self.usable_bytes - self.per_device_bytes

    @property
    def headroom_pct(self) -> float:
        return 100.0 * self.headroom_bytes / self.usable_bytes

    def to_dict(self) -> dict:
        data = {
            "model": self.model,
            "format": self.format,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "mode": self.mode.value,
            "context": self.context,
            "batch": self.batch,
            "fits": self.fits,
            "verdict": self.verdict.value,
            "total_bytes": self.total_bytes,
            "weight_bytes": self.weight_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "overhead_bytes": self.overhead_bytes,
            "training_bytes": self.training_bytes,
            "per_device_bytes": self.per_device_bytes,
            "usable_bytes_per_device": self.usable_bytes,
            "headroom_bytes": self.headroom_bytes,
            "headroom_pct": round(self.headroom_pct, 2),
            "gpu_layers": self.gpu_layers,
            "n_layers": self.n_layers,
            "cpu_offload_bytes": self.cpu_offload_bytes,
            "max_context": self.max_context,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "prefill_seconds": self.prefill_seconds,
            "warnings": list(self.warnings),
        }
        if self.kv is not None:
            data["kv_cache"] = self.kv.to_dict()
        if self.overhead is not None:
            data["overhead"] = self.overhead.to_dict()
        if self.training is not None:
            data["training"] = self.training.to_dict()
        return data


# Per-(model, format) facts, computed once


@dataclass(frozen=True)
class _WeightFacts:
    format: str
    total_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    layer_read_bytes: tuple[float, ...]
    """Bytes one decode step reads from each block (routed experts scaled by used / total)."""
    nonrepeating_read_bytes: int


@spec_memo
def _weight_facts(spec: ModelSpec, fmt: str) -> _WeightFacts:
    wm = weight_memory(spec, fmt)
    tensors = {t.name: t for t in spec.tensors}
    per_layer = [0] * spec.n_layers
    read = [0.0] * spec.n_layers
    nonrep = nonrep_read = 0
    for t in wm.tensors:
        ts = tensors[t.name]
        if ts.role.endswith("_exps") and spec.n_experts:
            reads = t.bytes * spec.n_experts_used / spec.n_experts
        elif ts.role == "position_embd" or (ts.role == "token_embd" and not spec.tie_word_embeddings):
            reads = 0  # a lookup reads one row per token
        else:
            reads = t.bytes
        if ts.layer is None:
            nonrep += t.bytes
            nonrep_read += reads
        else:
            per_layer[ts.layer] += t.bytes
            read[ts.layer] += reads
    return _WeightFacts(wm.format, wm.total_bytes, tuple(per_layer), nonrep, tuple(read), round(nonrep_read))


@spec_memo
def _matmul_params(spec: ModelSpec) -> int:
    """Kaplan's N: active matmul parameters, embeddings excluded, output projection included."""
    embd = {t.role: t.numel for t in spec.tensors if t.layer is None}
    n = spec.active_params - embd.get("token_embd", 0) - embd.get("position_embd", 0)
    return n + (embd.get("token_embd", 0) if spec.tie_word_embeddings else 0)


# Options and setup coercion


@dataclass(frozen=True)
class _Options:
    mode: TrainingMode
    kv_type: CacheType
    ubatch: int | None
    flash_attention: bool
    cuda_context_bytes: int
    extra_overhead_bytes: int
    decode_efficiency: float
    prefill_efficiency: float
    optimizer: str | Optimizer
    precision: str | Precision
    gradient_checkpointing: bool
    lora_rank: int
    lora_targets: tuple[str, ...]


def as_setup(gpu: GpuSetup | GpuSpec | str, count: int = 1, cpu_ram_bytes: int | None = None) -> GpuSetup:
    """A GpuSetup from a setup, a device, or a device name (``"RTX 4090"``, ``"custom:24GiB"``)."""
    if isinstance(gpu, GpuSetup):
        return gpu
    if isinstance(gpu, str):
        gpu = get_gpu(gpu)
    if not isinstance(gpu, GpuSpec):
        raise ValueError(f"expected a GPU name, GpuSpec or GpuSetup, got {gpu!r}")
    return GpuSetup(gpu, count, cpu_ram_bytes)


# The core evaluation


@dataclass(frozen=True)
class _Plan:
    verdict: Verdict
    per_device: int
    gpu_layers: int
    cpu_bytes: int
    kv: KVCache | None
    overhead: Overhead | None
    training: TrainingMemory | None
    weight_bytes: int
    overhead_total: int
    why: str = ""


def _kv_per_device(spec: ModelSpec, kv_bytes: int, n: int) -> int:
    """A device's share of the KV cache: whole KV heads (MQA heads and MLA latents are replicated)."""
    if n == 1 or spec.kv_lora_rank:
        return kv_bytes
    return -(-kv_bytes * math.ceil(spec.n_kv_heads / n) // spec.n_kv_heads)


def _plan(
    spec: ModelSpec,
    wf: _WeightFacts | None,
    setup: GpuSetup,
    context: int,
    batch: int,
    o: _Options,
    *,
    offload: bool = True,
) -> _Plan:
    """Place the run on the devices. ``offload=False`` stops at "fits or not" (max-context search)."""
    n, gpu = setup.count, setup.gpu
    usable = gpu.usable_bytes
    if o.mode is not TrainingMode.INFERENCE:
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
        per_device = math.ceil(tm.state_bytes / n) + tm.activation_bytes + tm.logits_bytes + fixed
        verdict = Verdict.FITS if per_device <= usable else Verdict.DOES_NOT_FIT
        return _Plan(
            verdict=verdict,
            per_device=per_device,
            gpu_layers=spec.n_layers if verdict is Verdict.FITS else 0,
            cpu_bytes=0,
            kv=None,
            overhead=None,
            training=tm,
            weight_bytes=tm.weight_bytes,
            overhead_total=fixed * n,
        )
    assert wf is not None
    kv = kv_cache(spec, context, batch, o.kv_type)
    ov = runtime_overhead(
        spec,
        context,
        batch,
        ubatch=o.ubatch,
        flash_attention=o.flash_attention,
        cuda_context_bytes=o.cuda_context_bytes,
        extra_bytes=o.extra_overhead_bytes,
    )
    per_device = math.ceil(wf.total_bytes / n) + _kv_per_device(spec, kv.total_bytes, n) + ov.total_bytes
    common = dict(
        kv=kv, overhead=ov, training=None, weight_bytes=wf.total_bytes, overhead_total=ov.total_bytes * n
    )
    if per_device <= usable:
        return _Plan(Verdict.FITS, per_device, spec.n_layers, 0, **common)
    if not offload:
        return _Plan(Verdict.DOES_NOT_FIT, per_device, 0, 0, **common)
    if gpu.unified_memory:
        return _Plan(
            Verdict.DOES_NOT_FIT, per_device, 0, 0, why="unified memory: CPU offload frees nothing", **common
        )
    budget = n * (usable - ov.total_bytes)
    on_gpu = layers = 0
    for i in reversed(range(spec.n_layers)):  # llama.cpp offloads the last -ngl blocks
        cost = wf.layer_bytes[i] + kv.layer_bytes[i]
        if on_gpu + cost > budget:
            break
        on_gpu += cost
        layers += 1
    cpu_bytes = wf.total_bytes + kv.total_bytes - on_gpu
    gpu_per_device = ov.total_bytes + math.ceil(on_gpu / n)
    if layers == 0:
        why = (
            "the runtime overhead alone exceeds the GPU memory"
            if budget < 0
            else "not even one block fits on the GPU"
        )
        return _Plan(Verdict.DOES_NOT_FIT, per_device, 0, cpu_bytes, why=why, **common)
    if setup.cpu_ram_bytes is not None and cpu_bytes > setup.cpu_ram_bytes:
        return _Plan(
            Verdict.DOES_NOT_FIT,
            per_device,
            0,
            cpu_bytes,
            why="the offloaded part exceeds the CPU RAM",
            **common,
        )
    return _Plan(Verdict.OFFLOAD, gpu_per_device, layers, cpu_bytes, **common)


def _max_context(
    spec: ModelSpec, wf: _WeightFacts | None, setup: GpuSetup, batch: int, o: _Options
) -> int | None:
    """Largest context (up to the model's maximum) that fits entirely on the GPU(s); 0 if none.

    ``fits`` is monotone in the context (KV cache and compute buffer only grow), so bisection is exact.
    Inference uses the scalar byte formulas of ``calculator.runtime`` (the same ones ``_plan`` sums).
    """
    hi = spec.max_context
    if not hi:
        return None
    usable, n = setup.gpu.usable_bytes, setup.count
    if o.mode is TrainingMode.INFERENCE:
        fixed = math.ceil(wf.total_bytes / n) + o.cuda_context_bytes + o.extra_overhead_bytes

        def fits(ctx: int) -> bool:
            kv = _kv_per_device(spec, kv_cache_bytes(spec, ctx, batch, o.kv_type), n)
            _, _, out, attn, ffn = compute_stages(spec, ctx * batch, o.ubatch, o.flash_attention)
            return fixed + kv + max(out, attn, ffn) <= usable
    else:

        def fits(ctx: int) -> bool:
            return _plan(spec, wf, setup, ctx, batch, o, offload=False).verdict is Verdict.FITS

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


def _decode_tokens_per_s(
    spec: ModelSpec, wf: _WeightFacts, plan: _Plan, setup: GpuSetup, batch: int, o: _Options
) -> float | None:
    gpu_bw = setup.gpu.bandwidth_gb_per_s
    if gpu_bw is None or plan.kv is None:
        return None
    if plan.verdict is Verdict.FITS:
        gpu_read, cpu_read = sum(wf.layer_read_bytes) + wf.nonrepeating_read_bytes + plan.kv.total_bytes, 0
    else:  # blocks before first_gpu and the non-repeating tensors live in CPU RAM
        first_gpu = spec.n_layers - plan.gpu_layers
        gpu_read = sum(wf.layer_read_bytes[first_gpu:]) + sum(plan.kv.layer_bytes[first_gpu:])
        cpu_read = (
            sum(wf.layer_read_bytes[:first_gpu])
            + sum(plan.kv.layer_bytes[:first_gpu])
            + wf.nonrepeating_read_bytes
        )
    seconds = gpu_read / (setup.count * gpu_bw * 1e9 * o.decode_efficiency)
    seconds += cpu_read / (setup.cpu_bandwidth_gb_per_s * 1e9 * o.decode_efficiency)
    return batch / seconds


def _prefill_seconds(spec: ModelSpec, setup: GpuSetup, context: int, batch: int, o: _Options) -> float | None:
    tflops = setup.gpu.fp16_tflops
    if tflops is None:
        return None
    d_attn = spec.n_heads * spec.head_dim
    flops = batch * context * (2 * _matmul_params(spec) + 2 * spec.n_layers * context * d_attn)
    return flops / (setup.count * tflops * 1e12 * o.prefill_efficiency)


def fit(
    spec: ModelSpec,
    fmt: str,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    mode: str | TrainingMode = TrainingMode.INFERENCE,
    kv_type: str | CacheType = CacheType.FP16,
    ubatch: int | None = DEFAULT_UBATCH,
    flash_attention: bool = True,
    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT_BYTES,
    extra_overhead_bytes: int = 0,
    decode_efficiency: float = DECODE_BANDWIDTH_EFFICIENCY,
    prefill_efficiency: float = PREFILL_COMPUTE_EFFICIENCY,
    optimizer: str | Optimizer = Optimizer.ADAMW,
    precision: str | Precision = Precision.MIXED,
    gradient_checkpointing: bool = False,
    lora_rank: int = 16,
    lora_targets: Iterable[str] = PEFT_DEFAULT_TARGETS,
    with_max_context: bool = True,
) -> FitResult:
    """Verdict and byte breakdown for ``spec`` in ``fmt`` on ``gpu_setup`` (see module docstring).

    ``fmt`` is any weight format or GGUF file type (``Q4_K_M``); in a training mode it is the format
    the verdict is labelled with, while the training terms follow ``precision`` (full) or the frozen
    base (bf16 for LoRA, NF4 for QLoRA). ``context`` above the model's maximum is allowed with a warning.
    """
    check_count("context", context, "8192 tokens")
    check_count("batch", batch, "1 sequence")
    setup = as_setup(gpu_setup)
    for label, eff in (("decode efficiency", decode_efficiency), ("prefill efficiency", prefill_efficiency)):
        if not 0 < eff <= 1:
            raise ValueError(f"{label} {eff!r} must be in (0, 1], e.g. {DECODE_BANDWIDTH_EFFICIENCY}")
    o = _Options(
        mode=parse_mode(mode),
        kv_type=parse_cache_type(kv_type),
        ubatch=ubatch,
        flash_attention=flash_attention,
        cuda_context_bytes=cuda_context_bytes,
        extra_overhead_bytes=extra_overhead_bytes,
        decode_efficiency=decode_efficiency,
        prefill_efficiency=prefill_efficiency,
        optimizer=optimizer,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        lora_rank=lora_rank,
        lora_targets=tuple(lora_targets),
    )
    if not spec.n_layers:
        raise ValueError(
            f"{spec.name!r} has no architecture facts (a bare parameter count?); a fit needs a "
            "model config: a preset, a config.json or a Hub id"
        )
    warnings: list[str] = []
    if spec.max_context and context > spec.max_context:
        warnings.append(
            f"context {context:,} is above {spec.name}'s maximum of {spec.max_context:,} tokens; "
            "the model was not trained for it (the estimate extrapolates)"
        )
    inference = o.mode is TrainingMode.INFERENCE
    wf = _weight_facts(spec, fmt) if inference else None
    plan = _plan(spec, wf, setup, context, batch, o)
    if plan.why:
        warnings.append(f"no CPU offload: {plan.why}")
    if plan.verdict is Verdict.OFFLOAD and setup.cpu_ram_bytes is None:
        warnings.append(
            f"CPU RAM not given (--cpu-ram): assumed enough for the {plan.cpu_bytes / 1e9:,.2f} GB offloaded"
        )
    if setup.count > 1 and spec.n_heads % setup.count:
        warnings.append(
            f"{spec.n_heads} attention heads do not split evenly over {setup.count} GPUs: "
            "tensor parallelism (vLLM) refuses this; llama.cpp's layer split still works"
        )
    if setup.gpu.unified_memory:
        warnings.append(
            f"unified memory: {setup.gpu.usable_fraction:.0%} of RAM counted as usable by the GPU "
            "(Metal's recommended working set; raise it with sysctl iogpu.wired_limit_mb)"
        )
    decode = prefill = None
    if inference:
        decode = (
            _decode_tokens_per_s(spec, wf, plan, setup, batch, o)
            if plan.verdict is not Verdict.DOES_NOT_FIT
            else None
        )
        if plan.verdict is Verdict.FITS:
            prefill = _prefill_seconds(spec, setup, context, batch, o)
        if setup.gpu.bandwidth_gb_per_s is None:
            warnings.append(
                "no memory bandwidth for this GPU (custom:MEM:BANDWIDTH): decode speed not estimated"
            )
        if setup.gpu.fp16_tflops is None:
            warnings.append("no FP16 TFLOPS for this GPU (custom:MEM:BW:TFLOPS): prefill time not estimated")
        elif plan.verdict is Verdict.OFFLOAD:
            warnings.append("prefill time not estimated with CPU offload (it depends on the CPU)")
    tm = plan.training
    return FitResult(
        model=spec.name,
        format=wf.format if wf else str(fmt),
        gpu=setup.gpu.name,
        gpu_count=setup.count,
        mode=o.mode,
        context=context,
        batch=batch,
        verdict=plan.verdict,
        weight_bytes=plan.weight_bytes,
        kv_cache_bytes=plan.kv.total_bytes if plan.kv else 0,
        overhead_bytes=plan.overhead_total,
        training_bytes=(tm.total_bytes - tm.weight_bytes) if tm else 0,
        per_device_bytes=plan.per_device,
        usable_bytes=setup.gpu.usable_bytes,
        gpu_layers=plan.gpu_layers,
        n_layers=spec.n_layers,
        cpu_offload_bytes=plan.cpu_bytes,
        max_context=_max_context(spec, wf, setup, batch, o) if with_max_context else None,
        decode_tokens_per_s=decode,
        prefill_seconds=prefill,
        warnings=tuple(warnings),
        kv=plan.kv,
        overhead=plan.overhead,
        training=tm,
    )


def max_context(
    spec: ModelSpec, fmt: str, gpu_setup: GpuSetup | GpuSpec | str, batch: int = 1, **options
) -> int | None:
    """Largest context (<= the model's maximum) for which ``fit`` says FITS; 0 if not even 1 token."""
    options["with_max_context"] = True
    return fit(spec, fmt, gpu_setup, 1, batch, **options).max_context


# Searches


def best_format(
    spec: ModelSpec,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    candidates: Iterable[str] | None = None,
    **options,
) -> FitResult | None:
    """The highest-quality format (``QUALITY_ORDER``) that fits entirely on the GPU(s); None if none does."""
    names = QUALITY_ORDER if candidates is None else tuple(candidates)
    unknown = [c for c in names if c not in QUALITY_KLD]
    if unknown:
        raise ValueError(
            f"no published quality rank for {', '.join(unknown)}; rankable formats: "
            f"{', '.join(QUALITY_ORDER)}"
        )
    options.setdefault("with_max_context", False)
    setup = as_setup(gpu_setup)
    for name in sorted(names, key=QUALITY_ORDER.index):
        result = fit(spec, name, setup, context, batch, **options)
        if result.fits:
            return result
    return None


def gpus_that_fit(
    spec: ModelSpec,
    fmt: str,
    context: int = 4096,
    batch: int = 1,
    *,
    gpus: Iterable[GpuSpec] | None = None,
    count: int = 1,
    cpu_ram_bytes: int | None = None,
    **options,
) -> list[FitResult]:
    """Every device (default: the catalogue) on which ``count`` copies fit, smallest memory first."""
    options.setdefault("with_max_context", False)
    devices = list(catalogue() if gpus is None else gpus)
    out = [
        r
        for g in devices
        if (r := fit(spec, fmt, GpuSetup(g, count, cpu_ram_bytes), context, batch, **options)).fits
    ]
    order = {g.name: (g.memory_bytes, g.price_usd or math.inf) for g in devices}
    return sorted(out, key=lambda r: order[r.gpu])


def smallest_gpu_set(
    spec: ModelSpec,
    fmt: str,
    context: int = 4096,
    batch: int = 1,
    *,
    by: str = "memory",
    gpus: Iterable[GpuSpec] | None = None,
    counts: Iterable[int] = _DEFAULT_SET_SIZES,
    **options,
) -> FitResult | None:
    """The set of identical GPUs that fits with the least total memory (``by="memory"``) or launch price
    (``by="price"``; devices without a price are skipped). Ties go to fewer devices. None if nothing fits."""
    if by not in ("memory", "price"):
        raise ValueError(f"by={by!r} must be 'memory' or 'price'")
    options.setdefault("with_max_context", False)
    sizes = sorted(set(counts))
    for n in sizes:
        check_count("GPU count", n, "--gpus 2")
    best: tuple | None = None
    for g in catalogue() if gpus is None else gpus:
        if by == "price" and g.price_usd is None:
            continue
        for n in sizes:
            result = fit(spec, fmt, GpuSetup(g, n), context, batch, **options)
            if result.fits:
                cost = n * (g.memory_bytes if by == "memory" else g.price_usd)
                key = (cost, n, -(g.bandwidth_gb_per_s or 0))
                if best is None or key < best[0]:
                    best = (key, result)
                break
    return best[1] if best else None


def largest_model_that_fits(
    family: str, fmt: str, gpu_setup: GpuSetup | GpuSpec | str, context: int = 4096, batch: int = 1, **options
) -> FitResult | None:
    """Of the presets whose name contains ``family`` (e.g. "llama-3", "qwen2.5"), the one with the most
    parameters that fits; None if none does."""
    key = (family or "").strip().lower()
    names = [p for p in list_presets() if key and key in p.lower()]
    if not names:
        raise ValueError(f"no preset matches family {family!r}; presets: {', '.join(list_presets())}")
    options.setdefault("with_max_context", False)
    setup = as_setup(gpu_setup)
    specs = sorted((load_preset(p) for p in names), key=lambda s: s.total_params, reverse=True)
    for spec in specs:
        result = fit(spec, fmt, setup, context, batch, **options)
        if result.fits:
            return result
    return None
