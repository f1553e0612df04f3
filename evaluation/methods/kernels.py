"""Real integer kernels, PyTorch's own ops: int8 weight-only (``aten._weight_int8pack_mm``), int4 weight-only
group-wise (``aten._weight_int4pack_mm_for_cpu``; CUDA ``aten._weight_int4pack_mm``), and int8 weights with
int8 dynamic per-token activations (``torch._int_mm``).

Each quantized Linear holds its codes and scales as registered buffers (so ``measure_storage`` counts
them) and runs the kernel in ``forward``, as gpt-fast's ``WeightOnlyInt8Linear`` (pytorch-labs/gpt-fast
``quantize.py``). A layer whose shape a kernel cannot take falls back per tensor (as llama.cpp's
``tensor_type_fallback`` does) and records why in ``.fallback``. Every config has a ``twin()``: the
simulated RTN method storing the same codes, which tests hold the kernel to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.methods.primitives import (
    check_fits_some_layer,
    quantizable_linears,
    quantize_activations_per_token,
    quantize_rtn,
    swap_linears,
)
from evaluation.methods.rtn import RTNConfig, ScaleDType

# PyTorch's CPU int4 kernel (aten/src/ATen/native/cpu/int4mm_kernel.cpp): group size one of these,
# K a multiple of the group size, N a multiple of 16.
INT4_KERNEL_GROUP_SIZES = (32, 64, 128, 256)
_INT4_N_MULTIPLE = 16


class Int8WeightOnlyLinear(nn.Module):
    """int8 per-output-channel weights; CPU matmul by ``aten._weight_int8pack_mm`` (x @ (w * s).T).

    Buffers: ``weight_int8`` [out, in] int8, ``scales`` [out] in the activation dtype (the kernel's
    requirement). On CUDA the gpt-fast expression ``F.linear(x, w.to(x.dtype)) * s``: the aten op runs
    there too, but measured on an H200 (torch 2.11) it evaluated 512-token windows 36x slower (1.2k vs
    45k tokens/s on a 0.5B Llama).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fallback: str | None = None
        t = quantize_rtn(linear.weight.detach(), 8, None, symmetric=True, scale_dtype=linear.weight.dtype)
        self.register_buffer("weight_int8", (t.codes.to(torch.int16) - 128).to(torch.int8))  # [out, in]
        self.register_buffer("scales", t.scales.reshape(-1))  # [out, 1] -> [out]
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)  # [..., K] -> [M, K]
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
        self.register_buffer("scales_and_zeros", torch.stack([t.scales, zeros], -1).transpose(0, 1).contiguous())
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
        x2 = x.reshape(-1, self.in_features)  # [..., K] -> [M, K]
        sz = self.scales_and_zeros
        if x2.device.type == "cpu":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight_int4, self.group_size, sz.to(x.dtype))
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


# ---------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Int8WeightOnlyConfig(MethodConfig):
    """Real kernel: int8 symmetric per-channel weights, activations in the model dtype."""

    family: ClassVar[str] = MethodFamily.INT_KERNEL
    label: ClassVar[str] = "int8 kernel"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"int8(?:-ch)?")
    examples: ClassVar[tuple[str, ...]] = ("int8",)
    bits: ClassVar[int] = 8
    method_id: ClassVar[str] = "int8"
    calculator_format: ClassVar[str] = "int8-ch"
    description: ClassVar[str] = "real kernel aten._weight_int8pack_mm: int8 per-channel weights"

    def twin(self) -> RTNConfig:
        """The simulated method storing the same codes and scales (with bf16 activations)."""
        return RTNConfig(8, None, symmetric=True, scale_dtype=ScaleDType.BF16)


@dataclass(frozen=True)
class Int8DynamicActivationConfig(MethodConfig):
    """Real kernel: int8 per-channel weights and int8 per-token dynamic activations (W8A8, ``_int_mm``)."""

    family: ClassVar[str] = MethodFamily.INT_KERNEL
    label: ClassVar[str] = "int8 dynamic kernel"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"int8-dyn|w8a8")
    examples: ClassVar[tuple[str, ...]] = ("int8-dyn",)
    bits: ClassVar[int] = 8
    method_id: ClassVar[str] = "int8-dyn"
    calculator_format: ClassVar[str] = "int8-ch"
    description: ClassVar[str] = "real kernel torch._int_mm: int8 per-channel weights x int8 per-token activations"

    def twin(self) -> RTNConfig:
        return RTNConfig(8, None, symmetric=True, act_bits=8, scale_dtype=ScaleDType.BF16)


@dataclass(frozen=True)
class Int4WeightOnlyConfig(MethodConfig):
    """Real kernel: int4 asymmetric weights, one scale and zero per ``group_size`` (32, 64, 128, 256).

    A layer whose in_features the group does not divide falls back to the largest kernel group size that
    does (576 = 9 x 64: SmolLM2 at g128 uses g64 there); a layer no int4 group fits (in_features not a
    multiple of 32, or out_features not of 16) falls back to int8 per channel. Each is recorded.
    """

    group_size: int = 32

    family: ClassVar[str] = MethodFamily.INT_KERNEL
    label: ClassVar[str] = "int4 kernel"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"int4-g(?P<group_size>\d+)")
    examples: ClassVar[tuple[str, ...]] = ("int4-g32", "int4-g64", "int4-g128")
    bits: ClassVar[int] = 4

    def __post_init__(self) -> None:
        g = self.group_size
        if isinstance(g, bool) or not isinstance(g, int) or g not in INT4_KERNEL_GROUP_SIZES:
            raise ValueError(
                f"int4 kernel group_size={self.group_size!r}: PyTorch's int4 kernels take "
                f"{', '.join(map(str, INT4_KERNEL_GROUP_SIZES))}; for other sizes use the simulated "
                f"rtn-4b-g{self.group_size}-asym"
            )

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> Int4WeightOnlyConfig:
        return cls(int(groups["group_size"]))

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
        return RTNConfig(4, self.group_size, symmetric=False, scale_dtype=ScaleDType.BF16)


# ---------------------------------------------------------------------------------------------- handlers


@register_method(Int8WeightOnlyConfig)
def quantize_int8(model: nn.Module, config: Int8WeightOnlyConfig, calibration=None) -> nn.Module:
    return swap_linears(model, lambda _, lin: Int8WeightOnlyLinear(lin))


@register_method(Int8DynamicActivationConfig)
def quantize_int8_dynamic(model: nn.Module, config: Int8DynamicActivationConfig, calibration=None) -> nn.Module:
    return swap_linears(model, lambda _, lin: Int8DynamicActivationLinear(lin))


@register_method(Int4WeightOnlyConfig)
def quantize_int4(model: nn.Module, config: Int4WeightOnlyConfig, calibration=None) -> nn.Module:
    """int4 where the kernel takes the shape; else a smaller kernel group, else int8 (each recorded)."""
    g = config.group_size
    check_fits_some_layer(
        quantizable_linears(model),
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
            module.fallback = f"in_features {lin.in_features} is not a multiple of {g}: int4 group {smaller[-1]}"
            return module
        module = Int8WeightOnlyLinear(lin)
        module.fallback = f"shape {lin.out_features}x{lin.in_features} fits no int4 kernel group: int8 per channel"
        return module

    return swap_linears(model, build)
