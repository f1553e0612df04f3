"""Weight memory: bytes of every tensor of a model stored in a format, summed once.

``weight_memory(spec_or_params, fmt)`` returns a breakdown, never a bare number, so the app can show
where every byte goes. Bytes are exact per tensor (``Format.tensor_bytes``); a bare parameter count uses
the format's nominal bits per weight (``70e9`` at fp16 = 140,000,000,000 bytes; at int4 = 35 GB).

Which tensors a format touches (the policy real checkpoints follow):
- 1-D tensors (norms, biases) stay float: F32 in GGUF files (llama-quantize never quantizes them),
  fp16 elsewhere (fp32 when the format itself is fp32).
- GPTQ, AWQ and bitsandbytes checkpoints keep the token embedding, position embedding and lm_head in
  fp16 (AutoGPTQ/AutoAWQ/bnb quantize ``nn.Linear`` layers inside the blocks only). This matters for
  small models with big vocabularies: SmolLM2-135M's embedding is 21% of its parameters.
- GGUF file types (Q4_K_M ...) replay llama.cpp's per-tensor rules (``gguf_recipes``).

``weight_facts(spec, fmt)`` splits the same bytes per block (what moves to the CPU under llama.cpp's
offload) and counts what one decode step reads (``calculator.placement`` and ``calculator.speed`` use it).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from calculator.formats import FORMATS, Family, Format, get_format
from calculator.models import EMBEDDING_ROLES, ModelSpec
from calculator.stored import StoredWeights

_KEEP_EMBEDDINGS_FP16 = {Family.GPTQ, Family.AWQ, Family.BNB}


@dataclass(frozen=True)
class TensorMemory:
    name: str
    shape: tuple[int, ...]
    type_name: str
    """Format name this tensor is stored in (``Q6_K``, ``fp16``, ``int4-g128``...)."""
    bytes: int


@dataclass(frozen=True)
class WeightMemory:
    """Weight bytes of one model in one format, tensor by tensor."""

    model: str
    format: str
    total_bytes: int
    total_params: int
    source: str
    tensor_rows: tuple[TensorMemory, ...] | None = field(default=None, repr=False)
    class_formats: dict[str, Format] | None = field(default=None, repr=False, compare=False)
    spec: ModelSpec | None = field(default=None, repr=False, compare=False)
    file_rows: tuple[tuple[str, str, int], ...] | None = field(default=None, repr=False)
    """A GGUF file type's (name, type, bytes) per tensor (``GGUFFile.tensor_types``), kept as they come."""

    @functools.cached_property
    def tensors(self) -> tuple[TensorMemory, ...]:
        """Every tensor with its format and bytes (built on first use: sweeps only need totals)."""
        if self.tensor_rows is not None:
            return self.tensor_rows
        if self.file_rows is not None:
            shapes = _shapes(self.spec)
            return tuple(TensorMemory(name, shapes[name], type_name, n_bytes)
                         for name, type_name, n_bytes in self.file_rows)
        rows = []
        for t in self.spec.tensors:
            kind = "vector" if not t.is_matrix else "embedding" if t.role in EMBEDDING_ROLES else "matrix"
            fmt = self.class_formats[kind]
            rows.append(TensorMemory(t.name, t.shape, fmt.name, _tensor_bytes(fmt, t.shape)))
        return tuple(rows)

    @property
    def bits_per_weight(self) -> Fraction:
        """Effective bits per weight over all parameters (llama-quantize's "bpw" figure)."""
        return Fraction(self.total_bytes * 8, self.total_params)

    @property
    def type_counts(self) -> dict[str, int]:
        """Format name -> number of tensors stored in it."""
        return dict(Counter(t.type_name for t in self.tensors))

    def bytes_by_type(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for t in self.tensors:
            out[t.type_name] += t.bytes
        return dict(out)

    def to_dict(self, *, per_tensor: bool = False) -> dict:
        data = {
            "model": self.model,
            "format": self.format,
            "weight_bytes": self.total_bytes,
            "params": self.total_params,
            "bits_per_weight": float(self.bits_per_weight),
            "type_counts": self.type_counts,
            "bytes_by_type": self.bytes_by_type(),
            "source": self.source,
        }
        if per_tensor:
            data["tensors"] = [
                {"name": t.name, "shape": list(t.shape), "type": t.type_name, "bytes": t.bytes}
                for t in self.tensors
            ]
        return data


def _is_file_type(name: str) -> bool:
    """GGUF file types are written as llama.cpp spells them (Q4_K_M, BF16). Our own format names win
    where they collide case-insensitively (``bf16``, ``nvfp4``, ``mxfp4`` are single formats), except the
    GGUF tensor-type names (``Q4_0``, ``Q8_0``, ``BF16``), which name both a type and a file type: with a
    model's tensor list, those mean the file type (llama-quantize's recipe)."""
    from calculator.gguf_recipes import FILE_TYPES

    name = name.strip()
    if name in FORMATS and FORMATS[name].family is not Family.GGUF:
        return False
    return name.upper() in FILE_TYPES


def weight_memory(
    spec_or_params: ModelSpec | int,
    fmt: str | Format,
    *,
    quantize_embeddings: bool | None = None,
) -> WeightMemory:
    """Exact weight bytes of a model (or a bare parameter count) stored in ``fmt``.

    ``quantize_embeddings``: store token/position embeddings and lm_head in ``fmt`` too. Default: no for
    GPTQ/AWQ/bitsandbytes (their checkpoints keep them fp16), yes otherwise.
    """
    if isinstance(spec_or_params, bool) or not isinstance(spec_or_params, ModelSpec | int):
        raise ValueError(f"expected a ModelSpec or a parameter count, got {spec_or_params!r}")
    if isinstance(spec_or_params, int):
        if spec_or_params <= 0:
            raise ValueError(f"parameter count {spec_or_params} must be positive")
        fmt_obj = fmt if isinstance(fmt, Format) else get_format(fmt)
        total = fmt_obj.params_bytes(spec_or_params)
        tensor = TensorMemory("params", (spec_or_params,), fmt_obj.name, total)
        return WeightMemory(f"{spec_or_params:,} params", fmt_obj.name, total, spec_or_params,
                            f"params x {fmt_obj.bits_per_weight()} bits / 8 ({fmt_obj.source})", (tensor,))
    spec = spec_or_params
    if spec.arch == "params-only":
        return weight_memory(spec.total_params, fmt, quantize_embeddings=quantize_embeddings)
    return _spec_weight_memory(spec, fmt, quantize_embeddings)


@functools.lru_cache(maxsize=16384)  # a sweep: ~40 presets x ~190 formats and file types, all kept
def _spec_weight_memory(spec: ModelSpec, fmt: str | Format, quantize_embeddings: bool | None) -> WeightMemory:
    if isinstance(fmt, StoredWeights):  # a real file's bytes, tensor by tensor (calculator.stored)
        return fmt.weight_memory(spec)
    if isinstance(fmt, str) and _is_file_type(fmt):
        from calculator.gguf_recipes import gguf_file

        gf = gguf_file(spec, fmt)
        return WeightMemory(spec.name, gf.file_type, gf.tensor_data_bytes, spec.total_params, gf.source,
                            spec=spec, file_rows=gf.tensor_types)

    fmt_obj = fmt if isinstance(fmt, Format) else get_format(fmt)
    if quantize_embeddings is None:
        quantize_embeddings = fmt_obj.family not in _KEEP_EMBEDDINGS_FP16
    gguf = fmt_obj.family is Family.GGUF
    classes = {
        "vector": get_format("F32" if gguf or fmt_obj.name == "fp32" else "fp16"),
        "embedding": fmt_obj if quantize_embeddings else get_format("fp16"),
        "matrix": fmt_obj,
    }
    total = 0
    for kind, shape, count in spec.shape_classes:
        try:
            total += count * _tensor_bytes(classes[kind], shape)
        except ValueError as err:
            name = next(t.name for t in spec.tensors if t.shape == shape)
            raise ValueError(f"{spec.name}: tensor {name} {shape}: {err}") from None
    return WeightMemory(spec.name, fmt_obj.name, total, spec.total_params, fmt_obj.source,
                        class_formats=classes, spec=spec)


@functools.lru_cache(maxsize=65536)
def _tensor_bytes(fmt: Format, shape: tuple[int, ...]) -> int:
    return fmt.tensor_bytes(shape)


@functools.lru_cache(maxsize=64)
def _shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in spec.tensors}


_READ_ALL, _READ_EXPERTS, _READ_ROW = range(3)


@functools.lru_cache(maxsize=64)
def _read_rules(spec: ModelSpec) -> dict[str, tuple[int | None, int]]:
    """name -> (block index or None, how much of it a decode step reads: all, the routed experts' share, one
    row); once per spec, so each format only adds up bytes."""
    out = {}
    for t in spec.tensors:
        role = t.role
        if role.endswith("_exps") and spec.n_experts:
            read = _READ_EXPERTS
        elif role == "position_embd" or (role == "token_embd" and not spec.tie_word_embeddings):
            read = _READ_ROW  # a lookup reads one row per token
        else:
            read = _READ_ALL
        out[t.name] = (t.layer, read)
    return out


@dataclass(frozen=True)
class WeightFacts:
    """A model's weight bytes in one format split the way placement and speed need them.

    ``layer_bytes[i]`` moves with block ``i`` when llama.cpp offloads it; ``nonrepeating_bytes`` (token
    embedding, output, final norm) stays with the host under offload. ``*_read_bytes`` are what one decode
    step reads: routed experts ``n_experts_used / n_experts`` of theirs, a token or position embedding one
    row (counted as 0) unless it is tied to the output matrix.
    """

    format: str
    total_bytes: int
    layer_bytes: tuple[int, ...]
    nonrepeating_bytes: int
    layer_read_bytes: tuple[float, ...]
    nonrepeating_read_bytes: int


@functools.lru_cache(maxsize=16384)
def weight_facts(spec: ModelSpec, fmt: str) -> WeightFacts:
    """``weight_memory(spec, fmt)`` summed per block, with the bytes a decode step reads (see WeightFacts)."""
    wm = weight_memory(spec, fmt)
    rules = _read_rules(spec)
    per_layer = [0] * spec.n_layers
    read = [0.0] * spec.n_layers
    nonrep = nonrep_read = 0
    rows = wm.file_rows if wm.file_rows is not None else ((t.name, t.type_name, t.bytes) for t in wm.tensors)
    for name, _, n_bytes in rows:
        layer, how = rules[name]
        if how is _READ_ALL:
            reads = n_bytes
        elif how is _READ_EXPERTS:
            reads = n_bytes * spec.n_experts_used / spec.n_experts
        else:
            reads = 0
        if layer is None:
            nonrep += n_bytes
            nonrep_read += reads
        else:
            per_layer[layer] += n_bytes
            read[layer] += reads
    return WeightFacts(wm.format, wm.total_bytes, tuple(per_layer), nonrep, tuple(read), round(nonrep_read))
