"""Evaluation results: one ``Result`` per (model, corpus, windows, method), a versioned JSON file, a cache.

File layout (schema in ``assets/results/SCHEMA.md``)::

    {"schema": "quantfit.evaluation.results", "schema_version": 1, "results": [ {...}, ... ]}

``load_results`` validates everything it reads (schema name and version, every required field and its
type, a size cap) and raises ``ValueError`` naming the first problem, so a page can show a hand-edited or
truncated file as one clear line. Writes are atomic (temporary file + ``os.replace``), so an interrupted
sweep leaves the previous complete file. ``ResultCache`` keeps one such file per result key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA = "quantfit.evaluation.results"
SCHEMA_VERSION = 1
MAX_RESULTS_FILE_BYTES = 32 * 2**20

_NUM = (int, float)


@dataclass(frozen=True)
class Result:
    """Everything one method's evaluation measured, with what it was measured on.

    Fractions, not percent: ``top1_agreement``, ``rms_dp``. Percent: ``delta_ppl_pct``. Bytes: ints.
    ``bits_per_weight`` = ``quantized_bytes`` * 8 / ``quantized_params`` (the matrices the method stored
    differently; embeddings and norms it left alone are in ``measured_bytes`` only).
    """

    key: str
    method_id: str
    family: str
    bits: int | None
    group_size: int | None
    calculator_format: str | None
    method_config: dict
    model: dict
    corpus: dict
    windows: dict
    calibration: dict | None
    ppl: float
    ppl_err: float
    baseline_ppl: float
    baseline_ppl_err: float
    delta_ppl_pct: float
    ln_ppl_ratio: float
    ln_ppl_ratio_err: float
    kld_mean: float
    kld_err: float
    kld_max: float
    kld_percentiles: dict
    top1_agreement: float
    top1_agreement_err: float
    rms_dp: float
    rms_dp_err: float
    measured_bytes: int
    predicted_bytes: int | None
    quantized_bytes: int
    quantized_params: int
    bits_per_weight: float | None
    quantize_seconds: float
    eval_seconds: float
    tokens_per_s: float
    decode_ms_per_token: float | None
    peak_rss_bytes: int | None
    peak_rss_scope: str
    fallbacks: list
    notes: list
    env: dict
    created: str

    @property
    def predicted_error_pct(self) -> float | None:
        """100 * (measured / predicted - 1): how far the calculator's prediction was off."""
        if not self.predicted_bytes:
            return None
        return 100.0 * (self.measured_bytes / self.predicted_bytes - 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "result") -> Result:
        _validate_result(data, where)
        return cls(**{f.name: data[f.name] for f in fields(cls)})


# Field -> (accepted types, may be null). Checked on every load.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "key": ((str,), False),
    "method_id": ((str,), False),
    "family": ((str,), False),
    "bits": ((int,), True),
    "group_size": ((int,), True),
    "calculator_format": ((str,), True),
    "method_config": ((dict,), False),
    "model": ((dict,), False),
    "corpus": ((dict,), False),
    "windows": ((dict,), False),
    "calibration": ((dict,), True),
    "ppl": (_NUM, False),
    "ppl_err": (_NUM, False),
    "baseline_ppl": (_NUM, False),
    "baseline_ppl_err": (_NUM, False),
    "delta_ppl_pct": (_NUM, False),
    "ln_ppl_ratio": (_NUM, False),
    "ln_ppl_ratio_err": (_NUM, False),
    "kld_mean": (_NUM, False),
    "kld_err": (_NUM, False),
    "kld_max": (_NUM, False),
    "kld_percentiles": ((dict,), False),
    "top1_agreement": (_NUM, False),
    "top1_agreement_err": (_NUM, False),
    "rms_dp": (_NUM, False),
    "rms_dp_err": (_NUM, False),
    "measured_bytes": ((int,), False),
    "predicted_bytes": ((int,), True),
    "quantized_bytes": ((int,), False),
    "quantized_params": ((int,), False),
    "bits_per_weight": (_NUM, True),
    "quantize_seconds": (_NUM, False),
    "eval_seconds": (_NUM, False),
    "tokens_per_s": (_NUM, False),
    "decode_ms_per_token": (_NUM, True),
    "peak_rss_bytes": ((int,), True),
    "peak_rss_scope": ((str,), False),
    "fallbacks": ((list,), False),
    "notes": ((list,), False),
    "env": ((dict,), False),
    "created": ((str,), False),
}
assert set(_FIELD_TYPES) == {f.name for f in fields(Result)}, "schema table and Result disagree"

_NESTED_REQUIRED = {
    "model": ("id", "kind"),
    "corpus": ("name", "sha256"),
    "windows": ("n_ctx", "n_windows", "scoring", "scored_tokens"),
    "env": ("torch", "transformers", "device"),
}


def _validate_result(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for name, (types, nullable) in _FIELD_TYPES.items():
        if name not in data:
            raise ValueError(f"{where}: required field {name!r} is missing")
        value = data[name]
        if value is None:
            if not nullable:
                raise ValueError(f"{where}: field {name!r} must not be null")
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise ValueError(
                f"{where}: field {name!r} must be {wanted}, got {type(value).__name__} {value!r:.60}"
            )
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: field {name!r} is NaN")
    for name, keys in _NESTED_REQUIRED.items():
        missing = [k for k in keys if k not in data[name]]
        if missing:
            raise ValueError(f"{where}: {name} lacks {', '.join(missing)}")
    if not all(isinstance(n, str) for n in data["notes"]):
        raise ValueError(f"{where}: notes must be a list of strings")
    if not all(isinstance(v, _NUM) and not isinstance(v, bool) for v in data["kld_percentiles"].values()):
        raise ValueError(f"{where}: kld_percentiles must map names to numbers")
    unknown = set(data) - set(_FIELD_TYPES)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))} (schema version {SCHEMA_VERSION})"
        )


def results_document(results: list[Result]) -> dict:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "results": [r.to_dict() for r in results]}


def parse_results(data: Any, where: str = "results") -> list[Result]:
    """Validate a decoded results document and return its results."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with schema, schema_version and results")
    if data.get("schema") != SCHEMA:
        raise ValueError(
            f"{where}: not a quantfit results file (schema {data.get('schema')!r}, expected {SCHEMA!r})"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{where}: schema_version {version!r} is not supported (this quantfit reads {SCHEMA_VERSION})"
        )
    rows = data.get("results")
    if not isinstance(rows, list):
        raise ValueError(f"{where}: 'results' must be a list")
    return [Result.from_dict(row, f"{where}: result {i}") for i, row in enumerate(rows)]


def load_results(path: str | Path) -> list[Result]:
    """Read and validate a results JSON file (at most ``MAX_RESULTS_FILE_BYTES``)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ValueError(f"cannot read results file {path}: {err.strerror}") from None
    if size > MAX_RESULTS_FILE_BYTES:
        raise ValueError(
            f"results file {path} is {size:,} bytes, over the {MAX_RESULTS_FILE_BYTES:,}-byte limit"
        )
    return loads_results(path.read_bytes(), str(path))


def loads_results(raw: bytes | str, where: str = "results") -> list[Result]:
    """Validate results from bytes (an uploaded file)."""
    if len(raw) > MAX_RESULTS_FILE_BYTES:
        raise ValueError(f"{where}: {len(raw):,} bytes, over the {MAX_RESULTS_FILE_BYTES:,}-byte limit")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from None
    return parse_results(data, where)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_results(path: str | Path, results: list[Result]) -> None:
    """Write ``results`` as one schema-versioned JSON document, atomically."""
    _atomic_write_text(Path(path), json.dumps(results_document(results), indent=1, allow_nan=False) + "\n")


def result_key(parts: dict) -> str:
    """sha256 of the canonical JSON of everything a result depends on."""
    canonical = json.dumps(
        {"schema_version": SCHEMA_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResultCache:
    """One results file per key under ``<cache_dir>/results/``; unreadable entries count as missing."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir) / "results"

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> Result | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            found = load_results(path)
        except ValueError:
            return None
        return found[0] if len(found) == 1 and found[0].key == key else None

    def put(self, result: Result) -> None:
        save_results(self.path(result.key), [result])
