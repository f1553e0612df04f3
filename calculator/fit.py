"""Will it fit? One call, ``fit``, from a model, a format, devices, context and batch to a verdict with
every byte accounted for.

``fit(spec, fmt, gpu_setup, context=4096, batch=1, options=FitOptions(...))`` sizes the weights
(``calculator.memory``), places the run on the devices (``calculator.placement``: tensor-parallel split,
llama.cpp-style CPU offload, training states), estimates decode and prefill speed (``calculator.speed``)
and bisects the longest context that fits. It returns a ``FitResult`` whose ``to_dict()`` is the CLI's
``--json``. Every setting besides model, format, devices, context and batch travels in one frozen,
validated ``FitOptions``; its runtime fields (KV cache type, micro-batch, flash attention, CUDA context)
carry llama.cpp's defaults.

Searches over ``fit`` (max context, best format, GPU sets, largest model): ``calculator.search``; the format
quality ranking they use: ``calculator.quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calculator import placement, speed
from calculator.hardware import GpuSetup, GpuSpec, get_gpu
from calculator.memory import weight_facts
from calculator.models import ModelSpec
from calculator.placement import Verdict
from calculator.runtime import (
    DEFAULT_CUDA_CONTEXT_BYTES,
    DEFAULT_UBATCH,
    CacheType,
    KVCache,
    Overhead,
    parse_cache_type,
)
from calculator.training import (
    PEFT_DEFAULT_TARGETS,
    Optimizer,
    Precision,
    TrainingMemory,
    TrainingMode,
    parse_mode,
    parse_optimizer,
    parse_precision,
)
from calculator.units import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_DIM, check_int

__all__ = ["FitOptions", "FitResult", "Verdict", "as_setup", "fit"]


@dataclass(frozen=True)
class FitOptions:
    """How the run is set up, besides model, format, devices, context and batch.

    Enum fields also take their string values, converted on construction (``FitOptions(kv_type="q8_0")
    .kv_type is CacheType.Q8_0``); a bad value raises ValueError naming it and the choices.
    """

    mode: TrainingMode = TrainingMode.INFERENCE
    """``inference``, or a training mode (``full``, ``lora``, ``qlora``; see calculator.training)."""
    kv_type: CacheType = CacheType.FP16
    """KV cache element type (llama.cpp ``--cache-type-k/-v``)."""
    ubatch: int | None = DEFAULT_UBATCH
    """Prompt tokens per forward step (llama.cpp ``-ub``); None: the whole prompt at once (transformers)."""
    flash_attention: bool = True
    """False adds the KQ score matrix to the compute buffer (and to training activations)."""
    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT_BYTES
    """CUDA context + library workspaces, per device."""
    extra_overhead_bytes: int = 0
    """Anything else to reserve, per device (``--overhead-gib``)."""
    decode_efficiency: float = speed.DECODE_BANDWIDTH_EFFICIENCY
    """Share of peak bandwidth a decode step reaches, in (0, 1]."""
    prefill_efficiency: float = speed.PREFILL_COMPUTE_EFFICIENCY
    """Share of peak FP16 TFLOPS prompt processing reaches, in (0, 1]."""
    optimizer: Optimizer = Optimizer.ADAMW
    """Training: the optimizer whose states are kept per trainable parameter."""
    precision: Precision = Precision.MIXED
    """Full fine-tuning: how weights and gradients are held."""
    gradient_checkpointing: bool = False
    """Training: recompute activations instead of storing them."""
    lora_rank: int = 16
    """LoRA/QLoRA adapter rank."""
    lora_targets: tuple[str, ...] = PEFT_DEFAULT_TARGETS
    """LoRA/QLoRA target modules (Hugging Face names, or ``all-linear``)."""

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: normalise once, here
        set_field(self, "mode", parse_mode(self.mode))
        set_field(self, "kv_type", parse_cache_type(self.kv_type))
        set_field(self, "optimizer", parse_optimizer(self.optimizer))
        set_field(self, "precision", parse_precision(self.precision))
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else self.lora_targets
        set_field(self, "lora_targets", tuple(str(t) for t in targets))
        if self.ubatch is not None:
            check_int("ubatch (prompt tokens per step)", self.ubatch, high=MAX_CONTEXT_TOKENS,
                      example=f"{DEFAULT_UBATCH}, or None")
        check_int("CUDA context bytes", self.cuda_context_bytes, low=0, example=f"{DEFAULT_CUDA_CONTEXT_BYTES:,}")
        check_int("extra overhead bytes", self.extra_overhead_bytes, low=0, example="0")
        check_int("LoRA rank", self.lora_rank, high=MAX_DIM, example="16")
        for label, value, default in (
            ("decode efficiency", self.decode_efficiency, speed.DECODE_BANDWIDTH_EFFICIENCY),
            ("prefill efficiency", self.prefill_efficiency, speed.PREFILL_COMPUTE_EFFICIENCY),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ValueError(f"{label} {value!r} must be in (0, 1], e.g. {default}")
        for label, value in (
            ("flash_attention", self.flash_attention),
            ("gradient_checkpointing", self.gradient_checkpointing),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{label} {value!r} must be True or False")

    @property
    def inference(self) -> bool:
        return self.mode is TrainingMode.INFERENCE


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


def as_setup(gpu: GpuSetup | GpuSpec | str, count: int = 1, cpu_ram_bytes: int | None = None) -> GpuSetup:
    """A GpuSetup from a setup, a device, or a device name (``"RTX 4090"``, ``"custom:24GiB"``)."""
    if isinstance(gpu, GpuSetup):
        return gpu
    if isinstance(gpu, str):
        gpu = get_gpu(gpu)
    if not isinstance(gpu, GpuSpec):
        raise ValueError(f"expected a GPU name, GpuSpec or GpuSetup, got {gpu!r}")
    return GpuSetup(gpu, count, cpu_ram_bytes)


# The verdict


def _warnings(
    spec: ModelSpec, setup: GpuSetup, context: int, p: placement.Placement, o: FitOptions
) -> list[str]:
    out = [f"config.json: {note}" for note in spec.assumed]
    if spec.max_context and context > spec.max_context:
        out.append(
            f"context {context:,} is above {spec.name}'s maximum of {spec.max_context:,} tokens; "
            "the model was not trained for it (the estimate extrapolates)"
        )
    if p.why_no_offload:
        out.append(f"no CPU offload: {p.why_no_offload}")
    if p.verdict is Verdict.OFFLOAD and setup.cpu_ram_bytes is None:
        out.append(f"CPU RAM not given (--cpu-ram): assumed enough for the {p.cpu_bytes / 1e9:,.2f} GB offloaded")
    if setup.count > 1 and spec.n_heads % setup.count:
        out.append(
            f"{spec.n_heads} attention heads do not split evenly over {setup.count} GPUs: "
            "tensor parallelism (vLLM) refuses this; llama.cpp's layer split still works"
        )
    if setup.gpu.unified_memory:
        out.append(
            f"unified memory: {setup.gpu.usable_fraction:.0%} of RAM counted as usable by the GPU "
            "(Metal's recommended working set; raise it with sysctl iogpu.wired_limit_mb)"
        )
    if o.inference:
        if setup.gpu.bandwidth_gb_per_s is None:
            out.append("no memory bandwidth for this GPU (custom:MEM:BANDWIDTH): decode speed not estimated")
        if setup.gpu.fp16_tflops is None:
            out.append("no FP16 TFLOPS for this GPU (custom:MEM:BW:TFLOPS): prefill time not estimated")
        elif p.verdict is Verdict.OFFLOAD:
            out.append("prefill time not estimated with CPU offload (it depends on the CPU)")
    return out


def fit(
    spec: ModelSpec,
    fmt: str,
    gpu_setup: GpuSetup | GpuSpec | str,
    context: int = 4096,
    batch: int = 1,
    *,
    options: FitOptions | None = None,
    with_max_context: bool = True,
) -> FitResult:
    """Verdict and byte breakdown for ``spec`` in ``fmt`` on ``gpu_setup`` (see module docstring).

    ``fmt`` is any weight format or GGUF file type (``Q4_K_M``); in a training mode it is the format
    the verdict is labelled with, while the training terms follow ``precision`` (full) or the frozen
    base (bf16 for LoRA, NF4 for QLoRA). ``context`` above the model's maximum is allowed with a warning.
    ``with_max_context=False`` skips the bisection for the largest context (searches do not need it).
    """
    check_int("context", context, high=MAX_CONTEXT_TOKENS, example="8192 tokens")
    check_int("batch", batch, high=MAX_BATCH, example="1 sequence")
    o = FitOptions() if options is None else options
    if not isinstance(o, FitOptions):
        raise ValueError(f"options must be a FitOptions, got {type(o).__name__}: FitOptions(kv_type='q8_0', ...)")
    setup = as_setup(gpu_setup)
    if not spec.n_layers:
        raise ValueError(
            f"{spec.name!r} has no architecture facts (a bare parameter count?); a fit needs a "
            "model config: a preset, a config.json or a Hub id"
        )
    wf = weight_facts(spec, fmt) if o.inference else None
    if wf is None:
        p = placement.place_training(spec, setup, context, batch, o)
    else:
        p = placement.place_inference(spec, wf, setup, context, batch, o)
    decode = prefill = None
    if wf is not None and p.verdict is not Verdict.DOES_NOT_FIT:
        gpu_layers = None if p.verdict is Verdict.FITS else p.gpu_layers
        decode = speed.decode_tokens_per_s(wf, p.kv, setup, batch, o.decode_efficiency, gpu_layers=gpu_layers)
    if wf is not None and p.verdict is Verdict.FITS:
        prefill = speed.prefill_seconds(spec, setup, context, batch, o.prefill_efficiency)
    return FitResult(
        model=spec.name,
        format=wf.format if wf else str(fmt),
        gpu=setup.gpu.name,
        gpu_count=setup.count,
        mode=o.mode,
        context=context,
        batch=batch,
        verdict=p.verdict,
        weight_bytes=p.weight_bytes,
        kv_cache_bytes=p.kv.total_bytes if p.kv else 0,
        overhead_bytes=p.overhead_total,
        training_bytes=(p.training.total_bytes - p.training.weight_bytes) if p.training else 0,
        per_device_bytes=p.per_device,
        usable_bytes=setup.gpu.usable_bytes,
        gpu_layers=p.gpu_layers,
        n_layers=spec.n_layers,
        cpu_offload_bytes=p.cpu_bytes,
        max_context=placement.largest_context(spec, wf, setup, batch, o) if with_max_context else None,
        decode_tokens_per_s=decode,
        prefill_seconds=prefill,
        warnings=tuple(_warnings(spec, setup, context, p, o)),
        kv=p.kv,
        overhead=p.overhead,
        training=p.training,
    )
