"""Adding a quantization family touches no other file: a toy family written here (the README's "add a
method" example) goes through the parser, ``quantize_``, the storage measurement, the method listing and
the runner exactly as the shipped families do.

The toy stores each weight as float8 e4m3 with one fp32 scale per tensor (absmax / 448, e4m3's largest
finite value; OCP 8-bit Floating Point Specification v1.0, table 1)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.methods import MethodConfig, available_methods, base, parse_method, quantize_, register_method
from evaluation.methods.primitives import quantizable_linears, swap_linears
from evaluation.storage import measure_storage

E4M3_MAX = 448.0


@dataclass(frozen=True)
class Fp8WeightConfig(MethodConfig):
    """Toy: float8 e4m3 weights, one fp32 scale per tensor."""

    family: ClassVar[str] = "fp8-toy"
    label: ClassVar[str] = "fp8"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"fp8-toy")
    examples: ClassVar[tuple[str, ...]] = ("fp8-toy",)
    bits: ClassVar[int] = 8
    method_id: ClassVar[str] = "fp8-toy"
    calculator_format: ClassVar[str] = "fp8_e4m3"


class Fp8Linear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax() / E4M3_MAX
        self.register_buffer("weight_fp8", (w / scale).to(torch.float8_e4m3fn))  # [out, in], 1 byte each
        self.register_buffer("scale", scale.reshape(1))  # fp32
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, (self.weight_fp8.float() * self.scale).to(x.dtype), self.bias)


def quantize_fp8(model: nn.Module, config: Fp8WeightConfig, calibration=None) -> nn.Module:
    return swap_linears(model, lambda _, lin: Fp8Linear(lin))


@pytest.fixture
def toy_registered(monkeypatch):
    """The toy family registered for one test: on a copy of the registry, so other tests never see it."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_method(Fp8WeightConfig)(quantize_fp8)


def test_parse_quantize_and_measure(toy_registered, tiny_llama_dir):
    from evaluation.models import load_model, resolve_model_source

    model, _ = load_model(resolve_model_source(str(tiny_llama_dir)), dtype=torch.bfloat16)
    config = parse_method("FP8-toy")
    assert config == Fp8WeightConfig() and "fp8-toy" in [c.method_id for c in available_methods()]
    quantized = quantize_(copy.deepcopy(model), config)
    linears = quantizable_linears(model)
    assert all(isinstance(m, Fp8Linear) for _, m in quantizable_linears(quantized))
    storage = measure_storage(model, quantized)
    # Independent count: one byte per weight plus a 4-byte scale per matrix, and the rest unchanged.
    n_weights = sum(lin.weight.numel() for _, lin in linears)
    assert (storage.quantized_params, storage.quantized_bytes) == (n_weights, n_weights + 4 * len(linears))
    unchanged = sum(t.numel() * t.element_size() for t in model.state_dict().values()) - 2 * n_weights
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # rotary tables, not in state_dict
    assert storage.total_bytes == unchanged + buffers + n_weights + 4 * len(linears)
    ids = torch.arange(32).reshape(1, -1)
    with torch.inference_mode():
        assert torch.isfinite(quantized(input_ids=ids).logits).all()


def test_the_runner_and_cli_need_no_change(toy_registered, tiny_llama_dir, capsys):
    from evaluation.cli import main
    from evaluation.options import EvaluateOptions
    from evaluation.runner import evaluate

    (result,) = evaluate(str(tiny_llama_dir), "shakespeare", ["fp8-toy"], EvaluateOptions(n_ctx=64, max_tokens=128,
                                                                                        decode_tokens=0))  # fmt: skip
    assert (result.method_id, result.family, result.calculator_format) == ("fp8-toy", "fp8-toy", "fp8_e4m3")
    assert 0 < result.quality.kld_mean < 0.1 and result.bits_per_weight > 8
    assert main(["methods"]) == 0
    assert "fp8-toy" in capsys.readouterr().out
