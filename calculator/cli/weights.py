"""``python -m calculator weights``: weight bytes of a parameter count or a model in one format.

``weights --params 70B --format int4`` -> 35,000,000,000 bytes; ``weights --model llama-3.1-8b --format
Q4_K_M --per-tensor`` replays llama.cpp's per-tensor recipe and lists every tensor.
"""

from __future__ import annotations

import argparse

from calculator import units
from calculator.cli.common import add_command, emit
from calculator.memory import weight_memory
from calculator.models import resolve_model


def run(args: argparse.Namespace) -> None:
    if (args.params is None) == (args.model is None):
        raise ValueError("give exactly one of --params (e.g. 70B) or --model (preset, config.json or Hub id)")
    subject = units.parse_count(args.params) if args.params is not None else resolve_model(args.model)
    mem = weight_memory(subject, args.format)
    lines = [
        f"model:            {mem.model}",
        f"format:           {mem.format}",
        f"parameters:       {mem.total_params:,}",
        f"bits per weight:  {units.fmt_bits(mem.bits_per_weight)}",
        f"weight memory:    {units.fmt_bytes(mem.total_bytes)}  [{mem.total_bytes:,} bytes]",
    ]
    if len(mem.type_counts) > 1:
        by_type = mem.bytes_by_type()
        lines.append("tensors by type:  " + ", ".join(
            f"{name} x{count} ({units.fmt_gb(by_type[name])})" for name, count in sorted(mem.type_counts.items())))
    lines.append(f"source:           {mem.source}")
    emit(args, mem.to_dict(per_tensor=args.per_tensor), "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "weights", run, "weight memory of a parameter count or a model in one format")
    p.add_argument("--params", help="parameter count: 70e9, 70B, 1.5T, 135M")
    p.add_argument("--model", help="preset name, config.json path or Hub id (owner/name)")
    p.add_argument("--format", required=True, help="format name (see `formats`), or a GGUF file type with --model")
    p.add_argument("--per-tensor", action="store_true", help="list every tensor (JSON: 'tensors')")
