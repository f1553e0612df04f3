"""Simulated round-to-nearest (RTN) at any 2..8 bits: the weight is stored quantized and computed with
exactly the values its stored codes and scales give (quantize -> dequantize), so the quality measured is
that of the stored checkpoint, whatever kernel would run it.

Symmetric or asymmetric, per channel or per group (``primitives.quantize_rtn``); optional per-token
fake quantization of each layer's input (W4A8 ...). Every real kernel in ``kernels.py`` has an RTN twin
here that stores the same codes (``Int8WeightOnlyConfig().twin()``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from calculator.units import check_int
from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.methods.primitives import (
    RTNTensors,
    check_fits_some_layer,
    dequantize_rtn,
    pack_bits,
    quantizable_linears,
    quantize_activations_per_token,
    quantize_rtn,
    swap_linears,
    unpack_bits,
)


class ScaleDType(enum.StrEnum):
    """The dtype scales (and mins) are stored in."""

    FP16 = "fp16"
    """What GPTQ/AWQ/GGUF checkpoints store."""
    BF16 = "bf16"
    """What PyTorch's kernels take with bf16 activations: the twin of a real-kernel method."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float16 if self is ScaleDType.FP16 else torch.bfloat16


class SimulatedLinear(nn.Module):
    """A Linear whose weight is stored RTN-quantized; it computes with that weight, dequantized once.

    Buffers (what ``measure_storage`` counts): ``packed`` b-bit codes, ``scales`` [out, n_groups] and,
    asymmetric, ``mins``. The dequantized copy used for the matmul is a plain attribute, not state: a
    fused kernel would produce it on the fly, so it is left out of the stored bytes (it is in the peak
    RSS). Optional ``act_bits``: per-token symmetric fake quantization of the input.
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
            self.fallback = f"group {group_size} >= in_features {self.in_features}: one scale per row (per channel)"
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
        q, s = quantize_activations_per_token(x.reshape(-1, x.shape[-1]), self.act_bits)  # [M, K], [M, 1]
        y = F.linear((q.float() * s).reshape(x.shape), self.weight_dequantized)
        return (y if self.bias is None else y + self.bias.float()).to(x.dtype)


@dataclass(frozen=True)
class RTNConfig(MethodConfig):
    """Simulated round-to-nearest: ``bits`` 2..8, ``group_size`` (None = per channel), symmetric or not.

    ``act_bits`` adds per-token symmetric fake quantization of every quantized layer's input (W4A8...).
    Example: ``RTNConfig(3, 32, symmetric=False)`` is "rtn-3b-g32-asym", stored as calculator format
    "int3-g32-asym" (3 bits + fp16 scale + fp16 min per 32 = 4 bits per weight).
    """

    bits: int = 4
    group_size: int | None = 32
    symmetric: bool = True
    act_bits: int | None = None
    scale_dtype: ScaleDType = ScaleDType.FP16

    family: ClassVar[str] = MethodFamily.RTN
    label: ClassVar[str] = "RTN"
    id_prefix: ClassVar[str] = "rtn-"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"rtn-(?P<bits>\d+)b-(?:ch|g(?P<group_size>\d+))(?P<asym>-asym)?(?:-a(?P<act_bits>\d+))?"
        r"(?:-s(?P<scale_dtype>fp16|bf16))?"
    )
    id_syntax: ClassVar[str] = "rtn-{bits}b-{ch|g<size>}[-asym][-a<bits>][-sbf16]"
    examples: ClassVar[tuple[str, ...]] = (
        "rtn-8b-ch",
        "rtn-4b-g32",
        "rtn-4b-g32-asym",
        "rtn-4b-g128-asym",
        "rtn-3b-g32-asym",
        "rtn-2b-g32-asym",
        "rtn-4b-g32-a8",
    )

    def __post_init__(self) -> None:
        check_int("RTN bits", self.bits, low=2, high=8, example="4")
        if self.group_size is not None:
            check_int("RTN group_size", self.group_size, low=2, example="32, or None for per channel")
        if self.act_bits is not None:
            check_int("RTN act_bits", self.act_bits, low=2, high=8, example="8, or None")
        try:
            object.__setattr__(self, "scale_dtype", ScaleDType(self.scale_dtype))
        except ValueError:
            raise ValueError(
                f"RTN scale_dtype {self.scale_dtype!r}: use 'fp16' (checkpoints) or 'bf16' (kernels)"
            ) from None

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> RTNConfig:
        return cls(
            int(groups["bits"]),
            None if groups["group_size"] is None else int(groups["group_size"]),
            symmetric=not groups["asym"],
            act_bits=int(groups["act_bits"]) if groups["act_bits"] else None,
            scale_dtype=groups["scale_dtype"] or ScaleDType.FP16,
        )

    @property
    def _granularity(self) -> str:
        return "ch" if self.group_size is None else f"g{self.group_size}"

    @property
    def method_id(self) -> str:
        act = f"-a{self.act_bits}" if self.act_bits else ""
        scale = "" if self.scale_dtype is ScaleDType.FP16 else f"-s{self.scale_dtype}"
        return f"rtn-{self.bits}b-{self._granularity}{'' if self.symmetric else '-asym'}{act}{scale}"

    @property
    def description(self) -> str:
        gran = "per channel" if self.group_size is None else f"group {self.group_size}"
        act = f", int{self.act_bits} per-token activations" if self.act_bits else ""
        scale = "" if self.scale_dtype is ScaleDType.FP16 else f", {self.scale_dtype} scales"
        kind = "symmetric" if self.symmetric else "asymmetric"
        return f"simulated RTN {self.bits}-bit {kind}, {gran}{act}{scale} (quantize -> dequantize)"

    @property
    def calculator_format(self) -> str:
        return f"int{self.bits}-{self._granularity}{'' if self.symmetric else '-asym'}"


@register_method(RTNConfig)
def quantize_rtn_model(model: nn.Module, config: RTNConfig, calibration: list[torch.Tensor] | None = None) -> nn.Module:
    """Swap every quantizable Linear for a ``SimulatedLinear``; a group no layer can take is an error."""
    if config.group_size is not None:
        check_fits_some_layer(
            quantizable_linears(model),
            config.method_id,
            lambda lin: config.group_size <= lin.in_features,
            f"group size {config.group_size}",
        )
    c = config
    scale_dtype = c.scale_dtype.torch_dtype
    return swap_linears(
        model, lambda _, lin: SimulatedLinear(lin, c.bits, c.group_size, c.symmetric, c.act_bits, scale_dtype)
    )
