"""Inference memory beyond the weights: the KV cache and the runtime's own overhead, in bytes.

KV cache (per sequence, per layer, per token: one K row and one V row)::

    bytes = sum over layers of  tokens(layer) x batch x (row_bytes(K) + row_bytes(V))

with ``row_bytes(x) = cache_format.tensor_bytes((1, n_kv_heads * head_dim))``, the rows llama.cpp
stores (``llama-kv-cache.cpp``: one ``[n_embd_k_gqa, kv_size]`` tensor per layer; quantized caches
block along ``n_embd_k_gqa``). For fp16 this is the familiar ``2 x layers x kv_heads x head_dim x
context x batch x 2``: Llama-3.1-8B at 8192 tokens = 1,073,741,824 bytes (llama.cpp logs "KV self size
= 1024.00 MiB" for it). The terms the rule of thumb misses:

- GQA/MQA: ``n_kv_heads`` < ``n_heads`` (Ainslie et al. 2023, arXiv 2305.13245); ``head_dim`` as the
  config sets it (Gemma-2-9B: 256, although hidden 3584 / 16 heads = 224).
- Sliding-window layers (Mistral v0.1; Gemma 2 alternating; Gemma 3 five local : one global) keep only
  ``min(context, window)`` tokens, as transformers' static sliding-window cache allocates (its dynamic
  cache keeps ``window - 1``, one token less per sliding layer: measured in
  ``tests/evaluation/test_measured_memory.py``). Engines differ: llama.cpp gives only some
  architectures a sliding-window cache, sized from the window, the slots and ``n_ubatch``, and MLX-LM
  others; ``kv_cache_cells`` takes the cell counts an engine decides (``calculator.engines``).
- MLA (DeepSeek-V2/V3, arXiv 2405.04434 §2.1): one compressed latent of ``kv_lora_rank`` plus the
  decoupled RoPE key of ``qk_rope_head_dim`` per token per layer, no separate V (llama.cpp PR #12801
  caches exactly these 512 + 64 values and views V into them).
- Cache types: fp32/fp16/bf16/fp8 per element; llama.cpp's quantized caches (q8_0, q4_0, ...) take
  their block layout (scales included) from the format table: q8_0 = 34 bytes per 32 values.

Runtime overhead: three named, documented defaults, each changeable (no hidden x1.2 factor):

- ``cuda_context_bytes`` (512 MiB per device): CUDA context, kernels and library workspaces.
  Measured: 287,047,680 bytes with lazy module loading (pytorch/pytorch PR #86509), 426 MiB on an RTX
  6000 Ada with PyTorch 2.10 + CUDA 13 (unslothai/unsloth-zoo PR #1053); 512 MiB covers both plus
  cuBLAS workspaces.
- ``compute_buffer_bytes``: llama.cpp's graph scratch for one micro-batch of ``ubatch`` tokens
  (default 512 = llama.cpp ``n_ubatch``), the peak over three stages (4-byte activations):

  * output: ``T x (vocab + hidden) x 4`` -- the logits of every token in the micro-batch, as
    llama.cpp reserves for the worst case ``n_outputs = n_tokens``;
  * attention: ``T x n_heads x n_kv x 4`` (the KQ scores, only without flash attention) +
    ``T x n_kv x 4`` (the mask; 2 bytes under flash attention) + ``4 x T x hidden x 4``;
  * FFN: ``T x (2 x ffn + hidden) x 4`` (gate and up outputs alive together).

  Checked against llama.cpp start-up logs (``n_ubatch`` 512, no flash attention), byte for byte:
  Llama-3-8B 258.50 MiB at ``n_ctx`` 512 and 560.00 MiB at 8192; Llama-2-7B 70.50 MiB at 512;
  Mistral-7B 164.00 MiB at 2048 and 2144.00 MiB at 32768 (fedora-copr/logdetective PR #106); see
  tests/calculator/test_runtime.py. With ``ubatch=None`` the whole prompt is one step -- the
  transformers way -- and the logits term becomes ``context x vocab x 4``.
- ``extra_bytes``: anything else the user wants to reserve (``--overhead-gib``), default 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

from calculator import units
from calculator.formats import get_format
from calculator.models import ModelSpec

DEFAULT_CUDA_CONTEXT_BYTES = 512 * units.MiB
"""Per-device CUDA context + workspaces (see module docstring for the measurements)."""

DEFAULT_UBATCH = 512
"""llama.cpp's default physical batch (``n_ubatch``, common/common.h): prompt tokens per forward step."""

LOGIT_BYTES = 4
"""Logits are fp32: llama.cpp's output buffer is float, and transformers' loss calls ``logits.float()``
(transformers loss/loss_utils.py ForCausalLMLoss)."""

ACTIVATION_BYTES = 4
"""llama.cpp keeps graph activations in f32 (ggml's default activation type)."""


class CacheType(StrEnum):
    """Element type of the KV cache (llama.cpp ``--cache-type-k/-v``; transformers ``cache_dtype``)."""

    FP32 = "fp32"
    """4 bytes per value."""
    FP16 = "fp16"
    """2 bytes per value; the default of llama.cpp and most runtimes."""
    BF16 = "bf16"
    """2 bytes per value."""
    FP8 = "fp8"
    """1 byte per value (vLLM ``kv_cache_dtype=fp8``, E4M3); per-tensor scales not counted."""
    Q8_0 = "q8_0"
    """llama.cpp Q8_0 blocks: 32 int8 + one fp16 scale = 34 bytes per 32 values."""
    Q5_1 = "q5_1"
    """llama.cpp Q5_1 blocks: 24 bytes per 32 values."""
    Q5_0 = "q5_0"
    """llama.cpp Q5_0 blocks: 22 bytes per 32 values."""
    Q4_1 = "q4_1"
    """llama.cpp Q4_1 blocks: 20 bytes per 32 values."""
    Q4_0 = "q4_0"
    """llama.cpp Q4_0 blocks: 16 nibbles + one fp16 scale = 18 bytes per 32 values."""
    IQ4_NL = "iq4_nl"
    """llama.cpp IQ4_NL blocks: 18 bytes per 32 values (non-linear 4-bit grid)."""
    MLX_Q8 = "mlx_q8"
    """MLX-LM ``--kv-bits 8`` (``QuantizedKVCache``, group 64): 64 codes + a 16-bit scale and bias = 68 bytes."""
    MLX_Q4 = "mlx_q4"
    """MLX-LM ``--kv-bits 4``: 32 bytes of codes + a 16-bit scale and bias per 64 values = 36 bytes."""

    @property
    def format_name(self) -> str:
        """The entry of ``calculator.formats`` that holds this type's layout."""
        return _CACHE_FORMATS[self]


_CACHE_FORMATS = {
    CacheType.FP32: "fp32", CacheType.FP16: "fp16", CacheType.BF16: "bf16", CacheType.FP8: "fp8_e4m3",
    CacheType.Q8_0: "Q8_0", CacheType.Q5_1: "Q5_1", CacheType.Q5_0: "Q5_0", CacheType.Q4_1: "Q4_1",
    CacheType.Q4_0: "Q4_0", CacheType.IQ4_NL: "IQ4_NL", CacheType.MLX_Q8: "int8-g64-asym",
    CacheType.MLX_Q4: "int4-g64-asym",
}  # fmt: skip
assert set(_CACHE_FORMATS) == set(CacheType) and all(get_format(f) for f in _CACHE_FORMATS.values())

_CACHE_ALIASES = {
    "f32": "fp32",
    "float32": "fp32",
    "f16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp8_e4m3": "fp8",
    "q8": "q8_0",
    "q4": "q4_0",
}


def parse_cache_type(value: str | CacheType) -> CacheType:
    """``"f16"``, ``"Q8_0"``, ``CacheType.FP8`` ... -> CacheType; ValueError listing the choices."""
    if isinstance(value, CacheType):
        return value
    key = str(value).strip().lower()
    key = _CACHE_ALIASES.get(key, key)
    try:
        return CacheType(key)
    except ValueError:
        raise ValueError(
            f"KV cache type {value!r} is not known; choose one of {', '.join(c.value for c in CacheType)}"
        ) from None


# KV cache


@dataclass(frozen=True)
class _KVLayout:
    """Per-token cache bytes of one layer of each kind, for one cache type (computed once per model)."""

    row_bytes: int
    """K + V bytes per token per layer (MLA: the latent + RoPE key)."""
    kinds: tuple[str, ...]
    """Per layer: "full" or "sliding"."""
    n_sliding: int
    window: int | None
    mla: bool


@functools.lru_cache(maxsize=4096)
def kv_row_bytes(spec: ModelSpec, type_k: CacheType, type_v: CacheType | None = None) -> int:
    """K + V bytes one cached token costs in one layer (``type_v`` None: the same as ``type_k``).

    llama.cpp sizes K and V separately (``-ctk``/``-ctv``: one ``[n_embd_k_gqa, kv_size]`` tensor each,
    quantized types blocking along the row). MLA (DeepSeek) caches the latent + RoPE key only; V is a view
    into it (llama.cpp PR #12801), so ``type_v`` does not apply.
    """
    if not spec.n_layers:
        raise ValueError(
            f"model {spec.name!r} has no layer facts (a bare parameter count?); the KV cache needs a config"
        )
    type_v = type_k if type_v is None else type_v

    def row(cache_type: CacheType, length: int) -> int:
        fmt = get_format(cache_type.format_name)
        try:
            return fmt.tensor_bytes((1, length))
        except ValueError:
            raise ValueError(
                f"KV cache type {cache_type.value} stores blocks of {fmt.block_size} values, but a "
                f"{spec.name} cache row has {length} values; pick fp16, bf16 or fp8"
            ) from None

    if spec.kv_lora_rank:
        return row(type_k, spec.kv_lora_rank + spec.qk_rope_head_dim)
    v_dim = spec.v_head_dim or spec.head_dim
    return row(type_k, spec.n_kv_heads * spec.head_dim) + row(type_v, spec.n_kv_heads * v_dim)


@functools.lru_cache(maxsize=4096)
def _layout(spec: ModelSpec, cache_type: CacheType) -> _KVLayout:
    per_token = kv_row_bytes(spec, cache_type)
    if spec.kv_lora_rank:
        return _KVLayout(per_token, ("full",) * spec.n_layers, 0, None, True)
    kinds = spec.layer_types or ("full",) * spec.n_layers
    if len(kinds) != spec.n_layers:
        raise ValueError(f"{spec.name}: {len(kinds)} layer types for {spec.n_layers} layers")
    n_sliding = kinds.count("sliding")
    return _KVLayout(per_token, tuple(kinds), n_sliding, spec.sliding_window if n_sliding else None, False)


@dataclass(frozen=True)
class KVCache:
    """KV cache bytes of one model at one context and batch, split by layer kind."""

    cache_type: CacheType
    context: int
    batch: int
    full_layers: int
    sliding_layers: int
    sliding_window: int | None
    mla: bool
    bytes_per_token_full: int
    """Cache bytes one token adds to all full-attention (or MLA) layers together, one sequence."""
    full_layer_bytes: int
    """Bytes of one full-attention layer's cache."""
    sliding_layer_bytes: int
    """Bytes of one sliding-window layer's cache."""
    kinds: tuple[str, ...] = field(repr=False, default=())
    cache_type_v: CacheType | None = None
    """V cache type when it differs from K (llama.cpp ``-ctv``); None: the same as ``cache_type``."""
    full_cells: int = 0
    """Cells of one full-attention layer over all sequences, as the engine allocates them (0: context x batch)."""
    sliding_cells: int = 0
    """Cells of one sliding-window layer over all sequences, as the engine allocates them (0: not given)."""

    @property
    def full_attention_bytes(self) -> int:
        return self.full_layer_bytes * self.full_layers

    @property
    def sliding_window_bytes(self) -> int:
        return self.sliding_layer_bytes * self.sliding_layers

    @property
    def total_bytes(self) -> int:
        return self.full_attention_bytes + self.sliding_window_bytes

    @functools.cached_property
    def layer_bytes(self) -> tuple[int, ...]:
        """Per layer, in layer order (what moves with a layer when llama.cpp offloads it)."""
        return tuple(
            self.sliding_layer_bytes if k == "sliding" else self.full_layer_bytes for k in self.kinds
        )

    def to_dict(self) -> dict:
        return {
            "kv_cache_bytes": self.total_bytes,
            "cache_type": self.cache_type.value,
            "context": self.context,
            "batch": self.batch,
            "full_layers": self.full_layers,
            "sliding_layers": self.sliding_layers,
            "sliding_window": self.sliding_window,
            "mla": self.mla,
            "full_attention_bytes": self.full_attention_bytes,
            "sliding_window_bytes": self.sliding_window_bytes,
            "cache_type_v": (self.cache_type_v or self.cache_type).value,
            "full_cells": self.full_cells or self.context * self.batch,
            "sliding_cells": self.sliding_cells,
        }


def kv_cache_cells(
    spec: ModelSpec,
    *,
    kinds: tuple[str, ...],
    full_cells: int,
    sliding_cells: int,
    type_k: CacheType = CacheType.FP16,
    type_v: CacheType | None = None,
    context: int,
    batch: int,
) -> KVCache:
    """A KV cache whose cell counts an engine decided (padding, sliding-window cache size, streams).

    ``kinds[i]`` says which cache layer ``i`` lives in ("full" or "sliding"): an engine's own rule, which
    can differ from the config's (llama.cpp gives Mistral-7B-v0.1 and Phi-3 a full cache in every layer).
    ``context`` and ``batch`` are what the user asked for, kept for the record.
    """
    if len(kinds) != spec.n_layers:
        raise ValueError(f"{spec.name}: {len(kinds)} layer kinds for {spec.n_layers} layers")
    row = kv_row_bytes(spec, type_k, type_v)
    n_sliding = kinds.count("sliding")
    n_full = len(kinds) - n_sliding
    return KVCache(
        cache_type=type_k,
        context=context,
        batch=batch,
        full_layers=n_full,
        sliding_layers=n_sliding,
        sliding_window=spec.sliding_window if n_sliding else None,
        mla=bool(spec.kv_lora_rank),
        bytes_per_token_full=row * n_full,
        full_layer_bytes=row * full_cells,
        sliding_layer_bytes=row * sliding_cells if n_sliding else 0,
        kinds=tuple(kinds),
        cache_type_v=None if type_v in (None, type_k) else type_v,
        full_cells=full_cells,
        sliding_cells=sliding_cells if n_sliding else 0,
    )


def kv_cache_bytes(
    spec: ModelSpec, context: int, batch: int = 1, cache_type: str | CacheType = CacheType.FP16
) -> int:
    """``kv_cache(...).total_bytes`` without the breakdown (for searches that call it many times)."""
    lay = _layout(spec, parse_cache_type(cache_type))
    sliding_tokens = min(context, lay.window) if lay.window else context
    n_full = len(lay.kinds) - lay.n_sliding
    return lay.row_bytes * batch * (n_full * context + lay.n_sliding * sliding_tokens)


def kv_cache(
    spec: ModelSpec, context: int, batch: int = 1, cache_type: str | CacheType = CacheType.FP16
) -> KVCache:
    """KV cache of ``batch`` sequences of ``context`` tokens each (see module docstring for the formula).

    Golden: Llama-3.1-8B (32 layers, 8 KV heads, head_dim 128), 8192 tokens, batch 1, fp16 =
    2 x 32 x 8 x 128 x 8192 x 1 x 2 = 1,073,741,824 bytes.
    """
    units.check_int("context", context, example="8192 tokens")
    units.check_int("batch", batch, example="1 sequence")
    ct = parse_cache_type(cache_type)
    lay = _layout(spec, ct)
    sliding_tokens = min(context, lay.window) if lay.window else context
    n_full = len(lay.kinds) - lay.n_sliding
    return KVCache(
        cache_type=ct,
        context=context,
        batch=batch,
        full_layers=n_full,
        sliding_layers=lay.n_sliding,
        sliding_window=lay.window,
        mla=lay.mla,
        bytes_per_token_full=lay.row_bytes * n_full,
        full_layer_bytes=lay.row_bytes * context * batch,
        sliding_layer_bytes=lay.row_bytes * sliding_tokens * batch,
        kinds=lay.kinds,
    )


# Runtime overhead


@dataclass(frozen=True)
class Overhead:
    """Per-device runtime memory besides weights and KV cache, each term named."""

    cuda_context_bytes: int
    compute_buffer_bytes: int
    """Peak of the three stages below (they reuse one buffer, so they do not add up)."""
    logits_bytes: int
    """Output stage: micro-batch tokens x vocab x 4 (+ one hidden row per token)."""
    attention_bytes: int
    """Attention stage scratch (KQ scores without flash attention, mask, Q/K/V rows)."""
    ffn_bytes: int
    """FFN stage scratch (gate and up outputs)."""
    extra_bytes: int
    """User-reserved bytes (``--overhead-gib``)."""
    step_tokens: int
    """Tokens per forward step (the micro-batch)."""
    flash_attention: bool

    @property
    def total_bytes(self) -> int:
        return self.cuda_context_bytes + self.compute_buffer_bytes + self.extra_bytes

    def to_dict(self) -> dict:
        return {
            "overhead_bytes": self.total_bytes,
            "cuda_context_bytes": self.cuda_context_bytes,
            "compute_buffer_bytes": self.compute_buffer_bytes,
            "logits_bytes": self.logits_bytes,
            "attention_scratch_bytes": self.attention_bytes,
            "ffn_scratch_bytes": self.ffn_bytes,
            "extra_overhead_bytes": self.extra_bytes,
            "step_tokens": self.step_tokens,
            "flash_attention": self.flash_attention,
        }


@functools.lru_cache(maxsize=4096)
def _ffn_width(spec: ModelSpec) -> int:
    """Width of the FFN activations of one token: dense intermediate, or the routed + shared experts."""
    if spec.n_experts:
        shared = sum(t.shape[0] for t in spec.tensors if t.layer is not None and t.role == "ffn_up_shexp")
        shared //= max(1, len({t.layer for t in spec.tensors if t.role == "ffn_up_shexp"}))
        return max(spec.intermediate_size, spec.n_experts_used * spec.moe_intermediate_size + shared)
    return spec.intermediate_size


def compute_stages(
    spec: ModelSpec,
    tokens: int,
    ubatch: int | None = DEFAULT_UBATCH,
    flash_attention: bool = True,
    *,
    n_kv: int | None = None,
    logits_rows: int | None = None,
) -> tuple[int, int, int, int, int]:
    """``(step_tokens, logits, output_stage, attention_stage, ffn_stage)`` bytes of llama.cpp's compute
    buffer with ``tokens`` cached tokens (context x batch); the buffer is the largest stage.

    ``n_kv``: cells one attention step sees when it differs from ``tokens`` (an engine's padded cache, or
    one stream of a per-sequence cache); ``logits_rows``: rows of logits reserved when not the whole
    micro-batch (llama-server since llama.cpp PR #23861 reserves one per sequence).
    """
    step = tokens if ubatch is None else min(ubatch, tokens)
    kv = tokens if n_kv is None else n_kv
    hidden, a = spec.hidden_size, ACTIVATION_BYTES
    logits = (step if logits_rows is None else logits_rows) * spec.vocab_size * LOGIT_BYTES
    output_stage = logits + step * hidden * a
    mask = step * kv * (2 if flash_attention else a)
    scores = 0 if flash_attention else step * spec.n_heads * kv * a
    attention = scores + mask + 4 * step * hidden * a
    ffn = step * (2 * _ffn_width(spec) + hidden) * a
    return step, logits, output_stage, attention, ffn


def runtime_overhead(
    spec: ModelSpec,
    context: int,
    batch: int = 1,
    *,
    ubatch: int | None = DEFAULT_UBATCH,
    flash_attention: bool = True,
    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT_BYTES,
    extra_bytes: int = 0,
) -> Overhead:
    """Per-device runtime overhead (see module docstring for every term and its source).

    ``ubatch``: prompt tokens per forward step (llama.cpp ``-ub``); ``None`` processes the whole
    prompt at once, as a plain transformers ``generate`` does, so the logits term is context x vocab x 4.
    ``flash_attention=False`` adds the KQ score matrix (micro-batch x heads x cached tokens x 4 bytes).
    """
    units.check_int("context", context, example="8192 tokens")
    units.check_int("batch", batch, example="1 sequence")
    if ubatch is not None:
        units.check_int("ubatch (prompt tokens per step)", ubatch, example="512")
    units.check_int("CUDA context bytes", cuda_context_bytes, low=0, example=f"{DEFAULT_CUDA_CONTEXT_BYTES:,}")
    units.check_int("extra overhead bytes", extra_bytes, low=0, example="0")
    step, logits, output_stage, attention, ffn = compute_stages(
        spec, context * batch, ubatch, flash_attention
    )
    return Overhead(
        cuda_context_bytes=cuda_context_bytes,
        compute_buffer_bytes=max(output_stage, attention, ffn),
        logits_bytes=logits,
        attention_bytes=attention,
        ffn_bytes=ffn,
        extra_bytes=extra_bytes,
        step_tokens=step,
        flash_attention=flash_attention,
    )
