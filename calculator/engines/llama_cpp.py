"""llama.cpp (llama-server, llama-cli, llama-bench; LM Studio runs it too): memory per device as its start-up
log prints it, and decode/prefill speed as it executes.

How ``fit``'s arguments read here: ``context`` is ``-c`` (``n_ctx``, the total shared by all slots) and
``batch`` the slots ``-np`` (unless ``LlamaCppOptions.parallel`` says). The rules (``llama_cpp_rules``, each
with its source): padded KV cells and per-sequence streams by build era; a sliding-window cache only for the
architectures llama.cpp gives one; ``token_embd`` always in host memory; the last ``-ngl`` blocks on the
GPUs (the output layer counts as one more); layers split over GPUs in proportion to free memory or
``--tensor-split``, or matrices split by rows (``-sm row``); every GPU its own compute buffer (four input
copies under pipeline parallelism); the output buffer in pinned host memory. The CUDA context (not logged by
llama.cpp) is ``FitOptions.cuda_context_bytes`` per CUDA/ROCm/SYCL device.

``n_gpu_layers=None`` places as many blocks as fit (llama.cpp's own ``--fit``/``-ngl auto`` does the same
search); an explicit value is placed as given and may not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from calculator import speed as speed_models
from calculator.engines.base import HOST, DeviceMemory, Engine, FlashAttention, Layout, parse_flash_attention
from calculator.engines.llama_cpp_rules import (
    SWA_ARCHS,
    LlamaCppBuild,
    compute_buffers,
    kv_cells,
    kv_layer_kinds,
    mapped_span_bytes,
    nonrepeating,
    output_buffer_bytes,
    split_layers,
)
from calculator.hardware import METAL_PAGE_BYTES, Backend
from calculator.placement import Verdict
from calculator.runtime import CacheType, Overhead, kv_cache_cells, parse_cache_type
from calculator.units import ceil_div, check_float, check_int, fmt_gb

if TYPE_CHECKING:
    from calculator.fit import FitOptions
    from calculator.hardware import GpuSetup
    from calculator.models import ModelSpec

_FLOAT_CACHES = (CacheType.FP32, CacheType.FP16, CacheType.BF16)


class SplitMode(StrEnum):
    """llama.cpp ``--split-mode``."""

    LAYER = "layer"
    """Whole blocks per GPU, run one GPU after another (the default)."""
    ROW = "row"
    """Every weight matrix split by rows over the GPUs, which work on each layer together."""
    NONE = "none"
    """Everything on ``main_gpu``."""


@dataclass(frozen=True)
class LlamaCppOptions:
    """llama.cpp's own settings (defaults: current llama-server with ``-np`` given). The KV cache type, the
    micro-batch and the CUDA context come from ``FitOptions`` (``kv_type``, ``ubatch``,
    ``cuda_context_bytes``); the fields here override or add to them. Enum fields take their strings."""

    build: LlamaCppBuild = LlamaCppBuild.CURRENT
    """Whose rules (``2024``, ``2025``, ``current``): match the build of the log you compare with."""
    parallel: int | None = None
    """Slots ``-np``; None: ``fit``'s ``batch``."""
    kv_unified: bool = False
    """``--kv-unified``: one stream of ``n_ctx`` cells shared by all slots (llama-server's default when ``-np``
    is omitted: 4 slots, unified; ggml-org/llama.cpp PR #16736). False: one stream of ``n_ctx / np`` each."""
    flash_attention: FlashAttention | None = None
    """``-fa on|off|auto``; None: ``FitOptions.flash_attention`` (True = on)."""
    cache_type_k: CacheType | None = None
    """``-ctk``; None: ``FitOptions.kv_type``."""
    cache_type_v: CacheType | None = None
    """``-ctv``; None: ``FitOptions.kv_type`` (llama.cpp's ``-ctv`` default is f16 whatever ``-ctk`` says)."""
    n_gpu_layers: int | None = None
    """``-ngl``: blocks on the GPUs, the output layer counting as one more (0 = CPU only); None: as many as fit."""
    split_mode: SplitMode = SplitMode.LAYER
    tensor_split: tuple[float, ...] | None = None
    """``--tensor-split``: one proportion per GPU; None: proportional to free (usable) memory."""
    main_gpu: int = 0
    """``--main-gpu`` for ``split_mode=none``."""
    n_batch: int = 2048
    """``-b``: the micro-batch is ``min(n_ubatch, n_batch)``."""
    swa_full: bool = False
    """``--swa-full``: full-size cache for sliding-window layers too."""
    kv_offload: bool = True
    """False = ``-nkvo``: the whole KV cache in host memory."""
    server: bool = True
    """llama-server (True) or llama-cli/llama-bench: in ``current`` builds the server reserves logits for one
    output per slot, the tools for the whole micro-batch (ggml-org/llama.cpp PR #23861)."""
    pipeline_parallel: bool = True
    """Multi-GPU layer split keeps 4 copies of the graph inputs (``GGML_SCHED_MAX_COPIES``). Ollama's runner
    logs of 2024-25 show no "pipeline parallelism enabled" line: False reproduces them."""
    embeddings: bool = False
    """The output buffer also holds one embedding row per slot (Ollama's runner up to v0.12 set it)."""
    mmap: bool = True
    """Report the "CPU_Mapped" span a log prints (``DeviceMemory.mapped_bytes``)."""

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        try:
            set_field(self, "build", LlamaCppBuild(str(self.build).strip().lower()))
        except ValueError:
            raise ValueError(f"llama.cpp build {self.build!r} must be one of 2024, 2025, current") from None
        try:
            set_field(self, "split_mode", SplitMode(str(self.split_mode).strip().lower()))
        except ValueError:
            raise ValueError(f"--split-mode {self.split_mode!r} must be one of layer, row, none") from None
        if self.flash_attention is not None:
            set_field(self, "flash_attention", parse_flash_attention(self.flash_attention))
        for name in ("cache_type_k", "cache_type_v"):
            if getattr(self, name) is not None:
                set_field(self, name, parse_cache_type(getattr(self, name)))
        if self.parallel is not None:
            check_int("--parallel (slots)", self.parallel, high=4096, example="4")
        if self.n_gpu_layers is not None:
            check_int("--n-gpu-layers", self.n_gpu_layers, low=0, high=100_000, example="33, or 0 for CPU only")
        check_int("--main-gpu", self.main_gpu, low=0, high=255, example="0")
        check_int("--n-batch", self.n_batch, high=1 << 20, example="2048")
        if self.tensor_split is not None:
            values = tuple(self.tensor_split)
            for v in values:
                check_float("--tensor-split value", v, high=1e9, example="3,1")
            if not values or sum(values) <= 0:
                raise ValueError(f"--tensor-split {values!r} needs a positive proportion for some GPU, e.g. 3,1")
            set_field(self, "tensor_split", tuple(float(v) for v in values))
        for name in ("kv_unified", "swa_full", "kv_offload", "server", "pipeline_parallel", "embeddings", "mmap"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} {getattr(self, name)!r} must be True or False")


@dataclass(frozen=True)
class _Resolved:
    """The settings llama.cpp would run with, after defaults, clamping and refusals."""

    n_seq: int
    flash_attention: bool
    type_k: CacheType
    type_v: CacheType
    ubatch: int
    notes: tuple[str, ...]


def _name(gpu_backend: Backend, index: int, build: LlamaCppBuild) -> str:
    if gpu_backend is Backend.METAL:
        return "Metal" if build is LlamaCppBuild.B2024 else f"MTL{index}"
    return f"{gpu_backend.value}{index}"


class LlamaCpp(Engine):
    name = "llama.cpp"
    title = "llama.cpp (llama-server / llama-cli; LM Studio)"
    sources = (
        "ggml-org/llama.cpp 3f1ae2e3 / e54d41be / a5bb8ba4, ec98e2002 as vendored in ollama/ollama "
        "(b754f5a6a, 1a19df1f3, ef00199fb, f63eea3d2): src/llama-context.cpp, src/llama-kv-cache*.cpp, "
        "src/llama-model.cpp, common/common.h",
        "start-up logs: XiongjieDai/GPU-Benchmarks-on-LLM-Inference@aa72e0ec; issues listed in "
        "tests/calculator/test_llama_cpp_logs.py",
    )
    options_type = LlamaCppOptions
    offloads = True

    # Settings

    def resolve(self, spec: ModelSpec, setup: GpuSetup, batch: int, o: FitOptions) -> _Resolved:
        """Defaults applied, the refusals llama.cpp itself makes raised as one-line ValueErrors."""
        lo: LlamaCppOptions = self.options(o.engine_options)
        notes = []
        if lo.parallel is not None and batch not in (1, lo.parallel):
            raise ValueError(
                f"batch {batch} and --parallel {lo.parallel} disagree: under llama.cpp the sequences decoded "
                "together are the slots (-np); give one of them"
            )
        n_seq = lo.parallel or batch
        fa = lo.flash_attention or parse_flash_attention(o.flash_attention)
        if fa is FlashAttention.AUTO:
            fa = FlashAttention.ON if lo.build is LlamaCppBuild.CURRENT else FlashAttention.OFF
            notes.append(f"flash attention auto -> {fa.value} (llama.cpp {lo.build.value} builds)")
        flash = fa is FlashAttention.ON
        type_k = lo.cache_type_k or o.kv_type
        type_v = lo.cache_type_v or o.kv_type  # -ctv defaults to f16 whatever -ctk says
        for label, t in (("K", type_k), ("V", type_v)):
            if t in (CacheType.FP8, CacheType.MLX_Q8, CacheType.MLX_Q4):
                raise ValueError(f"llama.cpp has no {t.value} {label} cache (--cache-type-{label.lower()}); "
                                 "use q8_0 (34 bytes per 32 values) or f16")
        if type_v not in _FLOAT_CACHES and not flash:
            said = ("quantized V cache was requested, but this requires Flash Attention"
                    if lo.build is LlamaCppBuild.CURRENT else "V cache quantization requires flash_attn")
            raise ValueError(f"llama.cpp refuses: \"{said}\" (--cache-type-v {type_v.value}); add "
                             "--flash-attention on or use an f16 V cache")
        if lo.tensor_split is not None and len(lo.tensor_split) != setup.count:
            raise ValueError(
                f"--tensor-split has {len(lo.tensor_split)} values for {setup.count} GPU(s); give one "
                f"proportion per GPU, e.g. {','.join(['1'] * setup.count)}"
            )
        if lo.main_gpu >= setup.count:
            raise ValueError(f"--main-gpu {lo.main_gpu} does not exist: there are {setup.count} GPU(s) (0..)")
        if lo.n_gpu_layers is not None and lo.n_gpu_layers > spec.n_layers + 1:
            notes.append(f"--n-gpu-layers {lo.n_gpu_layers} is more than the {spec.n_layers + 1} layers "
                         f"({spec.n_layers} blocks + output): llama.cpp offloads all of them")
        ubatch = min(o.ubatch or lo.n_batch, lo.n_batch)
        if spec.sliding_window and spec.arch not in SWA_ARCHS and "sliding" in spec.layer_types:
            notes.append(f"{spec.name} declares a {spec.sliding_window:,}-token sliding window, but llama.cpp "
                         f"gives arch {spec.arch} no sliding-window cache: the full context is cached in every layer")
        return _Resolved(n_seq, flash, type_k, type_v, ubatch, tuple(notes))

    # Placement

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        lo: LlamaCppOptions = self.options(o.engine_options)
        r = self.resolve(spec, setup, batch, o)
        if setup.unified_memory and setup.count > 1:
            lay = self._place(spec, fmt, wf, setup, context, r, o, lo, spec.n_layers + 1)
            return replace(lay, verdict=Verdict.DOES_NOT_FIT, why="a Mac is one Metal device: llama.cpp does not "
                           "pool the memory of several Macs (its RPC backend is not modelled)")
        if lo.n_gpu_layers is not None:
            return self._place(spec, fmt, wf, setup, context, r, o, lo, min(lo.n_gpu_layers, spec.n_layers + 1))
        full = self._place(spec, fmt, wf, setup, context, r, o, lo, spec.n_layers + 1)
        if all(d.fits for d in full.devices):
            return full
        if not self._place(spec, fmt, wf, setup, context, r, o, lo, 1, verdict_only=True):
            budget = min(d.usable_bytes - d.context_bytes - d.extra_bytes - d.companion_bytes for d in full.devices)
            why = ("the runtime overhead alone exceeds the GPU memory" if budget < 0
                   else "not even one block fits on the GPU")
            return replace(full, verdict=Verdict.DOES_NOT_FIT, why=why, gpu_layers=0)
        lo_ngl, hi_ngl = 1, spec.n_layers  # invariant: lo fits on the devices, hi + 1 does not
        while lo_ngl < hi_ngl:
            mid = (lo_ngl + hi_ngl + 1) // 2
            if self._place(spec, fmt, wf, setup, context, r, o, lo, mid, verdict_only=True):
                lo_ngl = mid
            else:
                hi_ngl = mid - 1
        return self._place(spec, fmt, wf, setup, context, r, o, lo, lo_ngl)

    def fits(self, spec, fmt, wf, setup, context, batch, o) -> bool:
        lo: LlamaCppOptions = self.options(o.engine_options)
        r = self.resolve(spec, setup, batch, o)
        ngl = spec.n_layers + 1 if lo.n_gpu_layers is None else min(lo.n_gpu_layers, spec.n_layers + 1)
        if ngl <= spec.n_layers or (setup.unified_memory and setup.count > 1):
            return False
        return self._place(spec, fmt, wf, setup, context, r, o, lo, ngl).verdict is Verdict.FITS

    def context_limit(self, spec, batch, o) -> int | None:
        """``-c`` up to the model's maximum per slot: x slots for separate streams (and 2024's shared cache)."""
        lo: LlamaCppOptions = self.options(o.engine_options)
        if not spec.max_context:
            return None
        n_seq = lo.parallel or batch
        return spec.max_context * (1 if lo.kv_unified and lo.build is not LlamaCppBuild.B2024 else n_seq)

    def quantized_kv(self, o):
        lo: LlamaCppOptions = self.options(o.engine_options)
        out = []
        for ct in (CacheType.Q8_0, CacheType.Q4_0):
            if (lo.cache_type_k or o.kv_type) in (ct, CacheType.Q4_0):
                continue
            eo = replace(lo, cache_type_k=None, cache_type_v=None, flash_attention=FlashAttention.ON)
            out.append((f"--kv-type {ct.value} --flash-attention on", replace(o, kv_type=ct, engine_options=eo)))
        return tuple(out)

    def slots_as_batch(self, o, batch):
        lo: LlamaCppOptions = self.options(o.engine_options)
        if lo.parallel is None:
            return o, batch
        return replace(o, engine_options=replace(lo, parallel=None)), lo.parallel

    def slot_context(self, context, batch, slots, o):
        """``-c`` is shared: N slots of the same size need ``-c x N / np`` (unified: each slot may use all of it)."""
        lo: LlamaCppOptions = self.options(o.engine_options)
        return context if lo.kv_unified else max(1, context * slots // max(batch, 1))

    def _place(self, spec, fmt, wf, setup, context, r, o, lo, ngl, verdict_only=False):
        n = spec.n_layers
        kinds = kv_layer_kinds(spec, lo.build)
        cells = kv_cells(lo.build, context, r.n_seq, unified=lo.kv_unified, flash_attention=r.flash_attention,
                         ubatch=r.ubatch, n_swa=spec.sliding_window if "sliding" in kinds else None,
                         swa_full=lo.swa_full)
        kv = kv_cache_cells(spec, kinds=kinds, full_cells=cells.full_cells * cells.streams,
                            sliding_cells=cells.swa_cells * cells.streams, type_k=r.type_k, type_v=r.type_v,
                            context=context, batch=r.n_seq)
        n_dev = setup.count
        if lo.split_mode is SplitMode.NONE:
            fractions = tuple(1.0 if i == lo.main_gpu else 0.0 for i in range(n_dev))
        else:
            fractions = lo.tensor_split or tuple(float(g.usable_bytes) for g in setup.gpus)
        layer_dev, out_dev = split_layers(n, ngl, fractions)
        row = lo.split_mode is SplitMode.ROW and n_dev > 1
        copies = 4 if (n_dev > 1 and ngl > n and lo.split_mode is SplitMode.LAYER and lo.kv_offload
                       and lo.pipeline_parallel) else 1
        on_gpu = [i for i in range(n) if layer_dev[i] >= 0]
        has_layers = tuple((bool(on_gpu) if row else any(layer_dev[i] == d for i in on_gpu)) for d in range(n_dev))
        cb = compute_buffers(
            spec, n_ctx=cells.n_ctx, n_kv=max(cells.full_cells if "full" in kinds else 0, cells.swa_cells),
            ubatch=r.ubatch, flash_attention=r.flash_attention,
            logits_rows=r.n_seq if (lo.build is LlamaCppBuild.CURRENT and lo.server) else None,
            device_has_layers=has_layers, output_device=out_dev, host_has_layers=len(on_gpu) < n, copies=copies,
        )
        nr = nonrepeating(spec, fmt)
        gpu_layer_bytes = sum(wf.layer_bytes[i] for i in on_gpu)
        share = [f / sum(fractions) for f in fractions]
        companions, comp_dev, comp_host = (), (0,) * n_dev, 0
        if o.companions is not None:  # --mmproj on GPU 0, -md split like the main model (calculator.companions)
            companions, comp_dev, comp_host = o.companions.place(
                o.companions.rows(context, ubatch=r.ubatch, flash_attention=r.flash_attention),
                tuple(_name(g.backend, d, lo.build) for d, g in enumerate(setup.gpus)), fractions)
        devices = []
        for d, gpu in enumerate(setup.gpus):
            mine = [i for i in on_gpu if layer_dev[i] == d]
            used = bool(mine) or out_dev == d or (row and bool(on_gpu)) or comp_dev[d] > 0
            weights = round(gpu_layer_bytes * share[d]) if row else sum(wf.layer_bytes[i] for i in mine)
            weights += nr.output if out_dev == d else 0
            if gpu.backend is Backend.METAL and weights:
                # ggml-metal wraps the mapped model file in page-aligned buffers: A4 logs "Metal buffer size =
                # 4403.50 MiB" for the tensors CUDA logs as 4403.49 MiB (A1)
                weights = ceil_div(weights, METAL_PAGE_BYTES) * METAL_PAGE_BYTES
            kv_d = sum(kv.layer_bytes[i] for i in mine) if lo.kv_offload else 0
            context_b = o.cuda_context_bytes if (used and gpu.backend is not Backend.METAL) else 0
            devices.append(DeviceMemory(
                name=_name(gpu.backend, d, lo.build), device=gpu.name, weights_bytes=weights, kv_cache_bytes=kv_d,
                compute_bytes=cb.devices[d], output_bytes=0, context_bytes=context_b, usable_bytes=gpu.usable_bytes,
                layers=len(mine), holds_output=out_dev == d, extra_bytes=o.extra_overhead_bytes if used else 0,
                companion_bytes=comp_dev[d],
            ))
        fits_devices = all(d.fits for d in devices)
        if verdict_only:
            return fits_devices
        host_layers = [i for i in range(n) if layer_dev[i] < 0]
        host_weights = nr.token_embd + nr.other + sum(wf.layer_bytes[i] for i in host_layers)
        if out_dev < 0:
            host_weights += nr.output - (nr.token_embd if spec.tie_word_embeddings else 0)
        host_kv = kv.total_bytes if not lo.kv_offload else sum(kv.layer_bytes[i] for i in host_layers)
        ram = setup.cpu_ram_bytes
        if setup.unified_memory:
            left = setup.gpu.memory_bytes - sum(d.total_bytes for d in devices)
            ram = left if ram is None else min(ram, left)
        host = DeviceMemory(
            name=HOST, device="CPU RAM", weights_bytes=host_weights, kv_cache_bytes=host_kv, compute_bytes=cb.host,
            output_bytes=output_buffer_bytes(spec, r.n_seq, lo.embeddings), context_bytes=0, usable_bytes=ram,
            layers=len(host_layers), holds_output=out_dev < 0,
            mapped_bytes=mapped_span_bytes(nr, layer_dev, out_dev) if lo.mmap else None, companion_bytes=comp_host,
        )
        all_gpu = not host_layers and out_dev >= 0
        why = ""
        if not fits_devices:
            worst = min(devices, key=lambda d: d.headroom_bytes)
            verdict, why = Verdict.DOES_NOT_FIT, (
                f"{worst.name} ({worst.device}) needs {fmt_gb(worst.total_bytes)}, {fmt_gb(worst.usable_bytes)} usable")
        elif not host.fits:
            verdict, why = Verdict.DOES_NOT_FIT, "the offloaded part exceeds the CPU RAM"
        else:
            verdict = Verdict.FITS if all_gpu else Verdict.OFFLOAD
        fullest = min(devices, key=lambda d: (d.headroom_bytes, -d.total_bytes))
        overhead = Overhead(
            cuda_context_bytes=fullest.context_bytes, compute_buffer_bytes=fullest.compute_bytes,
            logits_bytes=cb.logits, attention_bytes=cb.attention_stage, ffn_bytes=cb.ffn_stage,
            extra_bytes=fullest.extra_bytes, step_tokens=cb.step, flash_attention=r.flash_attention,
        )
        notes = list(r.notes)
        if cells.n_ctx != context:
            notes.append(f"-c {context:,} becomes n_ctx {cells.n_ctx:,} (cells padded to a multiple of {cells.pad}, "
                         f"{cells.streams} stream(s) of {cells.full_cells:,})")
        if "sliding" in kinds:
            notes.append(f"{kinds.count('sliding')} sliding-window layers cache {cells.swa_cells:,} cells per stream "
                         f"(window {spec.sliding_window:,}, {r.n_seq} slot(s), n_ubatch {r.ubatch})")
        settings = (
            ("build", lo.build.value), ("n_ctx", cells.n_ctx), ("n_ctx_seq", cells.n_ctx_seq),
            ("n_seq_max", r.n_seq), ("kv_unified", lo.kv_unified), ("kv_streams", cells.streams),
            ("kv_cells_full", cells.full_cells), ("kv_cells_swa", cells.swa_cells if "sliding" in kinds else 0),
            ("flash_attn", r.flash_attention), ("n_ubatch", r.ubatch), ("type_k", r.type_k.value),
            ("type_v", r.type_v.value), ("n_gpu_layers", ngl), ("split_mode", lo.split_mode.value),
            ("pipeline_copies", copies), ("tensor_split", list(fractions)),
        )
        return Layout(
            engine=self.name, verdict=verdict, devices=tuple(devices), host=host, kv=kv, overhead=overhead,
            gpu_layers=len(on_gpu), output_on_gpu=out_dev >= 0, layer_devices=layer_dev, settings=settings,
            notes=tuple(notes), why=why,
            offloaded_bytes=host_weights - nr.token_embd - nr.other + host_kv, companions=companions,
        )

    # Speed

    def speed(self, spec, wf, setup, lay, context, batch, o):
        lo: LlamaCppOptions = self.options(o.engine_options)
        n_seq = dict(lay.settings)["n_seq_max"]
        return speed_models.split_speed(
            spec, wf, setup, lay.kv.layer_bytes, lay.layer_devices,
            output_device=next((d for d, dev in enumerate(lay.devices) if dev.holds_output), -1),
            parallel=lo.split_mode is SplitMode.ROW and setup.count > 1,
            pipelined=dict(lay.settings)["pipeline_copies"] > 1, context=min(context, dict(lay.settings)["n_ctx"]),
            ubatch=dict(lay.settings)["n_ubatch"], sequences=n_seq,
            decode_efficiency=o.decode_efficiency, prefill_efficiency=o.prefill_efficiency,
        )

