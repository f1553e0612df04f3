"""Quantization methods: frozen configs, one verb ``quantize_(model, config)``, and the modules it swaps in.

A method is data (a frozen config dataclass) plus a handler that a registry finds by the config's type,
as in torchao's ``quantize_(model, Int4WeightOnlyConfig(group_size=32))``
(pytorch/ao ``torchao/quantization/quant_api.py``). This file reads top-down:

1. primitives: per-row / per-group quantization parameters, round-to-nearest, b-bit packing;
2. simulated RTN (quantize -> dequantize with exactly the stored scales and codes, any 2..8 bits);
3. real kernels, PyTorch's own ops: int8 weight-only (``aten._weight_int8pack_mm``), int4 weight-only
   group-wise (``aten._weight_int4pack_mm_for_cpu``; CUDA ``aten._weight_int4pack_mm``), int8 weights with
   int8 dynamic activations (``torch._int_mm``);
4. the configs, and their handlers (bitsandbytes NF4 / FP4, with and without double quantization, swaps
   in bitsandbytes' own ``Linear4bit``);
5. the registry, ``quantize_``, the method-id parser, and the measured size of a quantized model.

Scope: every ``nn.Linear`` of the model except the output head (``get_output_embeddings()``); the token
embedding and lm_head stay in the baseline dtype, as GPTQ/AWQ/bitsandbytes checkpoints keep them (and
SmolLM2 ties them: 21% of its parameters). The calculator's prediction is asked for the same scope.

A layer whose shape a kernel cannot take is never skipped silently: it falls back per tensor (as
llama.cpp's ``tensor_type_fallback`` does) and the module records why in ``.fallback``; see
``collect_fallbacks``. GPTQ, AWQ and GGUF file types live in ``gptq.py``, ``awq.py`` and
``gguf_methods.py`` and plug into the same registry.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from types import ModuleType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# The modules of the other method families, their config class, and the family name they report.
EXTERNAL_METHOD_MODULES: tuple[tuple[str, str, str], ...] = (
    ("evaluation.gptq", "GPTQConfig", "gptq"),
    ("evaluation.awq", "AWQConfig", "awq"),
    ("evaluation.gguf_methods", "GGUFConfig", "gguf"),
)

# A model attribute some simulated methods set instead of holding packed buffers: tensor name -> bytes
# the real checkpoint would store (gptq.py / awq.py). When present it *is* the model's stored size.
CHECKPOINT_BYTES_ATTR = "checkpoint_bytes_by_tensor"

# PyTorch's CPU int4 kernel (aten/src/ATen/native/cpu/int4mm_kernel.cpp): group size one of these,
# K a multiple of the group size, N a multiple of 16.
INT4_KERNEL_GROUP_SIZES = (32, 64, 128, 256)
_INT4_N_MULTIPLE = 16
_SCALE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


# ============================================================================ 1. primitives


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View a [out, in] weight as groups along the row: [out, n_groups, g].

    ``None`` is one group per row (per channel). A row that ``g`` does not divide gets a last, shorter
    group; it is padded by repeating its last element, which changes neither its min, max nor absmax,
    and costs a full scale as the calculator counts it (``ceil(in / g)`` groups).
    """
    out_features, in_features = w.shape
    if group_size is None or group_size >= in_features:
        return w.reshape(out_features, 1, in_features)
    pad = -in_features % group_size
    if pad:
        w = F.pad(w.unsqueeze(0), (0, pad), mode="replicate").squeeze(0)
    return w.reshape(out_features, -1, group_size)


def _ungrouped(wg: torch.Tensor, in_features: int) -> torch.Tensor:
    return wg.reshape(wg.shape[0], -1)[:, :in_features]


@dataclass(frozen=True)
class RTNTensors:
    """One weight quantized round-to-nearest, as stored.

    ``codes``: unsigned b-bit codes, uint8 [out, in]. ``scales`` (and ``mins`` when asymmetric):
    [out, n_groups] in ``scales.dtype``. Symmetric: w = (code - 2^(b-1)) * scale. Asymmetric:
    w = code * scale + min.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    mins: torch.Tensor | None
    bits: int
    group_size: int | None


def quantize_rtn(
    w: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    scale_dtype: torch.dtype = torch.float16,
) -> RTNTensors:
    """Round-to-nearest quantization of a [out, in] weight, per channel or per group along the row.

    Symmetric (llama.cpp ``quantize_row_q8_0_ref``, ggml-quants.c): scale = absmax / (2^(b-1) - 1),
    codes in [-(2^(b-1) - 1), 2^(b-1) - 1]; e.g. 4-bit, absmax 0.7 -> scale 0.1, 0.34 -> 3.
    Asymmetric (llama.cpp ``quantize_row_q4_1_ref``): scale = (max - min) / (2^b - 1), stored min;
    e.g. 4-bit over [-0.5, 1.0]: scale 0.1, 0.34 -> round(8.4) = 8 -> 0.3.
    The scale (and min) are rounded to ``scale_dtype`` *before* the codes are chosen, so the codes are
    those that the stored scale dequantizes: simulated and stored weights are bit-identical.
    """
    in_features = w.shape[1]
    wg = _grouped(w.float(), group_size)  # [out, in] -> [out, n_groups, g]
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scales = (wg.abs().amax(-1) / qmax).to(scale_dtype)  # [out, n_groups]
        s = scales.float().unsqueeze(-1)
        q = torch.where(s > 0, torch.round(wg / torch.where(s > 0, s, 1)), 0).clamp(-qmax, qmax)
        codes = (q + 2 ** (bits - 1)).to(torch.uint8)
        mins = None
    else:
        qmax = 2**bits - 1
        lo, hi = wg.amin(-1), wg.amax(-1)
        scales = ((hi - lo) / qmax).to(scale_dtype)
        mins = lo.to(scale_dtype)
        s, m = scales.float().unsqueeze(-1), mins.float().unsqueeze(-1)
        q = torch.where(s > 0, torch.round((wg - m) / torch.where(s > 0, s, 1)), 0).clamp(0, qmax)
        codes = q.to(torch.uint8)
    return RTNTensors(_ungrouped(codes, in_features), scales, mins, bits, group_size)


def dequantize_rtn(t: RTNTensors, dtype: torch.dtype) -> torch.Tensor:
    """The weight ``t`` stores, computed in fp32 from the stored scales, then cast to ``dtype``."""
    in_features = t.codes.shape[1]
    cg = _grouped(t.codes.float(), t.group_size)  # [out, n_groups, g]
    s = t.scales.float().unsqueeze(-1)
    if t.mins is None:
        wg = (cg - 2 ** (t.bits - 1)) * s
    else:
        wg = cg * s + t.mins.float().unsqueeze(-1)
    return _ungrouped(wg, in_features).to(dtype)


_PACK_CHUNK_CODES = 1 << 22  # codes per chunk while packing: bounds the int64 temporaries to 32 MiB


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned b-bit codes (any shape, values < 2^b) into ceil(numel * b / 8) bytes, LSB first.

    Codes run back to back across byte boundaries, so 3-bit codes take exactly 3/8 byte each: the
    layout the calculator's ``tensor_bytes`` counts (bits rounded up once per tensor). Eight codes make
    one b-byte word: word = sum(code_i << b*i), stored as its b little-endian bytes.
    """
    flat = codes.reshape(-1)
    n = flat.numel()
    if 8 % bits == 0:  # 1, 2, 4, 8 bits: whole codes per byte, a shift per slot (the common, fast case)
        per_byte = 8 // bits
        slots = F.pad(flat.to(torch.uint8), (0, -n % per_byte)).reshape(-1, per_byte)
        packed = torch.zeros(slots.shape[0], dtype=torch.uint8, device=flat.device)
        for i in range(per_byte):
            packed |= slots[:, i] << (bits * i)
        return packed
    out = []
    shifts = torch.arange(8, device=flat.device) * bits  # code i of a word sits at bit b*i
    byte_shifts = torch.arange(bits, device=flat.device) * 8
    for start in range(0, n, _PACK_CHUNK_CODES):
        chunk = flat[start : start + _PACK_CHUNK_CODES].to(torch.int64)
        chunk = F.pad(chunk, (0, -chunk.numel() % 8)).reshape(-1, 8)  # [words, 8]
        words = (chunk << shifts).sum(-1, keepdim=True)  # [words, 1], at most 64 bits
        out.append(((words >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1))  # [words * b]
    packed = torch.cat(out) if out else torch.zeros(0, dtype=torch.uint8, device=flat.device)
    return packed[: -(-n * bits // 8)]


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of ``pack_bits``: the first ``numel`` b-bit codes as uint8."""
    data = F.pad(packed.to(torch.int64), (0, -packed.numel() % bits)).reshape(-1, bits)  # [words, b]
    words = (data << (torch.arange(bits, device=packed.device) * 8)).sum(-1, keepdim=True)
    codes = (words >> (torch.arange(8, device=packed.device) * bits)) & (2**bits - 1)  # [words, 8]
    return codes.reshape(-1)[:numel].to(torch.uint8)


def quantize_activations_per_token(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-token (per-row) activation quantization: int8 codes [M, K] and fp32 scales [M, 1].

    As torchao's ``Int8DynamicActivationInt8WeightConfig`` (per-token symmetric activations):
    scale = absmax / (2^(b-1) - 1).
    """
    qmax = 2 ** (bits - 1) - 1
    scales = x.abs().amax(-1, keepdim=True).float().clamp(min=1e-8) / qmax
    q = torch.round(x.float() / scales).clamp(-qmax, qmax).to(torch.int8)
    return q, scales


def quantizable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` (by qualified name) except the output head: the scope of the methods here."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def _check_fits_some_layer(
    linears: Sequence[tuple[str, nn.Linear]], method_id: str, fits: Callable[[nn.Linear], bool], rule: str
) -> None:
    """A setting that fits no layer at all is not a method, it is a typo: say so instead of falling back."""
    if not linears:
        raise ValueError(f"{method_id}: the model has no nn.Linear layers to quantize")
    if not any(fits(lin) for _, lin in linears):
        widths = sorted({lin.in_features for _, lin in linears})
        raise ValueError(f"{method_id}: {rule} fits none of the model's layers (in_features {widths})")


# ============================================================================ 2. simulated RTN


class SimulatedLinear(nn.Module):
    """A Linear whose weight is stored RTN-quantized; it computes with that weight, dequantized once.

    Buffers (what ``measure_storage`` counts): ``packed`` b-bit codes, ``scales`` [out, n_groups] (fp16,
    or bf16 as PyTorch's bf16 kernels take them) and, asymmetric, ``mins``. The dequantized copy used for
    the matmul is a plain attribute, not state: a fused kernel would produce it on the fly, so it is left
    out of the stored bytes (it is in the peak RSS). Optional ``act_bits``: per-token symmetric fake
    quantization of the input.
    """

    def __init__(
        self,
        linear: nn.Linear,
        bits: int,
        group_size: int | None,
        symmetric: bool,
        act_bits: int | None = None,
        scale_dtype: torch.dtype = torch.float16,
    ):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.group_size, self.symmetric, self.act_bits = bits, group_size, symmetric, act_bits
        self.fallback: str | None = None
        if group_size is not None and group_size >= self.in_features:
            self.fallback = (
                f"group {group_size} >= in_features {self.in_features}: one scale per row (per channel)"
            )
        elif group_size is not None and self.in_features % group_size:
            self.fallback = (
                f"in_features {self.in_features} is not a multiple of {group_size}: last group "
                f"of {self.in_features % group_size} weights"
            )
        t = quantize_rtn(linear.weight.detach(), bits, group_size, symmetric, scale_dtype)
        self.register_buffer("packed", pack_bits(t.codes, bits))
        self.register_buffer("scales", t.scales)
        self.register_buffer("mins", t.mins)
        self.bias = linear.bias
        # [out, in] compute copy. With activation quantization the product of two quantized operands is
        # exact in fp32, as in an integer kernel's int32 accumulator; weight-only runs in the model dtype,
        # as dequantize-then-matmul kernels do.
        compute_dtype = torch.float32 if act_bits is not None else linear.weight.dtype
        self.weight_dequantized = dequantize_rtn(t, compute_dtype)

    def stored(self) -> RTNTensors:
        """The stored tensors, unpacked again (for tests and export)."""
        codes = unpack_bits(self.packed, self.bits, self.in_features * self.out_features)
        codes = codes.reshape(self.out_features, self.in_features)
        return RTNTensors(codes, self.scales, self.mins, self.bits, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits is None:
            return F.linear(x, self.weight_dequantized, self.bias)
        q, s = quantize_activations_per_token(x.reshape(-1, x.shape[-1]), self.act_bits)
        y = F.linear((q.float() * s).reshape(x.shape), self.weight_dequantized)
        return (y if self.bias is None else y + self.bias.float()).to(x.dtype)


# ============================================================================ 3. real kernels


class Int8WeightOnlyLinear(nn.Module):
    """int8 per-output-channel weights; CPU matmul by ``aten._weight_int8pack_mm`` (x @ (w * s).T).

    Buffers: ``weight_int8`` [out, in] int8, ``scales`` [out] in the activation dtype (the kernel's
    requirement). On CUDA the gpt-fast expression ``F.linear(x, w.to(x.dtype)) * s`` (pytorch-labs/gpt-fast
    ``quantize.py`` WeightOnlyInt8Linear): the aten op runs there too, but measured on an H200 (torch 2.11)
    it evaluated 512-token windows 36x slower (1.2k vs 45k tokens/s on a 0.5B Llama).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fallback: str | None = None
        t = quantize_rtn(linear.weight.detach(), 8, None, symmetric=True, scale_dtype=linear.weight.dtype)
        self.register_buffer("weight_int8", (t.codes.to(torch.int16) - 128).to(torch.int8))
        self.register_buffer("scales", t.scales.reshape(-1))
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if x2.device.type == "cpu":
            y = torch.ops.aten._weight_int8pack_mm(x2, self.weight_int8, self.scales.to(x.dtype))
        else:
            y = F.linear(x2, self.weight_int8.to(x.dtype)) * self.scales.to(x.dtype)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int4WeightOnlyLinear(nn.Module):
    """int4 asymmetric group-wise weights in PyTorch's tinygemm layout.

    Buffers: ``weight_int4`` (CPU: [out, in / 2] uint8 from ``_convert_weight_to_int4pack_for_cpu``;
    CUDA: the tiled int32 layout of ``_convert_weight_to_int4pack``, same bytes) and
    ``scales_and_zeros`` [in / g, out, 2] in the activation dtype. tinygemm dequantizes
    w = (q - 8) * scale + zero, so the stored zero is min + 8 * scale (torchao
    ``quant_primitives.py`` ``_get_qparams_..._tinygemm``); the codes are those of
    ``quantize_rtn(asymmetric)`` with the scale and min first rounded to the activation dtype.
    """

    def __init__(self, linear: nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size
        self.fallback: str | None = None
        w = linear.weight.detach()
        t = quantize_rtn(w, 4, group_size, symmetric=False, scale_dtype=w.dtype)
        zeros = (t.mins.float() + 8 * t.scales.float()).to(w.dtype)  # [out, n_groups]
        # [out, n_groups] x2 -> [n_groups, out, 2]
        self.register_buffer(
            "scales_and_zeros", torch.stack([t.scales, zeros], -1).transpose(0, 1).contiguous()
        )
        q = t.codes.to(torch.int32)  # [out, in] in 0..15
        if w.device.type == "cpu":
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
            self.inner_k_tiles = 1
        else:
            self.inner_k_tiles = next(k for k in (8, 4, 2) if self.in_features % (16 * k) == 0)
            nibbles = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)  # [out, in / 2]
            packed = torch.ops.aten._convert_weight_to_int4pack(nibbles, self.inner_k_tiles)
        self.register_buffer("weight_int4", packed)
        self.bias = linear.bias

    @staticmethod
    def supports(linear: nn.Linear, group_size: int) -> bool:
        return linear.in_features % group_size == 0 and linear.out_features % _INT4_N_MULTIPLE == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        sz = self.scales_and_zeros
        if x2.device.type == "cpu":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2, self.weight_int4, self.group_size, sz.to(x.dtype)
            )
        else:
            y = torch.ops.aten._weight_int4pack_mm(
                x2.to(torch.bfloat16), self.weight_int4, self.group_size, sz.to(torch.bfloat16)
            ).to(x.dtype)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int8DynamicActivationLinear(Int8WeightOnlyLinear):
    """int8 per-channel weights x int8 per-token dynamic activations: an integer matmul (``torch._int_mm``).

    y = (x_q @ w_q.T) * s_x * s_w with int32 accumulation; the weight buffers of ``Int8WeightOnlyLinear``.
    On CUDA ``_int_mm`` needs more than 16 rows, so a batch-1 decode step is padded to 17 rows.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        xq, xs = quantize_activations_per_token(x2, 8)  # [M, K] int8, [M, 1] fp32
        rows = xq.shape[0]
        if xq.device.type == "cuda" and rows <= 16:
            xq = F.pad(xq, (0, 0, 0, 17 - rows))
        acc = torch._int_mm(xq, self.weight_int8.t())[:rows]  # [M, N] int32
        y = (acc.float() * xs * self.scales.float()).to(x.dtype)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


# ============================================================================ 4. configs


@dataclass(frozen=True)
class BaselineConfig:
    """No quantization: the baseline model itself (KLD 0, agreement 100%)."""

    family: ClassVar[str] = "baseline"
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False
    calculator_format: ClassVar[None] = None
    """None: the runner asks the calculator for the baseline dtype (bf16 / fp32)."""

    description: ClassVar[str] = "no quantization: the reference every method is compared with"

    @property
    def method_id(self) -> str:
        return "baseline"


@dataclass(frozen=True)
class RTNConfig:
    """Simulated round-to-nearest: ``bits`` 2..8, ``group_size`` (None = per channel), symmetric or not.

    ``act_bits`` adds per-token symmetric fake quantization of every quantized layer's input (W4A8...).
    ``scale_dtype`` "fp16" (checkpoints) or "bf16" (what PyTorch's kernels take with bf16 activations:
    the twin of a real-kernel method). Example: ``RTNConfig(3, 32, symmetric=False)`` is
    "rtn-3b-g32-asym", stored as calculator format "int3-g32-asym" (3 bits + fp16 scale + fp16 min per 32
    = 4 bits per weight).
    """

    bits: int = 4
    group_size: int | None = 32
    symmetric: bool = True
    act_bits: int | None = None
    scale_dtype: str = "fp16"
    family: ClassVar[str] = "rtn-simulated"
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False

    def __post_init__(self) -> None:
        _check_int("bits", self.bits, 2, 8, "an integer from 2 to 8")
        if self.group_size is not None:
            _check_int("group_size", self.group_size, 2, None, "an integer >= 2, or None for per channel")
        if self.act_bits is not None:
            _check_int("act_bits", self.act_bits, 2, 8, "an integer from 2 to 8, or None")
        if self.scale_dtype not in _SCALE_DTYPES:
            raise ValueError(
                f"scale_dtype={self.scale_dtype!r}: use 'fp16' (checkpoints) or 'bf16' (kernels)"
            )

    @property
    def method_id(self) -> str:
        gran = "ch" if self.group_size is None else f"g{self.group_size}"
        act = f"-a{self.act_bits}" if self.act_bits else ""
        scale = "" if self.scale_dtype == "fp16" else f"-s{self.scale_dtype}"
        return f"rtn-{self.bits}b-{gran}{'' if self.symmetric else '-asym'}{act}{scale}"

    @property
    def description(self) -> str:
        gran = "per channel" if self.group_size is None else f"group {self.group_size}"
        act = f", int{self.act_bits} per-token activations" if self.act_bits else ""
        scale = "" if self.scale_dtype == "fp16" else f", {self.scale_dtype} scales"
        return (
            f"simulated RTN {self.bits}-bit {'symmetric' if self.symmetric else 'asymmetric'}, {gran}{act}"
            f"{scale} (quantize -> dequantize)"
        )

    @property
    def calculator_format(self) -> str:
        gran = "ch" if self.group_size is None else f"g{self.group_size}"
        return f"int{self.bits}-{gran}{'' if self.symmetric else '-asym'}"


@dataclass(frozen=True)
class Int8WeightOnlyConfig:
    """Real kernel: int8 symmetric per-channel weights, activations in the model dtype."""

    family: ClassVar[str] = "int-kernel"
    bits: ClassVar[int] = 8
    group_size: ClassVar[None] = None
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False
    method_id: ClassVar[str] = "int8"
    calculator_format: ClassVar[str] = "int8-ch"
    description: ClassVar[str] = "real kernel aten._weight_int8pack_mm: int8 per-channel weights"

    def twin(self) -> RTNConfig:
        """The simulated method storing the same codes and scales (with bf16 activations)."""
        return RTNConfig(8, None, symmetric=True, scale_dtype="bf16")


@dataclass(frozen=True)
class Int4WeightOnlyConfig:
    """Real kernel: int4 asymmetric weights, one scale and zero per ``group_size`` (32, 64, 128, 256).

    A layer whose in_features the group does not divide falls back to the largest kernel group size that
    does (576 = 9 x 64: SmolLM2 at g128 uses g64 there); a layer no int4 group fits (in_features not a
    multiple of 32, or out_features not of 16) falls back to int8 per channel. Each is recorded.
    """

    group_size: int = 32
    family: ClassVar[str] = "int-kernel"
    bits: ClassVar[int] = 4
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False

    def __post_init__(self) -> None:
        if self.group_size not in INT4_KERNEL_GROUP_SIZES:
            raise ValueError(
                f"int4 kernel group_size={self.group_size!r}: PyTorch's int4 kernels take "
                f"{', '.join(map(str, INT4_KERNEL_GROUP_SIZES))}; for other sizes use the simulated "
                f"rtn-4b-g{self.group_size}-asym"
            )

    @property
    def method_id(self) -> str:
        return f"int4-g{self.group_size}"

    @property
    def description(self) -> str:
        return f"real kernel aten._weight_int4pack_mm(_for_cpu): int4 asymmetric, group {self.group_size}"

    @property
    def calculator_format(self) -> str:
        return f"int4-g{self.group_size}-asym"

    def twin(self) -> RTNConfig:
        """Same codes and bf16 scale; RTN stores the group min where tinygemm stores min + 8 * scale."""
        return RTNConfig(4, self.group_size, symmetric=False, scale_dtype="bf16")


@dataclass(frozen=True)
class Int8DynamicActivationConfig:
    """Real kernel: int8 per-channel weights and int8 per-token dynamic activations (W8A8, ``_int_mm``)."""

    family: ClassVar[str] = "int-kernel"
    bits: ClassVar[int] = 8
    group_size: ClassVar[None] = None
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False
    method_id: ClassVar[str] = "int8-dyn"
    calculator_format: ClassVar[str] = "int8-ch"
    description: ClassVar[str] = (
        "real kernel torch._int_mm: int8 per-channel weights x int8 per-token activations"
    )

    def twin(self) -> RTNConfig:
        return RTNConfig(8, None, symmetric=True, act_bits=8, scale_dtype="bf16")


@dataclass(frozen=True)
class BnB4bitConfig:
    """bitsandbytes 4-bit: ``quant_type`` "nf4" (NormalFloat, QLoRA) or "fp4", blocks of 64 weights.

    ``double_quant`` stores the fp32 absmax of each block as 8 bits (QLoRA §2, "double quantization").
    """

    quant_type: str = "nf4"
    double_quant: bool = False
    family: ClassVar[str] = "bnb"
    bits: ClassVar[int] = 4
    group_size: ClassVar[int] = 64
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False

    def __post_init__(self) -> None:
        if self.quant_type not in ("nf4", "fp4"):
            raise ValueError(f"bitsandbytes quant_type={self.quant_type!r}: use 'nf4' or 'fp4'")

    @property
    def method_id(self) -> str:
        return self.quant_type + ("-dq" if self.double_quant else "")

    @property
    def calculator_format(self) -> str:
        return self.method_id

    @property
    def description(self) -> str:
        return f"bitsandbytes {self.quant_type.upper()}, blocks of 64" + (
            ", double quant" if self.double_quant else ""
        )


def _check_int(name: str, value: Any, lo: int, hi: int | None, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name}={value!r}: use {what}")


# ---------------------------------------------------------------------------- handlers


def _swap_linears(model: nn.Module, build: Callable[[str, nn.Linear], nn.Module]) -> nn.Module:
    for name, linear in quantizable_linears(model):
        model.set_submodule(name, build(name, linear))
    return model


def _quantize_baseline(model: nn.Module, config: BaselineConfig, calibration=None) -> nn.Module:
    return model


def _quantize_rtn(model: nn.Module, config: RTNConfig, calibration=None) -> nn.Module:
    linears = quantizable_linears(model)
    if config.group_size is not None:
        _check_fits_some_layer(
            linears,
            config.method_id,
            lambda lin: config.group_size <= lin.in_features,
            f"group size {config.group_size}",
        )
    scale_dtype = _SCALE_DTYPES[config.scale_dtype]
    return _swap_linears(
        model,
        lambda _, lin: SimulatedLinear(
            lin, config.bits, config.group_size, config.symmetric, config.act_bits, scale_dtype
        ),
    )


def _quantize_int8(model: nn.Module, config: Int8WeightOnlyConfig, calibration=None) -> nn.Module:
    return _swap_linears(model, lambda _, lin: Int8WeightOnlyLinear(lin))


def _quantize_int8_dynamic(
    model: nn.Module, config: Int8DynamicActivationConfig, calibration=None
) -> nn.Module:
    return _swap_linears(model, lambda _, lin: Int8DynamicActivationLinear(lin))


def _quantize_int4(model: nn.Module, config: Int4WeightOnlyConfig, calibration=None) -> nn.Module:
    g = config.group_size
    linears = quantizable_linears(model)
    _check_fits_some_layer(
        linears,
        config.method_id,
        lambda lin: Int4WeightOnlyLinear.supports(lin, g),
        f"group size {g} (in_features a multiple of {g}, out_features of {_INT4_N_MULTIPLE})",
    )

    def build(_: str, lin: nn.Linear) -> nn.Module:
        if Int4WeightOnlyLinear.supports(lin, g):
            return Int4WeightOnlyLinear(lin, g)
        smaller = [s for s in INT4_KERNEL_GROUP_SIZES if s < g and Int4WeightOnlyLinear.supports(lin, s)]
        if smaller:
            module = Int4WeightOnlyLinear(lin, smaller[-1])
            module.fallback = (
                f"in_features {lin.in_features} is not a multiple of {g}: int4 group {smaller[-1]}"
            )
            return module
        module = Int8WeightOnlyLinear(lin)
        module.fallback = (
            f"shape {lin.out_features}x{lin.in_features} fits no int4 kernel group: int8 per channel"
        )
        return module

    return _swap_linears(model, build)


def _quantize_bnb(model: nn.Module, config: BnB4bitConfig, calibration=None) -> nn.Module:
    import bitsandbytes as bnb  # imported here: it prints a banner and is only needed for these methods

    def build(_: str, lin: nn.Linear) -> nn.Module:
        w = lin.weight.detach()
        new = bnb.nn.Linear4bit(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            compute_dtype=w.dtype,
            compress_statistics=config.double_quant,
            quant_type=config.quant_type,
            device="meta",
        )
        new.weight = bnb.nn.Params4bit(
            w.clone(),
            requires_grad=False,
            blocksize=64,
            compress_statistics=config.double_quant,
            quant_type=config.quant_type,
        )
        if lin.bias is not None:
            new.bias = lin.bias
        new = new.to(w.device)  # Params4bit quantizes on its first move to a device
        new.fallback = None
        return new

    return _swap_linears(model, build)


# ============================================================================ 5. registry


Handler = Callable[[nn.Module, Any, "list[torch.Tensor] | None"], nn.Module]
_HANDLERS: dict[type, Handler] = {}
_FAMILY_OF_CONFIG: dict[type, str] = {}


def register_method(config_cls: type, handler: Handler, *, family: str | None = None) -> None:
    """Map a frozen config dataclass to ``handler(model, config, calibration) -> model``."""
    if not (
        isinstance(config_cls, type) and is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen
    ):
        raise ValueError(f"{config_cls!r} must be a frozen dataclass to be registered as a method config")
    _HANDLERS[config_cls] = handler
    if family is not None:
        _FAMILY_OF_CONFIG[config_cls] = family


for _cls, _handler in (
    (BaselineConfig, _quantize_baseline),
    (RTNConfig, _quantize_rtn),
    (Int8WeightOnlyConfig, _quantize_int8),
    (Int4WeightOnlyConfig, _quantize_int4),
    (Int8DynamicActivationConfig, _quantize_int8_dynamic),
    (BnB4bitConfig, _quantize_bnb),
):
    register_method(_cls, _handler)


_external_cache: list[ModuleType] | None = None


def external_method_modules() -> list[ModuleType]:
    """Import the GPTQ / AWQ / GGUF method modules that exist, registering their configs once.

    Only a missing module itself is tolerated (not yet written); an import error inside it propagates.
    """
    global _external_cache
    if _external_cache is None:
        found = []
        for module_name, config_name, family in EXTERNAL_METHOD_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                if err.name != module_name:
                    raise
                continue
            register_method(getattr(module, config_name), module.quantize_, family=family)
            found.append(module)
        _external_cache = found
    return _external_cache


def _handler_for(config: Any) -> Handler:
    if type(config) not in _HANDLERS:
        external_method_modules()
    try:
        return _HANDLERS[type(config)]
    except KeyError:
        raise ValueError(
            f"{type(config).__name__} is not a registered method config; known: "
            f"{', '.join(sorted(c.__name__ for c in _HANDLERS))}"
        ) from None


def quantize_(model: nn.Module, config: Any, calibration: list[torch.Tensor] | None = None) -> nn.Module:
    """Quantize ``model`` in place with the handler registered for ``type(config)``; returns the model."""
    handler = _handler_for(config)
    if getattr(config, "needs_calibration", False) and not calibration:
        raise ValueError(f"{config.method_id} needs calibration sequences (a list of token-id tensors)")
    return handler(model, config, calibration)


def method_family(config: Any) -> str:
    _handler_for(config)
    return getattr(config, "family", None) or _FAMILY_OF_CONFIG.get(type(config), type(config).__name__)


def method_description(config: Any) -> str:
    """One line: the config's ``description``, else the first line of its class docstring."""
    text = getattr(config, "description", None) or (type(config).__doc__ or type(config).__name__)
    return text.strip().splitlines()[0]


def method_config_dict(config: Any) -> dict:
    """The config's fields (what it was constructed with), JSON-ready, plus its class name."""
    return {"class": type(config).__name__, **{f.name: getattr(config, f.name) for f in fields(config)}}


# ============================================================================ parsing


_RTN_RE = re.compile(r"rtn-(\d+)b-(ch|g(\d+))(-asym)?(?:-a(\d+))?(?:-s(fp16|bf16))?")
_INT4_RE = re.compile(r"int4-g(\d+)")

# Shown by `python -m evaluation methods` and used for "did you mean" hints.
EXAMPLE_METHODS: tuple[str, ...] = (
    "baseline",
    "int8",
    "int8-dyn",
    "int4-g32",
    "int4-g64",
    "int4-g128",
    "rtn-8b-ch",
    "rtn-4b-g32",
    "rtn-4b-g32-asym",
    "rtn-4b-g128-asym",
    "rtn-3b-g32-asym",
    "rtn-2b-g32-asym",
    "rtn-4b-g32-a8",
    "nf4",
    "nf4-dq",
    "fp4",
    "fp4-dq",
)
EXTERNAL_EXAMPLES: tuple[str, ...] = (
    "gptq-4b-g128",
    "gptq-3b-g128",
    "gptq-4b-g128-actorder",
    "awq-4b-g128",
    "awq-3b-g128",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q4_K_M",
    "Q4_0",
    "Q3_K_M",
    "Q2_K",
)


def _parse_own(text: str) -> Any | None:
    key = text.lower()
    simple = {
        "baseline": BaselineConfig(),
        "none": BaselineConfig(),
        "int8": Int8WeightOnlyConfig(),
        "int8-ch": Int8WeightOnlyConfig(),
        "int8-dyn": Int8DynamicActivationConfig(),
        "w8a8": Int8DynamicActivationConfig(),
        "nf4": BnB4bitConfig("nf4"),
        "nf4-dq": BnB4bitConfig("nf4", True),
        "fp4": BnB4bitConfig("fp4"),
        "fp4-dq": BnB4bitConfig("fp4", True),
    }
    if key in simple:
        return simple[key]
    if m := _INT4_RE.fullmatch(key):
        return Int4WeightOnlyConfig(int(m[1]))
    if m := _RTN_RE.fullmatch(key):
        return RTNConfig(
            int(m[1]),
            None if m[2] == "ch" else int(m[3]),
            symmetric=not m[4],
            act_bits=int(m[5]) if m[5] else None,
            scale_dtype=m[6] or "fp16",
        )
    if key.startswith("rtn-"):
        raise ValueError(
            f"RTN method {text!r} not understood: write "
            "rtn-{bits}b-{ch|g<size>}[-asym][-a<bits>][-sbf16], e.g. rtn-3b-g32-asym or rtn-8b-ch"
        )
    return None


def parse_method(text: str) -> Any:
    """A method id ("int4-g32", "rtn-3b-g64-asym", "nf4-dq", "gptq-4b-g128", "Q4_K_M"...) -> its config."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"method {text!r} is empty; run `python -m evaluation methods` for the list")
    text = text.strip()
    config = _parse_own(text)
    if config is not None:
        return config
    for module in external_method_modules():
        config = module.parse(text)
        if config is not None:
            return config
    close = difflib.get_close_matches(text, EXAMPLE_METHODS + EXTERNAL_EXAMPLES, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown method {text!r}{hint} (run `python -m evaluation methods` for the list)")


def parse_methods(text: str) -> list[Any]:
    """A comma-separated list of method ids -> configs, in order, duplicates removed."""
    configs, seen = [], set()
    for part in text.split(","):
        if part.strip():
            config = parse_method(part)
            if config.method_id not in seen:
                seen.add(config.method_id)
                configs.append(config)
    if not configs:
        raise ValueError(f"no methods in {text!r}; e.g. --methods int8,int4-g32,rtn-3b-g32-asym")
    return configs


def available_methods() -> list[Any]:
    """One config per example id that this installation can run (external modules when present)."""
    configs = [parse_method(t) for t in EXAMPLE_METHODS if t not in ("none", "w8a8", "int8-ch")]
    for text in EXTERNAL_EXAMPLES:
        for module in external_method_modules():
            config = module.parse(text)
            if config is not None:
                configs.append(config)
                break
    return configs


# ============================================================================ measured size


@dataclass(frozen=True)
class Storage:
    """Measured bytes of a model: every parameter, buffer, scale, zero and packed weight, once.

    ``quantized_*``: the weight matrices whose storage the method changed (their biases excluded);
    ``bits_per_weight`` = quantized_bytes * 8 / quantized_params.
    """

    total_bytes: int
    quantized_bytes: int
    quantized_params: int
    by_tensor: dict[str, int]

    @property
    def bits_per_weight(self) -> float | None:
        return self.quantized_bytes * 8 / self.quantized_params if self.quantized_params else None


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the model holds (state dict incl. quantization state, plus non-persistent buffers),
    each storage once: tied weights share one entry."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    items = list(model.state_dict(keep_vars=True).items()) + list(model.named_buffers())
    for name, t in items:
        if not isinstance(t, torch.Tensor) or name in out:
            continue
        key = (t.data_ptr(), _tensor_bytes(t))
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def measure_storage(base: nn.Module, quantized: nn.Module) -> Storage:
    """Bytes ``quantized`` stores; which weight matrices changed is read by comparing with ``base``.

    When the method left ``checkpoint_bytes_by_tensor`` on the model (simulated GPTQ/AWQ keep float
    weights and describe the checkpoint instead), that dict is the stored size.
    """
    base_modules = dict(base.named_modules())
    declared = getattr(quantized, CHECKPOINT_BYTES_ATTR, None)
    if declared is not None:
        float_names = set(dict(quantized.named_parameters())) | set(dict(quantized.named_buffers()))
        q_modules = {name.rsplit(".", 1)[0] for name in declared if name not in float_names}
        q_bytes = sum(
            n
            for name, n in declared.items()
            if name.rsplit(".", 1)[0] in q_modules and name not in float_names
        )
        q_params = sum(base_modules[m].weight.numel() for m in q_modules if m in base_modules)
        return Storage(sum(declared.values()), q_bytes, q_params, dict(declared))

    tensors = state_tensors(quantized)
    by_tensor = {name: _tensor_bytes(t) for name, t in tensors.items()}
    q_bytes = q_params = 0
    for name, module in quantized.named_modules():
        old = base_modules.get(name)
        old_weight = getattr(old, "weight", None)
        if not isinstance(old_weight, torch.Tensor) or old_weight.dim() != 2:
            continue
        new_weight = getattr(module, "weight", None)
        unchanged = (
            type(module) is type(old)
            and isinstance(new_weight, torch.Tensor)
            and new_weight.dtype == old_weight.dtype
            and new_weight.shape == old_weight.shape
        )
        if unchanged:
            continue
        prefix = f"{name}."
        q_bytes += sum(
            n for t_name, n in by_tensor.items() if t_name.startswith(prefix) and not t_name.endswith(".bias")
        )
        q_params += old_weight.numel()
    return Storage(sum(by_tensor.values()), q_bytes, q_params, by_tensor)


def collect_fallbacks(model: nn.Module) -> list[dict]:
    """Per-tensor fallbacks the method recorded (``module.fallback``), grouped by reason."""
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        reason = getattr(module, "fallback", None)
        if reason:
            groups.setdefault(reason, []).append(name)
    return [{"reason": reason, "count": len(names), "modules": names} for reason, names in groups.items()]


def method_summary(config: Any) -> dict:
    """What a results row says about a method: id, family, nominal bits, group size, format."""
    return {
        "method_id": config.method_id,
        "family": method_family(config),
        "bits": getattr(config, "bits", None),
        "group_size": getattr(config, "group_size", None),
        "calculator_format": config.calculator_format,
        "needs_calibration": bool(config.needs_calibration),
        "method_config": method_config_dict(config),
    }


def nominal_bits(config: Any) -> float | None:
    """Nominal bits per weight of a config's calculator format (None for the baseline)."""
    if config.calculator_format is None:
        return None
    from calculator.formats import get_format

    try:
        return float(get_format(config.calculator_format).bits_per_weight())
    except ValueError:
        return None
