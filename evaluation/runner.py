"""Run methods against a baseline: quantize a copy, score the same windows, measure bytes and speed.

``evaluate(model_ref, corpus_ref, methods, ...)`` is the API the CLI and the app call. The expensive part
that every method shares, the baseline model and its logits on the evaluation windows, is a ``Baseline``
computed once (``prepare_baseline``) and reusable across calls (a UI can cache it). Each method then:

1. deep-copies the baseline model and calls ``quantize_`` on the copy (calibration sequences from the
   corpus's calibration text when the method needs them);
2. measures the copy's stored bytes (``methods.measure_storage``) beside the calculator's prediction
   for the same model and format (``calculator.memory.weight_memory``);
3. runs the windows, comparing each window's logits with the baseline's (``metrics``);
4. times batch-1 greedy decoding with a KV cache, and reads the process's peak RSS.

Results are cached by a key over everything they depend on (model bytes, corpus text, windows, method
config, dtype, device, torch/transformers versions), so a re-run is instant and an interrupted sweep
resumes where it stopped.
"""

from __future__ import annotations

import copy
import gc
import inspect
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluation.corpus import Corpus, Scoring, Windows, calibration_sequences, load_corpus, make_windows
from evaluation.methods import (
    BaselineConfig,
    collect_fallbacks,
    measure_storage,
    method_config_dict,
    method_family,
    method_summary,
    parse_method,
    quantize_,
)
from evaluation.metrics import TokenStats, log_probs, summarize, token_stats
from evaluation.models import (
    ModelSource,
    dtype_name,
    load_model,
    parse_device,
    parse_dtype,
    resolve_model_source,
)
from evaluation.results import Result, ResultCache, result_key

Progress = Callable[[str, int, int], None]
"""progress(method_id, windows_done, windows_total)."""

DEFAULT_N_CTX = 512
DEFAULT_MAX_TOKENS = 4096
DEFAULT_DECODE_TOKENS = 16
DECODE_PROMPT_TOKENS = 32
# Calibration for GPTQ/AWQ: 32 sequences of 512 tokens (GPTQ's paper uses 128 x 2048 C4 tokens; a CPU
# run of a small model is served well by fewer, and the count is recorded in every result).
DEFAULT_CALIBRATION_SAMPLES = 32
DEFAULT_CALIBRATION_LEN = 512


class EvaluationStopped(Exception):
    """``should_stop()`` returned True between two windows."""


# ----------------------------------------------------------------------------- process measurements


def _reset_peak_rss() -> str:
    """Reset the kernel's peak-RSS mark (Linux ``/proc/self/clear_refs`` "5"); returns the scope measured."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return "method"
    except OSError:
        return "process"


def _peak_rss_bytes() -> int | None:
    """VmHWM of this process in bytes (Linux); else the lifetime peak from getrusage."""
    try:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.M)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    try:
        import resource

        scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    except (ImportError, OSError):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    import transformers

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
            found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
            name = found.group(1).strip() if found else name
        except OSError:
            pass
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- scoring


def window_logits(
    model: nn.Module, ids: torch.Tensor, first: int, keep_arg: bool | None = None
) -> torch.Tensor:
    """Logits [n_ctx - 1 - first, V] of one window [1, n_ctx]: positions first .. n_ctx - 2.

    Only the needed positions go through the output head when the model takes ``logits_to_keep``
    (``keep_arg``; looked up when None).
    """
    if keep_arg is None:
        keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    if keep_arg:
        out = model(input_ids=ids, use_cache=False, logits_to_keep=ids.shape[1] - first)
        return out.logits[0, :-1]
    return model(input_ids=ids, use_cache=False).logits[0, first:-1]


def _run_windows(
    model: nn.Module,
    windows: Windows,
    device: torch.device,
    method_id: str,
    on_logits: Callable[[int, torch.Tensor, torch.Tensor], None],
    progress: Progress | None,
    should_stop: Callable[[], bool] | None,
) -> float:
    """Feed every window, hand its scored logits and targets to ``on_logits``; returns wall seconds."""
    total = windows.n_windows
    if progress:
        progress(method_id, 0, total)
    elapsed = 0.0
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    with torch.inference_mode():
        for i in range(total):
            if should_stop is not None and should_stop():
                raise EvaluationStopped(method_id)
            start = time.perf_counter()
            ids = windows.tokens[i : i + 1].to(device)
            logits = window_logits(model, ids, windows.first, keep_arg)
            on_logits(i, logits, ids[0, windows.first + 1 :])
            _sync(device)
            elapsed += time.perf_counter() - start
            if progress:
                progress(method_id, i + 1, total)
    return elapsed


def run_settings(
    source: ModelSource,
    corpus: Corpus,
    n_ctx: int,
    max_tokens: int,
    scoring: Scoring,
    dtype: torch.dtype,
    device: torch.device,
) -> dict:
    """What, besides the method, a result depends on: the start of every cache key."""
    return {
        "model": {k: v for k, v in source.describe().items() if k != "ref"},
        "corpus": {"name": corpus.name, "sha256": corpus.sha256},
        "windows": {"n_ctx": n_ctx, "max_tokens": max_tokens, "scoring": Scoring(scoring).value},
        "dtype": dtype_name(dtype),
        "device": device.type,
    }


def calculator_format(config: Any, dtype: torch.dtype) -> str:
    """The calculator format a config's bytes are predicted in; the baseline's is its dtype."""
    return config.calculator_format or dtype_name(dtype)


def _warm_up(model: nn.Module, windows: Windows, device: torch.device) -> None:
    """One untimed forward of the first window: kernel selection and allocator growth are not eval time."""
    with torch.inference_mode():
        window_logits(model, windows.tokens[:1].to(device), windows.first)
    _sync(device)


@dataclass
class Baseline:
    """The unquantized model, its windows and its logits on them: computed once, shared by every method."""

    source: ModelSource
    corpus: Corpus
    model: nn.Module
    tokenizer: Any
    windows: Windows
    dtype: torch.dtype
    device: torch.device
    log_probs: list[torch.Tensor]
    """Per window, the scored positions' fp32 log-probs [scored, vocab] (tokens x vocab x 4 bytes in all:
    0.8 GB for SmolLM2 at 4096 tokens), on the model's device."""
    stats: TokenStats
    load_seconds: float
    eval_seconds: float
    _calibration: dict = field(default_factory=dict, repr=False)
    _spec: Any = field(default=None, repr=False)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def calibration(self, n_samples: int, seq_len: int) -> list[torch.Tensor]:
        key = (n_samples, seq_len)
        if key not in self._calibration:
            seqs = calibration_sequences(self.tokenizer, self.corpus, n_samples=n_samples, seq_len=seq_len)
            self._calibration[key] = [s.to(self.device) for s in seqs]
        return self._calibration[key]

    def predicted_bytes(self, config: Any) -> tuple[int | None, str | None]:
        """The calculator's weight bytes for this model in the config's format (None + why, if it cannot)."""
        from calculator.formats import get_format
        from calculator.memory import weight_memory
        from calculator.models import spec_from_config

        name = calculator_format(config, self.dtype)
        try:
            # A GGUF file type (Q4_K_M) goes by name; anything else as a Format, so that "bf16" is the float
            # format and not llama.cpp's BF16 file type (which keeps norms in F32).
            fmt = name if method_family(config) == "gguf" else get_format(name)
            if self._spec is None:
                self._spec = spec_from_config(self.model.config.to_dict(), name=self.source.model_id)
            memory = weight_memory(
                self._spec, fmt, quantize_embeddings=getattr(config, "quantize_embeddings", None)
            )
        except ValueError as err:
            return None, f"the calculator could not predict {name} for this model: {err}"
        return memory.total_bytes, None


def prepare_baseline(
    model_ref: str | ModelSource,
    corpus_ref: str | Path | Corpus = "shakespeare",
    *,
    n_ctx: int = DEFAULT_N_CTX,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    scoring: Scoring | str = Scoring.WHOLE,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "bf16",
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Baseline:
    """Load the model, cut the windows, and keep the baseline's logits on them."""
    dev, dt = parse_device(device), parse_dtype(dtype)
    source = (
        model_ref
        if isinstance(model_ref, ModelSource)
        else resolve_model_source(model_ref, memo_dir=cache_dir)
    )
    corpus = load_corpus(corpus_ref)
    start = time.perf_counter()
    model, tokenizer = load_model(source, dtype=dt, device=dev)
    load_seconds = time.perf_counter() - start
    windows = make_windows(tokenizer, corpus, n_ctx=n_ctx, max_tokens=max_tokens, scoring=scoring)
    kept: list[torch.Tensor] = []
    parts: list[TokenStats] = []

    def keep(_: int, window_logits_: torch.Tensor, targets: torch.Tensor) -> None:
        kept.append(log_probs(window_logits_))
        parts.append(token_stats(window_logits_, kept[-1], targets))

    _warm_up(model, windows, dev)
    eval_seconds = _run_windows(model, windows, dev, "baseline", keep, progress, should_stop)
    stats = TokenStats.cat(parts).cpu()
    return Baseline(
        source, corpus, model, tokenizer, windows, dt, dev, kept, stats, load_seconds, eval_seconds
    )


def score_model(
    baseline: Baseline,
    model: nn.Module,
    *,
    method_id: str = "model",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TokenStats, float]:
    """Per-token statistics of ``model`` against the baseline on the baseline's windows, and wall seconds."""
    parts: list[TokenStats] = []

    def compare(i: int, window_logits_: torch.Tensor, targets: torch.Tensor) -> None:
        parts.append(token_stats(window_logits_, baseline.log_probs[i], targets))

    seconds = _run_windows(
        model, baseline.windows, baseline.device, method_id, compare, progress, should_stop
    )
    return TokenStats.cat(parts).cpu(), seconds


def decode_ms_per_token(model: nn.Module, prompt: torch.Tensor, n_tokens: int) -> float:
    """Median wall ms of one batch-1 greedy decode step with a KV cache, after a prompt [1, T].

    The steps run twice and the second run is timed: attention kernels are chosen per sequence length
    the first time one is seen (cuDNN plans on CUDA), which would otherwise bill the first method.
    """
    # transformers 5.24 names the KV cache argument ``cache`` (``past_key_values`` before, deprecated).
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    device = prompt.device
    times = []
    with torch.inference_mode():
        for timed in (False, True):
            out = model(input_ids=prompt, use_cache=True)
            for _ in range(n_tokens):
                token = out.logits[:, -1:].argmax(-1)
                _sync(device)
                start = time.perf_counter()
                out = model(input_ids=token, use_cache=True, **{cache_arg: getattr(out, cache_arg)})
                _sync(device)
                if timed:
                    times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


# ----------------------------------------------------------------------------- one method


def _method_key(baseline_settings: dict, config: Any, decode_tokens: int, calibration: dict | None) -> str:
    import transformers

    return result_key(
        {
            **baseline_settings,
            "method": method_config_dict(config),
            "method_id": config.method_id,
            "calibration": calibration,
            "decode_tokens": decode_tokens,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
    )


def _calibration_spec(config: Any, corpus: Corpus, n_samples: int, seq_len: int) -> dict | None:
    if not getattr(config, "needs_calibration", False):
        return None
    import hashlib

    return {
        "files": list(corpus.calibration_files),
        "n_samples": n_samples,
        "seq_len": seq_len,
        "text_sha256": hashlib.sha256(corpus.calibration_text.encode()).hexdigest(),
    }


def _notes(baseline: Baseline, config: Any, fallbacks: list[dict], predict_note: str | None) -> list[str]:
    notes = list(baseline.source.notes)
    if baseline.dtype == torch.float32 and not isinstance(config, BaselineConfig):
        notes.append(
            "baseline dtype fp32: the measured model keeps embeddings and norms in fp32, the prediction "
            "stores them in fp16 as checkpoints do"
        )
    for fb in fallbacks:
        notes.append(f"fallback in {fb['count']} layer(s): {fb['reason']}")
    if predict_note:
        notes.append(predict_note)
    return notes


def evaluate_method(
    baseline: Baseline,
    config: Any,
    *,
    key: str = "",
    decode_tokens: int = DEFAULT_DECODE_TOKENS,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    calibration_len: int = DEFAULT_CALIBRATION_LEN,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Result:
    """Quantize a copy of the baseline model with ``config`` and measure it (see the module docstring)."""
    rss_scope = _reset_peak_rss()
    calibration = _calibration_spec(config, baseline.corpus, calibration_samples, calibration_len)
    start = time.perf_counter()
    if isinstance(config, BaselineConfig):
        model = baseline.model
        stats, eval_seconds = baseline.stats, baseline.eval_seconds  # the baseline pass is this method's pass
        if progress:
            progress(config.method_id, baseline.windows.n_windows, baseline.windows.n_windows)
    else:
        model = copy.deepcopy(baseline.model)
        sequences = baseline.calibration(calibration_samples, calibration_len) if calibration else None
        quantize_(model, config, sequences)
    quantize_seconds = time.perf_counter() - start
    try:
        storage = measure_storage(baseline.model, model)
        fallbacks = collect_fallbacks(model)
        if not isinstance(config, BaselineConfig):
            stats, eval_seconds = score_model(
                baseline, model, method_id=config.method_id, progress=progress, should_stop=should_stop
            )
        prompt = baseline.windows.tokens[:1, :DECODE_PROMPT_TOKENS].to(baseline.device)
        decode_ms = decode_ms_per_token(model, prompt, decode_tokens) if decode_tokens > 0 else None
        peak_rss = _peak_rss_bytes()
    finally:
        if model is not baseline.model:
            del model
            gc.collect()
    metrics = summarize(stats)
    predicted, predict_note = baseline.predicted_bytes(config)
    summary = method_summary(config)
    n_tokens = baseline.windows.n_windows * baseline.windows.n_ctx
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
        model={
            **baseline.source.describe(),
            "dtype": dtype_name(baseline.dtype),
            "n_params": baseline.n_params,
        },
        corpus=baseline.corpus.describe(),
        windows=baseline.windows.describe(),
        calibration=calibration,
        ppl=metrics.ppl,
        ppl_err=metrics.ppl_err,
        baseline_ppl=metrics.baseline_ppl,
        baseline_ppl_err=metrics.baseline_ppl_err,
        delta_ppl_pct=metrics.delta_ppl_pct,
        ln_ppl_ratio=metrics.ln_ppl_ratio,
        ln_ppl_ratio_err=metrics.ln_ppl_ratio_err,
        kld_mean=metrics.kld_mean,
        kld_err=metrics.kld_err,
        kld_max=metrics.kld_max,
        kld_percentiles=metrics.kld_percentiles,
        top1_agreement=metrics.top1_agreement,
        top1_agreement_err=metrics.top1_agreement_err,
        rms_dp=metrics.rms_dp,
        rms_dp_err=metrics.rms_dp_err,
        measured_bytes=storage.total_bytes,
        predicted_bytes=predicted,
        quantized_bytes=storage.quantized_bytes,
        quantized_params=storage.quantized_params,
        bits_per_weight=bits_per_weight,
        quantize_seconds=quantize_seconds,
        eval_seconds=eval_seconds,
        tokens_per_s=n_tokens / eval_seconds if eval_seconds > 0 else 0.0,
        decode_ms_per_token=decode_ms,
        peak_rss_bytes=peak_rss,
        peak_rss_scope=rss_scope,
        fallbacks=fallbacks,
        notes=_notes(baseline, config, fallbacks, predict_note),
        env=environment(baseline.device),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------- the API


def _check_baseline_matches(
    baseline: Baseline,
    n_ctx: int,
    max_tokens: int,
    scoring: Scoring,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    wanted = {
        "n_ctx": n_ctx,
        "max_tokens": max_tokens,
        "scoring": scoring,
        "dtype": dtype,
        "device": device.type,
    }
    have = {
        "n_ctx": baseline.windows.n_ctx,
        "max_tokens": baseline.windows.max_tokens,
        "scoring": baseline.windows.scoring,
        "dtype": baseline.dtype,
        "device": baseline.device.type,
    }
    diff = [f"{k}: baseline {have[k]}, asked {wanted[k]}" for k in wanted if have[k] != wanted[k]]
    if diff:
        raise ValueError("the baseline passed in was computed with other settings (" + "; ".join(diff) + ")")


def evaluate(
    model_ref: str | ModelSource | None,
    corpus_ref: str | Path | Corpus | None,
    methods: Sequence[Any | str],
    *,
    n_ctx: int = DEFAULT_N_CTX,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    scoring: Scoring | str = Scoring.WHOLE,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "bf16",
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    baseline: Baseline | None = None,
    decode_tokens: int = DEFAULT_DECODE_TOKENS,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    calibration_len: int = DEFAULT_CALIBRATION_LEN,
    on_result: Callable[[Result], None] | None = None,
    on_baseline: Callable[[Baseline], None] | None = None,
) -> list[Result]:
    """Evaluate ``methods`` (configs or ids such as "int4-g32") on a model and corpus, in order.

    Cached results (``cache_dir``) are returned without loading anything. The baseline is computed on the
    first uncached method, or taken from ``baseline`` (whose settings must match), and handed to
    ``on_baseline``. ``should_stop()`` is polled between windows: the method under way is dropped and the
    results finished so far are returned. ``on_result`` sees each result as soon as it exists.
    """
    configs = [parse_method(m) if isinstance(m, str) else m for m in methods]
    dev, dt, scoring = parse_device(device), parse_dtype(dtype), Scoring(scoring)
    if baseline is not None:
        _check_baseline_matches(baseline, n_ctx, max_tokens, scoring, dt, dev)
        source, corpus = baseline.source, baseline.corpus
    else:
        if model_ref is None or corpus_ref is None:
            raise ValueError("give a model and a corpus, or a prepared baseline")
        source = (
            model_ref
            if isinstance(model_ref, ModelSource)
            else resolve_model_source(model_ref, memo_dir=cache_dir)
        )
        corpus = load_corpus(corpus_ref)
    settings = run_settings(source, corpus, n_ctx, max_tokens, scoring, dt, dev)
    cache = ResultCache(cache_dir) if cache_dir is not None else None
    results: list[Result] = []
    for config in configs:
        calibration = _calibration_spec(config, corpus, calibration_samples, calibration_len)
        key = _method_key(settings, config, decode_tokens, calibration)
        cached = cache.get(key) if cache is not None else None
        if cached is None:
            if should_stop is not None and should_stop():
                break
            try:
                if baseline is None:
                    baseline = prepare_baseline(
                        source,
                        corpus,
                        n_ctx=n_ctx,
                        max_tokens=max_tokens,
                        scoring=scoring,
                        device=dev,
                        dtype=dt,
                        progress=progress,
                        should_stop=should_stop,
                    )
                    if on_baseline is not None:
                        on_baseline(baseline)
                result = evaluate_method(
                    baseline,
                    config,
                    key=key,
                    decode_tokens=decode_tokens,
                    calibration_samples=calibration_samples,
                    calibration_len=calibration_len,
                    progress=progress,
                    should_stop=should_stop,
                )
            except EvaluationStopped:
                break
            if cache is not None:
                cache.put(result)
        else:
            result = cached
            if progress:
                progress(config.method_id, cached.windows["n_windows"], cached.windows["n_windows"])
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
