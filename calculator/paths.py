"""Where quantfit's files are: its data files (the checkout's ``assets/`` or, after ``pip install .``, the
installed data package ``quantfit_assets``, the same folder shipped inside the wheel; see pyproject.toml), and
the server folders whose models a shared link may name (``$QUANTFIT_ALLOWED_PATHS``, ``allowed_path``)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

_CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _assets_dir() -> Path:
    if (_CHECKOUT_ASSETS / "gpus.csv").is_file():
        return _CHECKOUT_ASSETS
    spec = importlib.util.find_spec("quantfit_assets")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "quantfit's data files are missing: run from a checkout, or install the package with `pip install .`"
        )
    return Path(spec.origin).parent


ASSETS_DIR: Path = _assets_dir()
"""The data folder: presets/, gpus.csv, reference/, results/."""


# Local paths a link may name: one allow-list for the whole app (the Quality page's model folders and .gguf
# files, the model picker's "From a file"), read here so ``ui`` and ``evaluation`` share it.

ALLOWED_PATHS_ENV = "QUANTFIT_ALLOWED_PATHS"
"""The folders (``os.pathsep``-separated, e.g. ``/srv/models:/data/gguf``) whose models a link may name."""
DEPRECATED_PATHS_ENV = "QUANTFIT_GGUF_DIRS"
"""The "From a file" picker's own variable before the two lists became one: still read, with a warning."""
_log = logging.getLogger("quantfit")


@functools.lru_cache(maxsize=8)
def _warn_deprecated(value: str) -> None:  # once per value and process
    _log.warning("%s is deprecated: put its folders in %s (read as part of it for now)", DEPRECATED_PATHS_ENV,
                 ALLOWED_PATHS_ENV)


def allowed_roots(value: str | None = None) -> tuple[Path, ...]:
    """The operator's allow-listed folders, resolved: ``value``, else ``$QUANTFIT_ALLOWED_PATHS`` plus the
    deprecated ``$QUANTFIT_GGUF_DIRS``; none by default (links then name presets and Hub ids only)."""
    if value is None:
        value = os.environ.get(ALLOWED_PATHS_ENV, "")
        if old := os.environ.get(DEPRECATED_PATHS_ENV, "").strip():
            _warn_deprecated(old)
            value = os.pathsep.join(filter(None, (value, old)))
    return tuple(Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part.strip())


def allowed_path(text: str, roots: Sequence[Path] | None = None, *, folders: bool = True) -> Path | None:
    """The resolved path of ``text`` if it is a ``.gguf`` file (or, with ``folders``, a folder) inside one of
    ``roots`` (default ``allowed_roots()``), else None: the same None whether it is missing or outside, so a
    link cannot probe the server's disk. Symlinks and ``..`` are resolved before the check."""
    roots = allowed_roots() if roots is None else roots
    if not roots:
        return None
    try:
        path = Path(text).expanduser().resolve()
        inside = any(path.is_relative_to(root) for root in roots)
        usable = inside and ((folders and path.is_dir()) or (path.is_file() and path.suffix.lower() == ".gguf"))
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, a symlink loop
        return None
    return path if usable else None


def refused_path(what: str, text: str, instead: str, kinds: str) -> str:
    """The one message for a local path a link may not use (missing and not allowed alike): ``what`` it was
    meant as, what to use ``instead``, and the ``kinds`` of local path the allow-list admits."""
    return (f"{what} {text[:80]!r} is not available here: {instead}; local {kinds} only from the folders the "
            f"server's operator lists in {ALLOWED_PATHS_ENV}")
