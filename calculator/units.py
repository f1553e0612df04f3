"""Units: the only place where byte counts become text and text becomes numbers, plus the two integer
helpers every module shares (``check_int``, the one integer validator; ``ceil_div``, the one ceiling
division).

Inside quantfit every size is an ``int`` of bytes. Display always names its unit:
GB = 10**9 bytes (how vendors sell memory: an "80 GB" H100), GiB = 2**30 bytes (what
``nvidia-smi`` and llama.cpp's "G" print). The two are never mixed in one number.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

GB = 10**9
GiB = 2**30
MB = 10**6
MiB = 2**20

_COUNT_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)

_BYTE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?I?B)?\s*$", re.IGNORECASE)


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
        raise ValueError(f"{label} {value!r} must be a whole number {rule}{hint}")
    return value


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` in exact integer arithmetic (``a / b`` is a float and loses bytes above 2**53)."""
    return -(-a // b)


def parse_count(text: str | int | float) -> int:
    """Parse a parameter count: ``70e9``, ``70B``, ``1.5T``, ``135M``, ``7000000000`` -> int.

    ``B`` (and ``G``) mean billions (10**9), as model names use them ("Llama-2-70B").
    """
    if isinstance(text, bool):
        raise ValueError(f"parameter count {text!r} is not a number; give e.g. 70e9, 70B, 1.5T or 135M")
    if isinstance(text, int):
        value = Fraction(text)
    elif isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"parameter count {text!r} is not finite; give e.g. 70e9, 70B, 1.5T or 135M")
        value = Fraction(text)
    else:
        match = _COUNT_RE.match(str(text))
        if not match:
            raise ValueError(
                f"parameter count {text!r} is not a number; give e.g. 70e9, 70B, 1.5T or 135M"
            )
        value = Fraction(match.group(1)) * _COUNT_SUFFIX[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"parameter count {text!r} must be positive; give e.g. 70e9, 70B, 1.5T or 135M")
    if value.denominator != 1:
        raise ValueError(f"parameter count {text!r} is not a whole number of parameters")
    return int(value)


def parse_bytes(text: str | int) -> int:
    """Parse a memory size: ``24GiB``, ``80GB``, ``80 GB``, ``512MiB``, ``1e9`` (bytes) -> int bytes.

    A bare number is bytes. Suffixes: B, KB/MB/GB/TB (10**3k) and KiB/MiB/GiB/TiB (2**10k).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = Fraction(text)
    else:
        match = _BYTES_RE.match(str(text))
        if not match:
            raise ValueError(f"memory size {text!r} is not understood; give e.g. 24GiB, 80GB or 512MiB")
        value = Fraction(match.group(1)) * _BYTE_UNITS[(match.group(2) or "B").upper()]
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive; give e.g. 24GiB, 80GB or 512MiB")
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
