"""Will it fit? One call, ``fit``, from a model, a format, devices, context and batch to a verdict with
every byte accounted for.

``fit(spec, fmt, gpu_setup, context=4096, batch=1, options=FitOptions(...))`` sizes the weights
(``calculator.memory``), lets the serving engine place the run (``FitOptions.engine``: llama.cpp by default,
Ollama, MLX; ``calculator.engines``: each engine's KV cache, buffers and layer placement, per device and on
the host), estimates decode and prefill speed the way that engine executes (``calculator.speed``) and
bisects the longest context that fits. Training modes use ``calculator.placement`` (states sharded
over the devices). It returns a ``FitResult`` whose ``to_dict()`` is the CLI's ``--json``. Every setting
besides model, format, devices, context and batch travels in one frozen, validated ``FitOptions``; the
engine's own settings in ``FitOptions.engine_options`` (``LlamaCppOptions``, ``OllamaOptions``,
``MlxOptions``), so adding an engine never adds fields here.

What ``context`` and ``batch`` mean is the engine's to say: llama.cpp reads them as ``-c`` (the total all
slots share) and ``-np``; Ollama as ``num_ctx`` (per request) and ``OLLAMA_NUM_PARALLEL``; MLX as tokens per
sequence and sequences.

Searches over ``fit`` (max context, best format, GPU sets, largest model): ``calculator.search``; the format
quality ranking they use: ``calculator.quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calculator import placement, speed
from calculator.companions import CompanionRow, Companions
from calculator.engines.base import DeviceMemory, Layout
from calculator.engines.registry import EngineName, get_engine, parse_engine
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
    engine: EngineName = EngineName.LLAMA_CPP
    """The serving program whose allocation rules place an inference run (``--engine``)."""
    engine_options: object | None = None
    """That engine's own settings (``LlamaCppOptions(...)`` for llama.cpp...); None: its defaults."""
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
    decode_efficiency: float | None = None
    """Share of peak bandwidth a decode step reaches, in (0, 1]; None: the engine's calibrated value."""
    prefill_efficiency: float | None = None
    """Share of peak FP16 TFLOPS prompt processing reaches, in (0, 1]; None: the engine's calibrated value."""
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
    companions: Companions | None = None
    """A projector (``--mmproj``) and/or draft model (``-md``) loaded beside the model, placed where llama.cpp
    puts them (``calculator.companions``); llama.cpp and Ollama (projector only) model them."""

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: normalise once, here
        set_field(self, "mode", parse_mode(self.mode))
        set_field(self, "engine", parse_engine(self.engine))
        get_engine(self.engine).options(self.engine_options)  # another engine's settings: ValueError
        set_field(self, "kv_type", parse_cache_type(self.kv_type))
        set_field(self, "optimizer", parse_optimizer(self.optimizer))
        set_field(self, "precision", parse_precision(self.precision))
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else self.lora_targets
        set_field(self, "lora_targets", tuple(str(t) for t in targets))
        if self.companions is not None:
            if not isinstance(self.companions, Companions):
                raise ValueError(f"companions must be Companions.of(mmproj=..., draft=...), got {self.companions!r}")
            if self.mode is not TrainingMode.INFERENCE or self.engine not in (EngineName.LLAMA_CPP, EngineName.OLLAMA) \
                    or (self.engine is EngineName.OLLAMA and self.companions.has_draft):
                raise ValueError(f"--mmproj/--draft are modelled for inference with llama.cpp (Ollama: --mmproj only), "
                                 f"not {self.engine.value} {self.mode.value}: use --engine llama.cpp or leave them out")
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
            if value is None:
                continue
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
    engine: str = EngineName.LLAMA_CPP.value
    devices: tuple[DeviceMemory, ...] = ()
    """Per GPU, as the engine logs it (weights, KV cache, compute, output, context)."""
    host: DeviceMemory | None = None
    """What stays in system RAM (llama.cpp: token_embd, output buffer, host compute buffer, CPU layers)."""
    engine_settings: tuple[tuple[str, object], ...] = ()
    """What the engine resolved (n_ctx after padding, slots, cells, flash attention...)."""
    engine_notes: tuple[str, ...] = ()
    """What the engine did that the user may not expect, one line each."""
    engine_report: tuple[tuple[str, object], ...] = ()
    """Engine-specific extras (Ollama: its own estimate and why it differs)."""
    companions: tuple[CompanionRow, ...] = ()
    """``--mmproj`` / ``-md`` rows, each with the devices that hold it (counted in their totals and verdict)."""

    @property
    def fits(self) -> bool:
        return self.verdict is Verdict.FITS

    @property
    def total_bytes(self) -> int:
        """Every byte of the run, all devices and CPU RAM together (companion files included)."""
        return (self.weight_bytes + self.kv_cache_bytes + self.overhead_bytes + self.training_bytes
                + sum(c.total_bytes for c in self.companions))

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
        data["engine"] = self.engine
        data["engine_settings"] = dict(self.engine_settings)
        data["engine_notes"] = list(self.engine_notes)
        data["devices"] = [d.to_dict() for d in self.devices]
        data["host"] = self.host.to_dict() if self.host is not None else None
        if self.engine_report:
            data["engine_report"] = dict(self.engine_report)
        if self.companions:
            data["companions"] = [c.to_dict() for c in self.companions]
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
    spec: ModelSpec, setup: GpuSetup, context: int, verdict: Verdict, cpu_bytes: int, why: str,
    per_seq_context: int, o: FitOptions,
) -> list[str]:
    out = [f"config.json: {note}" for note in spec.assumed]
    if spec.max_context and per_seq_context > spec.max_context:
        out.append(
            f"context {per_seq_context:,} is above {spec.name}'s maximum of {spec.max_context:,} tokens; "
            "the model was not trained for it (the estimate extrapolates)"
        )
    if why:
        out.append(f"{'no CPU offload' if verdict is Verdict.DOES_NOT_FIT and not o.inference else 'does not fit'}"
                   f": {why}")
    if verdict is Verdict.OFFLOAD and setup.cpu_ram_bytes is None and not setup.unified_memory:
        out.append(f"CPU RAM not given (--cpu-ram): assumed enough for the {cpu_bytes / 1e9:,.2f} GB offloaded")
    if setup.count > 1 and spec.n_heads % setup.count and not o.inference:
        out.append(
            f"{spec.n_heads} attention heads do not split evenly over {setup.count} GPUs: "
            "tensor parallelism refuses this"
        )
    for gpu in dict.fromkeys(setup.gpus):
        if gpu.unified_memory:
            limit = ("the iogpu.wired_limit_mb set" if gpu.wired_limit_bytes is not None else
                     f"{gpu.usable_fraction:.0%} of RAM, Metal's recommended working set; raise it with "
                     "sudo sysctl iogpu.wired_limit_mb")
            out.append(f"unified memory: the GPU may use {limit}")
    if o.inference:
        if any(g.bandwidth_gb_per_s is None for g in setup.gpus):
            out.append("no memory bandwidth for this GPU (custom:MEM:BANDWIDTH): decode speed not estimated")
        if any(g.fp16_tflops is None for g in setup.gpus):
            out.append("no FP16 TFLOPS for this GPU (custom:MEM:BW:TFLOPS): prefill time not estimated")
        elif verdict is Verdict.OFFLOAD:
            out.append("prefill time not estimated with CPU offload (it depends on the CPU)")
    return out


def _largest_context(
    spec: ModelSpec, fmt, wf, setup: GpuSetup, batch: int, o: FitOptions, seen: tuple[int, Layout] | None = None,
) -> int | None:
    """Largest ``context`` (up to the engine's limit) that fits entirely on the GPU(s); 0 if none.

    Everything on the devices only grows with the context (KV cells, compute buffer), so "fits" is monotone and
    any bracket [fits, does not fit] narrowed to width 1 gives the one exact answer. Plain bisection over
    [1, limit] takes log2(limit) placements: 41 at batch 4,096 for a 2^27-token model (limit 2^27 x 4,096).
    When the caller's own layout ``seen`` = (context, layout) has everything on the GPU(s), the bracket starts
    from an estimate instead: each device's headroom falls about linearly with the context, so that layout and
    one at half its context give where the first device runs out; doubling steps find the two sides of it and
    bisection finishes (26 placements and one layout instead of 41 for that model on 64 H100s). Every verdict
    still comes from the engine's ``fits``; the estimate only chooses where to ask.
    """
    engine = get_engine(o.engine)
    hi = engine.context_limit(spec, batch, o)
    if not hi:
        return None

    def fits(ctx: int) -> bool:
        return engine.fits(spec, fmt, wf, setup, ctx, batch, o)

    def rooms(lay: Layout) -> tuple[int | None, ...] | None:
        """Each device's headroom, when everything is on them (None where the layout offloads)."""
        return tuple(d.headroom_bytes for d in lay.devices) if lay.verdict is Verdict.FITS else None

    if fits(hi):
        return hi
    if not fits(1):
        return 0
    lo = 1  # invariant: fits(lo), not fits(hi)
    # below ~1M tokens bisection takes at most 20 placements, no more than the estimate would leave
    far = rooms(seen[1]) if seen is not None and 1 < seen[0] < hi and hi > 1 << 20 else None
    # a second point at half the context (small contexts are rounded up: llama.cpp gives every sequence at
    # least 256 cells, so context 1 is off the line)
    near = rooms(engine.layout(spec, fmt, wf, setup, seen[0] // 2, batch, o)) if far else None
    if near and len(near) == len(far):
        # each device's headroom falls about linearly with the context: where the first one reaches 0
        at, half = seen[0], seen[0] // 2
        crossings = [at + b * (at - half) // (a - b) for a, b in zip(near, far, strict=True)
                     if a is not None and b is not None and a > b]
        if crossings:
            guess = min(max(min(crossings), lo + 1), hi - 1)
            # the bytes step where the engine rounds cells up (llama.cpp: 256 per sequence, so every ~1M
            # tokens at batch 4,096): widen by doubling steps from 1/256 of the guess
            step = max(256, guess >> 8)
            if fits(guess):
                lo = guess
                while lo + step < hi and fits(lo + step):
                    lo, step = lo + step, step * 2
                hi = min(hi, lo + step)
            else:
                hi = guess
                while hi - step > lo and not fits(hi - step):
                    hi, step = hi - step, step * 2
                lo = max(lo, hi - step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _training_result(spec, fmt, setup, context, batch, o, with_max_context) -> FitResult:
    p = placement.place_training(spec, setup, context, batch, o)
    tm = p.training
    share = p.per_device - tm.activation_bytes - tm.logits_bytes - o.cuda_context_bytes - o.extra_overhead_bytes
    devices = tuple(
        DeviceMemory(f"GPU{i}", g.name, share, 0, tm.activation_bytes + tm.logits_bytes, 0, o.cuda_context_bytes,
                     g.usable_bytes, spec.n_layers, extra_bytes=o.extra_overhead_bytes)
        for i, g in enumerate(setup.gpus)
    )
    return FitResult(
        model=spec.name, format=str(fmt), gpu=setup.label if not setup.homogeneous else setup.gpu.name,
        gpu_count=setup.count, mode=o.mode, context=context, batch=batch, verdict=p.verdict,
        weight_bytes=p.weight_bytes, kv_cache_bytes=0, overhead_bytes=p.overhead_total,
        training_bytes=tm.total_bytes - tm.weight_bytes, per_device_bytes=p.per_device,
        usable_bytes=setup.gpu.usable_bytes, gpu_layers=p.gpu_layers, n_layers=spec.n_layers, cpu_offload_bytes=0,
        max_context=placement.largest_context(spec, None, setup, batch, o) if with_max_context else None,
        decode_tokens_per_s=None, prefill_seconds=None,
        warnings=tuple(_warnings(spec, setup, context, p.verdict, 0, p.why_no_offload, context, o)),
        training=tm, engine="training (ZeRO-3 / FSDP)", devices=devices,
        host=DeviceMemory("host", "CPU RAM", 0, 0, 0, 0, 0, setup.cpu_ram_bytes, 0),
    )


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
    if not o.inference:
        return _training_result(spec, fmt, setup, context, batch, o, with_max_context)
    engine = get_engine(o.engine)
    wf = weight_facts(spec, fmt)
    lay: Layout = engine.layout(spec, fmt, wf, setup, context, batch, o)
    decode = prefill = None
    if lay.verdict is not Verdict.DOES_NOT_FIT:
        decode, prefill = engine.speed(spec, wf, setup, lay, context, batch, o)
        if lay.verdict is not Verdict.FITS:
            prefill = None
    fullest = lay.fullest
    settings = dict(lay.settings)
    per_seq = settings.get("n_ctx_seq", context)
    return FitResult(
        model=spec.name,
        format=wf.format,
        gpu=setup.gpu.name if setup.homogeneous else setup.label,
        gpu_count=setup.count,
        mode=o.mode,
        context=context,
        batch=batch,
        verdict=lay.verdict,
        weight_bytes=lay.weight_bytes,
        kv_cache_bytes=lay.kv.total_bytes,
        overhead_bytes=lay.overhead_bytes,
        training_bytes=0,
        per_device_bytes=fullest.total_bytes,
        usable_bytes=fullest.usable_bytes,
        gpu_layers=lay.gpu_layers,
        n_layers=spec.n_layers,
        cpu_offload_bytes=lay.offloaded_bytes,
        max_context=(_largest_context(spec, fmt, wf, setup, batch, o, (context, lay)) if with_max_context
                     else None),
        decode_tokens_per_s=decode,
        prefill_seconds=prefill,
        warnings=tuple(_warnings(spec, setup, context, lay.verdict, lay.offloaded_bytes, lay.why, per_seq, o)),
        kv=lay.kv,
        overhead=lay.overhead,
        engine=lay.engine,
        devices=lay.devices,
        host=lay.host,
        engine_settings=lay.settings,
        engine_notes=lay.notes,
        engine_report=lay.extras,
        companions=lay.companions,
    )
