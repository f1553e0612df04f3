"""Units: the only place where byte counts become text and text becomes numbers, plus the helpers every
module shares (``check_int``, the one integer validator; ``check_float``, its twin for real numbers;
``ceil_div``, the one ceiling division) and the bounds every input is held to (``MAX_*``).

Inside quantfit every size is an ``int`` of bytes. Display always names its unit:
GB = 10**9 bytes (how vendors sell memory: an "80 GB" H100), GiB = 2**30 bytes (what
``nvidia-smi`` and llama.cpp's "G" print). The two are never mixed in one number.

Text becomes a number only after its length and exponent are bounded: ``Fraction("1e99999999")``
would build a 100-million-digit integer (minutes of CPU), and a regex over a 100,000-digit string
backtracks quadratically. So ``parse_count`` / ``parse_bytes`` refuse text longer than
``MAX_NUMBER_CHARS`` and exponents beyond ``MAX_EXPONENT`` before any arithmetic, and values beyond
``MAX_PARAMS`` / ``MAX_BYTES`` after it.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

GB = 10**9
GiB = 2**30
MB = 10**6
MiB = 2**20

# Bounds. Each is far beyond any real model or machine, and small enough that arithmetic on it is instant.
MAX_PARAMS = 10**15
"""1,000T parameters: the largest published LLMs have ~2T."""
MAX_BYTES = 10**18
"""1 EB: memory sizes, overheads and file sizes (the largest GPU clusters hold a few PB)."""
MAX_LAYERS = 512
"""Transformer blocks (Llama 3.1 405B has 126); every block adds ~10 tensors to size and replay."""
MAX_DIM = 2**24
"""One tensor dimension: hidden, FFN, vocabulary, head size, LoRA rank (vocabularies reach 262,144)."""
MAX_HEADS = 2**14
"""Attention heads and experts (DeepSeek-V3: 128 heads, 256 routed experts)."""
MAX_CONTEXT_TOKENS = 2**27
"""Context length, 134M tokens (Llama 4 Scout's config allows 10.5M)."""
MAX_BATCH = 2**16
"""Sequences decoded together."""
MAX_GPU_COUNT = 256
"""Devices in one setup (the largest NVLink domain, GB200 NVL72, joins 72)."""
MAX_NUMBER_CHARS = 64
"""Longest text read as one number: ``1,000,000,000,000,000`` and ``1.5e12`` are far shorter."""
MAX_EXPONENT = 30
"""Largest decimal exponent read (``1e30``); beyond it a value is out of every range anyway."""

_COUNT_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)

_BYTE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?I?B)?\s*$", re.IGNORECASE)


def shown(value: object) -> str:
    """``repr(value)`` short enough for a one-line message: a 10,000-digit int is not printed in full
    (Python refuses to, past 4,300 digits), long text is cut at 40 characters."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"{'-' if value < 0 else ''}{value.bit_length() * 30103 // 100000 + 1}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(label: str, value: object, *, low: int = 1, high: int | None = None, example: str = "") -> int:
    """``value`` if it is a whole number in ``[low, high]``, else a ValueError naming ``label`` and the rule.

    ``check_int("context", 0, example="8192 tokens")`` -> "context 0 must be a whole number >= 1 (e.g. 8192
    tokens)". Booleans and floats are refused (``True`` is not a count, ``2.0`` came from a wrong parse).
    ``low=0`` validates byte counts that may be empty; ``high`` bounds a choice ("bits 9 must be a whole
    number from 2 to 8").
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        rule = f">= {low}" if high is None else f"from {low} to {high}"
        hint = f" (e.g. {example})" if example else ""
        raise ValueError(f"{label} {shown(value)} must be a whole number {rule}{hint}")
    return value


def check_float(
    label: str, value: object, *, low: float = 0.0, high: float, low_open: bool = False, example: str = ""
) -> float:
    """``value`` as a float if it is a finite real number in ``[low, high]`` (``(low, high]`` with
    ``low_open``), else a ValueError naming ``label`` and the rule.

    ``check_float("--overhead-gib", float("inf"), high=1e6)`` -> "--overhead-gib inf must be a number from
    0 to 1e+06". Booleans are refused; ints are accepted (``2`` is a fine 2.0).
    """
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            ok = False
        else:
            ok = math.isfinite(number) and (number > low if low_open else number >= low) and number <= high
    if not ok:
        rule = f"{'above' if low_open else 'from'} {low:g} {'and at most' if low_open else 'to'} {high:g}"
        hint = f" (e.g. {example})" if example else ""
        raise ValueError(f"{label} {shown(value)} must be a number {rule}{hint}")
    return number


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` in exact integer arithmetic (``a / b`` is a float and loses bytes above 2**53)."""
    return -(-a // b)


def _number_text(label: str, text: object, hint: str) -> str:
    """A number's text, refused before any regex or arithmetic if longer than ``MAX_NUMBER_CHARS``."""
    if not isinstance(text, str):
        raise ValueError(f"{label} {shown(text)} is not a number; {hint}")
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"{label} {text[:20]!r}... is {len(text):,} characters long, not a number; {hint}")
    return text


def _decimal(label: str, text: str, mantissa: str, hint: str) -> Fraction:
    """Exact value of a matched decimal, its exponent bounded first (``1e99999999`` is refused at once)."""
    digits, _, exponent = mantissa.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise ValueError(f"{label} {text!r} is out of range (exponent {exponent} beyond +/-{MAX_EXPONENT}); {hint}")
    return Fraction(digits) * Fraction(10) ** int(exponent or 0)


def parse_count(text: str | int | float) -> int:
    """Parse a parameter count: ``70e9``, ``70B``, ``1.5T``, ``135M``, ``7000000000`` -> int.

    ``B`` (and ``G``) mean billions (10**9), as model names use them ("Llama-2-70B"). At most
    ``MAX_PARAMS``; text is bounded before it is read (module docstring).
    """
    hint = "give e.g. 70e9, 70B, 1.5T or 135M"
    if isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"parameter count {text!r} is not finite; {hint}")
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = Fraction(text)
    else:
        match = _COUNT_RE.match(_number_text("parameter count", text, hint))
        if not match:
            raise ValueError(f"parameter count {text!r} is not a number; {hint}")
        value = _decimal("parameter count", text, match.group(1), hint) * _COUNT_SUFFIX[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"parameter count {text!r} must be positive; {hint}")
    if value > MAX_PARAMS:
        raise ValueError(f"parameter count {shown(text)} is above {MAX_PARAMS:.0e} (1,000T), beyond any model; {hint}")
    if value.denominator != 1:
        raise ValueError(f"parameter count {text!r} is not a whole number of parameters")
    return int(value)


def parse_bytes(text: str | int) -> int:
    """Parse a memory size: ``24GiB``, ``80GB``, ``80 GB``, ``512MiB``, ``1e9`` (bytes) -> int bytes.

    A bare number is bytes. Suffixes: B, KB/MB/GB/TB (10**3k) and KiB/MiB/GiB/TiB (2**10k). At most
    ``MAX_BYTES``; text is bounded before it is read (module docstring).
    """
    hint = "give e.g. 24GiB, 80GB or 512MiB"
    if isinstance(text, int) and not isinstance(text, bool):
        value = Fraction(text)
    else:
        match = _BYTES_RE.match(_number_text("memory size", text, hint))
        if not match:
            raise ValueError(f"memory size {text!r} is not understood; {hint}")
        value = _decimal("memory size", text, match.group(1), hint) * _BYTE_UNITS[(match.group(2) or "B").upper()]
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive; {hint}")
    if value > MAX_BYTES:
        raise ValueError(f"memory size {shown(text)} is above {MAX_BYTES:.0e} bytes (1 EB), beyond any machine; {hint}")
    return math.ceil(value)


def to_gb(n_bytes: int) -> float:
    """Bytes -> decimal gigabytes (10**9)."""
    return n_bytes / GB


def to_gib(n_bytes: int) -> float:
    """Bytes -> binary gibibytes (2**30)."""
    return n_bytes / GiB


def fmt_gb(n_bytes: int, digits: int = 2) -> str:
    return f"{n_bytes / GB:,.{digits}f} GB"


def fmt_gib(n_bytes: int, digits: int = 2) -> str:
    return f"{n_bytes / GiB:,.{digits}f} GiB"


def fmt_bytes(n_bytes: int, digits: int = 2) -> str:
    """``140000000000`` -> ``"140.00 GB (130.39 GiB)"``: both units, each labelled."""
    return f"{fmt_gb(n_bytes, digits)} ({fmt_gib(n_bytes, digits)})"


def fmt_count(n: int) -> str:
    """``8030261248`` -> ``"8.03B"`` (decimal suffixes, as model names use)."""
    for suffix, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def fmt_bits(bits: Fraction | float, digits: int = 4) -> str:
    """Bits per weight with fixed decimals: ``Fraction(9, 2)`` -> ``"4.5000"``."""
    return f"{float(bits):.{digits}f}"
