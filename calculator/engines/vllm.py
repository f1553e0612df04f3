"""vLLM (V1 engine, pinned to 0.19.0): will it start, how big is its KV pool, how many requests of
``max_model_len`` tokens it serves at once -- per GPU, as its start-up log prints it.

``vllm_startup(spec, fmt, gpu, gpus, VllmSettings(...))`` follows ``vllm serve``:

1. refuse bad input as vLLM does, one line each: attention heads not divisible by the tensor-parallel
   size, ``max_model_len`` above the model's limit, a quantization the GPU generation cannot run;
2. ``requested = gpu_memory_utilization x total`` (refused when the free memory at start is smaller);
3. ``Available KV cache memory = requested - (weights + peak activation + non-torch)``
   (``calculator.engines._vllm_memory``; minus the CUDA-graph estimate with ``cuda_graphs_in_budget``);
4. blocks, "GPU KV cache size: N tokens", "Maximum concurrency for L tokens per request: X"
   (``calculator.engines._vllm_kv``), the fewest blocks over the pipeline stages;
5. refuse when one ``max_model_len`` request does not fit, with vLLM's sentence and the largest
   ``max_model_len`` it would accept.

Defaults are vLLM 0.19's for ``vllm serve`` (``EngineArgs.get_batch_defaults``: on GPUs with at least
70 GiB that are not A100s ``max_num_batched_tokens`` 8192 and ``max_num_seqs`` 1024, else 2048 and
256 -- "Defaulting max_num_batched_tokens to 8192 for OPENAI_API_SERVER usage context" in the logs),
``gpu_memory_utilization`` 0.9, block size 16, CUDA graphs on. Sliding windows count where vLLM's logs
show its hybrid manager using them (Gemma 2/3 interleaved layers); a config-wide ``sliding_window``
(Mistral v0.1, Phi-3) is counted as full attention, which no log here checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from enum import StrEnum

from calculator import units
from calculator.engines import _cuda, _serving, _vllm_kv, _vllm_memory
from calculator.engines._vllm_kv import AttentionKind, KVPool, LayerKind
from calculator.engines.base import DeviceMemory, Engine, Layout
from calculator.hardware import GpuSpec
from calculator.models import ModelSpec
from calculator.placement import Verdict
from calculator.runtime import CacheType
from calculator.units import check_int

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
DEFAULT_BLOCK_SIZE = 16
LARGE_GPU_BYTES = 70 * units.GiB
"""``get_batch_defaults``: "For GPUs like H100 and MI300x" (at least 70 GiB, and not an A100)."""


class KvCacheDtype(StrEnum):
    """``--kv-cache-dtype``."""

    AUTO = "auto"
    """The model's dtype (2 bytes; 4 for an fp32 model)."""
    FP8 = "fp8"
    """FP8 E4M3, 1 byte per value."""


def default_batching(total_bytes: int, gpu_name: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) ``vllm serve`` picks on this GPU."""
    if total_bytes >= LARGE_GPU_BYTES and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


@dataclass(frozen=True)
class VllmSettings:
    """``vllm serve`` flags (None: vLLM's default for this model and GPU)."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    """None: the model's own limit (``max_position_embeddings``)."""
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int | None = None
    """None: all GPUs divided by the pipeline stages."""
    pipeline_parallel_size: int = 1
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    block_size: int = DEFAULT_BLOCK_SIZE
    enforce_eager: bool = False
    cuda_graphs_in_budget: bool = False
    """``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1`` (default from vLLM 0.21): graphs inside the budget."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kv_cache_dtype", KvCacheDtype(str(self.kv_cache_dtype).lower()))
        except ValueError:
            raise ValueError(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not auto or fp8") from None
        u = self.gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 < u <= 1:
            raise ValueError(f"--gpu-memory-utilization {u!r} must be in (0, 1], e.g. 0.9")
        for label, value, example in (("--max-model-len", self.max_model_len, "8192"),
                                       ("--max-num-seqs", self.max_num_seqs, "256"),
                                       ("--max-num-batched-tokens", self.max_num_batched_tokens, "8192"),
                                       ("--tensor-parallel-size", self.tensor_parallel_size, "2")):
            if value is not None:
                check_int(label, value, example=example)
        check_int("--pipeline-parallel-size", self.pipeline_parallel_size, example="1")
        check_int("--block-size", self.block_size, example="16")
        for label in ("enforce_eager", "cuda_graphs_in_budget"):
            flag = getattr(self, label)
            if not isinstance(flag, bool):
                raise ValueError(f"{label} {flag!r} must be True or False")


@dataclass(frozen=True)
class VllmStartup:
    """One GPU of a vLLM start-up (the stage with the fewest KV blocks), bytes throughout."""

    gpu: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    total_memory_bytes: int
    total_memory_source: str
    requested_memory_bytes: int
    context_bytes: int
    """CUDA context (+ NCCL) before vLLM's snapshot: outside the budget."""
    weights_bytes_per_gpu: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    pool: KVPool
    layers: tuple[LayerKind, ...]
    refusal: str | None
    largest_max_model_len: int
    cuda_graphs_in_budget: bool
    warnings: tuple[str, ...]
    stage_bytes: tuple[tuple[int, int, int], ...] = ()
    """Per pipeline stage: (weights, peak activation, CUDA graphs) on each of its GPUs."""
    kv_dtype_bytes: int = 2

    @property
    def starts(self) -> bool:
        return self.refusal is None

    @property
    def kv_cache_bytes(self) -> int:
        return self.pool.kv_cache_bytes if self.starts else 0

    @property
    def max_concurrency(self) -> float:
        return self.pool.max_concurrency if self.starts else 0.0

    @property
    def used_bytes(self) -> int:
        """What the GPU holds once serving: context + requested share + CUDA graphs outside the budget."""
        graphs_outside = 0 if self.cuda_graphs_in_budget else self.cuda_graph_bytes
        return self.context_bytes + self.requested_memory_bytes + graphs_outside

    @property
    def available_kv_bytes(self) -> int:
        return self.pool.available_bytes

    def concurrency_at(self, context: int) -> float:
        """Requests of ``context`` tokens the same pool holds at once (0 where vLLM would refuse)."""
        check_int("context", context, example="8192 tokens")
        if context > self.largest_max_model_len:  # 0 when vLLM would not start at any length
            return 0.0
        mnbt = self.max_num_batched_tokens
        blocks = _vllm_kv.request_blocks(_vllm_kv.group_layers(self.layers).groups, context, mnbt,
                                         self.pool.block_size)
        return self.pool.num_blocks / blocks

    @property
    def verdict(self) -> str:
        if not self.starts:
            return f"vLLM would not start: {self.refusal}"
        return (f"serves {self.max_concurrency:.2f} concurrent requests of {self.max_model_len:,} tokens "
                f"({self.pool.tokens:,} tokens of KV cache per GPU)")

    def to_dict(self) -> dict:
        """The report ``--json`` puts at its top level: vLLM's log lines as numbers (bytes per GPU)."""
        return {
            "engine": "vllm", "starts": self.starts, "summary": self.verdict, "refusal": self.refusal,
            "tensor_parallel_size": self.tensor_parallel_size, "pipeline_parallel_size": self.pipeline_parallel_size,
            "max_model_len": self.max_model_len, "largest_max_model_len": self.largest_max_model_len,
            "max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization, "total_memory_bytes": self.total_memory_bytes,
            "requested_memory_bytes": self.requested_memory_bytes, "weights_bytes_per_gpu": self.weights_bytes_per_gpu,
            "activation_peak_bytes": self.activation_peak_bytes, "non_torch_bytes": self.non_torch_bytes,
            "cuda_graph_bytes": self.cuda_graph_bytes, "cuda_context_bytes": self.context_bytes,
            "available_kv_bytes": self.available_kv_bytes, "kv_cache_bytes": self.kv_cache_bytes,
            "kv_blocks": self.pool.num_blocks if self.starts else 0,
            "kv_tokens": self.pool.tokens if self.starts else 0,
            "block_size": self.pool.block_size, "kv_page_bytes": self.pool.page_bytes,
            "max_concurrency": round(self.max_concurrency, 2), "used_bytes_per_gpu": self.used_bytes,
        }


def kv_layers(spec: ModelSpec, tp: int, layers: range, dtype_bytes: int, block_size: int) -> tuple[LayerKind, ...]:
    """The attention layers of one pipeline stage as vLLM's KV specs (module docstring on windows)."""
    if spec.uses_mla:
        page = _vllm_kv.mla_page_bytes(block_size, spec.kv_lora_rank + spec.qk_rope_head_dim, dtype_bytes)
        return (LayerKind(AttentionKind.MLA, len(layers), page),)
    heads = _vllm_kv.kv_heads_per_rank(spec.n_kv_heads, tp)
    page = _vllm_kv.attention_page_bytes(block_size, heads, spec.head_dim, spec.v_head_dim or spec.head_dim,
                                         dtype_bytes)
    interleaved = spec.arch in ("gemma2", "gemma3_text") and spec.sliding_window
    kinds = spec.layer_types or ("full",) * spec.n_layers
    n_sliding = sum(1 for i in layers if interleaved and kinds[i] == "sliding")
    out = []
    if len(layers) - n_sliding:
        out.append(LayerKind(AttentionKind.FULL, len(layers) - n_sliding, page))
    if n_sliding:
        out.append(LayerKind(AttentionKind.SLIDING, n_sliding, page, spec.sliding_window))
    return tuple(out)


def _check_input(spec: ModelSpec, gpu: GpuSpec, tp: int, pp: int, max_model_len: int) -> None:
    if gpu.unified_memory or gpu.vendor.lower() == "apple":
        raise ValueError(f"vLLM needs a CUDA or ROCm GPU; {gpu.name} is Apple silicon: use --engine mlx or llama.cpp")
    if spec.n_heads % tp:
        raise ValueError(f"Total number of attention heads ({spec.n_heads}) must be divisible by tensor parallel "
                         f"size ({tp}).")
    if pp > spec.n_layers:
        raise ValueError(f"--pipeline-parallel-size {pp} is more than the model's {spec.n_layers} layers")
    if spec.max_context and max_model_len > spec.max_context:
        raise ValueError(
            f"User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
            f"(max_position_embeddings={spec.max_context} or model_max_length=None in model's config.json). "
            "This may lead to incorrect model outputs or CUDA errors. To allow overriding this maximum, set the "
            "env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
        )


def vllm_startup(spec: ModelSpec, fmt: str, gpu: GpuSpec, gpus: int = 1,
                 settings: VllmSettings | None = None) -> VllmStartup:
    """What ``vllm serve`` does with ``spec`` in ``fmt`` on ``gpus`` x ``gpu`` (module docstring)."""
    s = VllmSettings() if settings is None else settings
    check_int("--gpus", gpus, example="2")
    pp = s.pipeline_parallel_size
    tp = s.tensor_parallel_size or max(1, gpus // pp)
    if tp * pp != gpus:
        raise ValueError(f"--tensor-parallel-size {tp} x --pipeline-parallel-size {pp} = {tp * pp} GPUs, but "
                         f"--gpus is {gpus}; make them agree")
    max_model_len = s.max_model_len or spec.max_context
    if not max_model_len:
        raise ValueError(f"{spec.name} has no max_position_embeddings; give --max-model-len")
    _check_input(spec, gpu, tp, pp, max_model_len)
    warnings = []
    fallback = _vllm_memory.quantization_check(fmt, gpu.name, _cuda.compute_capability(gpu))
    if fallback:
        warnings.append(fallback)

    total, total_source = _cuda.cuda_total_bytes(gpu)
    mnbt_default, seqs_default = default_batching(total, gpu.name)
    mnbt = s.max_num_batched_tokens or mnbt_default
    seqs = s.max_num_seqs or seqs_default
    requested = int(total * s.gpu_memory_utilization)
    ctx = _vllm_memory.context_bytes(tp, pp)
    non_torch = _vllm_memory.non_torch_bytes(tp, pp)
    dtype_bytes = 1 if s.kv_cache_dtype is KvCacheDtype.FP8 else _vllm_memory.model_dtype_bytes(fmt)
    stage_weights = _vllm_memory.weights_per_stage(spec, fmt, tp, pp)
    counts = _vllm_memory.pp_layer_counts(spec.n_layers, pp)

    stages = []
    for i, (weights, count) in enumerate(zip(stage_weights, counts, strict=True)):
        start = sum(counts[:i])
        layers = kv_layers(spec, tp, range(start, start + count), dtype_bytes, s.block_size)
        act = _vllm_memory.activation_peak_bytes(spec, fmt, seqs, mnbt, last_stage=i == pp - 1)
        graphs = _vllm_memory.cuda_graph_bytes(count, s.enforce_eager)
        available = requested - weights - act - non_torch - (graphs if s.cuda_graphs_in_budget else 0)
        pool = _vllm_kv.kv_pool(available, layers, max_model_len=max_model_len, max_num_batched_tokens=mnbt,
                                block_size=s.block_size)
        stages.append((pool.num_blocks, i, weights, act, graphs, pool, layers))
    stage_bytes = tuple((st[2], st[3], st[4]) for st in stages)
    _, _, weights, act, graphs, pool, layers = min(stages, key=lambda st: (st[0], -st[1]))
    if pp > 1:  # every stage allocates the fewest blocks of any stage (unify_kv_cache_configs)
        pool = dataclasses.replace(pool, num_blocks=min(st[0] for st in stages))

    refusal = None
    if total - ctx < requested:
        refusal = (
            f"Free memory on device ({(total - ctx) / units.GiB:.2f}/{total / units.GiB:.2f} GiB) on startup is "
            f"less than desired GPU memory utilization ({s.gpu_memory_utilization}, {requested / units.GiB:.2f} "
            "GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
        )
    refusal = refusal or _vllm_kv.refusal(pool, layers, mnbt)
    largest = 0
    if pool.available_bytes > 0 and total - ctx >= requested:
        largest = _vllm_kv.estimate_max_model_len(pool.available_bytes, layers, max_model_len=max_model_len,
                                                  max_num_batched_tokens=mnbt, block_size=s.block_size)
    warnings += _vllm_memory.startup_warnings(spec, gpu, total, total_source, ctx, requested, graphs,
                                              s.cuda_graphs_in_budget, pool, seqs, mnbt)
    return VllmStartup(
        gpu=gpu.name, tensor_parallel_size=tp, pipeline_parallel_size=pp, max_model_len=max_model_len,
        max_num_seqs=seqs, max_num_batched_tokens=mnbt, gpu_memory_utilization=s.gpu_memory_utilization,
        total_memory_bytes=total, total_memory_source=total_source, requested_memory_bytes=requested,
        context_bytes=ctx, weights_bytes_per_gpu=weights, activation_peak_bytes=act, non_torch_bytes=non_torch,
        cuda_graph_bytes=graphs, pool=pool, layers=layers, refusal=refusal, largest_max_model_len=largest,
        cuda_graphs_in_budget=s.cuda_graphs_in_budget, warnings=tuple(warnings), stage_bytes=stage_bytes,
        kv_dtype_bytes=dtype_bytes,
    )


class Vllm(Engine):
    """``--engine vllm``: ``context`` is ``--max-model-len`` (unless the settings give one), ``batch`` the
    requests served at once. Fits: vLLM starts and its pool holds ``batch`` requests of ``context`` tokens
    (with the default ``batch`` 1: vLLM starts)."""

    name = "vllm"
    title = "vLLM (V1, 0.19): paged KV pool, concurrency, CUDA graphs"
    sources = ("vllm-project/vllm vllm/v1/worker/gpu_worker.py, vllm/v1/core/kv_cache_utils.py @ "
               "bbf906a88ba1a39104884c88c9811a4f968e4659, vllm/v1/kv_cache_interface.py @ "
               "bc8282e61df21719b12b391c3a976b1c900dfbb4; llm-d-incubation/llm-d-planner@"
               "d3121e059da88662db39a926a3ead964be97359b v0.19.0 logs",)
    options_type = VllmSettings

    def startup(self, spec, fmt, setup, context, o) -> VllmStartup:
        s: VllmSettings = self.options(o.engine_options)
        if not setup.homogeneous:
            raise ValueError("vLLM's tensor-parallel ranks are identical: give one --gpu with --gpus N")
        return vllm_startup(spec, fmt, setup.gpu, setup.count, replace(s, max_model_len=s.max_model_len or context))

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        try:
            r = self.startup(spec, fmt, setup, context, o)
        except ValueError as err:
            if not any(word in str(err) for word in _serving.REFUSALS):
                raise
            return _serving.refused_layout(self.name, spec, setup, context, batch, str(err))
        tp = r.tensor_parallel_size
        counts = _vllm_memory.pp_layer_counts(spec.n_layers, r.pipeline_parallel_size)
        devices = tuple(
            DeviceMemory(name=f"cuda:{i}", device=setup.gpu.name, weights_bytes=w, kv_cache_bytes=r.kv_cache_bytes,
                         compute_bytes=act, output_bytes=0, usable_bytes=r.total_memory_bytes,
                         context_bytes=r.context_bytes + r.non_torch_bytes + graphs,
                         layers=counts[i // tp], holds_output=i // tp == len(counts) - 1)
            for i, (w, act, graphs) in enumerate(r.stage_bytes[i // tp] for i in range(setup.count))
        )
        layer_devices = tuple(stage * tp for stage, n in enumerate(counts) for _ in range(n))
        notes = list(r.warnings)
        why = r.refusal or ""
        if r.starts and batch > r.max_concurrency:
            why = (f"vLLM starts but holds {r.max_concurrency:.2f} requests of {r.max_model_len:,} tokens at once, "
                   f"not {batch}: the others queue (or are preempted)")
        settings = (("tensor_parallel_size", tp), ("pipeline_parallel_size", r.pipeline_parallel_size),
                    ("max_model_len", r.max_model_len), ("max_num_seqs", r.max_num_seqs),
                    ("max_num_batched_tokens", r.max_num_batched_tokens),
                    ("gpu_memory_utilization", r.gpu_memory_utilization), ("block_size", r.pool.block_size))
        return _serving.serving_layout(
            self.name, spec, setup, devices=devices, verdict=Verdict.DOES_NOT_FIT if why else Verdict.FITS, why=why,
            kv_tokens=r.pool.tokens if r.starts else 0, kv_type=_kv_type(r), context=context, batch=batch,
            compute_bytes=r.activation_peak_bytes, step_tokens=r.max_num_batched_tokens, layer_devices=layer_devices,
            settings=settings, notes=tuple(notes), report=r.to_dict(),
        )

    def speed(self, spec, wf, setup, lay, context, batch, o):
        return _serving.tensor_parallel_speed(spec, wf, setup, context, batch, lay.kv.cache_type, o)

    def quantized_kv(self, o):
        s: VllmSettings = self.options(o.engine_options)
        if s.kv_cache_dtype is KvCacheDtype.FP8:
            return ()
        return (("--kv-cache-dtype fp8", replace(o, engine_options=replace(s, kv_cache_dtype=KvCacheDtype.FP8))),)


def _kv_type(r: VllmStartup) -> CacheType:
    return {1: CacheType.FP8, 4: CacheType.FP32}.get(r.kv_dtype_bytes, CacheType.FP16)
