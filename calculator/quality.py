"""Which format loses least: a quality ranking read from llama.cpp's Llama-3-8B KLD scoreboard.

A format's score is the mean KL divergence of the quantized model's next-token distribution to the FP16
model's, over wikitext-2 (``llama-perplexity --kl-divergence``), as published in llama.cpp's "LLaMA 3 8b
Scoreboard" (ggerganov/llama.cpp examples/perplexity/README.md @c392e5094deaf2d1a7c18683214f007fad3fe42b),
bundled with that source on every row in ``assets/reference/llamacpp_llama3_8b_scoreboard.csv``. The
table is read from that file, never re-typed. The rule:

- each type scores its lowest published KLD (several types were measured only with an importance
  matrix, some with several: Q2_K has five rows);
- the scoreboard's F16 row is our ``fp16``; ``fp32`` is the reference and ``bf16`` the checkpoint's
  native dtype, so both score 0 (ties keep this order: fp32 before bf16).

Lower is better: ``QUALITY_ORDER`` lists the formats from highest to lowest quality, which is the order
``calculator.search.best_format`` tries them in.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import MappingProxyType

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from calculator.models import ASSETS

SCOREBOARD_PATH: Path = ASSETS / "reference" / "llamacpp_llama3_8b_scoreboard.csv"

_LOSSLESS = ("fp32", "bf16")
"""Score 0 by definition (the reference and the native checkpoint dtype), listed first."""

_OUR_NAMES = {"F16": "fp16"}
"""Scoreboard ``quant_type`` -> our format name, where they differ (the rest are GGUF file types)."""


def read_scoreboard(path: Path = SCOREBOARD_PATH) -> dict[str, float]:
    """Format -> lowest mean KLD in the scoreboard CSV at ``path`` (plus fp32 and bf16 at 0)."""
    kld = dict.fromkeys(_LOSSLESS, 0.0)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            name = _OUR_NAMES.get(row["quant_type"], row["quant_type"])
            kld[name] = min(kld.get(name, math.inf), float(row["kld"]))
    return kld


QUALITY_KLD: MappingProxyType[str, float] = MappingProxyType(read_scoreboard())
"""Mean KLD vs FP16 on Llama-3-8B (see module docstring). Lower = better."""

QUALITY_ORDER: tuple[str, ...] = tuple(sorted(QUALITY_KLD, key=QUALITY_KLD.__getitem__))
"""Formats from highest to lowest quality (a stable sort: ties keep the table order)."""

assert all(name in FORMATS or name in FILE_TYPES for name in QUALITY_KLD), "scoreboard names a format we lack"
