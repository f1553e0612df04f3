"""What the numbers of a results file may be, how deep its free-form parts may nest, and where a results
file may be written: the checks ``evaluation.results`` applies beyond each field's type.

A results file can come from anywhere (an upload on the Compare page, a hand edit), so a value that
type-checks can still be impossible: a negative perplexity, negative bits, a 400-digit byte count (which
``units.to_gb`` cannot even turn into a float). ``check_range`` refuses those with the field's dotted
path; ``check_depth`` bounds the free-form dicts (``method_config``, ``env`` ...), which are copied and
serialised recursively. ``check_output_path`` runs before an evaluation starts, so ``--out`` to a
directory, an unwritable place or somebody's unrelated JSON fails at once instead of after the run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

MAX_INT = 2**63 - 1
"""Largest whole number in a results file (sizes are bytes; int64 is what the tables hold)."""
MAX_MAGNITUDE = 1e30
"""Largest magnitude of a real number in a results file (a perplexity of 1e30 is already meaningless)."""
MAX_DEPTH = 16
"""Deepest nesting inside a free-form field (``method_config``, ``corpus``, ``env`` ...)."""
MAX_RESULTS = 10_000
"""Most results in one file (a full sweep is ~50)."""
KLD_ROUNDING = 1e-6
"""KL divergence is never negative; a float sum may dip this far below zero."""

_POSITIVE = ("quality.ppl", "quality.baseline_ppl", "bits_per_weight", "tokens_per_s")
_NON_NEGATIVE = (
    "quality.tokens", "quality.ppl_err", "quality.baseline_ppl_err", "quality.ln_ppl_ratio_err",
    "quality.kld_err", "quality.kld_max", "quality.top1_agreement_err", "quality.rms_dp", "quality.rms_dp_err",
    "measured_bytes", "predicted_bytes", "quantized_bytes", "quantized_params", "quantize_seconds",
    "eval_seconds", "decode_ms_per_token", "peak_rss_bytes", "model.n_params", "windows.n_ctx",
    "windows.n_windows", "windows.max_tokens", "windows.scored_tokens",
)
_RANGES: dict[str, tuple[float, float]] = {
    **{path: (0.0, MAX_MAGNITUDE) for path in _NON_NEGATIVE},
    "bits": (1, 64),
    "group_size": (1, MAX_INT),
    "bits_per_weight": (0.0, 64.0),
    "quality.top1_agreement": (0.0, 1.0),
    "quality.kld_mean": (-KLD_ROUNDING, MAX_MAGNITUDE),
    "quality.kld_percentiles": (-KLD_ROUNDING, MAX_MAGNITUDE),
}
"""Allowed closed ranges by dotted path (a dict's values share its path); ``_POSITIVE`` excludes 0."""


def check_range(where: str, path: str, value: object) -> None:
    """ValueError naming ``where`` and ``path`` if the number ``value`` is out of its range (every number
    is also held to ``MAX_INT`` / ``MAX_MAGNITUDE``)."""
    if isinstance(value, dict | list):  # nesting already bounded by check_depth
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            check_range(where, path if path in _RANGES else f"{path}.{key}", item)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ValueError(f"{where}: field {path!r} has {len(str(abs(value)))} digits, beyond any real count")
    low, high = _RANGES.get(path, (-MAX_MAGNITUDE, MAX_MAGNITUDE))
    if isinstance(value, float) and abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"{where}: field {path!r} is {value:g}, beyond {MAX_MAGNITUDE:g}")
    if path in _POSITIVE and not value > 0:
        raise ValueError(f"{where}: field {path!r} is {value!r}; it must be positive")
    if not low <= value <= high:
        raise ValueError(f"{where}: field {path!r} is {value!r}; it must be from {low:g} to {high:g}")


def check_depth(where: str, path: str, value: object, limit: int = MAX_DEPTH) -> None:
    """ValueError if ``value`` nests lists/dicts deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise ValueError(f"{where}: field {path!r} nests deeper than {limit} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


def _is_results_file(path: Path, schema: str, limit: int) -> bool:
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
        data = json.loads(raw) if len(raw) <= limit else None
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("schema") == schema


def check_output_path(path: str | Path, *, schema: str, limit: int, force: bool = False) -> Path:
    """``path`` if a results file may be written there, else a ValueError saying why, before any work.

    Refused: a directory; a place under a file or an unwritable directory; an existing file that is not a
    quantfit results file (schema ``schema``; read up to ``limit`` bytes), unless ``force``. An existing
    results file is replaced, as a resumed run expects.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name, e.g. {path / 'results.json'}")
    if path.exists():
        if not path.is_file():
            raise ValueError(f"--out {path} is not a regular file; give a file name such as results.json")
        if not force and not _is_results_file(path, schema, limit):
            raise ValueError(f"--out {path} exists and is not a quantfit results file; it would be overwritten: "
                             "give another name, or --force to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write in {parent} ({err.strerror})") from None
    return path
