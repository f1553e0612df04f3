"""Scoring models on token windows against a baseline that is computed once.

The expensive part every method shares, the baseline model and its logits on the evaluation windows, is a
``Baseline`` (``prepare_baseline``), reusable across calls and methods (a UI keeps one). Its logits stay in
a ``logits_store`` (memory, or a file read back a chunk at a time), with a ``metrics.Reference`` per window.
A method's model is then run on the same windows and each window's logits are compared with the stored
ones (``score_model``; the statistics are ``evaluation.metrics``'). Only the scored positions go through
the output head when the model takes ``logits_to_keep`` (transformers).

A baseline can also travel without its model (``BaselinePayload``: windows, logits, references, stats):
a Ray task rebuilds it next to a model it loaded itself (``attach_payload``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluation.corpus import Corpus, Windows, calibration_sequences, load_corpus, make_windows
from evaluation.logits_store import LogitsStore, MemoryLogits, make_store
from evaluation.measure import release_memory, sync
from evaluation.metrics import Reference, TokenStats, compare, reference, self_stats
from evaluation.models import ModelSource, load_model, resolve_model_source
from evaluation.options import EvaluateOptions
from evaluation.storage import ModuleSignature, module_signature

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


def input_device(model: nn.Module, default: torch.device) -> torch.device:
    """Where a model's token ids go: its embedding's device (models spread by ``device_map`` start there),
    else ``default``."""
    get = getattr(model, "get_input_embeddings", None)
    weight = getattr(get(), "weight", None) if callable(get) else None
    if isinstance(weight, torch.Tensor) and weight.device.type != "meta":
        return weight.device
    return default


def run_windows(
    model: nn.Module,
    windows: Windows,
    device: torch.device,
    method_id: str,
    on_logits: Callable[[int, torch.Tensor, torch.Tensor], None],
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Feed every window, hand its scored logits [T, V] and targets [T] (on the logits' device) to
    ``on_logits``; returns wall seconds. ``should_stop()`` is polled before each window (``EvaluationStopped``)."""
    total = windows.n_windows
    if progress:
        progress(method_id, 0, total)
    elapsed = 0.0
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    device = input_device(model, device)
    with torch.inference_mode():
        for i in range(total):
            if should_stop is not None and should_stop():
                raise EvaluationStopped(method_id)
            start = time.perf_counter()
            ids = windows.tokens[i : i + 1].to(device)  # [1, n_ctx]
            logits = window_logits(model, ids, windows.first, keep_arg)
            on_logits(i, logits, ids[0, windows.first + 1 :].to(logits.device))
            sync(logits.device)
            elapsed += time.perf_counter() - start
            if progress:
                progress(method_id, i + 1, total)
    return elapsed


def _warm_up(model: nn.Module, windows: Windows, device: torch.device) -> None:
    """One untimed forward of the first window: kernel selection and allocator growth are not eval time."""
    with torch.inference_mode():
        logits = window_logits(model, windows.tokens[:1].to(input_device(model, device)), windows.first)
    sync(logits.device)


@dataclass
class Baseline:
    """The unquantized model, its windows and its logits on them: computed once, shared by every method."""

    source: ModelSource
    corpus: Corpus
    model: nn.Module | None
    """None once released (``method_model`` then loads a fresh copy for each method)."""
    tokenizer: Any
    windows: Windows
    options: EvaluateOptions
    """The options it was prepared with (windows, dtype, device, device map)."""
    logits: LogitsStore
    """The scored positions' logits of every window, in the model's dtype (tokens x vocab x 2 bytes in
    bf16: 0.4 GB for SmolLM2 at 4096 tokens), in memory or in a file (``EvaluateOptions.logits_storage``)."""
    references: list[Reference]
    """Per window, the baseline's side of every comparison (``metrics.reference``)."""
    stats: TokenStats
    load_seconds: float
    eval_seconds: float
    model_config: Any
    """The transformers config (for the calculator's prediction and the GGUF recipes)."""
    n_params: int
    signature: dict[str, ModuleSignature]
    """Each module's type and weight layout, so ``storage.measure_storage`` needs no baseline model."""
    _calibration: dict = field(default_factory=dict, repr=False)
    runtime_cache: dict = field(default_factory=dict, repr=False)
    """What ``evaluation.runtime`` measured once per baseline (the llama.cpp floor)."""

    @property
    def dtype(self) -> torch.dtype:
        return self.options.dtype

    @property
    def device(self) -> torch.device:
        return self.options.device

    @functools.cached_property
    def spec(self):
        """The calculator's ``ModelSpec`` of this model (from its config), for predicted bytes."""
        from calculator.models import spec_from_config

        return spec_from_config(self.model_config.to_dict(), name=self.source.model_id)

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
                  "dtype": options.dtype, "device": options.device.type, "device_map": options.placement}
        have = {"n_ctx": self.windows.n_ctx, "max_tokens": self.windows.max_tokens, "scoring": self.windows.scoring,
                "dtype": self.dtype, "device": self.device.type, "device_map": self.options.placement}
        return [f"{k}: baseline {have[k]}, asked {wanted[k]}" for k in wanted if have[k] != wanted[k]]  # fmt: skip

    def load_model(self) -> nn.Module:
        """A fresh copy of the baseline model from its source, placed as the options say."""
        return load_model(self.source, options=self.options)[0]

    def method_model(self) -> nn.Module:
        """A model a method may quantize in place: a deep copy of the baseline model, or, for a model
        spread by ``device_map`` (which would not fit twice) or a released baseline, a fresh load (the
        baseline model is released first)."""
        if self.model is not None and self.options.device_map is None:
            return copy.deepcopy(self.model)
        self.release_model()
        return self.load_model()

    def release_model(self) -> None:
        """Drop the baseline model (its memory returns to the system); its logits stay."""
        if self.model is not None:
            self.model = None
            release_memory()

    def close(self) -> None:
        """Release the model and the stored logits (a file store deletes its file)."""
        self.release_model()
        self.logits.close()

    def payload(self) -> BaselinePayload:
        """Everything but the model and tokenizer, on the CPU, ready for Ray's object store."""
        return BaselinePayload(
            tokens=self.windows.tokens.numpy(),
            bos_token_id=self.windows.bos_token_id,
            logits=self.logits.to_numpy(),
            references=[Reference(*(t.cpu() for t in (r.lse, r.mass, r.top, r.nll))) for r in self.references],
            stats=self.stats,
            load_seconds=self.load_seconds,
            eval_seconds=self.eval_seconds,
            runtime_cache=dict(self.runtime_cache),
        )


@dataclass(frozen=True)
class BaselinePayload:
    """A baseline without its model: the windows' tokens, the logits (``LogitsStore.to_numpy``; bf16 as
    int16 bits), the references and the statistics. Numpy arrays travel through Ray's object store
    without copies to tasks on the same node."""

    tokens: np.ndarray
    bos_token_id: int | None
    logits: np.ndarray
    references: list[Reference]
    stats: TokenStats
    load_seconds: float
    eval_seconds: float
    runtime_cache: dict = field(default_factory=dict)
    """``Baseline.runtime_cache`` (the llama.cpp floor, when the baseline task measured it)."""


def attach_payload(
    payload: BaselinePayload,
    source: ModelSource,
    corpus: Corpus,
    options: EvaluateOptions,
    model: nn.Module,
    tokenizer: Any,
) -> Baseline:
    """The ``Baseline`` of ``payload`` for a model loaded from the same source (a Ray task's own copy, which
    the task quantizes: the baseline keeps only its signature, config and size, not the model)."""
    windows = Windows(torch.from_numpy(payload.tokens), options.scoring, options.max_tokens, payload.bos_token_id)
    device = input_device(model, options.device)
    store = MemoryLogits.from_numpy(payload.logits, options.dtype, device)
    refs = [Reference(*(t.to(device) for t in (r.lse, r.mass, r.top, r.nll))) for r in payload.references]
    return Baseline(
        source=source, corpus=corpus, model=None, tokenizer=tokenizer, windows=windows, options=options,
        logits=store, references=refs, stats=payload.stats, load_seconds=payload.load_seconds,
        eval_seconds=payload.eval_seconds, model_config=model.config,
        n_params=sum(p.numel() for p in model.parameters()), signature=module_signature(model),
        runtime_cache=dict(payload.runtime_cache),
    )  # fmt: skip


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
    """Load the model, cut the windows, and keep the baseline's logits on them."""
    options = options or EvaluateOptions()
    source, corpus = resolve(model_ref, corpus_ref, options)
    start = time.perf_counter()
    model, tokenizer = load_model(source, options=options)
    load_seconds = time.perf_counter() - start
    windows = make_windows(
        tokenizer, corpus, n_ctx=options.n_ctx, max_tokens=options.max_tokens, scoring=options.scoring
    )
    stores: list[LogitsStore] = []
    refs: list[Reference] = []
    scratch = options.cache_dir / "scratch" if options.cache_dir is not None else None

    def keep(i: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if not stores:
            stores.append(make_store(options.logits_storage, windows.n_windows, *logits.shape, logits.dtype,
                                     device=logits.device, directory=scratch))  # fmt: skip
        stores[0].put(i, logits)
        refs.append(reference(logits, targets))

    _warm_up(model, windows, options.device)
    eval_seconds = run_windows(model, windows, options.device, "baseline", keep, progress, should_stop)
    stats = TokenStats.cat([self_stats(r) for r in refs]).cpu()
    return Baseline(
        source=source, corpus=corpus, model=model, tokenizer=tokenizer, windows=windows, options=options,
        logits=stores[0], references=refs, stats=stats, load_seconds=load_seconds, eval_seconds=eval_seconds,
        model_config=model.config, n_params=sum(p.numel() for p in model.parameters()),
        signature=module_signature(model),
    )  # fmt: skip


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

    def against(i: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        def base_rows(start: int, stop: int) -> torch.Tensor:
            return baseline.logits.rows(i, start, stop).to(logits.device)

        parts.append(compare(logits, base_rows, baseline.references[i], targets))

    seconds = run_windows(model, baseline.windows, baseline.device, method_id, against, progress, should_stop)
    return TokenStats.cat(parts).cpu(), seconds
