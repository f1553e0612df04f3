"""Files loaded beside the model: a multimodal projector (llama.cpp ``--mmproj``) and a draft model for
speculative decoding (``-md``), each a separate row of memory in a fit, on the device that holds it.

Where llama.cpp puts them (ggml-org/llama.cpp a5bb8ba4, read as vendored in ollama/ollama ef00199fb):

- A projector (``mmproj-*.gguf``) adds its weights: every tensor's bytes from its GGUF header
  (``calculator.gguf_model``). ``tools/mtmd/clip.cpp`` (``clip_ctx``) loads it on
  ``ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU)``, the *first* GPU (device 0, whatever
  ``--main-gpu`` says), when ``mmproj_use_gpu`` (``common/common.h``: true; ``--no-mmproj-offload`` sets it
  false and the projector stays in host memory). Its image-encoder compute buffer depends on the image size
  and is not modelled.
- A draft model adds its weights, its own KV cache and its own compute buffer: llama-server creates a second
  context for it. ``common/common.h`` ``common_params_speculative``: ``devices`` empty (``-devd``), ``n_gpu_layers
  = -1`` (``-ngld``: the library default, every layer), ``n_ctx = 0`` (``--ctx-size-draft``: the main context),
  ``cache_type_k/v = F16`` (``-ctkd/-ctvd``). An empty device list means every GPU (``src/llama.cpp``,
  ``llama_model_load_from_splits``: "default device selection"), and the split mode and tensor split are the
  main model's (assumption: llama-server builds the draft's parameters from a copy of the main ones; its
  ``tools/server`` was not read here). So the draft is split over the GPUs in the main model's proportions,
  all its layers on the GPUs even when the main model offloads some; each GPU holding a share gets its own
  compute buffer (as for the main model).

``Companions.of(mmproj=, draft=, mmproj_offload=)`` is what ``FitOptions.companions`` takes; the llama.cpp
engine calls ``rows(...)`` at the run's context and ``place(...)`` to add each row's bytes to the devices
that hold it (``DeviceMemory.companion_bytes``). ``companion_rows(...)`` gives the unplaced rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from calculator.gguf_model import GGUFModel
from calculator.models import ModelSpec
from calculator.runtime import DEFAULT_UBATCH, CacheType, compute_stages, kv_cache_bytes, parse_cache_type


class Role(str, Enum):
    """Why a file is loaded beside the model."""

    MMPROJ = "mmproj"
    """Multimodal projector (llama.cpp ``--mmproj``): image/audio encoder + projection into the LLM."""
    DRAFT = "draft"
    """Draft model for speculative decoding (llama.cpp ``-md``)."""


@dataclass(frozen=True)
class CompanionRow:
    """One companion file's memory, in bytes, every term named; ``placement`` says where it sits."""

    role: Role
    name: str
    weight_bytes: int
    kv_cache_bytes: int = 0
    compute_buffer_bytes: int = 0
    note: str = ""
    placement: tuple[tuple[str, int], ...] = ()
    """(device name as the engine logs it, ``CUDA0`` or ``host``; bytes there), once placed."""

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes + self.compute_buffer_bytes

    def to_dict(self) -> dict:
        return {"role": self.role.value, "name": self.name, "weight_bytes": self.weight_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "compute_buffer_bytes": self.compute_buffer_bytes,
                "total_bytes": self.total_bytes, "note": self.note,
                "device": "+".join(name for name, _ in self.placement) or None,
                "placement": dict(self.placement)}


def mmproj_row(projector: GGUFModel) -> CompanionRow:
    """A projector's weights, exact from its header (a language-model file is refused: use ``draft_row``)."""
    _check_projector(projector)
    return _mmproj(projector.name, projector.tensor_data_bytes)


def draft_row(draft: GGUFModel, context: int, batch: int = 1, *, kv_type: str | CacheType = CacheType.FP16,
              ubatch: int | None = DEFAULT_UBATCH, flash_attention: bool = True) -> CompanionRow:
    """A draft model's weights as stored, plus its KV cache and compute buffer at the main context."""
    return _draft(draft.name, draft.spec, draft.tensor_data_bytes, context, batch, kv_type, ubatch,
                  flash_attention)  # a projector raises at .spec, naming --mmproj


def companion_rows(*, mmproj: GGUFModel | None = None, draft: GGUFModel | None = None, context: int = 4096,
                   batch: int = 1, kv_type: str | CacheType = CacheType.FP16, ubatch: int | None = DEFAULT_UBATCH,
                   flash_attention: bool = True) -> tuple[CompanionRow, ...]:
    """The rows a fit adds for ``--mmproj`` and ``--draft`` (either may be None), not yet placed."""
    rows = []
    if mmproj is not None:
        rows.append(mmproj_row(mmproj))
    if draft is not None:
        rows.append(draft_row(draft, context, batch, kv_type=kv_type, ubatch=ubatch, flash_attention=flash_attention))
    return tuple(rows)


def _check_projector(projector: GGUFModel) -> None:
    if not projector.is_projector:
        raise ValueError(
            f"{projector.name} is a language model ({projector.arch}), not a projector: an mmproj file has "
            "general.architecture 'clip' (pass a draft model with --draft)"
        )


def _mmproj(name: str, weight_bytes: int) -> CompanionRow:
    return CompanionRow(Role.MMPROJ, name, weight_bytes,
                        note="image encoder compute buffer not modelled (it depends on the image size)")


def _draft(name: str, spec: ModelSpec, weight_bytes: int, context: int, batch: int, kv_type: str | CacheType,
           ubatch: int | None, flash_attention: bool) -> CompanionRow:
    _, _, output_stage, attention, ffn = compute_stages(spec, context * batch, ubatch, flash_attention)
    return CompanionRow(Role.DRAFT, name, weight_bytes, kv_cache_bytes(spec, context, batch, kv_type),
                        max(output_stage, attention, ffn),
                        note=f"its own KV cache at {context:,} tokens x {batch} ({parse_cache_type(kv_type).value})")


@dataclass(frozen=True)
class Companions:
    """The files a fit loads beside the model, as ``FitOptions.companions`` holds them (build with ``of``).

    Only what the sizing needs is kept (names, bytes, the draft's spec), so options stay hashable.
    """

    mmproj_name: str = ""
    mmproj_bytes: int = 0
    mmproj_offload: bool = True
    """False = llama.cpp ``--no-mmproj-offload``: the projector stays in host memory."""
    draft_name: str = ""
    draft_spec: ModelSpec | None = None
    draft_bytes: int = 0
    draft_kv_type: CacheType = CacheType.FP16
    """``-ctkd/-ctvd`` (llama.cpp default f16, whatever ``-ctk`` says for the main model)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "draft_kv_type", parse_cache_type(self.draft_kv_type))
        if not isinstance(self.mmproj_offload, bool):
            raise ValueError(f"mmproj_offload {self.mmproj_offload!r} must be True or False")

    @classmethod
    def of(cls, *, mmproj: GGUFModel | None = None, draft: GGUFModel | None = None, mmproj_offload: bool = True,
           draft_kv_type: str | CacheType = CacheType.FP16) -> Companions | None:
        """From the GGUF files (None when neither is given); a projector passed as a draft, or the reverse,
        raises ValueError naming the right flag."""
        if mmproj is None and draft is None:
            return None
        if mmproj is not None:
            _check_projector(mmproj)
        return cls(
            mmproj_name=mmproj.name if mmproj else "", mmproj_bytes=mmproj.tensor_data_bytes if mmproj else 0,
            mmproj_offload=mmproj_offload, draft_name=draft.name if draft else "",
            draft_spec=draft.spec if draft else None, draft_bytes=draft.tensor_data_bytes if draft else 0,
            draft_kv_type=draft_kv_type,
        )

    @property
    def has_draft(self) -> bool:
        return self.draft_spec is not None

    def rows(self, context: int, *, ubatch: int | None = DEFAULT_UBATCH,
             flash_attention: bool = True) -> tuple[CompanionRow, ...]:
        """Unplaced rows at the main context (llama.cpp ``-c``: the draft's cells, all slots together)."""
        rows = []
        if self.mmproj_name:
            rows.append(_mmproj(self.mmproj_name, self.mmproj_bytes))
        if self.draft_spec is not None:
            rows.append(_draft(self.draft_name, self.draft_spec, self.draft_bytes, context, 1, self.draft_kv_type,
                               ubatch, flash_attention))
        return tuple(rows)

    def place(self, rows: tuple[CompanionRow, ...], device_names: tuple[str, ...], fractions: tuple[float, ...],
              host_name: str = "host") -> tuple[tuple[CompanionRow, ...], tuple[int, ...], int]:
        """(rows with their placement, bytes added per GPU, bytes added to host memory).

        Projector: all on GPU 0 (host with ``--no-mmproj-offload``). Draft: weights and KV cache split over the
        GPUs in ``fractions`` (the main model's split), a whole compute buffer on each GPU with a share.
        """
        per_device = [0] * len(device_names)
        host = 0
        placed = []
        total_f = sum(fractions)
        for row in rows:
            where: list[tuple[str, int]] = []
            if row.role is Role.MMPROJ and self.mmproj_offload and device_names:
                per_device[0] += row.total_bytes
                where.append((device_names[0], row.total_bytes))
            elif row.role is Role.MMPROJ or not device_names or total_f <= 0:
                host += row.total_bytes
                where.append((host_name, row.total_bytes))
            else:
                body = row.weight_bytes + row.kv_cache_bytes
                holders = [d for d, f in enumerate(fractions) if f > 0]
                given = 0
                for k, d in enumerate(holders):  # the last holder takes the rounding remainder
                    share = body - given if k == len(holders) - 1 else round(body * fractions[d] / total_f)
                    given += share
                    per_device[d] += share + row.compute_buffer_bytes
                    where.append((device_names[d], share + row.compute_buffer_bytes))
                if len(holders) > 1:
                    row = replace(row, compute_buffer_bytes=row.compute_buffer_bytes * len(holders))
            placed.append(replace(row, placement=tuple(where)))
        return tuple(placed), tuple(per_device), host
