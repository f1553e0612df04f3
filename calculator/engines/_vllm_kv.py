"""vLLM V1's paged KV cache as arithmetic: page sizes, layer groups, blocks, "GPU KV cache size" and
"Maximum concurrency", and the refusal when one ``max_model_len`` request does not fit.

Pinned to vLLM 0.19.0 (the version of the 26 llm-d-planner start-up logs the tests replay). Sources,
repository vllm-project/vllm:

- Page size (``vllm/v1/kv_cache_interface.py`` @ bc8282e61df21719b12b391c3a976b1c900dfbb4):
  attention ``block_size x num_kv_heads x (head_size + head_size_v) x dtype_bytes`` per layer (K and V),
  with ``num_kv_heads`` per tensor-parallel rank (``max(1, total // tp)``: replicated below one head);
  MLA ``block_size x 1 x (kv_lora_rank + qk_rope_head_dim) x dtype_bytes`` -- one latent per token, no
  factor 2, and every rank holds all of it.
- What one request may need (``max_memory_usage_bytes``, same file): full attention
  ``cdiv(max_model_len, block) x page``; sliding window ``(cdiv(min(window - 1 + max_num_batched_tokens,
  max_model_len), block) + 1) x page``; chunked local attention (Llama 4)
  ``cdiv(min(chunk + max_num_batched_tokens, max_model_len), block) x page``.
- Groups and blocks (``vllm/v1/core/kv_cache_utils.py`` @ bbf906a88ba1a39104884c88c9811a4f968e4659):
  one spec: ``num_blocks = available // page // n_layers``. Several (hybrid): ``group_size`` = the
  fewest layers of one kind (the most, if that is under 1.5 x the fewest), each kind cut into groups
  of ``group_size`` layers (the last padded: "Add N padding layers, may waste at most P% KV cache
  memory"), ``num_blocks = available // page // group_size``, all groups sharing the blocks.
  ``GPU KV cache size = num_blocks // n_groups x block_size`` tokens; ``Maximum concurrency =
  num_blocks / (sum over groups of one request's blocks)``. Workers keep the fewest blocks of any worker.
- Refusal (``check_enough_kv_cache_memory``): no memory left, or the sum over layers of
  ``max_memory_usage_bytes`` above the budget, with the largest ``max_model_len`` that would fit
  (binary search, as ``estimate_max_model_len``).

All 25 successful v0.19.0 logs reproduce exactly from their logged budget (tests/calculator/
test_engine_vllm.py), and so does issue #27508's "4.54 GiB KV cache is needed" for gpt-oss-120b.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from calculator import units
from calculator.units import ceil_div, check_int


class AttentionKind(StrEnum):
    """The KV-cache spec of one attention layer, as vLLM's hybrid manager groups them."""

    FULL = "full"
    """Every token of the sequence (``FullAttentionSpec``)."""
    SLIDING = "sliding"
    """The last ``window`` tokens plus one step's worth (``SlidingWindowSpec``)."""
    CHUNKED = "chunked"
    """Llama 4 chunked local attention (``ChunkedLocalAttentionSpec``)."""
    MLA = "mla"
    """Multi-head latent attention (DeepSeek): full length, one latent per token."""


@dataclass(frozen=True)
class LayerKind:
    """``n_layers`` attention layers of one kind on one worker, each ``page_bytes`` per block."""

    kind: AttentionKind
    n_layers: int
    page_bytes: int
    window: int | None = None
    """Sliding window or attention chunk, in tokens (None for full attention and MLA)."""

    def __post_init__(self) -> None:
        check_int(f"{self.kind} layers", self.n_layers)
        check_int("KV page bytes", self.page_bytes)
        if self.kind in (AttentionKind.SLIDING, AttentionKind.CHUNKED):
            check_int(f"{self.kind} window", self.window, example="4096 tokens")

    def blocks_per_request(self, max_model_len: int, max_num_batched_tokens: int, block_size: int) -> int:
        """Blocks one request of ``max_model_len`` tokens holds in one layer of this kind."""
        if self.kind is AttentionKind.SLIDING:
            tokens = min(self.window - 1 + max_num_batched_tokens, max_model_len)
            return ceil_div(tokens, block_size) + 1
        if self.kind is AttentionKind.CHUNKED:
            return ceil_div(min(self.window + max_num_batched_tokens, max_model_len), block_size)
        return ceil_div(max_model_len, block_size)


def attention_page_bytes(block_size: int, kv_heads: int, head_dim: int, v_head_dim: int, dtype_bytes: int) -> int:
    """K and V of ``block_size`` tokens of one layer on one rank: Llama-3.1-8B, bf16, block 16 =
    16 x 8 x (128 + 128) x 2 = 65,536 bytes."""
    return block_size * kv_heads * (head_dim + v_head_dim) * dtype_bytes


def mla_page_bytes(block_size: int, latent_dim: int, dtype_bytes: int) -> int:
    """One MLA layer: DeepSeek-V2/V3 latent 512 + RoPE key 64, bf16, block 16 = 18,432 bytes."""
    return block_size * latent_dim * dtype_bytes


def kv_heads_per_rank(n_kv_heads: int, tensor_parallel_size: int) -> int:
    """``ModelConfig.get_num_kv_heads``: heads are split, and replicated once there are fewer than ranks."""
    return max(1, n_kv_heads // tensor_parallel_size)


@dataclass(frozen=True)
class Grouping:
    """How vLLM groups a worker's layers: ``group_size`` layers share one block table per group."""

    group_size: int
    groups: tuple[LayerKind, ...]
    """One entry per group (kind, window and page), ``len(groups)`` groups in all."""
    padding_layers: tuple[tuple[AttentionKind, int, float], ...]
    """(kind, padding layers, percent of that kind's KV memory possibly wasted) where vLLM warns."""

    @property
    def page_bytes(self) -> int:
        return self.groups[0].page_bytes


def group_layers(layers: tuple[LayerKind, ...]) -> Grouping:
    """vLLM 0.19's grouping of one worker's layers (module docstring)."""
    merged: Counter[tuple[AttentionKind, int | None, int]] = Counter()
    for lk in layers:
        merged[lk.kind, lk.window, lk.page_bytes] += lk.n_layers
    if not merged:
        raise ValueError("a worker without attention layers has no KV cache to size")
    pages = {page for _, _, page in merged}
    if len(pages) > 1:
        raise ValueError(
            f"layers with different KV page sizes ({', '.join(f'{p:,}' for p in sorted(pages))} bytes) need "
            "vLLM's page-size unification, which quantfit does not model"
        )
    counts = list(merged.values())
    fewest, most = min(counts), max(counts)
    size = most if most < fewest * 1.5 else fewest
    groups: list[LayerKind] = []
    padding = []
    for (kind, window, page), n in merged.items():
        n_groups = ceil_div(n, size)
        groups += [LayerKind(kind, size, page, window)] * n_groups
        if n_groups * size > n and len(merged) > 1:
            pad = n_groups * size - n
            padding.append((kind, pad, round(100 * pad / n, 2)))
    return Grouping(size, tuple(groups), tuple(padding))


@dataclass(frozen=True)
class KVPool:
    """The KV cache one worker allocates from its budget, as vLLM logs it."""

    available_bytes: int
    """The budget: "Available KV cache memory" (may be negative: then no cache at all)."""
    block_size: int
    page_bytes: int
    group_size: int
    n_groups: int
    num_blocks: int
    """Blocks shared by all groups ("# GPU blocks" in older logs)."""
    blocks_per_request: int
    """Blocks one ``max_model_len`` request holds over all groups."""
    max_model_len: int
    needed_bytes: int
    """KV bytes one ``max_model_len`` request needs over every layer (the refusal check)."""
    padding_layers: tuple[tuple[AttentionKind, int, float], ...] = ()

    @property
    def kv_cache_bytes(self) -> int:
        """The whole pool on this GPU: ``group_size`` tensors of ``num_blocks`` pages."""
        return self.num_blocks * self.page_bytes * self.group_size

    @property
    def tokens(self) -> int:
        """"GPU KV cache size: N tokens" (0.19's formula: blocks // groups x block size)."""
        return self.num_blocks // self.n_groups * self.block_size

    @property
    def max_concurrency(self) -> float:
        """"Maximum concurrency for L tokens per request: X" (unrounded)."""
        return self.num_blocks / self.blocks_per_request


def request_blocks(groups: tuple[LayerKind, ...], max_model_len: int, max_num_batched_tokens: int,
                   block_size: int) -> int:
    """Blocks one request of ``max_model_len`` tokens holds over all groups."""
    return sum(g.blocks_per_request(max_model_len, max_num_batched_tokens, block_size) for g in groups)


def needed_bytes(layers: tuple[LayerKind, ...], max_model_len: int, max_num_batched_tokens: int,
                 block_size: int) -> int:
    """Sum over every layer of what one ``max_model_len`` request needs (``check_enough_kv_cache_memory``)."""
    return sum(
        lk.n_layers * lk.page_bytes * lk.blocks_per_request(max_model_len, max_num_batched_tokens, block_size)
        for lk in layers
    )


def kv_pool(available_bytes: int, layers: tuple[LayerKind, ...], *, max_model_len: int,
            max_num_batched_tokens: int, block_size: int = 16) -> KVPool:
    """The pool vLLM builds from ``available_bytes`` on one worker (module docstring for every rule)."""
    check_int("max_model_len", max_model_len, example="8192")
    check_int("max_num_batched_tokens", max_num_batched_tokens, example="8192")
    check_int("block_size", block_size, example="16")
    grouping = group_layers(layers)
    blocks = max(0, available_bytes // grouping.page_bytes // grouping.group_size)
    return KVPool(
        available_bytes=available_bytes,
        block_size=block_size,
        page_bytes=grouping.page_bytes,
        group_size=grouping.group_size,
        n_groups=len(grouping.groups),
        num_blocks=blocks,
        blocks_per_request=request_blocks(grouping.groups, max_model_len, max_num_batched_tokens, block_size),
        max_model_len=max_model_len,
        needed_bytes=needed_bytes(layers, max_model_len, max_num_batched_tokens, block_size),
        padding_layers=grouping.padding_layers,
    )


def estimate_max_model_len(available_bytes: int, layers: tuple[LayerKind, ...], *, max_model_len: int,
                           max_num_batched_tokens: int, block_size: int = 16) -> int:
    """The largest ``max_model_len`` (up to the configured one) whose one request fits; 0 if none."""
    def fits(n: int) -> bool:
        return needed_bytes(layers, n, max_num_batched_tokens, block_size) <= available_bytes

    if fits(max_model_len):
        return max_model_len
    lo, hi = 0, max_model_len  # fits(lo) (or lo == 0), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def refusal(pool: KVPool, layers: tuple[LayerKind, ...], max_num_batched_tokens: int) -> str | None:
    """vLLM's own sentence when it would not start for lack of KV memory, else None."""
    if pool.available_bytes <= 0:
        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                "initializing the engine.")
    if pool.needed_bytes <= pool.available_bytes:
        return None
    est = estimate_max_model_len(pool.available_bytes, layers, max_model_len=pool.max_model_len,
                                 max_num_batched_tokens=max_num_batched_tokens, block_size=pool.block_size)
    estimate = f" Based on the available memory, the estimated maximum model length is {est}." if est else ""
    return (
        f"To serve at least one request with the model's max seq len ({pool.max_model_len}), "
        f"({pool.needed_bytes / units.GiB:.2f} GiB KV cache is needed, which is larger than the available KV "
        f"cache memory ({pool.available_bytes / units.GiB:.2f} GiB).{estimate} Try increasing "
        "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    )
