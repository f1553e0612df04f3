"""``python -m calculator models``: the offline presets (``assets/presets``) with their Hub ids and sizes."""

from __future__ import annotations

import argparse

from calculator.cli.common import add_command, emit
from calculator.models import list_presets, preset_record, resolve_model


def run(args: argparse.Namespace) -> None:
    rows = []
    for name in list_presets():
        record = preset_record(name)
        spec = resolve_model(name)
        rows.append({"name": name, "hf_id": record.get("hf_id"), "arch": spec.arch,
                     "params": spec.total_params, "active_params": spec.active_params,
                     "official_params": record.get("official_params"), "source": record.get("config_source")})
    lines = [f"{'preset':<22} {'arch':<12} {'params':>16}  Hub id"]
    lines += [f"{r['name']:<22} {r['arch']:<12} {r['params']:>16,}  {r['hf_id']}" for r in rows]
    emit(args, {"models": rows}, "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "models", run, "the offline model presets")
