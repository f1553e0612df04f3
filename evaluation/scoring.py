"""Scoring models on token windows against a baseline that is computed once.

The expensive part every method shares, the baseline model and its log-probs on the evaluation windows,
is a ``Baseline`` (``prepare_baseline``), reusable across calls and methods (a UI keeps one). A method's
model is then run on the same windows and each window's logits are compared with the stored baseline
log-probs (``score_model``; the statistics are ``evaluation.metrics``'). Only the scored positions go
through the output head when the model takes ``logits_to_keep`` (transformers).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluation.corpus import Corpus, Windows, calibration_sequences, load_corpus, make_windows
from evaluation.measure import sync
from evaluation.metrics import TokenStats, log_probs, token_stats
from evaluation.models import ModelSource, load_model, resolve_model_source
from evaluation.options import EvaluateOptions

Progress = Callable[[str, int, int], None]
"""progress(method_id, windows_done, windows_total)."""


class EvaluationStopped(Exception):
    """``should_stop()`` returned True between two windows."""


def window_logits(model: nn.Module, ids: torch.Tensor, first: int, keep_arg: bool | None = None) -> torch.Tensor:
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


def run_windows(
    model: nn.Module,
    windows: Windows,
    device: torch.device,
    method_id: str,
    on_logits: Callable[[int, torch.Tensor, torch.Tensor], None],
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Feed every window, hand its scored logits [T, V] and targets [T] to ``on_logits``; returns wall
    seconds. ``should_stop()`` is polled before each window (``EvaluationStopped``)."""
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
            ids = windows.tokens[i : i + 1].to(device)  # [1, n_ctx]
            logits = window_logits(model, ids, windows.first, keep_arg)
            on_logits(i, logits, ids[0, windows.first + 1 :])
            sync(device)
            elapsed += time.perf_counter() - start
            if progress:
                progress(method_id, i + 1, total)
    return elapsed


def _warm_up(model: nn.Module, windows: Windows, device: torch.device) -> None:
    """One untimed forward of the first window: kernel selection and allocator growth are not eval time."""
    with torch.inference_mode():
        window_logits(model, windows.tokens[:1].to(device), windows.first)
    sync(device)


@dataclass
class Baseline:
    """The unquantized model, its windows and its logits on them: computed once, shared by every method."""

    source: ModelSource
    corpus: Corpus
    model: nn.Module
    tokenizer: Any
    windows: Windows
    options: EvaluateOptions
    """The options it was prepared with (windows, dtype, device)."""
    log_probs: list[torch.Tensor]
    """Per window, the scored positions' fp32 log-probs [scored, vocab] (tokens x vocab x 4 bytes in all:
    0.8 GB for SmolLM2 at 4096 tokens), on the model's device."""
    stats: TokenStats
    load_seconds: float
    eval_seconds: float
    _calibration: dict = field(default_factory=dict, repr=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.options.dtype

    @property
    def device(self) -> torch.device:
        return self.options.device

    @functools.cached_property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @functools.cached_property
    def spec(self):
        """The calculator's ``ModelSpec`` of this model (from its config), for predicted bytes."""
        from calculator.models import spec_from_config

        return spec_from_config(self.model.config.to_dict(), name=self.source.model_id)

    def calibration(self, n_samples: int, seq_len: int) -> list[torch.Tensor]:
        """``n_samples`` calibration sequences [1, seq_len] on the model's device, cut once per shape."""
        key = (n_samples, seq_len)
        if key not in self._calibration:
            seqs = calibration_sequences(self.tokenizer, self.corpus, n_samples=n_samples, seq_len=seq_len)
            self._calibration[key] = [s.to(self.device) for s in seqs]
        return self._calibration[key]

    def mismatch(self, options: EvaluateOptions) -> list[str]:
        """How ``options`` differ from this baseline's windows, dtype and device ("n_ctx: baseline 64, asked
        128"); empty when the baseline serves them."""
        wanted = {"n_ctx": options.n_ctx, "max_tokens": options.max_tokens, "scoring": options.scoring,
                  "dtype": options.dtype, "device": options.device.type}  # fmt: skip
        have = {"n_ctx": self.windows.n_ctx, "max_tokens": self.windows.max_tokens, "scoring": self.windows.scoring,
                "dtype": self.dtype, "device": self.device.type}  # fmt: skip
        return [f"{k}: baseline {have[k]}, asked {wanted[k]}" for k in wanted if have[k] != wanted[k]]


def resolve(model_ref: str | ModelSource, corpus_ref: str | Path | Corpus, options: EvaluateOptions):
    """(ModelSource, Corpus) for a model and a corpus given as references or already resolved."""
    source = (
        model_ref
        if isinstance(model_ref, ModelSource)
        else resolve_model_source(model_ref, memo_dir=options.cache_dir)
    )
    return source, load_corpus(corpus_ref)


def prepare_baseline(
    model_ref: str | ModelSource,
    corpus_ref: str | Path | Corpus = "shakespeare",
    options: EvaluateOptions | None = None,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Baseline:
    """Load the model, cut the windows, and keep the baseline's log-probs on them."""
    options = options or EvaluateOptions()
    source, corpus = resolve(model_ref, corpus_ref, options)
    start = time.perf_counter()
    model, tokenizer = load_model(source, dtype=options.dtype, device=options.device)
    load_seconds = time.perf_counter() - start
    windows = make_windows(
        tokenizer, corpus, n_ctx=options.n_ctx, max_tokens=options.max_tokens, scoring=options.scoring
    )
    kept: list[torch.Tensor] = []
    parts: list[TokenStats] = []

    def keep(_: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        kept.append(log_probs(logits))
        parts.append(token_stats(logits, kept[-1], targets))

    _warm_up(model, windows, options.device)
    eval_seconds = run_windows(model, windows, options.device, "baseline", keep, progress, should_stop)
    stats = TokenStats.cat(parts).cpu()
    return Baseline(source, corpus, model, tokenizer, windows, options, kept, stats, load_seconds, eval_seconds)


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

    def compare(i: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        parts.append(token_stats(logits, baseline.log_probs[i], targets))

    seconds = run_windows(model, baseline.windows, baseline.device, method_id, compare, progress, should_stop)
    return TokenStats.cat(parts).cpu(), seconds
