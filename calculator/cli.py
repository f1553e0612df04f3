"""Command line: ``python -m calculator SUBCOMMAND ... [--json]``.

Every subcommand prints human text (GB and GiB side by side) or, with ``--json``, one JSON object
whose sizes are integer bytes. A user mistake (bad number, unknown format/model, malformed config,
offline Hub) prints one ``error:`` line naming the value and the fix and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction

from calculator import units
from calculator.formats import FORMATS, Family
from calculator.memory import weight_memory
from calculator.models import list_presets, preset_record, resolve_model


def _emit(args: argparse.Namespace, data: dict, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=lambda o: float(o) if isinstance(o, Fraction) else str(o)))
    else:
        print(text)


def _cmd_weights(args: argparse.Namespace) -> None:
    if (args.params is None) == (args.model is None):
        raise ValueError("give exactly one of --params (e.g. 70B) or --model (preset, config.json or Hub id)")
    subject = units.parse_count(args.params) if args.params is not None else resolve_model(args.model)
    mem = weight_memory(subject, args.format)
    data = mem.to_dict(per_tensor=args.per_tensor)
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
    _emit(args, data, "\n".join(lines))


def _cmd_gguf(args: argparse.Namespace) -> None:
    from calculator.gguf_recipes import gguf_file

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
    _emit(args, data, text)


def _cmd_formats(args: argparse.Namespace) -> None:
    from calculator.gguf_recipes import FILE_TYPES, describe_file_type

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
    _emit(args, {"formats": rows, "gguf_file_types": file_types}, "\n".join(lines))


def _cmd_models(args: argparse.Namespace) -> None:
    rows = []
    for name in list_presets():
        record = preset_record(name)
        spec = resolve_model(name)
        rows.append({"name": name, "hf_id": record.get("hf_id"), "arch": spec.arch,
                     "params": spec.total_params, "active_params": spec.active_params,
                     "official_params": record.get("official_params"), "source": record.get("config_source")})
    lines = [f"{'preset':<22} {'arch':<12} {'params':>16}  Hub id"]
    lines += [f"{r['name']:<22} {r['arch']:<12} {r['params']:>16,}  {r['hf_id']}" for r in rows]
    _emit(args, {"models": rows}, "\n".join(lines))


def _cmd_info(args: argparse.Namespace) -> None:
    from calculator.models import load_hub

    hub = None
    if "/" in args.model and not args.model.endswith(".json"):
        import os

        if not os.path.exists(args.model):
            hub = load_hub(args.model)
    spec = hub.spec if hub else resolve_model(args.model)
    data = {
        "model": spec.name, "arch": spec.arch, "params": spec.total_params, "active_params": spec.active_params,
        "layers": spec.n_layers, "hidden_size": spec.hidden_size, "heads": spec.n_heads,
        "kv_heads": spec.n_kv_heads, "head_dim": spec.head_dim, "vocab_size": spec.vocab_size,
        "max_context": spec.max_context, "tied_embeddings": spec.tie_word_embeddings,
        "experts": spec.n_experts, "experts_used": spec.n_experts_used, "tensors": len(spec.tensors),
        "source": spec.source,
    }
    if hub:
        data["checkpoint_parameter_count"] = hub.parameter_count
    lines = [f"{k + ':':<28}{v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k + ':':<28}{v}"
             for k, v in data.items()]
    _emit(args, data, "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m calculator",
                                     description="quantfit: will this LLM fit, and in which format?")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object (sizes in bytes)")
        p.set_defaults(handler=handler)
        return p

    p = add("weights", _cmd_weights, "weight memory of a parameter count or a model in one format")
    p.add_argument("--params", help="parameter count: 70e9, 70B, 1.5T, 135M")
    p.add_argument("--model", help="preset name, config.json path or Hub id (owner/name)")
    p.add_argument("--format", required=True, help="format name (see `formats`), or a GGUF file type with --model")
    p.add_argument("--per-tensor", action="store_true", help="list every tensor (JSON: 'tensors')")

    p = add("gguf", _cmd_gguf, "exact tensor bytes of a GGUF file type (llama.cpp per-tensor rules)")
    p.add_argument("--config", "--model", dest="config", required=True,
                   help="preset name, config.json path or Hub id")
    p.add_argument("--quant", required=True, help="file type: Q4_K_M, Q8_0, IQ4_XS, ...")
    p.add_argument("--per-tensor", action="store_true", help="list every tensor's type and bytes")

    p = add("formats", _cmd_formats, "every format with its exact bits per weight")
    p.add_argument("--family", choices=[f.value for f in Family], help="only this family")

    add("models", _cmd_models, "the offline model presets")
    p = add("info", _cmd_info, "architecture facts and parameter counts of a model")
    p.add_argument("--model", required=True, help="preset name, config.json path or Hub id")

    import importlib

    try:
        fit_cli = importlib.import_module("calculator.fit_cli")
    except ModuleNotFoundError as err:
        if err.name != "calculator.fit_cli":
            raise
    else:
        fit_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
