"""``python -m calculator fit``: will a model fit a GPU? The verdict with every byte of the breakdown.

``fit --model llama-3.1-8b --format Q4_K_M --gpu "RTX 4090" --context 8192 --json`` prints
``FitResult.to_dict()`` plus ``best_format`` (the highest-quality format that fits, inference only).
The flags map one to one onto ``calculator.fit.FitOptions``, which validates them.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from calculator import units
from calculator.cli.common import (
    add_command,
    add_model_arguments,
    companion_lines,
    companions_from_args,
    emit,
    model_input,
)
from calculator.fit import FitOptions, FitResult, Verdict, fit
from calculator.hardware import DEFAULT_CPU_BANDWIDTH_GB_PER_S, GpuSetup, get_gpu
from calculator.runtime import DEFAULT_CUDA_CONTEXT_BYTES, DEFAULT_UBATCH, CacheType
from calculator.search import best_format
from calculator.speed import DECODE_BANDWIDTH_EFFICIENCY, PREFILL_COMPUTE_EFFICIENCY
from calculator.training import PEFT_DEFAULT_TARGETS, Optimizer, Precision, TrainingMode


def _non_negative(flag: str, value: float) -> float:
    """A MiB/GiB size flag: finite, from 0 to a million (``inf`` and ``nan`` are refused before rounding)."""
    return units.check_float(flag, value, high=1e6, example="0")


def options_from_args(args: argparse.Namespace) -> FitOptions:
    """The ``fit`` flags as FitOptions (MiB/GiB flags become bytes; ``--ubatch 0`` = the whole prompt)."""
    if args.ubatch < 0:
        raise ValueError(f"--ubatch {args.ubatch} must be >= 1 (or 0 for the whole prompt in one step)")
    return FitOptions(
        mode=args.mode,
        kv_type=args.kv_type,
        ubatch=None if args.ubatch == 0 else args.ubatch,
        flash_attention=not args.no_flash_attention,
        cuda_context_bytes=round(_non_negative("--cuda-context-mib", args.cuda_context_mib) * units.MiB),
        extra_overhead_bytes=round(_non_negative("--overhead-gib", args.overhead_gib) * units.GiB),
        decode_efficiency=args.decode_efficiency,
        prefill_efficiency=args.prefill_efficiency,
        optimizer=args.optimizer,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        lora_rank=args.lora_rank,
        lora_targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
    )


def _verdict_line(r: FitResult) -> str:
    if r.verdict is Verdict.FITS:
        return f"FITS on {r.gpu_count}x {r.gpu}" if r.gpu_count > 1 else f"FITS on {r.gpu}"
    if r.verdict is Verdict.OFFLOAD:
        return (
            f"FITS ONLY WITH CPU OFFLOAD: {r.gpu_layers} of {r.n_layers} blocks on the GPU "
            f"(llama.cpp -ngl {r.gpu_layers}), {units.fmt_gb(r.cpu_offload_bytes)} in CPU RAM"
        )
    return "DOES NOT FIT"


def _text(r: FitResult, best: str | None) -> str:
    lines = [
        f"model:            {r.model}  ({r.format}, {r.mode.value})",
        f"gpu:              {r.gpu_count} x {r.gpu}, {units.fmt_bytes(r.usable_bytes)} usable each",
        f"context x batch:  {r.context:,} x {r.batch}",
        f"verdict:          {_verdict_line(r)}",
        f"weights:          {units.fmt_bytes(r.weight_bytes)}",
    ]
    if r.training is not None:
        t = r.training
        lines += [
            f"gradients:        {units.fmt_bytes(t.gradient_bytes)}",
            f"optimizer:        {units.fmt_bytes(t.optimizer_bytes)}  ({t.optimizer.value})",
            f"activations:      {units.fmt_bytes(t.activation_bytes)}"
            f"{'  (gradient checkpointing)' if t.gradient_checkpointing else ''}",
            f"logits + grad:    {units.fmt_bytes(t.logits_bytes)}",
            f"trainable params: {t.trainable_params:,} of {t.total_params:,}",
        ]
    else:
        lines.append(f"KV cache:         {units.fmt_bytes(r.kv_cache_bytes)}  ({r.kv.cache_type.value})")
    lines += [
        f"runtime overhead: {units.fmt_bytes(r.overhead_bytes)}",
        f"total:            {units.fmt_bytes(r.total_bytes)}",
        f"per device:       {units.fmt_bytes(r.per_device_bytes)}",
        f"headroom:         {units.fmt_bytes(r.headroom_bytes)} ({r.headroom_pct:.1f}%)",
    ]
    if r.max_context is not None:
        lines.append(f"max context:      {r.max_context:,} tokens fit entirely on the GPU")
    if r.decode_tokens_per_s is not None:
        lines.append(f"decode:           ~{r.decode_tokens_per_s:,.1f} tokens/s (bandwidth roofline x efficiency)")
    if r.prefill_seconds is not None:
        lines.append(f"prefill:          ~{r.prefill_seconds:,.2f} s for the whole context (compute roofline)")
    if best is not None:
        lines.append(f"best format:      {best} (highest quality that fits, llama.cpp KLD ranking)")
    lines += [f"warning:          {w}" for w in r.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    chosen = model_input(args)  # --model + --format, or --gguf (the file as stored)
    spec = chosen.spec
    gpu = get_gpu(args.gpu)
    cpu_ram = units.parse_bytes(args.cpu_ram) if args.cpu_ram is not None else None
    options = options_from_args(args)
    extras = companions_from_args(args, args.context, args.batch, options.kv_type)  # --mmproj, --draft rows
    if extras:
        extra = options.extra_overhead_bytes + sum(r.total_bytes for r in extras)
        options = replace(options, extra_overhead_bytes=extra)
    setup = GpuSetup(gpu, args.gpus, cpu_ram, args.cpu_bandwidth)
    result = fit(spec, chosen.fmt, setup, args.context, args.batch, options=options)
    best = None
    if result.mode is TrainingMode.INFERENCE:
        found = best_format(spec, setup, args.context, args.batch, options=options)
        best = found.format if found else None
    data = result.to_dict()
    data["best_format"] = best
    if extras:
        data["companions"] = [r.to_dict() for r in extras]
    emit(args, data, "\n".join([_text(result, best), *companion_lines(extras)]))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "fit", run, "will a model fit a GPU? verdict, byte breakdown, max context, speed",
                    "Verdict for a model + format + GPU, every byte accounted for.")
    add_model_arguments(p, companions=True)
    p.add_argument("--gpu", required=True,
                   help='catalogue name ("RTX 4090", see `gpus`) or custom:24GiB[:1000GB/s[:165TFLOPS]]')
    p.add_argument("--gpus", type=int, default=1, help="number of identical GPUs (tensor parallel)")
    p.add_argument("--context", type=int, default=4096, help="tokens per sequence (default 4096)")
    p.add_argument("--batch", type=int, default=1, help="sequences decoded together (default 1)")
    p.add_argument("--cpu-ram", help="CPU RAM available for offload, e.g. 64GB (default: not checked)")
    p.add_argument("--cpu-bandwidth", type=float, default=DEFAULT_CPU_BANDWIDTH_GB_PER_S,
                   help=f"CPU RAM bandwidth in GB/s for offloaded layers (default {DEFAULT_CPU_BANDWIDTH_GB_PER_S})")
    p.add_argument("--kv-type", default="fp16", help=f"KV cache type: {', '.join(c.value for c in CacheType)}")
    p.add_argument("--overhead-gib", type=float, default=0.0,
                   help="extra GiB to reserve per GPU on top of the modelled overhead (default 0)")
    p.add_argument("--cuda-context-mib", type=float, default=DEFAULT_CUDA_CONTEXT_BYTES / units.MiB,
                   help=f"CUDA context + workspaces per GPU in MiB (default {DEFAULT_CUDA_CONTEXT_BYTES // units.MiB})")
    p.add_argument("--ubatch", type=int, default=DEFAULT_UBATCH,
                   help=f"prompt tokens per forward step (llama.cpp -ub, default {DEFAULT_UBATCH}; 0 = whole prompt)")
    p.add_argument("--no-flash-attention", action="store_true", help="count the KQ score matrix (no flash attention)")
    p.add_argument("--decode-efficiency", type=float, default=DECODE_BANDWIDTH_EFFICIENCY,
                   help=f"share of peak bandwidth reached when decoding (default {DECODE_BANDWIDTH_EFFICIENCY})")
    p.add_argument("--prefill-efficiency", type=float, default=PREFILL_COMPUTE_EFFICIENCY,
                   help=f"share of peak FP16 TFLOPS reached in prefill (default {PREFILL_COMPUTE_EFFICIENCY})")
    p.add_argument("--mode", default="inference", choices=[m.value for m in TrainingMode],
                   help="inference (default), or training: full, lora, qlora")
    p.add_argument("--optimizer", default="adamw", choices=[o.value for o in Optimizer], help="training optimizer")
    p.add_argument("--precision", default="mixed", choices=[x.value for x in Precision],
                   help="full fine-tuning precision (default mixed: fp32 master + 16-bit copy)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="training: recompute activations")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA/QLoRA rank (default 16)")
    p.add_argument("--lora-targets", default=",".join(PEFT_DEFAULT_TARGETS),
                   help="comma-separated module names (default q_proj,v_proj as PEFT) or all-linear")
