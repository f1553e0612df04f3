"""``python -m calculator formats``: every weight format with its exact bits per weight, and the GGUF file
types (per-tensor recipes, sized per model by the ``gguf`` subcommand)."""

from __future__ import annotations

import argparse

from calculator.cli.common import add_command, emit
from calculator.formats import FORMATS, Family
from calculator.gguf_recipes import FILE_TYPES, describe_file_type


def run(args: argparse.Namespace) -> None:
    rows = [
        {"name": f.name, "family": f.family.value, "bits_per_weight": float(f.bits_per_weight()),
         "bits_per_weight_exact": str(f.bits_per_weight()), "holds": f.holds, "source": f.source}
        for f in FORMATS.values() if args.family is None or f.family.value == args.family
    ]
    file_types = [{"name": name, "description": describe_file_type(name)} for name in FILE_TYPES]
    lines = [f"{'format':<24} {'family':<13} {'bits/weight':>11}  holds"]
    lines += [f"{r['name']:<24} {r['family']:<13} {r['bits_per_weight']:>11.4f}  {r['holds']}" for r in rows]
    lines += ["", "GGUF file types (per-tensor recipes; sizes need a model: `calculator gguf --config M --quant T`):"]
    lines += [f"  {ft['description']}" for ft in file_types]
    emit(args, {"formats": rows, "gguf_file_types": file_types}, "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "formats", run, "every format with its exact bits per weight")
    p.add_argument("--family", choices=[f.value for f in Family], help="only this family")
