"""Command line: ``python -m calculator SUBCOMMAND ... [--json]`` (installed as ``quantfit``).

One module per subcommand, each with ``register(subparsers)`` and ``run(args)``: ``weights``, ``gguf``,
``formats``, ``models``, ``info``, ``fit``, ``gpus``. A new subcommand is one new module here plus one
line in ``SUBCOMMANDS``. Every subcommand prints human text (GB and GiB side by side) or, with
``--json``, one JSON object whose sizes are integer bytes. A user mistake (bad number, unknown
format/model, malformed config, offline Hub) raises ValueError, printed as one ``error:`` line naming
the value and the fix, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from calculator.cli import fit, formats, gguf, gpus, info, models, weights

SUBCOMMANDS = (weights, gguf, formats, models, info, fit, gpus)
"""In the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m calculator",
                                     description="quantfit: will this LLM fit, and in which format?")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; 0 on success, 2 on a user mistake (one ``error:`` line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0
