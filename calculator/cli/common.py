"""What every subcommand shares: the ``--json`` flag, the one way output is printed, and the one way a
model is named on the command line.

Human text names its units (GB and GiB side by side); ``--json`` prints one JSON object whose sizes are
integer bytes (exact fractions, such as bits per weight, as floats).

``add_model_arguments`` gives a subcommand ``--model`` (preset, config.json, Hub id, or a .gguf path) and
``--gguf PATH_OR_REPO[:FILE]`` (a GGUF file, local or on the Hub, read from its header), plus ``--format``
and, for fits, ``--mmproj`` / ``--draft``; ``model_input(args)`` resolves them into a ``ModelInput``. With a
GGUF file and no ``--format``, the format is the file as stored (``calculator.stored.StoredWeights``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from calculator.models import ModelSpec, resolve_model
from calculator.stored import StoredWeights

Handler = Callable[[argparse.Namespace], None]


def add_command(
    subparsers: argparse._SubParsersAction, name: str, handler: Handler, help_text: str, description: str = ""
) -> argparse.ArgumentParser:
    """A subcommand with ``--json``; ``handler(args)`` runs it and raises ValueError for a user mistake."""
    p = subparsers.add_parser(name, help=help_text, description=description or help_text)
    p.add_argument("--json", action="store_true", help="print one JSON object (sizes in bytes)")
    p.set_defaults(handler=handler)
    return p


def emit(args: argparse.Namespace, data: dict, text: str) -> None:
    """``data`` as JSON with ``--json``, else ``text``."""
    if args.json:
        print(json.dumps(data, indent=2, default=lambda o: float(o) if isinstance(o, Fraction) else str(o)))
    else:
        print(text)


@dataclass(frozen=True)
class ModelInput:
    """What ``--model`` / ``--gguf`` / ``--format`` name: the spec, its format (or the file as stored)."""

    spec: ModelSpec
    fmt: str | StoredWeights | None
    gguf: object | None = None
    """The ``calculator.gguf_model.GGUFModel`` read, with ``--gguf``."""


def add_model_arguments(p: argparse.ArgumentParser, *, format_help: str = "", companions: bool = False) -> None:
    """``--model`` | ``--gguf``, ``--format`` (optional with ``--gguf``), and for fits ``--mmproj``/``--draft``."""
    p.add_argument("--model", help="preset name, config.json path, Hub id (owner/name) or a .gguf file")
    p.add_argument("--gguf", metavar="PATH_OR_REPO[:FILE]",
                   help="a GGUF file, local or on the Hub (owner/repo:file.gguf), read from its header only")
    p.add_argument("--format", help=format_help or "weight format or GGUF file type: fp16, Q4_K_M, int4-g128, ... "
                   "(default with --gguf: the file as stored)")
    if companions:
        p.add_argument("--mmproj", metavar="PATH_OR_REPO[:FILE]",
                       help="a multimodal projector GGUF loaded beside the model (llama.cpp --mmproj)")
        p.add_argument("--draft", metavar="PATH_OR_REPO[:FILE]",
                       help="a draft model GGUF for speculative decoding (llama.cpp -md): weights + its KV cache")


def model_input(args: argparse.Namespace) -> ModelInput:
    """Resolve ``--model`` / ``--gguf`` / ``--format`` (ValueError naming the flags for a wrong mix)."""
    from calculator.gguf_model import load_gguf

    gguf_ref = args.gguf
    if gguf_ref is None and args.model is not None and args.model.strip().lower().endswith(".gguf"):
        gguf_ref = args.model  # --model file.gguf is a GGUF file too
    elif (args.model is None) == (args.gguf is None):
        raise ValueError("give one of --model (preset, config.json or Hub id) or --gguf (a GGUF file, local or "
                         "owner/repo:file.gguf)")
    if gguf_ref is not None:
        model = load_gguf(gguf_ref)
        return ModelInput(model.spec, args.format or model.stored, model)
    if not args.format:
        raise ValueError("--format is required with --model (e.g. Q4_K_M, fp16, int4-g128); or give --gguf to "
                         "size a GGUF file as stored")
    return ModelInput(resolve_model(args.model), args.format)
