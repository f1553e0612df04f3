"""Number formats for weights: exact storage cost of a tensor, every scale, zero and index included.

A format answers one question: how many bytes does a weight tensor of shape ``(rows, row_length)``
take when stored this way? Bits stay exact (``Fraction``) until bytes are rounded up once per tensor.
Groups and blocks run along the last dimension (the row, i.e. the input features of a Linear), as in
llama.cpp (``ne0``), GPTQ/AWQ (``group_size`` over ``in_features``) and PyTorch's int4pack kernels.

Sources:
- GGUF tensor types: block size and bytes per block come from the ``gguf`` package's
  ``GGML_QUANT_SIZES`` (llama.cpp ``gguf-py/gguf/constants.py``), never re-typed here.
- Group-wise integer: b-bit codes + an fp16 scale (symmetric) or fp16 scale + fp16 zero (asymmetric)
  per group of g weights: ``b + 16/g`` or ``b + 32/g`` bits per weight (e.g. int4-g128 = 4.125).
- GPTQ / AWQ checkpoints as stored by AutoGPTQ / AutoAWQ (and loaded by transformers): ``qweight`` int32
  holding b-bit codes, ``qzeros`` int32 holding one b-bit zero per group and output column, ``scales``
  fp16 per group and output column: ``b + (16 + b)/g`` bits per weight; with act-order the checkpoint
  adds ``g_idx`` (one int32 per input feature).
- bitsandbytes NF4/FP4 (Dettmers et al. 2023, QLoRA, arXiv 2305.14314 §2): 4-bit codes in blocks of 64
  with an fp32 absmax: 4 + 32/64 = 4.5 bits. Double quantization stores absmax as 8-bit in blocks of
  256 with one fp32 scale each (+ one fp32 offset per tensor): 4 + 8/64 + 32/(64*256) ~= 4.127 bits.
- MXFP4 (OCP Microscaling Formats v1.0): 32 E2M1 codes + one E8M0 scale = 4.25 bits (gguf's MXFP4
  block, from GGML_QUANT_SIZES). NVFP4 (NVIDIA Blackwell): 16 E2M1 codes + one FP8 E4M3 scale = 4.5 bits
  plus one fp32 tensor scale.
- EXL2 (turboderp/exllamav2): a mix of bit widths chosen to hit a target average; the target bits
  per weight already include its scales, so bytes = numel * bpw / 8.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from calculator.units import ceil_div, check_int


class Family(str, Enum):
    """Format families, in the order the app lists them."""

    FLOAT = "float"
    """IEEE / brain floating point, one code per weight, no scales."""
    INT = "int"
    """Ideal b-bit integer: no scales counted (the "70B at 4-bit = 35 GB" rule of thumb)."""
    GROUP_INT = "group_int"
    """b-bit integer with an fp16 scale (and zero) per group or per output channel."""
    GPTQ = "gptq"
    """GPTQ checkpoint layout (qweight/qzeros/scales[/g_idx])."""
    AWQ = "awq"
    """AWQ checkpoint layout (qweight/qzeros/scales)."""
    BNB = "bnb"
    """bitsandbytes NF4 / FP4 blockwise 4-bit, optionally double-quantized."""
    MICROSCALING = "microscaling"
    """Block floating point with shared scales: MXFP4, NVFP4."""
    EXL2 = "exl2"
    """ExLlamaV2 mixed-bit quantization at a target average bits per weight."""
    GGUF = "gguf"
    """A llama.cpp tensor type (not a file type; Q4_K_M is a recipe, see gguf_recipes)."""


def _rows_and_length(shape: tuple[int, ...]) -> tuple[int, int]:
    if not shape:
        raise ValueError(f"tensor shape {shape!r} must be a non-empty tuple of dimensions, e.g. (4096, 4096)")
    for d in shape:
        check_int(f"tensor shape {shape!r}: dimension", d)
    return math.prod(shape[:-1]), shape[-1]


@dataclass(frozen=True)
class Format:
    """How a weight tensor is stored.

    ``code_bits``: bits of each weight code. Every ``group_size`` weights along a row (``None``: no
    groups; ``0``: one group per row, i.e. per output channel) carry ``group_bits`` of scales/zeros.
    ``column_bits`` are paid once per input feature (GPTQ act-order ``g_idx``), ``tensor_bits`` once
    per tensor (NVFP4's fp32 global scale, bitsandbytes' double-quant offset). GGUF types instead use
    ``block_size``/``block_bytes`` from ``GGML_QUANT_SIZES`` and need rows divisible by the block.
    """

    name: str
    family: Family
    description: str
    source: str
    code_bits: Fraction
    group_size: int | None = None
    group_bits: int = 0
    column_bits: int = 0
    tensor_bits: int = 0
    flat_groups: bool = False
    """Groups run over the flattened tensor (bitsandbytes), not per row."""
    block_size: int | None = None
    block_bytes: int | None = None
    holds: str = ""
    """What the stored bytes hold, for the Formats page ("4-bit codes + fp16 scale per 32")."""

    def bits_per_weight(self, shape: tuple[int, ...] | None = None) -> Fraction:
        """Exact storage bits per weight; nominal (large divisible tensor) when ``shape`` is None.

        Per-channel formats (``group_size == 0``) have no nominal row length: their nominal figure is
        the code bits alone (the per-row scale adds 16/row_length, 0.004 bits for a 4096-wide row).
        """
        if shape is None:
            if self.block_size is not None:
                return Fraction(self.block_bytes * 8, self.block_size)
            bits = Fraction(self.code_bits)
            if self.group_size:
                bits += Fraction(self.group_bits, self.group_size)
            return bits
        rows, length = _rows_and_length(shape)
        return Fraction(self.tensor_bytes(shape) * 8, rows * length)

    def tensor_bytes(self, shape: tuple[int, ...]) -> int:
        """Exact bytes to store one tensor of ``shape`` (PyTorch order; last dim = row length)."""
        rows, length = _rows_and_length(shape)
        if self.block_size is not None:
            if length % self.block_size:
                raise ValueError(
                    f"row length {length} of tensor {shape} is not a multiple of the {self.name} "
                    f"block size {self.block_size}; llama.cpp falls back to another type for such rows "
                    "(use a GGUF file type, which applies that fallback)"
                )
            return rows * (length // self.block_size) * self.block_bytes
        numel = rows * length
        bits = self.code_bits * numel + self.tensor_bits + self.column_bits * length
        if self.group_size is not None:
            if self.flat_groups:
                n_groups = ceil_div(numel, self.group_size)
            elif self.group_size == 0:
                n_groups = rows
            else:
                n_groups = rows * ceil_div(length, self.group_size)
            bits += n_groups * self.group_bits
        return math.ceil(bits / 8)

    def params_bytes(self, n_params: int) -> int:
        """Bytes for a bare parameter count (no shapes known): nominal bits, rounded up once."""
        if n_params <= 0:
            raise ValueError(f"parameter count {n_params} must be positive")
        return math.ceil(self.bits_per_weight() * n_params / 8)


_FLOATS = {
    "fp32": (32, "IEEE-754 binary32"),
    "fp16": (16, "IEEE-754 binary16"),
    "bf16": (16, "bfloat16: 8-bit exponent, 7-bit mantissa"),
    "fp8_e4m3": (8, "FP8 E4M3 (OCP / NVIDIA Hopper), per-tensor scale not counted"),
    "fp8_e5m2": (8, "FP8 E5M2 (OCP / NVIDIA Hopper), per-tensor scale not counted"),
}

_BITS_RANGE = range(2, 9)
_GROUP_SIZES = (32, 64, 128, 256)
_GGUF_SKIP = {"I8", "I16", "I32", "I64", "F64"}  # integer/f64 tensor types: not weight formats


def _build_formats() -> dict[str, Format]:
    out: dict[str, Format] = {}

    def add(fmt: Format) -> None:
        assert fmt.name not in out, fmt.name
        out[fmt.name] = fmt

    for name, (bits, what) in _FLOATS.items():
        add(Format(name, Family.FLOAT, what, "IEEE-754 / OCP FP8 specification", Fraction(bits),
                   holds=f"{bits}-bit float per weight"))
    for b in (8, 4, 3, 2):
        add(Format(f"int{b}", Family.INT, f"ideal {b}-bit integer, scales not counted",
                   "rule of thumb: params x bits / 8", Fraction(b), holds=f"{b}-bit code only"))
    for b in _BITS_RANGE:
        for asym in (False, True):
            tag, extra = ("-asym", 16) if asym else ("", 0)
            zero = " + fp16 zero" if asym else ""
            add(Format(f"int{b}-ch{tag}", Family.GROUP_INT,
                       f"{b}-bit per-channel {'asymmetric' if asym else 'symmetric'} (one scale per output row)",
                       "per-channel RTN; b + 16(+16)/row_length bits", Fraction(b), 0, 16 + extra,
                       holds=f"{b}-bit codes + fp16 scale{zero} per output row"))
            for g in _GROUP_SIZES:
                add(Format(f"int{b}-g{g}{tag}", Family.GROUP_INT,
                           f"{b}-bit, group {g}, {'asymmetric' if asym else 'symmetric'}",
                           "group-wise RTN; b + 16/g (sym) or b + 32/g (asym) bits",
                           Fraction(b), g, 16 + extra,
                           holds=f"{b}-bit codes + fp16 scale{zero} per {g} weights"))
    for b in (2, 3, 4, 8):
        for g in (32, 64, 128):
            for act_order in (False, True):
                suffix = "-actorder" if act_order else ""
                add(Format(f"gptq-{b}b-g{g}{suffix}", Family.GPTQ,
                           f"GPTQ {b}-bit, group {g}{', act-order (g_idx)' if act_order else ''}",
                           "AutoGPTQ/transformers checkpoint layout: qweight, qzeros, scales, g_idx; "
                           "Frantar et al. 2022 (arXiv 2210.17323)",
                           Fraction(b), g, 16 + b, column_bits=32 if act_order else 0,
                           holds=f"{b}-bit codes in int32 + per {g}: fp16 scale, {b}-bit zero"
                                 + ("; int32 g_idx per input feature" if act_order else "")))
        if b == 8:
            continue
        for g in (32, 64, 128):
            add(Format(f"awq-{b}b-g{g}", Family.AWQ, f"AWQ {b}-bit, group {g}",
                       "AutoAWQ GEMM checkpoint layout: qweight, qzeros, scales; Lin et al. 2023 "
                       "(arXiv 2306.00978)", Fraction(b), g, 16 + b,
                       holds=f"{b}-bit codes in int32 + per {g}: fp16 scale, {b}-bit zero"))
    qlora = "bitsandbytes Linear4bit; Dettmers et al. 2023 (QLoRA, arXiv 2305.14314)"
    for kind in ("nf4", "fp4"):
        add(Format(kind, Family.BNB, f"bitsandbytes {kind.upper()}, block 64, fp32 absmax", qlora,
                   Fraction(4), 64, 32, flat_groups=True, holds="4-bit codes + fp32 absmax per 64"))
        # Double quant: absmax -> uint8 per block (8 bits / 64 weights), one fp32 scale per 256 absmax
        # values (32 / (64*256)), one fp32 offset per tensor.
        add(Format(f"{kind}-dq", Family.BNB,
                   f"bitsandbytes {kind.upper()} with double quantization (~4.127 bits)", qlora,
                   Fraction(4) + Fraction(8, 64) + Fraction(32, 64 * 256), tensor_bits=32,
                   holds="4-bit codes + 8-bit absmax per 64 + fp32 scale per 16384 + fp32 offset"))
    mx_block, mx_bytes = GGML_QUANT_SIZES[GGMLQuantizationType.MXFP4]
    add(Format("mxfp4", Family.MICROSCALING, "OCP MXFP4: 32 E2M1 codes share one E8M0 scale",
               "OCP Microscaling Formats (MX) v1.0; block from gguf GGML_QUANT_SIZES[MXFP4]",
               Fraction(4), mx_block, mx_bytes * 8 - mx_block * 4,
               holds="4-bit E2M1 codes + 8-bit E8M0 scale per 32"))
    add(Format("nvfp4", Family.MICROSCALING, "NVIDIA NVFP4: 16 E2M1 codes share one FP8 E4M3 scale",
               "NVIDIA Blackwell NVFP4 (16-element micro-blocks, E4M3 scale, fp32 tensor scale)",
               Fraction(4), 16, 8, tensor_bits=32,
               holds="4-bit E2M1 codes + FP8 scale per 16 + fp32 per tensor"))
    for bpw in ("2.5", "3.0", "3.5", "4.0", "4.65", "5.0", "6.0", "8.0"):
        add(_exl2(bpw))
    for qtype, (block, type_size) in GGML_QUANT_SIZES.items():
        if qtype.name in _GGUF_SKIP:
            continue
        add(Format(qtype.name, Family.GGUF, f"GGUF tensor type {qtype.name}: {type_size} bytes per "
                   f"{block} weights", "gguf GGML_QUANT_SIZES (llama.cpp gguf-py/gguf/constants.py)",
                   Fraction(type_size * 8, block), block_size=block, block_bytes=type_size,
                   holds=f"{type_size} bytes per block of {block}"))
    return out


def _exl2(bpw: str) -> Format:
    bits = Fraction(bpw)
    if not Fraction(2) <= bits <= Fraction(8):
        raise ValueError(f"EXL2 bits per weight {bpw} is outside 2..8 (exllamav2's range)")
    return Format(f"exl2-{bpw}", Family.EXL2, f"ExLlamaV2 at {bpw} bits per weight (mixed bit widths)",
                  "turboderp/exllamav2: target bpw includes scales", bits,
                  holds=f"mixed 2-8-bit codes averaging {bpw} bits incl. scales")


FORMATS: dict[str, Format] = _build_formats()
_LOWER = {name.lower(): name for name in FORMATS}

_GROUP_RE = re.compile(r"^int([2-8])-g(\d+)(-asym)?$")
_EXL2_RE = re.compile(r"^exl2-(\d+(?:\.\d+)?)$")
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "fp8": "fp8_e4m3",
            "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2", "4bit": "int4", "8bit": "int8"}


def get_format(name: str) -> Format:
    """Look a format up by name (case-insensitive for our names, GGUF names as written or lowered).

    Group formats accept any group size (``int4-g96``), EXL2 any bpw in 2..8 (``exl2-4.25``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"format {name!r} is empty; run `python -m calculator formats` for the list")
    key = name.strip()
    key = _ALIASES.get(key.lower(), key)
    if key in FORMATS:
        return FORMATS[key]
    if key.lower() in _LOWER:
        return FORMATS[_LOWER[key.lower()]]
    if m := _GROUP_RE.match(key.lower()):
        b, g, asym = int(m.group(1)), int(m.group(2)), bool(m.group(3))
        if g < 1:
            raise ValueError(f"group size {g} in format {name!r} must be at least 1")
        base = FORMATS[f"int{b}-g32{'-asym' if asym else ''}"]
        return Format(f"int{b}-g{g}{'-asym' if asym else ''}", base.family,
                      base.description.replace("group 32", f"group {g}"), base.source, base.code_bits, g,
                      base.group_bits, holds=base.holds.replace("per 32", f"per {g}"))
    if m := _EXL2_RE.match(key.lower()):
        return _exl2(m.group(1))
    from calculator.gguf_recipes import FILE_TYPES  # file types are recipes, not formats

    if key.upper() in FILE_TYPES:
        raise ValueError(
            f"{key} is a GGUF file type (a per-tensor mix), not a single tensor format; it needs a model's "
            "tensor list: give --model (preset, config.json or Hub id), or pick a tensor type such as Q4_K"
        )
    close = difflib.get_close_matches(key, list(FORMATS), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown format {name!r}{hint} (run `python -m calculator formats` for all {len(FORMATS)})"
    )
