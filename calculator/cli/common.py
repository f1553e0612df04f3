"""What every subcommand shares: the ``--json`` flag and the one way output is printed.

Human text names its units (GB and GiB side by side); ``--json`` prints one JSON object whose sizes are
integer bytes (exact fractions, such as bits per weight, as floats).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from fractions import Fraction

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
