"""How the pages name things: units, format families (calculator) and method families (evaluation).

One place, so a table, a chart legend and a filter on different pages say the same words.
"""

from __future__ import annotations

from calculator.formats import Family

GB_NOTE = "GB = 10⁹ bytes, GiB = 2³⁰ bytes"

FORMAT_FAMILY_LABELS = {
    Family.FLOAT: "float", Family.INT: "integer, ideal (no scales)",
    Family.GROUP_INT: "integer + fp16 scales", Family.GPTQ: "GPTQ", Family.AWQ: "AWQ",
    Family.BNB: "bitsandbytes", Family.MICROSCALING: "microscaling FP4", Family.EXL2: "EXL2",
    Family.GGUF: "GGUF tensor type",
}
"""Weight-format families (``calculator.formats.Family``): Memory and Formats tables, chart legends, filters."""
assert set(FORMAT_FAMILY_LABELS) == set(Family), set(Family) ^ set(FORMAT_FAMILY_LABELS)

METHOD_FAMILY_LABELS = {
    "baseline": "baseline (bf16)", "int-kernel": "int kernels (PyTorch)", "rtn-simulated": "RTN (simulated)",
    "bnb": "bitsandbytes", "gptq": "GPTQ", "awq": "AWQ", "gguf": "GGUF (llama.cpp)",
}  # fmt: skip
"""Evaluation method families (a result's ``family`` field) as the quality pages' legends name them."""


def method_family_label(family: str) -> str:
    """The legend name of a result's family; an unknown family (a newer results file) shows as written."""
    return METHOD_FAMILY_LABELS.get(family, family)


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """A count with its noun agreeing: ``plural(1, "layer")`` -> "1 layer", ``plural(38, "layer")`` -> "38 layers",
    ``plural(1200, "token")`` -> "1,200 tokens" (thousands separated, as everywhere in the app)."""
    return f"{n:,} {singular if n == 1 else plural_form or singular + 's'}"
