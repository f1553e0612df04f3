"""What a shared link may make the server load: the model reference of the Quality page.

A link is written by anyone, so it may name a preset or a Hugging Face Hub id, and a local folder or
``.gguf`` file only under a folder the server's operator allow-lists in ``$QUANTFIT_ALLOWED_PATHS``
(``os.pathsep``-separated, e.g. ``/srv/models:/data/gguf``; the one list of the app, read by
``calculator.paths``). A path outside those folders and a path that does not exist get the same message, so
a link cannot probe the server's disk; symlinks and ``..`` are resolved before the check. The command line
is not restricted (``resolve_model_source`` without ``allowed_roots``).

Torch-free: the page checks a link's model before anything is loaded. ``PRESETS`` lives here for that
reason (``evaluation.models`` imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from calculator.hub import is_repo_id
from calculator.paths import ALLOWED_PATHS_ENV, allowed_path, allowed_roots, refused_path

__all__ = ["ALLOWED_PATHS_ENV", "PRESETS", "allowed_roots", "preset_key", "shared_model_ref"]
PRESETS: dict[str, str] = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Offline preset -> the Hub model it stands for (``evaluation.models`` resolves it to a GGUF file)."""
PRESET_ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}
MAX_REF_CHARS = 1024
"""Longest model reference read (a Hub id is at most 96 + 1 + 96 characters; paths are shorter than 1 KB)."""


def preset_key(text: str) -> str | None:
    """The preset ``text`` names (case-blind, aliases allowed), or None."""
    key = PRESET_ALIASES.get(text.strip().lower(), text.strip().lower())
    return key if key in PRESETS else None


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
    refused = ValueError(refused_path("model", text, "use smollm2-135m or a Hugging Face Hub id (owner/name)",
                                      "folders and .gguf files"))
    if len(text) > MAX_REF_CHARS:
        raise refused
    if key := preset_key(text):
        return key
    local = allowed_path(text, roots)
    if local is not None:
        return str(local)
    if is_repo_id(text):
        return text
    raise refused
