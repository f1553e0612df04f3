"""``EvaluateOptions``: every setting of an evaluation besides the model, the corpus and the methods.

One frozen, validated value (as torchao's configs are), so a run's settings travel together: from the CLI
flags or a page's widgets to ``runner.evaluate`` / ``runner.cached_result`` / ``scoring.prepare_baseline``,
and into the result's cache key. Strings are accepted where a typed value is stored ("cpu" ->
``torch.device``, "bf16" -> ``torch.bfloat16``, "whole" -> ``Scoring.WHOLE``, "0=70GiB,cpu=120GiB" ->
``max_memory``); a bad value is a ``ValueError`` that names it and says what to use.

Models bigger than one device: ``device_map`` (accelerate's "auto", "balanced", "balanced_low_0",
"sequential") spreads the layers over the GPUs, then the CPU (offloaded layers run on the first GPU), then
disk, within ``max_memory`` bytes per device; big baseline logits go to a file (``logits_storage``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from calculator.units import MAX_CONTEXT_TOKENS, check_int, parse_bytes
from evaluation.logits_store import LogitsStorage
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


class DeviceMap(enum.StrEnum):
    """accelerate's placement strategies (``infer_auto_device_map``), as transformers' ``device_map`` takes them."""

    AUTO = "auto"
    """Fill the GPUs in order (balanced when several), then the CPU, then disk."""
    BALANCED = "balanced"
    """The same layers on every GPU."""
    BALANCED_LOW_0 = "balanced_low_0"
    """Balanced, leaving room on GPU 0 (for generation)."""
    SEQUENTIAL = "sequential"
    """GPU 0 first, then GPU 1, ..."""


_DEVICE_KEY = re.compile(r"\d+|cpu|disk|mps|xpu:\d+")


def parse_max_memory(value: str | Mapping | None) -> tuple[tuple[str, int], ...] | None:
    """``"0=70GiB,1=70GiB,cpu=120GiB"`` or ``{0: "70GiB", "cpu": "120GiB"}`` -> ``(("0", bytes), ...)``."""
    if value is None:
        return None
    if isinstance(value, str):
        pairs = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, size = part.partition("=")
            if not sep:
                raise ValueError(f"max memory entry {part!r}: write DEVICE=SIZE, e.g. 0=70GiB,cpu=120GiB")
            pairs.append((key.strip(), size.strip()))
    elif isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = [(str(k), v) for k, v in value]
    out = []
    for key, size in pairs:
        if not _DEVICE_KEY.fullmatch(key.lower()):
            raise ValueError(f"max memory device {key!r}: use a GPU index (0, 1, ...), cpu or disk")
        out.append((key.lower(), parse_bytes(size)))
    if not out:
        raise ValueError(f"max memory {value!r} names no device: e.g. 0=70GiB,cpu=120GiB")
    return tuple(out)


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
    device_map: DeviceMap | None = None
    """None: the whole model on ``device``."""
    max_memory: tuple[tuple[str, int], ...] | None = None
    """Bytes per device for ``device_map`` (keys "0", "1", ..., "cpu", "disk")."""
    logits_storage: LogitsStorage = LogitsStorage.AUTO

    def __post_init__(self) -> None:
        check_int("n_ctx", self.n_ctx, low=MIN_N_CTX, high=MAX_CONTEXT_TOKENS, example="512 tokens per window")
        check_int("max_tokens", self.max_tokens, low=MIN_N_CTX, high=MAX_CONTEXT_TOKENS, example="4096 tokens in all")
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
        if self.device_map is not None:
            try:
                object.__setattr__(self, "device_map", DeviceMap(self.device_map))
            except ValueError:
                raise ValueError(
                    f"device_map {self.device_map!r}: use {', '.join(d.value for d in DeviceMap)} (or none)"
                ) from None
        object.__setattr__(self, "max_memory", parse_max_memory(self.max_memory))
        if self.max_memory is not None and self.device_map is None:
            raise ValueError("max_memory limits a device_map: add --device-map auto, or drop --max-memory")
        try:
            object.__setattr__(self, "logits_storage", LogitsStorage(self.logits_storage))
        except ValueError:
            raise ValueError(
                f"logits storage {self.logits_storage!r}: use {', '.join(s.value for s in LogitsStorage)}"
            ) from None

    @property
    def placement(self) -> dict | None:
        """The device map and memory limits as JSON (None without a device map): part of the cache key, since
        where each layer runs can change the numbers."""
        if self.device_map is None:
            return None
        return {"device_map": self.device_map.value, "max_memory": dict(self.max_memory or ())}

    def transformers_placement(self) -> dict:
        """``from_pretrained`` keywords for this placement (``device_map``, ``max_memory`` with int GPU keys)."""
        if self.device_map is None:
            return {}
        kwargs: dict = {"device_map": self.device_map.value}
        if self.max_memory:
            kwargs["max_memory"] = {int(k) if k.isdigit() else k: v for k, v in self.max_memory}
        return kwargs
