"""``python -m calculator info``: architecture facts and parameter counts of a model; for a Hub id also the
checkpoint's own per-dtype counts from its safetensors headers (calculator.hub)."""

from __future__ import annotations

import argparse
import os

from calculator.cli.common import add_command, emit
from calculator.hub import is_repo_id, load_hub
from calculator.models import resolve_model


def run(args: argparse.Namespace) -> None:
    hub = load_hub(args.model) if is_repo_id(args.model) and not os.path.exists(args.model) else None
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
    emit(args, data, "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "info", run, "architecture facts and parameter counts of a model")
    p.add_argument("--model", required=True, help="preset name, config.json path or Hub id")
