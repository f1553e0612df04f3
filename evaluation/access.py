"""What a shared link may make the server load: the model reference of the Quality page.

A link is written by anyone, so it may name a preset or a Hugging Face Hub id, and a local folder or
``.gguf`` file only under a folder the server's operator allow-lists in ``$QUANTFIT_ALLOWED_PATHS``
(``os.pathsep``-separated, e.g. ``/srv/models:/data/gguf``). A path outside those folders and a path
that does not exist get the same message, so a link cannot probe the server's disk; symlinks and ``..``
are resolved before the check. The command line is not restricted (``resolve_model_source`` without
``allowed_roots``).

Torch-free: the page checks a link's model before anything is loaded. ``PRESETS`` lives here for that
reason (``evaluation.models`` imports it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from calculator.hub import is_repo_id

ALLOWED_PATHS_ENV = "QUANTFIT_ALLOWED_PATHS"
PRESETS: dict[str, str] = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Offline preset -> the Hub model it stands for (``evaluation.models`` resolves it to a GGUF file)."""
PRESET_ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}
MAX_REF_CHARS = 1024
"""Longest model reference read (a Hub id is at most 96 + 1 + 96 characters; paths are shorter than 1 KB)."""


def preset_key(text: str) -> str | None:
    """The preset ``text`` names (case-blind, aliases allowed), or None."""
    key = PRESET_ALIASES.get(text.strip().lower(), text.strip().lower())
    return key if key in PRESETS else None


def allowed_roots(value: str | None = None) -> tuple[Path, ...]:
    """The operator's allow-listed folders, resolved: ``value``, else ``$QUANTFIT_ALLOWED_PATHS``; none by
    default."""
    value = os.environ.get(ALLOWED_PATHS_ENV, "") if value is None else value
    return tuple(Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part.strip())


def _allowed_local(text: str, roots: Sequence[Path]) -> Path | None:
    if not roots:
        return None
    try:
        path = Path(text).expanduser().resolve()
        inside = any(path.is_relative_to(root) for root in roots)
        usable = inside and (path.is_dir() or (path.is_file() and path.suffix.lower() == ".gguf"))
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, a symlink loop
        return None
    return path if usable else None


def shared_model_ref(text: str, roots: Sequence[Path] | None = None) -> str:
    """The model reference a link may run: a preset key, a Hub id, or the resolved path of an allowed local
    folder or .gguf file (``roots``: default ``allowed_roots()``). Anything else is one ValueError, the
    same whether the path is missing or outside the allowed folders.

    ``shared_model_ref("SmolLM2")`` -> ``"smollm2-135m"``; ``shared_model_ref("Qwen/Qwen2.5-0.5B")`` ->
    itself; ``shared_model_ref("/etc")`` -> ValueError.
    """
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ValueError("the model is empty: type smollm2-135m or a Hugging Face Hub id (owner/name)")
    refused = ValueError(
        f"model {text[:80]!r} is not available here: use smollm2-135m or a Hugging Face Hub id (owner/name); "
        f"local folders and .gguf files only from the folders the server's operator lists in {ALLOWED_PATHS_ENV}"
    )
    if len(text) > MAX_REF_CHARS:
        raise refused
    if key := preset_key(text):
        return key
    local = _allowed_local(text, allowed_roots() if roots is None else roots)
    if local is not None:
        return str(local)
    if is_repo_id(text):
        return text
    raise refused
