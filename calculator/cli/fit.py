"""``python -m calculator fit``: will a model fit a GPU, in this engine? The verdict with every byte, per device.

``fit --engine llama.cpp --model llama-3.1-8b --format Q4_K_M --gpu "RTX 4090" --context 8192 --parallel 1
--flash-attention on --kv-type q8_0 --json`` prints ``FitResult.to_dict()`` (``engine``, ``devices``, ``host``
and every older key) plus ``best_format`` (the highest-quality format that fits) and ``advice`` (the cheapest
changes that make it fit, or how far it stretches; ``calculator.search.advise``). ``--gpu`` repeats for mixed
cards; ``--gpus N`` is N of one. The flags map onto ``calculator.fit.FitOptions`` and the engine's own settings
(``LlamaCppOptions``, ``OllamaOptions`` in Ollama's words, ``MlxOptions``), which validate them.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from calculator import units
from calculator.cli.common import (
    add_command,
    add_model_arguments,
    emit,
    model_input,
)
from calculator.companions import Companions
from calculator.engines.base import FlashAttention
from calculator.engines.llama_cpp import LlamaCppOptions, SplitMode
from calculator.engines.llama_cpp_rules import LlamaCppBuild
from calculator.engines.mlx import MlxOptions
from calculator.engines.ollama import OllamaOptions, default_num_ctx
from calculator.engines.registry import EngineName, engine_names, parse_engine
from calculator.engines.sglang import SglangSettings
from calculator.engines.transformers import TransformersSettings
from calculator.engines.vllm import VllmSettings
from calculator.fit import FitOptions, FitResult, Verdict, fit
from calculator.gguf_model import load_gguf
from calculator.hardware import DEFAULT_CPU_BANDWIDTH_GB_PER_S, GpuSetup, get_gpu, with_wired_limit
from calculator.runtime import DEFAULT_CUDA_CONTEXT_BYTES, DEFAULT_UBATCH, CacheType
from calculator.search import advise, best_format
from calculator.training import PEFT_DEFAULT_TARGETS, Optimizer, Precision, TrainingMode


def _non_negative(flag: str, value: float) -> float:
    """A MiB/GiB size flag: finite, from 0 to a million (``inf`` and ``nan`` are refused before rounding)."""
    return units.check_float(flag, value, high=1e6, example="0")


def _tensor_split(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--tensor-split {text!r} must be comma-separated proportions, e.g. 3,1") from None


def engine_options_from_args(args: argparse.Namespace) -> object | None:
    """The engine's own flags as its settings dataclass (None: the engine's defaults)."""
    engine = parse_engine(args.engine)
    fa = None if args.flash_attention is None else FlashAttention(args.flash_attention)
    if engine is EngineName.OLLAMA:
        return OllamaOptions(
            num_parallel=args.ollama_num_parallel, kv_cache_type=args.ollama_kv_cache_type,
            flash_attention={"1": "on", "true": "on", "0": "off", "false": "off"}.get(
                (args.ollama_flash_attention or "").lower(), args.ollama_flash_attention or fa or "auto"),
            num_gpu=args.num_gpu if args.num_gpu is not None else args.n_gpu_layers, num_batch=args.num_batch,
            gpu_overhead_bytes=round(
                _non_negative("--ollama-gpu-overhead-mib", args.ollama_gpu_overhead_mib) * units.MiB),
        )
    if engine is EngineName.MLX:
        return MlxOptions(kv_bits=args.kv_bits, max_kv_size=args.max_kv_size,
                          prefill_step_size=args.prefill_step_size)
    if engine is EngineName.VLLM:
        return VllmSettings(
            gpu_memory_utilization=args.gpu_memory_utilization, max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens, tensor_parallel_size=args.tensor_parallel_size,
            pipeline_parallel_size=args.pipeline_parallel_size, kv_cache_dtype=args.kv_cache_dtype,
            block_size=args.block_size, enforce_eager=args.enforce_eager,
            cuda_graphs_in_budget=args.cuda_graphs_in_budget)
    if engine is EngineName.SGLANG:
        kv = "fp8_e4m3" if args.kv_cache_dtype == "fp8" else args.kv_cache_dtype
        return SglangSettings(mem_fraction_static=args.mem_fraction_static, kv_cache_dtype=kv)
    if engine is EngineName.TRANSFORMERS:
        return TransformersSettings(new_tokens=args.new_tokens, cache=args.cache, attention=args.attn,
                                    full_prompt_logits=args.full_prompt_logits)
    return LlamaCppOptions(
        build=args.llama_cpp_build, parallel=args.parallel, kv_unified=args.kv_unified, flash_attention=fa,
        cache_type_k=args.cache_type_k, cache_type_v=args.cache_type_v, n_gpu_layers=args.n_gpu_layers,
        split_mode=args.split_mode, tensor_split=_tensor_split(args.tensor_split), main_gpu=args.main_gpu,
        n_batch=args.n_batch, swa_full=args.swa_full, kv_offload=not args.no_kv_offload,
    )


def options_from_args(args: argparse.Namespace) -> FitOptions:
    """The ``fit`` flags as FitOptions (MiB/GiB flags become bytes; ``--ubatch 0`` = the whole prompt)."""
    if args.ubatch < 0:
        raise ValueError(f"--ubatch {args.ubatch} must be >= 1 (or 0 for the whole prompt in one step)")
    return FitOptions(
        mode=args.mode,
        engine=args.engine,
        engine_options=engine_options_from_args(args),
        kv_type=args.kv_type,
        ubatch=None if args.ubatch == 0 else args.ubatch,
        flash_attention=not args.no_flash_attention and args.flash_attention != "off",
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
    where = f"{r.gpu_count}x {r.gpu}" if r.gpu_count > 1 and " + " not in r.gpu else r.gpu
    if r.verdict is Verdict.FITS:
        return f"FITS on {where} ({r.engine})"
    if r.verdict is Verdict.OFFLOAD:
        return (
            f"FITS ONLY WITH CPU OFFLOAD: {r.gpu_layers} of {r.n_layers} blocks on the GPU "
            f"(llama.cpp -ngl {r.gpu_layers}), {units.fmt_gb(r.cpu_offload_bytes)} in CPU RAM"
        )
    return "DOES NOT FIT"


def _mib(n: int) -> str:
    return f"{n / units.MiB:10.2f}"


def _device_lines(r: FitResult) -> list[str]:
    """Per device as the engine's log prints it (MiB), with the CUDA context it does not print."""
    if not r.devices:
        return []
    every = (*r.devices, *((r.host,) if r.host is not None else ()))
    files = any(d.companion_bytes for d in every)  # --mmproj / --draft: a column only when there are some
    lines = [f"{'per device (MiB)':<18}{'weights':>10} {'KV cache':>10} {'compute':>10} {'output':>10} "
             f"{'context':>10} {'files' if files else '':>{10 if files else 0}}{' ' if files else ''}"
             f"{'total':>10} {'usable':>10}  layers"]
    for d in every:
        usable = _mib(d.usable_bytes) if d.usable_bytes is not None else f"{'-':>10}"
        label = f"{d.name} {d.device}" if d.name != "host" else "host (CPU RAM)"
        lines.append(f"  {label[:16]:<16}{_mib(d.weights_bytes)} {_mib(d.kv_cache_bytes)} {_mib(d.compute_bytes)} "
                     f"{_mib(d.output_bytes)} {_mib(d.context_bytes + d.extra_bytes)} "
                     f"{_mib(d.companion_bytes) + ' ' if files else ''}{_mib(d.total_bytes)} "
                     f"{usable}  {d.layers}{' + output' if d.holds_output else ''}")
    return lines


def _companion_lines(r: FitResult) -> list[str]:
    """One line per ``--mmproj`` / ``--draft`` row: its bytes, their terms, and the devices that hold them."""
    return [f"{c.role.value + ':':<18}{units.fmt_bytes(c.total_bytes)} on "
            f"{', '.join(f'{name} {units.fmt_gb(b)}' for name, b in c.placement)}  ({c.name}: weights "
            f"{units.fmt_gb(c.weight_bytes)}" + (f", KV cache {units.fmt_gb(c.kv_cache_bytes)}, compute "
            f"{units.fmt_gb(c.compute_buffer_bytes)}" if c.kv_cache_bytes else "") + ")" for c in r.companions]


def _serving_lines(r: FitResult) -> list[str]:
    """vLLM / SGLang / transformers: their answer in their log's words (``calculator.engines._serving``)."""
    rep = dict(r.engine_report).get("serving")
    if not rep:
        return []
    lines = [f"serving:          {rep['summary']}"]
    gib = {k: v / units.GiB for k, v in rep.items() if "_bytes" in k and isinstance(v, int)}
    if rep["engine"] == "vllm" and rep.get("requested_memory_bytes"):
        lines.append(f"vLLM budget:      {gib['requested_memory_bytes']:.2f} GiB requested "
                     f"({rep['gpu_memory_utilization']} x {gib['total_memory_bytes']:.2f}) - weights "
                     f"{gib['weights_bytes_per_gpu']:.2f} - activation {gib['activation_peak_bytes']:.2f} - non-torch "
                     f"{gib['non_torch_bytes']:.2f} = KV {gib['available_kv_bytes']:.2f} GiB; "
                     f"{rep['kv_blocks']:,} blocks; CUDA graphs {gib['cuda_graph_bytes']:.2f} GiB")
    return lines


def _text(r: FitResult, best: str | None, advice=()) -> str:
    settings = ", ".join(f"{k} {v}" for k, v in r.engine_settings if k in (
        "num_ctx", "OLLAMA_NUM_PARALLEL", "n_ctx", "n_seq_max", "kv_cells_full", "kv_cells_swa", "flash_attn",
        "type_k", "type_v", "n_gpu_layers", "kv_cache"))
    lines = [
        f"model:            {r.model}  ({r.format}, {r.mode.value})",
        f"engine:           {r.engine}{f'  ({settings})' if settings else ''}",
        f"gpu:              {r.gpu if ' + ' in r.gpu else f'{r.gpu_count} x {r.gpu}'}, "
        f"{units.fmt_bytes(r.usable_bytes)} usable on the fullest",
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
        lines.append(f"decode:           ~{r.decode_tokens_per_s:,.1f} tokens/s "
                     f"({r.engine} speed model: bandwidth x efficiency + per-block cost)")
    if r.prefill_seconds is not None:
        lines.append(f"prefill:          ~{r.prefill_seconds:,.2f} s for the whole context (FP16 compute x efficiency)")
    if best is not None:
        lines.append(f"best format:      {best} (highest quality that fits, llama.cpp KLD ranking)")
    lines += _serving_lines(r)
    lines += _device_lines(r)
    lines += [f"engine note:      {n}" for n in r.engine_notes]
    lines += [f"warning:          {w}" for w in r.warnings]
    for a in advice:
        speed = "" if a.speed_change_pct is None else f", decode {a.speed_change_pct:+.0f}%"
        lines.append(f"advice:           {a.change}  -> {a.result.verdict.value}, "
                     f"{units.fmt_gb(a.result.per_device_bytes)} on the fullest device{speed}")
    return "\n".join(lines)


def setup_from_args(args: argparse.Namespace) -> GpuSetup:
    """``--gpu`` (repeated for mixed cards) x ``--gpus``, ``--wired-limit-mb``, ``--cpu-ram``, ``--cpu-bandwidth``."""
    gpus = [get_gpu(name) for name in args.gpu]
    if args.wired_limit_mb is not None:
        gpus = [with_wired_limit(g, args.wired_limit_mb) for g in gpus]
    if len(gpus) > 1 and args.gpus != 1:
        raise ValueError(f"--gpus {args.gpus} goes with one --gpu; with several --gpu each names one card")
    cpu_ram = units.parse_bytes(args.cpu_ram) if args.cpu_ram is not None else None
    return GpuSetup(gpus[0] if len(gpus) == 1 else gpus, args.gpus if len(gpus) == 1 else 1, cpu_ram,
                    args.cpu_bandwidth)


def _check_engine_input(args: argparse.Namespace, options: FitOptions, setup: GpuSetup) -> None:
    """What the engine refuses outright, as one line (the library answers "does not fit" with the reason)."""
    if options.engine is EngineName.MLX and not setup.gpu.unified_memory:
        raise ValueError(f"MLX runs on Apple silicon only; {setup.gpu.name} is not a Mac (pick --engine llama.cpp)")


def _serving_aliases(args: argparse.Namespace) -> None:
    """vLLM's own words for fit's flags: ``--max-model-len`` is ``--context``, ``--tensor-parallel-size`` x
    ``--pipeline-parallel-size`` is ``--gpus``."""
    if args.max_model_len is not None:
        if args.context not in (None, args.max_model_len):
            raise ValueError(f"--max-model-len {args.max_model_len} and --context {args.context} disagree; give one")
        args.context = args.max_model_len
    if args.tensor_parallel_size is not None:
        n = args.tensor_parallel_size * args.pipeline_parallel_size
        if args.gpus not in (1, n):
            raise ValueError(f"--tensor-parallel-size x --pipeline-parallel-size is {n} GPUs but --gpus is {args.gpus}")
        args.gpus = n


def run(args: argparse.Namespace) -> None:
    _serving_aliases(args)
    chosen = model_input(args)  # --model + --format, or --gguf (the file as stored)
    spec = chosen.spec
    options = options_from_args(args)
    setup = setup_from_args(args)
    _check_engine_input(args, options, setup)
    context = args.num_ctx or args.context
    if context is None:
        context = default_num_ctx(setup) if options.engine is EngineName.OLLAMA else 4096
    if args.mmproj or args.draft:  # placed by the engine where llama.cpp puts them (calculator.companions)
        options = replace(options, companions=Companions.of(
            mmproj=load_gguf(args.mmproj) if args.mmproj else None, draft=load_gguf(args.draft) if args.draft else None,
            mmproj_offload=not args.no_mmproj_offload))
    result = fit(spec, chosen.fmt, setup, context, args.batch, options=options)
    best = None
    advice = ()
    if result.mode is TrainingMode.INFERENCE:
        if options.engine is not EngineName.MLX:
            found = best_format(spec, setup, context, args.batch, options=options)
            best = found.format if found else None
        advice = advise(spec, chosen.fmt, setup, context, args.batch, options=options, result=result)
    data = result.to_dict()
    data.update({k: v for k, v in dict(result.engine_report).get("serving", {}).items() if k != "fits"})
    # a serving engine's own numbers go to the top: kv_cache_bytes is then its KV pool of one GPU
    data["best_format"] = best
    data["advice"] = [a.to_dict() for a in advice]
    emit(args, data, "\n".join([_text(result, best, advice), *_companion_lines(result)]))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "fit", run, "will a model fit a GPU? verdict, byte breakdown, max context, speed",
                    "Verdict for a model + format + GPU, every byte accounted for.")
    add_model_arguments(p, companions=True)
    p.add_argument("--engine", default="llama.cpp", choices=engine_names(),
                   help="serving engine whose allocation rules apply (default llama.cpp)")
    p.add_argument("--gpu", required=True, action="append",
                   help='catalogue name ("RTX 4090", see `gpus`) or custom:24GiB[:1000GB/s[:165TFLOPS]]; '
                        'repeat for mixed cards: --gpu "RTX 3090" --gpu "RTX 3060"')
    p.add_argument("--gpus", type=int, default=1, help="number of identical GPUs (with one --gpu)")
    p.add_argument("--context", type=int, default=None,
                   help="llama.cpp: -c, the total all slots share; ollama: num_ctx per request; mlx: tokens per "
                        "sequence (default 4096; ollama: its VRAM-based default)")
    p.add_argument("--batch", type=int, default=1,
                   help="sequences decoded together: llama.cpp slots (-np), OLLAMA_NUM_PARALLEL, MLX batch (default 1)")
    p.add_argument("--wired-limit-mb", type=int, default=None,
                   help="Mac: the iogpu.wired_limit_mb you set (Metal's working set becomes exactly this)")
    p.add_argument("--cpu-ram", help="CPU RAM available for offload, e.g. 64GB (default: not checked)")
    p.add_argument("--cpu-bandwidth", type=float, default=DEFAULT_CPU_BANDWIDTH_GB_PER_S,
                   help=f"CPU RAM bandwidth in GB/s for offloaded layers (default {DEFAULT_CPU_BANDWIDTH_GB_PER_S})")
    p.add_argument("--kv-type", default="fp16",
                   help=f"KV cache type (K and V): {', '.join(c.value for c in CacheType)}")
    p.add_argument("--no-mmproj-offload", action="store_true",
                   help="keep the --mmproj projector in host memory (llama.cpp --no-mmproj-offload)")
    p.add_argument("--overhead-gib", type=float, default=0.0,
                   help="extra GiB to reserve per GPU on top of the modelled overhead (default 0)")
    p.add_argument("--cuda-context-mib", type=float, default=DEFAULT_CUDA_CONTEXT_BYTES / units.MiB,
                   help=f"CUDA context + workspaces per GPU in MiB (default {DEFAULT_CUDA_CONTEXT_BYTES // units.MiB})")
    p.add_argument("--ubatch", type=int, default=DEFAULT_UBATCH,
                   help=f"prompt tokens per forward step (llama.cpp -ub, default {DEFAULT_UBATCH}; 0 = whole prompt)")
    p.add_argument("--no-flash-attention", action="store_true", help="the same as --flash-attention off")
    p.add_argument("--flash-attention", choices=[f.value for f in FlashAttention], default=None,
                   help="llama.cpp -fa (default on; auto resolves as the chosen build does)")
    p.add_argument("--decode-efficiency", type=float, default=None,
                   help="share of peak bandwidth reached when decoding (default: the engine's calibration)")
    p.add_argument("--prefill-efficiency", type=float, default=None,
                   help="share of peak FP16 TFLOPS reached in prefill (default: the engine's calibration)")
    ll = p.add_argument_group("llama.cpp")
    ll.add_argument("--parallel", "-np", type=int, default=None, help="slots -np (default: --batch)")
    ll.add_argument("--kv-unified", action="store_true", help="one KV stream shared by all slots")
    ll.add_argument("--cache-type-k", "-ctk", default=None, help="K cache type (default --kv-type)")
    ll.add_argument("--cache-type-v", "-ctv", default=None, help="V cache type (default --kv-type)")
    ll.add_argument("--n-gpu-layers", "-ngl", type=int, default=None,
                    help="blocks on the GPUs, output layer counting as one more; 0 = CPU only "
                         "(default: as many as fit)")
    ll.add_argument("--split-mode", "-sm", choices=[m.value for m in SplitMode], default="layer")
    ll.add_argument("--tensor-split", "-ts", default=None, help="one proportion per GPU, e.g. 3,1")
    ll.add_argument("--main-gpu", type=int, default=0, help="GPU for --split-mode none")
    ll.add_argument("--n-batch", type=int, default=2048, help="logical batch -b (micro-batch = min(-ub, -b))")
    ll.add_argument("--swa-full", action="store_true", help="full-size cache for sliding-window layers")
    ll.add_argument("--no-kv-offload", "-nkvo", action="store_true", help="keep the KV cache in CPU RAM")
    ll.add_argument("--llama-cpp-build", choices=[b.value for b in LlamaCppBuild], default="current",
                    help="whose rules: 2024 (to May 2025), 2025 (Jun-Nov 2025), current (default)")
    ol = p.add_argument_group("ollama (its environment variables and options)")
    ol.add_argument("--num-ctx", type=int, default=None, help="num_ctx per request (the same as --context)")
    ol.add_argument("--ollama-num-parallel", "--OLLAMA_NUM_PARALLEL", type=int, default=None,
                    help="OLLAMA_NUM_PARALLEL (default --batch)")
    ol.add_argument("--ollama-kv-cache-type", "--OLLAMA_KV_CACHE_TYPE", default=None, help="f16, q8_0 or q4_0")
    ol.add_argument("--ollama-flash-attention", "--OLLAMA_FLASH_ATTENTION", default=None,
                    help="1 / 0 (default: unset = auto)")
    ol.add_argument("--num-gpu", type=int, default=None, help="num_gpu (layers on the GPU)")
    ol.add_argument("--num-batch", type=int, default=None, help="num_batch")
    ol.add_argument("--ollama-gpu-overhead-mib", "--OLLAMA_GPU_OVERHEAD", type=float, default=0.0,
                    help="OLLAMA_GPU_OVERHEAD in MiB")
    mx = p.add_argument_group("mlx")
    mx.add_argument("--kv-bits", type=int, default=None, help="quantized KV cache: 8 or 4 (groups of 64)")
    mx.add_argument("--max-kv-size", type=int, default=None, help="rotating KV cache of this many tokens")
    mx.add_argument("--prefill-step-size", type=int, default=2048, help="prompt tokens per step (default 2048)")
    sv = p.add_argument_group("vllm / sglang / transformers")
    sv.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM's share of the GPU (0.9)")
    sv.add_argument("--max-model-len", type=int, default=None, help="vLLM max_model_len (the same as --context)")
    sv.add_argument("--max-num-seqs", type=int, default=None, help="vLLM (default 1024 on >= 70 GiB, else 256)")
    sv.add_argument("--max-num-batched-tokens", type=int, default=None, help="vLLM (default 8192 / 2048)")
    sv.add_argument("--tensor-parallel-size", "-tp", type=int, default=None, help="vLLM TP (default --gpus)")
    sv.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1, help="vLLM PP stages (default 1)")
    sv.add_argument("--kv-cache-dtype", default="auto", help="vLLM auto|fp8; SGLang auto|fp8_e4m3|fp8_e5m2")
    sv.add_argument("--block-size", type=int, default=16, help="vLLM KV block in tokens (default 16)")
    sv.add_argument("--enforce-eager", action="store_true", help="vLLM: no CUDA graphs")
    sv.add_argument("--cuda-graphs-in-budget", action="store_true",
                    help="vLLM >= 0.21: CUDA-graph estimate inside --gpu-memory-utilization")
    sv.add_argument("--mem-fraction-static", type=float, default=None, help="SGLang (default: by GPU size)")
    sv.add_argument("--new-tokens", type=int, default=256, help="transformers max_new_tokens (256)")
    sv.add_argument("--cache", default="dynamic", help="transformers KV cache: dynamic or static")
    sv.add_argument("--attn", default="sdpa", help="transformers attn_implementation: sdpa or eager")
    sv.add_argument("--full-prompt-logits", action="store_true",
                    help="transformers: logits for every prompt token (releases before logits_to_keep)")
    p.add_argument("--mode", default="inference", choices=[m.value for m in TrainingMode],
                   help="inference (default), or training: full, lora, qlora")
    p.add_argument("--optimizer", default="adamw", choices=[o.value for o in Optimizer], help="training optimizer")
    p.add_argument("--precision", default="mixed", choices=[x.value for x in Precision],
                   help="full fine-tuning precision (default mixed: fp32 master + 16-bit copy)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="training: recompute activations")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA/QLoRA rank (default 16)")
    p.add_argument("--lora-targets", default=",".join(PEFT_DEFAULT_TARGETS),
                   help="comma-separated module names (default q_proj,v_proj as PEFT) or all-linear")
