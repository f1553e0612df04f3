"""Files loaded beside the model: a multimodal projector (llama.cpp ``--mmproj``) and a draft model for
speculative decoding (``-md``), each a separate row of memory added to a fit.

- A projector (``mmproj-*.gguf``) adds its weights: every tensor's bytes from its GGUF header
  (``calculator.gguf_model``). llama.cpp (``tools/mtmd``) puts it on the GPU unless ``--no-mmproj-offload``;
  its image-encoder compute buffer depends on the image size and is not modelled here.
- A draft model adds its weights, its own KV cache and its own compute buffer: llama-server creates a
  second context for it (``tools/server``: ``params_dft``, with ``--ctx-size-draft`` defaulting to the main
  context, ``-ctkd/-ctvd`` its cache types), sized here with the same ``calculator.runtime`` rules as the
  main model.

``companion_rows(...)`` returns the rows; a fit adds ``sum(row.total_bytes)`` to the device that holds the
main model (``FitOptions.extra_overhead_bytes`` is the hook the CLI uses today) and lists the rows
separately, so the user sees where the bytes go.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from calculator.gguf_model import GGUFModel
from calculator.runtime import DEFAULT_UBATCH, CacheType, compute_stages, kv_cache_bytes, parse_cache_type


class Role(str, Enum):
    """Why a file is loaded beside the model."""

    MMPROJ = "mmproj"
    """Multimodal projector (llama.cpp ``--mmproj``): image/audio encoder + projection into the LLM."""
    DRAFT = "draft"
    """Draft model for speculative decoding (llama.cpp ``-md``)."""


@dataclass(frozen=True)
class CompanionRow:
    """One companion file's memory, in bytes, every term named."""

    role: Role
    name: str
    weight_bytes: int
    kv_cache_bytes: int = 0
    compute_buffer_bytes: int = 0
    note: str = ""

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes + self.compute_buffer_bytes

    def to_dict(self) -> dict:
        return {"role": self.role.value, "name": self.name, "weight_bytes": self.weight_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "compute_buffer_bytes": self.compute_buffer_bytes,
                "total_bytes": self.total_bytes, "note": self.note}


def mmproj_row(projector: GGUFModel) -> CompanionRow:
    """A projector's weights, exact from its header (a language-model file is refused: use ``draft_row``)."""
    if not projector.is_projector:
        raise ValueError(
            f"{projector.name} is a language model ({projector.arch}), not a projector: an mmproj file has "
            "general.architecture 'clip' (pass a draft model with --draft)"
        )
    return CompanionRow(Role.MMPROJ, projector.name, projector.tensor_data_bytes,
                        note="image encoder compute buffer not modelled (it depends on the image size)")


def draft_row(draft: GGUFModel, context: int, batch: int = 1, *, kv_type: str | CacheType = CacheType.FP16,
              ubatch: int | None = DEFAULT_UBATCH, flash_attention: bool = True) -> CompanionRow:
    """A draft model's weights as stored, plus its KV cache and compute buffer at the main context."""
    spec = draft.spec  # a projector raises here, naming --mmproj
    _, _, output_stage, attention, ffn = compute_stages(spec, context * batch, ubatch, flash_attention)
    return CompanionRow(Role.DRAFT, draft.name, draft.tensor_data_bytes,
                        kv_cache_bytes(spec, context, batch, kv_type), max(output_stage, attention, ffn),
                        note=f"its own KV cache at {context:,} tokens x {batch} ({parse_cache_type(kv_type).value})")


def companion_rows(*, mmproj: GGUFModel | None = None, draft: GGUFModel | None = None, context: int = 4096,
                   batch: int = 1, kv_type: str | CacheType = CacheType.FP16, ubatch: int | None = DEFAULT_UBATCH,
                   flash_attention: bool = True) -> tuple[CompanionRow, ...]:
    """The rows a fit adds for ``--mmproj`` and ``--draft`` (either may be None)."""
    rows = []
    if mmproj is not None:
        rows.append(mmproj_row(mmproj))
    if draft is not None:
        rows.append(draft_row(draft, context, batch, kv_type=kv_type, ubatch=ubatch, flash_attention=flash_attention))
    return tuple(rows)
