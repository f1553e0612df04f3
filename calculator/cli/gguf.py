"""``python -m calculator gguf``: exact tensor bytes of a GGUF file type, as llama-quantize would write it.

``gguf --config llama-3.1-8b --quant Q4_K_M`` -> 4,912,898,048 bytes of tensor data (4.894 bits per
weight; 193 tensors Q4_K, 33 Q6_K, 65 F32), every tensor's type with ``--per-tensor`` (calculator.gguf_recipes).
"""

from __future__ import annotations

import argparse

from calculator import units
from calculator.cli.common import add_command, emit
from calculator.gguf_recipes import gguf_file
from calculator.models import resolve_model


def run(args: argparse.Namespace) -> None:
    spec = resolve_model(args.config)
    gf = gguf_file(spec, args.quant)
    data = {
        "model": spec.name,
        "file_type": gf.file_type,
        "file_bytes": gf.tensor_data_bytes,
        "bits_per_weight": float(gf.bits_per_weight),
        "params": spec.total_params,
        "type_counts": gf.type_counts,
        "source": gf.source,
        "note": "file_bytes counts tensor data only (no GGUF header, metadata or alignment padding)",
    }
    if args.per_tensor:
        data["tensors"] = [{"name": n, "type": t, "bytes": b} for n, t, b in gf.tensor_types]
    counts = ", ".join(f"{t} x{c}" for t, c in sorted(gf.type_counts.items()))
    text = "\n".join([
        f"model:            {spec.name} ({spec.total_params:,} params)",
        f"file type:        {gf.file_type}",
        f"tensor data:      {units.fmt_bytes(gf.tensor_data_bytes)}  [{gf.tensor_data_bytes:,} bytes]",
        f"bits per weight:  {units.fmt_bits(gf.bits_per_weight)}",
        f"tensor types:     {counts}",
        f"source:           {gf.source}",
    ])
    emit(args, data, text)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "gguf", run, "exact tensor bytes of a GGUF file type (llama.cpp per-tensor rules)")
    p.add_argument("--config", "--model", dest="config", required=True,
                   help="preset name, config.json path or Hub id")
    p.add_argument("--quant", required=True, help="file type: Q4_K_M, Q8_0, IQ4_XS, ...")
    p.add_argument("--per-tensor", action="store_true", help="list every tensor's type and bytes")
