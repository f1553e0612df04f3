"""``python -m calculator gpus``: the GPU catalogue (``assets/gpus.csv``) with memory as sold (decimal GB; Apple's
unified memory in GiB, as Apple sells it), usable memory (a Mac: Metal's recommended working set), bandwidth,
FP16 TFLOPS, launch price and the source of every row (``--json``)."""

from __future__ import annotations

import argparse

from calculator import units
from calculator.cli.common import add_command, emit
from calculator.hardware import Category, catalogue


def run(args: argparse.Namespace) -> None:
    gpus = [
        g
        for g in catalogue()
        if (args.vendor is None or g.vendor.lower() == args.vendor.lower())
        and (args.category is None or g.category.value == args.category)
    ]
    lines = [
        f"{'name':<24} {'vendor':<7} {'memory':>9} {'usable':>9} {'GB/s':>7} "
        f"{'FP16 TFLOPS':>11} {'price $':>8}"
    ]
    for g in gpus:
        price = f"{g.price_usd:,.0f}" if g.price_usd else "-"
        tflops = f"{g.fp16_tflops:g}" if g.fp16_tflops else "-"
        size = units.fmt_gib if g.unified_memory else units.fmt_gb
        lines.append(
            f"{g.name:<24} {g.vendor:<7} {size(g.memory_bytes, 0):>9} "
            f"{size(g.usable_bytes, 0):>9} {g.bandwidth_gb_per_s or 0:>7g} {tflops:>11} {price:>8}"
        )
    lines.append(f"{len(gpus)} devices; memory as sold (GB = 10^9 bytes; Apple in GiB, usable = Metal's working set: "
                 "2/3 of RAM up to 32 GB, 3/4 from 64 GB); sources: assets/gpus.csv or --json")
    emit(args, {"gpus": [g.to_dict() for g in gpus]}, "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "gpus", run, "the GPU catalogue with memory, bandwidth, TFLOPS and sources",
                    "Every device in assets/gpus.csv (memory as sold, decimal GB).")
    p.add_argument("--vendor", help="only this vendor (NVIDIA, AMD, Intel, Apple)")
    p.add_argument(
        "--category",
        choices=[c.value for c in Category if c is not Category.CUSTOM],
        help="only this category",
    )
