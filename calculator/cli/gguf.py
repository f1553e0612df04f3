"""``python -m calculator gguf``: exact tensor bytes of a GGUF file, real or predicted.

A real file, local or on the Hub, read from its header only (``calculator.gguf_model``):
``gguf --gguf bartowski/Qwen2.5-7B-Instruct-GGUF:Qwen2.5-7B-Instruct-Q4_K_M.gguf --json`` -> ``file_bytes``
(tensor data), ``file_type``, ``params``, ``tensor_types`` (type -> count), ``header_bytes_read``, and the
llama-quantize recipe replayed beside it (``predicted``: every tensor where the file differs).
``gguf --gguf REPO --list`` lists the repo's GGUF files with their sizes.

A file type predicted for a model, as llama-quantize would write it (``calculator.gguf_recipes``):
``gguf --model llama-3.1-8b --quant Q4_K_M`` -> 4,912,898,048 bytes of tensor data (4.894 bits per
weight; 193 tensors Q4_K, 33 Q6_K, 65 F32), every tensor's type with ``--per-tensor``.
"""

from __future__ import annotations

import argparse

from calculator import units
from calculator.cli.common import add_command, emit
from calculator.gguf_model import GGUFModel, gguf_choices, load_gguf, parse_gguf_ref
from calculator.gguf_recipes import gguf_file
from calculator.models import resolve_model


def _predicted(args: argparse.Namespace) -> None:
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


def _listing(args: argparse.Namespace) -> None:
    repo, _ = parse_gguf_ref(args.gguf)
    rows = gguf_choices(repo)
    if not rows:
        raise ValueError(f"{repo} has no .gguf files; pick a GGUF repository")
    lines = [f"{'file type':<14} {'size':>22}  parts  file"]
    lines += [f"{r.file_type:<14} {units.fmt_bytes(r.size_bytes) if r.size_bytes else '?':>22}  {r.parts:>5}  "
              f"{repo}:{r.file}" + ("  (mmproj)" if r.kind == "mmproj" else "") for r in rows]
    emit(args, {"repo": repo, "files": [r.to_dict() for r in rows]}, "\n".join(lines))


def _real(args: argparse.Namespace) -> None:
    model: GGUFModel = load_gguf(args.gguf)
    data = model.to_dict()
    comparison = None
    if not model.is_projector:
        base = resolve_model(args.compare_with) if args.compare_with else None
        try:
            comparison = model.comparison(base)
        except ValueError as err:
            if base is not None:
                raise
            data["predicted_error"] = str(err)
    data["predicted"] = comparison.to_dict() if comparison else None
    if args.per_tensor:
        data["tensor_list"] = [{"name": t.name, "shape": list(t.shape), "type": t.type_name, "bytes": t.n_bytes,
                                "offset": t.offset} for t in model.tensors]
    counts = ", ".join(f"{t} x{c}" for t, c in model.tensor_types.items())
    lines = [
        f"file:             {model.name}" + (f" ({len(model.parts)} parts)" if len(model.parts) > 1 else ""),
        f"architecture:     {model.arch}" + ("  (multimodal projector)" if model.is_projector else ""),
        f"file type:        {model.file_type}",
        f"parameters:       {model.params:,}"
        + ("" if model.is_projector else f" ({model.spec.active_params:,} active)"),
        f"tensor data:      {units.fmt_bytes(model.tensor_data_bytes)}  [{model.tensor_data_bytes:,} bytes]",
        f"bits per weight:  {data['bits_per_weight']:.4f}",
        f"tensor types:     {counts}",
        f"header read:      {model.header_bytes_read:,} bytes (no tensor data)",
    ]
    if comparison is not None:
        lines.append(f"recipe replay:    {units.fmt_bytes(comparison.predicted_bytes)} predicted for "
                     f"{comparison.predicted_format}; {len(comparison.differences)} of "
                     f"{comparison.tensors_compared} tensors differ ({comparison.delta_bytes:+,} bytes)")
        lines += [f"  {d.name}: predicted {d.predicted_type}, stored {d.stored_type} ({d.delta_bytes:+,} bytes)"
                  for d in comparison.differences[:10]]
        if len(comparison.differences) > 10:
            lines.append(f"  ... {len(comparison.differences) - 10} more (--json lists all)")
    elif "predicted_error" in data:
        lines.append(f"recipe replay:    not available ({data['predicted_error']})")
    emit(args, data, "\n".join(lines))


def run(args: argparse.Namespace) -> None:
    if args.gguf is not None:
        if args.config is not None or args.quant is not None:
            raise ValueError("--gguf reads a real file; --model/--quant predict one: give one or the other")
        return _listing(args) if args.list else _real(args)
    if args.list or args.compare_with:
        raise ValueError("--list and --compare-with need --gguf (a GGUF file or repo)")
    if args.config is None or args.quant is None:
        raise ValueError("give --gguf PATH_OR_REPO[:FILE] (a real file), or --model with --quant (a prediction)")
    return _predicted(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "gguf", run, "exact tensor bytes of a GGUF file (real, from its header, or predicted)")
    p.add_argument("--gguf", metavar="PATH_OR_REPO[:FILE]",
                   help="a GGUF file: local path, or Hub owner/repo:file.gguf (header read only, no weights)")
    p.add_argument("--list", action="store_true", help="with --gguf REPO: list its GGUF files and sizes")
    p.add_argument("--compare-with", metavar="MODEL",
                   help="with --gguf: replay the recipe on this model (preset, config.json, Hub id) instead of "
                        "the file's own tensor list")
    p.add_argument("--config", "--model", dest="config", help="preset name, config.json path or Hub id")
    p.add_argument("--quant", help="file type: Q4_K_M, Q8_0, IQ4_XS, ...")
    p.add_argument("--per-tensor", action="store_true", help="list every tensor's type and bytes")
