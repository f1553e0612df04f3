"""Run methods against a baseline: quantize a copy, score the same windows, measure bytes and speed.

``evaluate(model_ref, corpus_ref, methods, options)`` is the API the CLI and the app call;
``cached_result`` answers from the result cache alone, without loading anything. Each method:

1. deep-copies the baseline model (``scoring.Baseline``, computed once; a model spread by ``device_map``
   is loaded afresh instead) and calls ``quantize_`` on the copy (calibration sequences from the corpus's
   calibration text when the method needs them);
2. measures the copy's stored bytes (``storage.measure_storage``) beside the calculator's prediction
   for the same model and format (``calculator.memory.weight_memory``);
3. runs the windows, comparing each window's logits with the baseline's (``metrics``);
4. times batch-1 greedy decoding with a KV cache, and reads the process's peak RSS (``measure``);
5. releases the copy (``measure.release_memory``) before the next method starts.

Results are cached by a key over everything they depend on (model bytes, corpus text, windows, method
config, dtype, device and, on a CPU, its ATen kernels (``cpu_kernels``), torch/transformers versions), so
a re-run is instant and an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from calculator.formats import get_format
from calculator.memory import weight_memory
from evaluation.corpus import Corpus
from evaluation.measure import (
    DECODE_PROMPT_TOKENS,
    decode_ms_per_token,
    environment,
    peak_rss_bytes,
    release_memory,
    reset_peak_rss,
)
from evaluation.methods import (
    BaselineConfig,
    MethodConfig,
    MethodFamily,
    method_config_dict,
    method_summary,
    parse_method,
    quantize_,
)
from evaluation.metrics import summarize
from evaluation.models import ModelSource, dtype_name
from evaluation.options import EvaluateOptions
from evaluation.results import ModelInfo, Result, ResultCache, result_key
from evaluation.runtime import engine_key, runtime_quality
from evaluation.scoring import (
    Baseline,
    EvaluationStopped,
    Progress,
    input_device,
    prepare_baseline,
    resolve,
    score_model,
)
from evaluation.storage import collect_fallbacks, measure_storage

# ----------------------------------------------------------------------------------------------- keys


def run_settings(source: ModelSource, corpus: Corpus, options: EvaluateOptions) -> dict:
    """What, besides the method, a result depends on: the start of every cache key. A device map adds its
    placement; runs without one keep the keys they always had."""
    settings = {
        "model": {k: v for k, v in source.describe().items() if k != "ref"},
        "corpus": {"name": corpus.name, "sha256": corpus.sha256},
        "windows": {"n_ctx": options.n_ctx, "max_tokens": options.max_tokens, "scoring": options.scoring.value},
        "dtype": dtype_name(options.dtype),
        "device": options.device.type,
    }
    if options.placement is not None:
        settings["placement"] = options.placement
    return settings


def calibration_spec(config: MethodConfig, corpus: Corpus, options: EvaluateOptions) -> dict | None:
    """What a calibrated method's result depends on besides its config (None for the others)."""
    if not config.needs_calibration:
        return None
    return {
        "files": list(corpus.calibration_files),
        "n_samples": options.calibration_samples,
        "seq_len": options.calibration_len,
        "text_sha256": hashlib.sha256(corpus.calibration_text.encode()).hexdigest(),
    }


def method_key(settings: dict, config: MethodConfig, options: EvaluateOptions, calibration: dict | None) -> str:
    """The cache key of one method's result under ``settings`` (``run_settings``)."""
    import transformers

    parts = {
        **settings,
        "method": method_config_dict(config),
        "method_id": config.method_id,
        "calibration": calibration,
        "decode_tokens": options.decode_tokens,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if config.runtime_engine is not None:  # the result also holds the engine's scores (schema version 3)
        parts["runtime"] = engine_key()
    if settings.get("device") == "cpu":
        parts["cpu_kernels"] = cpu_kernels()
    return result_key(parts)


def cpu_kernels() -> str:
    """The vectorised ATen kernels torch runs on this CPU (``AVX2``, ``AVX512``, ``DEFAULT``...).

    bf16 logits depend on them: SmolLM2's bf16 GPL-3 PPL is 23.764 with AVX2 kernels, 23.840 with
    ``ATEN_CPU_CAPABILITY=default`` and was 23.793 on the AVX-512 host of 2026-11-27, while fp32 stays at
    23.762. A result cached on a CPU with other kernels is therefore measured again, not served.
    """
    return torch.backends.cpu.get_cpu_capability()


def calculator_format(config: MethodConfig, dtype: torch.dtype) -> str:
    """The calculator format a config's bytes are predicted in; the baseline's is its dtype."""
    return config.calculator_format or dtype_name(dtype)


def predicted_bytes(baseline: Baseline, config: MethodConfig) -> tuple[int | None, str | None]:
    """The calculator's weight bytes for this model in the config's format (None + why, if it cannot)."""
    name = calculator_format(config, baseline.dtype)
    try:
        # A GGUF file type (Q4_K_M) goes by name; anything else as a Format, so that "bf16" is the float
        # format and not llama.cpp's BF16 file type (which keeps norms in F32).
        fmt = name if config.family == MethodFamily.GGUF else get_format(name)
        memory = weight_memory(baseline.spec, fmt, quantize_embeddings=config.quantize_embeddings)
    except ValueError as err:
        return None, f"the calculator could not predict {name} for this model: {err}"
    return memory.total_bytes, None


# ----------------------------------------------------------------------------------------------- one method


def _notes(baseline: Baseline, config: MethodConfig, fallbacks: list[dict], predict_note: str | None) -> list[str]:
    notes = list(baseline.source.notes)
    if baseline.dtype == torch.float32 and not isinstance(config, BaselineConfig):
        notes.append(
            "baseline dtype fp32: the measured model keeps embeddings and norms in fp32, the prediction "
            "stores them in fp16 as checkpoints do"
        )
    notes += [f"fallback in {fb['count']} layer(s): {fb['reason']}" for fb in fallbacks]
    if predict_note:
        notes.append(predict_note)
    return notes


def _model_info(baseline: Baseline) -> ModelInfo:
    s = baseline.source
    return ModelInfo(
        ref=s.ref, kind=s.kind, id=s.model_id, dtype=dtype_name(baseline.dtype), n_params=baseline.n_params,
        revision=s.revision, sha256=s.sha256, gguf_file=s.gguf_file,
    )  # fmt: skip


def evaluate_method(
    baseline: Baseline,
    config: MethodConfig,
    options: EvaluateOptions | None = None,
    *,
    key: str = "",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    model: nn.Module | None = None,
) -> Result:
    """Quantize a copy of the baseline model with ``config`` and measure it (see the module docstring).

    ``options`` supplies the decode steps and calibration (default: the baseline's own options). ``model``:
    a copy of the baseline model to quantize in place (a Ray task's own load); default
    ``baseline.method_model()``, or the baseline model itself for ``BaselineConfig``.
    """
    options = options or baseline.options
    is_baseline = isinstance(config, BaselineConfig)
    release_memory()
    rss_scope = reset_peak_rss()
    calibration = calibration_spec(config, baseline.corpus, options)
    start = time.perf_counter()
    if model is None:
        model = baseline.model if is_baseline and baseline.model is not None else baseline.method_model()
    if not is_baseline and (offloaded := [n for n, p in model.named_parameters() if p.device.type == "meta"]):
        n_params = len(list(model.parameters()))
        del model
        release_memory()
        raise ValueError(
            f"{config.method_id} quantizes every weight in memory, but {len(offloaded)} of {n_params} parameters "
            f"are offloaded (to the CPU or disk) by --device-map/--max-memory (e.g. {offloaded[0]}): give the "
            "GPUs room for the whole model; only the baseline pass can run offloaded"
        )
    if is_baseline:
        stats, eval_seconds = baseline.stats, baseline.eval_seconds  # the baseline pass is this method's pass
        if progress:
            progress(config.method_id, baseline.windows.n_windows, baseline.windows.n_windows)
    else:
        sequences = baseline.calibration(options.calibration_samples, options.calibration_len) if calibration else None
        quantize_(model, config, sequences)
    quantize_seconds = time.perf_counter() - start
    try:
        storage = measure_storage(baseline.signature, model)
        fallbacks = collect_fallbacks(model)
        runtime, runtime_note = None, None
        if not is_baseline:
            stats, eval_seconds = score_model(
                baseline, model, method_id=config.method_id, progress=progress, should_stop=should_stop
            )
            runtime, runtime_note = runtime_quality(baseline, model)
        prompt = baseline.windows.tokens[:1, :DECODE_PROMPT_TOKENS].to(input_device(model, baseline.device))
        decode_ms = decode_ms_per_token(model, prompt, options.decode_tokens) if options.decode_tokens else None
        peak_rss = peak_rss_bytes()
    finally:
        if model is not baseline.model:
            del model
            release_memory()
    predicted, predict_note = predicted_bytes(baseline, config)
    summary = method_summary(config)
    windows = baseline.windows
    bits_per_weight = storage.bits_per_weight
    if bits_per_weight is None:  # nothing re-stored (the baseline): bits over all parameters
        bits_per_weight = storage.total_bytes * 8 / baseline.n_params
    return Result(
        key=key,
        method_id=summary["method_id"],
        family=summary["family"],
        bits=summary["bits"],
        group_size=summary["group_size"],
        calculator_format=calculator_format(config, baseline.dtype),
        method_config=summary["method_config"],
        model=_model_info(baseline),
        corpus=baseline.corpus.describe(),
        windows=windows.info(),
        calibration=calibration,
        quality=summarize(stats),
        measured_bytes=storage.total_bytes,
        predicted_bytes=predicted,
        quantized_bytes=storage.quantized_bytes,
        quantized_params=storage.quantized_params,
        bits_per_weight=bits_per_weight,
        quantize_seconds=quantize_seconds,
        eval_seconds=eval_seconds,
        tokens_per_s=windows.n_windows * windows.n_ctx / eval_seconds if eval_seconds > 0 else 0.0,
        decode_ms_per_token=decode_ms,
        peak_rss_bytes=peak_rss,
        peak_rss_scope=rss_scope,
        fallbacks=fallbacks,
        notes=_notes(baseline, config, fallbacks, predict_note) + ([runtime_note] if runtime_note else []),
        env=environment(baseline.device),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        runtime=runtime,
    )


# ----------------------------------------------------------------------------------------------- the API


def _configs(methods: Sequence[MethodConfig | str]) -> list[MethodConfig]:
    return [parse_method(m) if isinstance(m, str) else m for m in methods]


def cached_result(
    model_ref: str | ModelSource,
    corpus_ref: str | Path | Corpus,
    method: MethodConfig | str,
    options: EvaluateOptions,
) -> Result | None:
    """The cached result of ``method`` under ``options`` (``options.cache_dir``), or None: loads no model.

    Resolving the model hashes its files once (memoised in the cache directory); pass a ``ModelSource``
    and a ``Corpus`` to probe many methods without resolving again.
    """
    if options.cache_dir is None:
        raise ValueError("cached_result needs options.cache_dir: the result cache to look in")
    (config,) = _configs([method])
    source, corpus = resolve(model_ref, corpus_ref, options)
    key = method_key(run_settings(source, corpus, options), config, options, calibration_spec(config, corpus, options))
    return ResultCache(options.cache_dir).get(key)


def evaluate(
    model_ref: str | ModelSource | None,
    corpus_ref: str | Path | Corpus | None,
    methods: Sequence[MethodConfig | str],
    options: EvaluateOptions | None = None,
    *,
    baseline: Baseline | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_baseline: Callable[[Baseline], None] | None = None,
) -> list[Result]:
    """Evaluate ``methods`` (configs or ids such as "int4-g32") on a model and corpus, in order.

    Cached results (``options.cache_dir``) are returned without loading anything. The baseline is
    computed on the first uncached method, or taken from ``baseline`` (whose windows, dtype and device must
    match ``options``; default options: the baseline's), and handed to ``on_baseline``. ``should_stop()``
    is polled between windows: the method under way is dropped and the results finished so far are
    returned. ``on_result`` sees each result as soon as it exists.
    """
    configs = _configs(methods)
    options = options or (baseline.options if baseline is not None else EvaluateOptions())
    if baseline is not None:
        if diff := baseline.mismatch(options):
            raise ValueError("the baseline passed in was computed with other settings (" + "; ".join(diff) + ")")
        source, corpus = baseline.source, baseline.corpus
    elif model_ref is None or corpus_ref is None:
        raise ValueError("give a model and a corpus, or a prepared baseline")
    else:
        source, corpus = resolve(model_ref, corpus_ref, options)
    settings = run_settings(source, corpus, options)
    cache = ResultCache(options.cache_dir) if options.cache_dir is not None else None
    results: list[Result] = []
    for config in configs:
        key = method_key(settings, config, options, calibration_spec(config, corpus, options))
        result = cache.get(key) if cache is not None else None
        if result is not None:
            if progress:
                progress(config.method_id, result.windows.n_windows, result.windows.n_windows)
        else:
            if should_stop is not None and should_stop():
                break
            try:
                if baseline is None:
                    baseline = prepare_baseline(source, corpus, options, progress=progress, should_stop=should_stop)
                    if on_baseline is not None:
                        on_baseline(baseline)
                result = evaluate_method(
                    baseline, config, options, key=key, progress=progress, should_stop=should_stop
                )
            except EvaluationStopped:
                break
            if cache is not None:
                cache.put(result)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
