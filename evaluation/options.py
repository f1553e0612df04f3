"""``EvaluateOptions``: every setting of an evaluation besides the model, the corpus and the methods.

One frozen, validated value (as torchao's configs are), so a run's settings travel together: from the CLI
flags or a page's widgets to ``runner.evaluate`` / ``runner.cached_result`` / ``scoring.prepare_baseline``,
and into the result's cache key. Strings are accepted where a typed value is stored ("cpu" ->
``torch.device``, "bf16" -> ``torch.bfloat16``, "whole" -> ``Scoring.WHOLE``); a bad value is a
``ValueError`` that names it and says what to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from calculator.units import check_int
from evaluation.models import parse_device, parse_dtype
from evaluation.results import Scoring

DEFAULT_N_CTX = 512
DEFAULT_MAX_TOKENS = 4096
DEFAULT_DECODE_TOKENS = 16
# Calibration for GPTQ/AWQ: 32 sequences of 512 tokens (GPTQ's paper uses 128 x 2048 C4 tokens; a CPU
# run of a small model is served well by fewer, and the count is recorded in every result).
DEFAULT_CALIBRATION_SAMPLES = 32
DEFAULT_CALIBRATION_LEN = 512
MIN_N_CTX = 8
"""Shortest window: a window scores n_ctx - 1 (or half as many) predictions."""


@dataclass(frozen=True)
class EvaluateOptions:
    """Windows, numerics, cache and timing of an evaluation.

    ``EvaluateOptions(n_ctx=512, max_tokens=1024)`` scores two windows of 512 tokens; ``max_tokens`` is
    the token budget (windows = max_tokens // n_ctx). ``cache_dir`` None: neither read nor write the
    result cache. ``decode_tokens`` 0 skips the decode timing. Calibration (GPTQ/AWQ only):
    ``calibration_samples`` sequences of ``calibration_len`` tokens from the corpus's calibration text.
    """

    n_ctx: int = DEFAULT_N_CTX
    max_tokens: int = DEFAULT_MAX_TOKENS
    scoring: Scoring = Scoring.WHOLE
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.bfloat16
    cache_dir: Path | None = None
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    calibration_len: int = DEFAULT_CALIBRATION_LEN

    def __post_init__(self) -> None:
        check_int("n_ctx", self.n_ctx, low=MIN_N_CTX, example="512 tokens per window")
        check_int("max_tokens", self.max_tokens, low=MIN_N_CTX, example="4096 tokens in all")
        if self.max_tokens < self.n_ctx:
            raise ValueError(
                f"max_tokens {self.max_tokens} is less than one window of n_ctx {self.n_ctx}: raise --tokens "
                "or lower --ctx"
            )
        check_int("decode_tokens", self.decode_tokens, low=0, example="16, or 0 to skip decode timing")
        check_int("calibration_samples", self.calibration_samples, example="4")
        check_int("calibration_len", self.calibration_len, low=MIN_N_CTX, example="512 tokens")
        try:
            scoring = Scoring(self.scoring)
        except ValueError:
            raise ValueError(
                f"scoring {self.scoring!r}: use {' or '.join(s.value for s in Scoring)}"
            ) from None
        object.__setattr__(self, "scoring", scoring)
        object.__setattr__(self, "device", parse_device(self.device))
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
