"""Weights as a real file stores them, and how they compare with the calculator's prediction.

A ``Format`` (``calculator.formats``) or a GGUF file type (``calculator.gguf_recipes``) *predicts* what a
model's tensors would take. A file someone published is a fact: per tensor, the type it was stored in and
its exact bytes (read from a GGUF header, ``calculator.gguf_model``, or from safetensors headers,
``calculator.checkpoints``). ``StoredWeights`` carries that fact and goes wherever a format goes:
``weight_memory(spec, stored)``, ``weight_facts(spec, stored)`` and ``fit(spec, stored, gpu)`` size the
model exactly as stored, so a fit of a downloaded file uses its real bytes, not a replay.

``compare(predicted, stored)`` lines the two up tensor by tensor, the way the evaluation compares
predicted with measured bytes: the rows where type or bytes differ say why a file is bigger or smaller
than its file type predicts (an imatrix choice, a ``--tensor-type`` override, GPTQ's ``g_idx``, FP8 scales).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calculator.memory import WeightMemory
    from calculator.models import ModelSpec


@dataclass(frozen=True)
class StoredWeights:
    """Per tensor (GGUF-style name, as in ``ModelSpec.tensors``): the stored type and its exact bytes."""

    name: str
    """How a fit labels this "format", e.g. ``"Q4_1 (stored)"``."""
    rows: tuple[tuple[str, str, int], ...]
    """(tensor name, stored type, bytes)."""
    source: str

    def __str__(self) -> str:
        return self.name

    @property
    def total_bytes(self) -> int:
        return sum(n for _, _, n in self.rows)

    def weight_memory(self, spec: ModelSpec) -> WeightMemory:
        """The stored bytes as a ``WeightMemory`` of ``spec`` (whose tensors must be exactly these)."""
        from calculator.memory import TensorMemory, WeightMemory  # memory dispatches here: import late

        shapes = {t.name: t.shape for t in spec.tensors}
        names = {name for name, _, _ in self.rows}
        if names != set(shapes):
            missing = sorted(set(shapes) - names)[:3]
            extra = sorted(names - set(shapes))[:3]
            raise ValueError(
                f"{self.name} does not store the tensors of {spec.name} (missing {missing}, extra {extra}); "
                "size stored weights with the model read from the same file"
            )
        tensors = tuple(TensorMemory(name, shapes[name], type_name, n) for name, type_name, n in self.rows)
        return WeightMemory(spec.name, self.name, self.total_bytes, spec.total_params, self.source, tensors)


@dataclass(frozen=True)
class TensorDiff:
    """One tensor whose stored type or bytes differ from the prediction (0 bytes: absent on that side)."""

    name: str
    predicted_type: str
    stored_type: str
    predicted_bytes: int
    stored_bytes: int

    @property
    def delta_bytes(self) -> int:
        return self.stored_bytes - self.predicted_bytes


@dataclass(frozen=True)
class Comparison:
    """Predicted vs stored bytes of one model, with every tensor where they differ."""

    predicted_format: str
    predicted_bytes: int
    stored_bytes: int
    differences: tuple[TensorDiff, ...]
    tensors_compared: int

    @property
    def delta_bytes(self) -> int:
        return self.stored_bytes - self.predicted_bytes

    @property
    def delta_pct(self) -> float:
        return 100.0 * self.delta_bytes / self.predicted_bytes if self.predicted_bytes else 0.0

    @property
    def exact(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict:
        return {
            "predicted_format": self.predicted_format,
            "predicted_bytes": self.predicted_bytes,
            "stored_bytes": self.stored_bytes,
            "delta_bytes": self.delta_bytes,
            "delta_pct": round(self.delta_pct, 4),
            "tensors_compared": self.tensors_compared,
            "tensors_differing": len(self.differences),
            "differences": [
                {"name": d.name, "predicted_type": d.predicted_type, "stored_type": d.stored_type,
                 "predicted_bytes": d.predicted_bytes, "stored_bytes": d.stored_bytes}
                for d in self.differences
            ],
        }


def compare(
    predicted: WeightMemory, stored: WeightMemory | list[tuple[str, str, int]], *, types: bool = True
) -> Comparison:
    """Tensor-by-tensor comparison; ``stored`` is a WeightMemory or (name, type, bytes) rows.

    ``types=False`` compares bytes only: a safetensors checkpoint stores a GPTQ matrix as int32 + fp16
    tensors, which never share a name with the predicted format.
    """
    stored_rows = ([(t.name, t.type_name, t.bytes) for t in stored.tensors]
                   if not isinstance(stored, list) else stored)
    pred = {t.name: (t.type_name, t.bytes) for t in predicted.tensors}
    have = {name: (type_name, n) for name, type_name, n in stored_rows}
    diffs = []
    for name in [*pred, *(n for n in have if n not in pred)]:
        p_type, p_bytes = pred.get(name, ("-", 0))
        s_type, s_bytes = have.get(name, ("-", 0))
        if p_bytes != s_bytes or (types and p_type != s_type):
            diffs.append(TensorDiff(name, p_type, s_type, p_bytes, s_bytes))
    return Comparison(predicted.format, predicted.total_bytes, sum(n for _, _, n in stored_rows), tuple(diffs),
                      len(set(pred) | set(have)))
