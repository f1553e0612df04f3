"""bitsandbytes 4-bit (NF4 / FP4, with and without double quantization), by bitsandbytes' own ``Linear4bit``.

NF4 is QLoRA's NormalFloat (Dettmers et al. 2023, arXiv 2305.14314 §2): 4-bit codes in blocks of 64 with
an fp32 absmax each; double quantization stores the absmax as 8 bits. bitsandbytes is imported inside the
handler only: it prints a banner and only these methods need it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.methods.primitives import swap_linears

BNB_BLOCK_SIZE = 64
"""Weights per absmax in ``Params4bit`` (its default blocksize), the calculator's nf4 group."""


class BnBQuantType(enum.StrEnum):
    """The 4-bit code book."""

    NF4 = "nf4"
    """NormalFloat: 16 quantiles of N(0, 1), information-theoretically optimal for normal weights."""
    FP4 = "fp4"
    """A 4-bit float (1 sign, 2 exponent, 1 mantissa bits)."""


@dataclass(frozen=True)
class BnB4bitConfig(MethodConfig):
    """bitsandbytes 4-bit: ``quant_type`` nf4 (NormalFloat, QLoRA) or fp4, blocks of 64 weights.

    ``double_quant`` stores the fp32 absmax of each block as 8 bits (QLoRA §2, "double quantization").
    """

    quant_type: BnBQuantType = BnBQuantType.NF4
    double_quant: bool = False

    family: ClassVar[str] = MethodFamily.BNB
    label: ClassVar[str] = "bitsandbytes"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"(?P<quant_type>nf4|fp4)(?P<double_quant>-dq)?")
    examples: ClassVar[tuple[str, ...]] = ("nf4", "nf4-dq", "fp4", "fp4-dq")
    bits: ClassVar[int] = 4
    group_size: ClassVar[int] = BNB_BLOCK_SIZE

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "quant_type", BnBQuantType(self.quant_type))
        except ValueError:
            raise ValueError(f"bitsandbytes quant_type {self.quant_type!r}: use 'nf4' or 'fp4'") from None

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> BnB4bitConfig:
        return cls(BnBQuantType(groups["quant_type"]), bool(groups["double_quant"]))

    @property
    def method_id(self) -> str:
        return self.quant_type.value + ("-dq" if self.double_quant else "")

    @property
    def calculator_format(self) -> str:
        return self.method_id

    @property
    def description(self) -> str:
        dq = ", double quant" if self.double_quant else ""
        return f"bitsandbytes {self.quant_type.value.upper()}, blocks of {BNB_BLOCK_SIZE}{dq}"


@register_method(BnB4bitConfig)
def quantize_bnb(model: nn.Module, config: BnB4bitConfig, calibration: list[torch.Tensor] | None = None) -> nn.Module:
    """Swap every quantizable Linear for a ``bnb.nn.Linear4bit`` holding its quantized weight."""
    import bitsandbytes as bnb  # here, not at import: see the module docstring

    def build(_: str, lin: nn.Linear) -> nn.Module:
        w = lin.weight.detach()
        new = bnb.nn.Linear4bit(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            compute_dtype=w.dtype,
            compress_statistics=config.double_quant,
            quant_type=config.quant_type.value,
            device="meta",
        )
        new.weight = bnb.nn.Params4bit(
            w.clone(),
            requires_grad=False,
            blocksize=BNB_BLOCK_SIZE,
            compress_statistics=config.double_quant,
            quant_type=config.quant_type.value,
        )
        if lin.bias is not None:
            new.bias = lin.bias
        new = new.to(w.device)  # Params4bit quantizes on its first move to a device
        new.fallback = None
        return new

    return swap_linears(model, build)
