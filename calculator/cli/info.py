"""``python -m calculator info``: architecture facts and parameter counts of a model, and, for a file that
exists, what it stores.

For a Hub safetensors repo (``calculator.hub``, ``calculator.checkpoints``): the checkpoint's per-dtype
counts, ``stored_bytes`` (every tensor, from the safetensors headers), ``stored_format`` (the calculator
format its ``quantization_config`` matches, or null) and ``predicted_bytes`` for that format beside it.
For a GGUF file (``--gguf``, or a GGUF-only Hub repo): ``stored_bytes`` is its tensor data and
``stored_format`` its file type.
"""

from __future__ import annotations

import argparse
import os

from calculator.cli.common import add_command, emit
from calculator.hub import is_repo_id, load_hub
from calculator.models import resolve_model


def run(args: argparse.Namespace) -> None:
    if (args.model is None) == (args.gguf is None):
        raise ValueError("give one of --model (preset, config.json, Hub id) or --gguf (a GGUF file)")
    hub = gguf = checkpoint = None
    if args.gguf is not None:
        from calculator.gguf_model import load_gguf

        gguf = load_gguf(args.gguf)
        spec = gguf.spec
    elif is_repo_id(args.model) and not os.path.exists(args.model):
        hub = load_hub(args.model)
        spec, gguf = hub.spec, hub.gguf
        if hub.tensors:
            from calculator.checkpoints import checkpoint_from_tensors

            checkpoint = checkpoint_from_tensors(hub.spec, hub.config, hub.tensors, hub.repo_id)
    else:
        spec = resolve_model(args.model)
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
    if checkpoint is not None:
        data |= checkpoint.to_dict()
    elif gguf is not None:
        data |= {"stored_bytes": gguf.tensor_data_bytes, "stored_format": gguf.file_type,
                 "predicted_bytes": None, "header_bytes_read": gguf.header_bytes_read}
        try:
            data["predicted_bytes"] = gguf.comparison().predicted_bytes
        except ValueError:
            pass
    lines = [f"{k + ':':<28}{v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k + ':':<28}{v}"
             for k, v in data.items() if k not in ("comparison", "quantization")]
    if checkpoint is not None and checkpoint.comparison is not None:
        c = checkpoint.comparison
        lines.append(f"{'predicted vs stored:':<28}{c.delta_bytes:+,} bytes ({c.delta_pct:+.3f}%), "
                     f"{len(c.differences)} of {c.tensors_compared} tensor groups differ")
        lines += [f"  {d.name}: predicted {d.predicted_bytes:,}, stored {d.stored_bytes:,} ({d.stored_type})"
                  for d in c.differences[:8]]
    emit(args, data, "\n".join(lines))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "info", run, "architecture facts, parameter counts and stored bytes of a model")
    p.add_argument("--model", help="preset name, config.json path, .gguf file or Hub id")
    p.add_argument("--gguf", metavar="PATH_OR_REPO[:FILE]", help="a GGUF file, local or owner/repo:file.gguf")
