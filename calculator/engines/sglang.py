"""SGLang: the token pool ``--mem-fraction-static`` leaves for the KV cache, and how many requests it holds.

SGLang does not profile a forward pass as vLLM does: it reserves a flat share of the GPU for
activations and CUDA graphs and gives the rest, after the weights, to the KV pool
(``python/sglang/srt/model_executor/model_runner_kv_cache_mixin.py`` @
226149ac457bd1a1b5d450f55c01f72f604320d6, ``profile_max_num_token``)::

    rest_bytes = free_after_weights - free_before_weights x (1 - mem_fraction_static)
    max_total_num_tokens = rest_bytes // cell_size        (rounded down to page_size, min --max-total-tokens)
    cell_size = kv_heads_per_rank x (head_dim + v_head_dim) x layers x kv_bytes    (MHA/GQA)
              = (kv_lora_rank + qk_rope_head_dim) x layers x kv_bytes              (MLA: one latent per token)

refused with "Not enough memory. Please try to increase --mem-fraction-static." when nothing is left.
``free_before_weights`` is measured after CUDA and NCCL start ("Init torch distributed ends. mem
usage=1.77 GB" per rank at TP 8, sgl-project/sglang PR #11716), so it is the card's total minus that.
The request-slot pool is ``min(max(int(tokens / context_len x 512), 2048), 4096)`` (same file; the
PR #14071 log line "req_to_token_pool: slots=4096 (heuristic=52268, clamp=[2048,4096]...").

The default ``--mem-fraction-static`` (sgl-project/sglang PR #10975, "General heuristics for
--mem-fraction-static", late 2025): by GPU memory, a chunked-prefill size and CUDA-graph batch
(< 35 GB: 2048 / 24, 80 at TP >= 4; < 60 GB: 4096 / 32, 160; < 160 GB: 8192 / 256, 512; larger
16384 / 512), then ``reserved = 512 + max(chunk, 2048) x 1.5 + graph_bs x 2 + tp x pp / 8 x 1024`` MB
(at least 10 GB on cards over 60 GB) and ``mem_fraction_static = round((gpu_mb - reserved) / gpu_mb, 3)``.
A context above the model's positions is refused unless ``SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1``
(the variable launch scripts set for that, e.g. code-search index id 52867064309). SGLang's "GB" in its
logs is GiB (``torch.cuda.mem_get_info() / (1 << 30)``). Weights are sharded as in
vLLM (SGLang's parallel layers are vLLM's: ``calculator.engines._vllm_memory``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from calculator import units
from calculator.engines import _cuda, _serving, _vllm_memory
from calculator.engines._vllm_kv import kv_heads_per_rank
from calculator.engines.base import DeviceMemory, Engine, Layout
from calculator.hardware import GpuSpec
from calculator.models import ModelSpec
from calculator.placement import Verdict
from calculator.runtime import CacheType
from calculator.units import check_int

INIT_BYTES_SINGLE = _vllm_memory.CONTEXT_BYTES_SINGLE
"""CUDA context before the weights, one GPU (0.51 GiB on an H100, as vLLM's logs show)."""
INIT_BYTES_PARALLEL = round(1.96 * units.GiB)
"""Per rank with NCCL: PR #11716 logs 1.77-1.96 GB at TP 8; the largest is kept."""


def default_mem_fraction_static(gpu_memory_bytes: int, tp: int = 1, pp: int = 1) -> float:
    """SGLang's late-2025 default (module docstring): an H100 (81,559 MiB) at TP 1 gets 0.835."""
    mb = gpu_memory_bytes / units.MiB
    if mb < 35 * 1024:
        chunk, graph_bs = 2048, (24 if tp < 4 else 80)
    elif mb < 60 * 1024:
        chunk, graph_bs = 4096, (32 if tp < 4 else 160)
    elif mb < 160 * 1024:
        chunk, graph_bs = 8192, (256 if tp < 4 else 512)
    else:
        chunk, graph_bs = 16384, 512
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + tp * pp / 8 * 1024
    if mb > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mb - reserved) / mb, 3)


def cell_size_bytes(spec: ModelSpec, tp: int, kv_bytes: int = 2) -> int:
    """KV bytes of one token over all layers on one rank: Qwen3-235B-A22B at TP 4 (94 layers, 1 of 4 KV heads
    x 128) = 1 x 256 x 94 x 2 = 48,128 bytes."""
    if spec.uses_mla:
        return (spec.kv_lora_rank + spec.qk_rope_head_dim) * spec.n_layers * kv_bytes
    v_dim = spec.v_head_dim or spec.head_dim
    return kv_heads_per_rank(spec.n_kv_heads, tp) * (spec.head_dim + v_dim) * spec.n_layers * kv_bytes


def max_num_reqs(max_total_num_tokens: int, context_len: int) -> int:
    """Request slots: 16,725,761 tokens at 163,840 context -> heuristic 52,268 -> clamped to 4096."""
    return min(max(int(max_total_num_tokens / context_len * 512), 2048), 4096)


@dataclass(frozen=True)
class SglangSettings:
    """``python -m sglang.launch_server`` flags (None: SGLang's default)."""

    mem_fraction_static: float | None = None
    context_length: int | None = None
    """None: the model's ``max_position_embeddings``."""
    kv_cache_dtype: str = "auto"
    """``auto`` (the model dtype, 2 bytes) or ``fp8_e4m3`` / ``fp8_e5m2`` (1 byte)."""
    page_size: int = 1
    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        f = self.mem_fraction_static
        if f is not None and (isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1):
            raise ValueError(f"--mem-fraction-static {f!r} must be in (0, 1), e.g. 0.88")
        if self.kv_cache_dtype not in ("auto", "fp8_e4m3", "fp8_e5m2"):
            raise ValueError(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not auto, fp8_e4m3 or fp8_e5m2")
        for label, value in (("--context-length", self.context_length), ("--max-total-tokens", self.max_total_tokens)):
            if value is not None:
                check_int(label, value, example="32768")
        check_int("--page-size", self.page_size, example="1")


@dataclass(frozen=True)
class SglangStartup:
    """One rank of an SGLang start-up, in bytes, as its log prints it."""

    gpu: str
    tp: int
    context_len: int
    mem_fraction_static: float
    total_memory_bytes: int
    free_before_weights_bytes: int
    weights_bytes_per_gpu: int
    reserved_bytes: int
    """``free_before_weights x (1 - mem_fraction_static)``: activations, CUDA graphs, everything not KV."""
    cell_size_bytes: int
    max_total_num_tokens: int
    max_num_reqs: int
    refusal: str | None
    minimum_mem_fraction_static: float
    """The smallest fraction that leaves any KV pool after the weights."""

    @property
    def starts(self) -> bool:
        return self.refusal is None

    @property
    def kv_cache_bytes(self) -> int:
        """K and V buffers together ("KV Cache is allocated. #tokens: N, K size: X GB, V size: X GB")."""
        return self.max_total_num_tokens * self.cell_size_bytes

    @property
    def max_concurrency(self) -> float:
        """Requests of ``context_len`` tokens the pool holds at once."""
        return self.max_total_num_tokens / self.context_len

    def concurrency_at(self, context: int) -> float:
        check_int("context", context, example="8192 tokens")
        return self.max_total_num_tokens / context if context <= self.context_len else 0.0

    @property
    def verdict(self) -> str:
        if not self.starts:
            return f"SGLang would not start: {self.refusal}"
        return (f"serves {self.max_concurrency:.2f} concurrent requests of {self.context_len:,} tokens "
                f"({self.max_total_num_tokens:,} tokens in the pool per GPU)")

    def to_dict(self) -> dict:
        return {
            "engine": "sglang", "starts": self.starts, "summary": self.verdict, "refusal": self.refusal,
            "tp": self.tp, "context_len": self.context_len, "mem_fraction_static": self.mem_fraction_static,
            "minimum_mem_fraction_static": self.minimum_mem_fraction_static,
            "total_memory_bytes": self.total_memory_bytes, "weights_bytes_per_gpu": self.weights_bytes_per_gpu,
            "reserved_bytes": self.reserved_bytes, "kv_cache_bytes": self.kv_cache_bytes if self.starts else 0,
            "kv_tokens": self.max_total_num_tokens, "cell_size_bytes": self.cell_size_bytes,
            "max_num_reqs": self.max_num_reqs, "max_concurrency": round(self.max_concurrency, 2),
        }


def pool_tokens(free_before: int, free_after: int, mem_fraction_static: float, cell_size: int,
                page_size: int = 1, max_total_tokens: int | None = None) -> int:
    """``profile_max_num_token`` from the two free-memory readings (module docstring); <= 0 means refused."""
    rest = free_after - int(free_before * (1 - mem_fraction_static))
    tokens = rest // cell_size // page_size * page_size
    return min(tokens, max_total_tokens) if max_total_tokens else tokens


def sglang_startup(spec: ModelSpec, fmt: str, gpu: GpuSpec, gpus: int = 1,
                   settings: SglangSettings | None = None) -> SglangStartup:
    """What ``sglang.launch_server --tp gpus`` does with ``spec`` in ``fmt`` (module docstring)."""
    s = SglangSettings() if settings is None else settings
    check_int("--tp", gpus, example="2")
    if gpu.unified_memory or gpu.vendor.lower() == "apple":
        raise ValueError(f"SGLang needs a CUDA or ROCm GPU; {gpu.name} is Apple silicon: use --engine mlx or llama.cpp")
    if spec.n_heads % gpus:
        raise ValueError(f"{spec.n_heads} attention heads do not split over --tp {gpus}; pick a divisor")
    context_len = s.context_length or spec.max_context
    if not context_len:
        raise ValueError(f"{spec.name} has no max_position_embeddings; give --context-length")
    if spec.max_context and context_len > spec.max_context:
        raise ValueError(
            f"--context-length {context_len} is above {spec.name}'s {spec.max_context} positions; SGLang refuses it "
            "unless SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 is set"
        )
    _vllm_memory.quantization_check(fmt, gpu.name, _cuda.compute_capability(gpu))
    total, _ = _cuda.cuda_total_bytes(gpu)
    fraction = s.mem_fraction_static or default_mem_fraction_static(total, gpus)
    free_before = total - (INIT_BYTES_PARALLEL if gpus > 1 else INIT_BYTES_SINGLE)
    (weights,) = _vllm_memory.weights_per_stage(spec, fmt, gpus, 1)
    kv_bytes = 1 if s.kv_cache_dtype.startswith("fp8") else _vllm_memory.model_dtype_bytes(fmt)
    cell = cell_size_bytes(spec, gpus, kv_bytes)
    tokens = pool_tokens(free_before, free_before - weights, fraction, cell, s.page_size, s.max_total_tokens)
    refusal = None
    if tokens <= 0:
        refusal = f"Not enough memory. Please try to increase --mem-fraction-static. Current value: {fraction}"
    return SglangStartup(
        gpu=gpu.name, tp=gpus, context_len=context_len, mem_fraction_static=fraction, total_memory_bytes=total,
        free_before_weights_bytes=free_before, weights_bytes_per_gpu=weights,
        reserved_bytes=int(free_before * (1 - fraction)), cell_size_bytes=cell,
        max_total_num_tokens=max(tokens, 0), max_num_reqs=max_num_reqs(max(tokens, 0), context_len),
        refusal=refusal, minimum_mem_fraction_static=round(weights / free_before, 4),
    )


class Sglang(Engine):
    """``--engine sglang``: ``context`` is ``--context-length`` (unless the settings give one), ``--gpus`` the
    ``--tp``, ``batch`` the requests served at once. Fits: SGLang starts and its pool holds ``batch`` requests of
    ``context`` tokens."""

    name = "sglang"
    title = "SGLang: token pool from --mem-fraction-static"
    sources = ("sgl-project/sglang python/sglang/srt/model_executor/model_runner_kv_cache_mixin.py @ "
               "226149ac457bd1a1b5d450f55c01f72f604320d6; PR #10975 (default --mem-fraction-static)",)
    options_type = SglangSettings

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        s: SglangSettings = self.options(o.engine_options)
        if not setup.homogeneous:
            raise ValueError("SGLang's tensor-parallel ranks are identical: give one --gpu with --gpus N")
        try:
            s = replace(s, context_length=s.context_length or context)
            r = sglang_startup(spec, fmt, setup.gpu, setup.count, s)
        except ValueError as err:
            if not any(word in str(err) for word in _serving.REFUSALS):
                raise
            return _serving.refused_layout(self.name, spec, setup, context, batch, str(err))
        init = r.total_memory_bytes - r.free_before_weights_bytes
        devices = tuple(
            DeviceMemory(name=f"cuda:{i}", device=setup.gpu.name, weights_bytes=r.weights_bytes_per_gpu,
                         kv_cache_bytes=r.kv_cache_bytes if r.starts else 0, compute_bytes=r.reserved_bytes,
                         output_bytes=0, context_bytes=init, usable_bytes=r.total_memory_bytes, layers=spec.n_layers,
                         holds_output=True)
            for i in range(setup.count)
        )
        why = r.refusal or ""
        if r.starts and batch > r.max_concurrency:
            why = (f"SGLang starts but its pool holds {r.max_concurrency:.2f} requests of {r.context_len:,} tokens, "
                   f"not {batch}")
        kv_type = CacheType.FP8 if s.kv_cache_dtype.startswith("fp8") else CacheType.FP16
        return _serving.serving_layout(
            self.name, spec, setup, devices=devices, verdict=Verdict.DOES_NOT_FIT if why else Verdict.FITS,
            why=why, kv_tokens=r.max_total_num_tokens, kv_type=kv_type, context=context, batch=batch,
            compute_bytes=r.reserved_bytes, step_tokens=0, layer_devices=(0,) * spec.n_layers,
            settings=(("tp", r.tp), ("context_length", r.context_len), ("mem_fraction_static", r.mem_fraction_static),
                      ("max_total_num_tokens", r.max_total_num_tokens), ("max_num_reqs", r.max_num_reqs)),
            notes=(), report=r.to_dict(),
        )

    def speed(self, spec, wf, setup, lay, context, batch, o):
        return _serving.tensor_parallel_speed(spec, wf, setup, context, batch, lay.kv.cache_type, o)
