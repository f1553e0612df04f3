"""GPTQ weight-only quantization (simulated: weights are replaced by their dequantized values).

GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", arXiv:2210.17323) quantizes one column of W at a time and spreads
each column's rounding error over the columns not yet quantized, weighted by the inverse Hessian of the
layer-wise loss ||WX - QX||^2, H = 2 X X^T (X: this layer's calibration inputs, [in, tokens]).

We follow the reference implementation IST-DASLab/gptq@9f2abd32533c83079847435a7c971bb4420285c8
(`gptq.py` GPTQ.fasterquant, `quant.py` Quantizer.find_params, `llama.py` sequential layer loop) with
two deliberate differences, both stated where they happen:
- a block of columns is widened to a multiple of the group size, so every group's scale/zero is computed
  from weights that already carry all earlier error feedback (the reference reads the not-yet-updated
  `W` for groups that start inside a block, which only matters when group_size < block_size);
- a row length that is not a multiple of the group size gets a final, shorter group with its own
  scale/zero (576 = 4 x 128 + 64 for SmolLM2-135M), the layout AutoGPTQ stores with
  `ceil(in_features / group_size)` scale rows. No layer is ever skipped.

Measured bytes: after `quantize_`, `model.checkpoint_bytes_by_tensor` maps every tensor the real
AutoGPTQ/GPTQModel checkpoint would hold ("...q_proj.qweight", ".qzeros", ".scales", ".g_idx", and the
unquantized embeddings/norms/lm_head in fp16) to its exact size in bytes.

The calibration plumbing (decoder layers, capture of the first layer's inputs, running one layer) is in
`calibration.py`, shared with AWQ.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from calculator.units import check_int
from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.methods.calibration import (
    LayerInputs,
    capture_first_layer_inputs,
    check_calibration,
    decoder_layers,
    named_linears,
    run_layer,
)
from evaluation.storage import declare_checkpoint_bytes

# Reference defaults (IST-DASLab/gptq llama.py argparse): --percdamp .01, blocksize 128.
DEFAULT_DAMP = 0.01
DEFAULT_BLOCK_SIZE = 128


@dataclass(frozen=True)
class GPTQConfig(MethodConfig):
    """GPTQ settings. `damp` is the fraction of mean(diag H) added to the diagonal (reference --percdamp).

    Example: `GPTQConfig(bits=4, group_size=128, act_order=True)` is "gptq-4b-g128-actorder".
    """

    bits: int = 4
    group_size: int = 128
    act_order: bool = False
    sym: bool = False
    damp: float = DEFAULT_DAMP
    block_size: int = DEFAULT_BLOCK_SIZE

    family: ClassVar[str] = MethodFamily.GPTQ
    label: ClassVar[str] = "GPTQ"
    id_prefix: ClassVar[str] = "gptq-"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"gptq-(?P<bits>\d+)b-g(?P<group_size>\d+)(?P<act_order>-actorder)?(?P<sym>-sym)?(?:-damp(?P<damp>[0-9.eE-]+))?"
    )
    id_syntax: ClassVar[str] = "gptq-{bits}b-g{group}[-actorder][-sym][-damp{x}]"
    examples: ClassVar[tuple[str, ...]] = ("gptq-4b-g128", "gptq-3b-g128", "gptq-4b-g128-actorder")
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int("GPTQ bits", self.bits, low=2, high=8, example="4, the common choice")
        check_int("GPTQ group_size", self.group_size, example="128 or 32")
        check_int("GPTQ block_size", self.block_size, example="128, the reference's")
        if isinstance(self.damp, bool) or not isinstance(self.damp, int | float) or not 0 < self.damp <= 1:
            raise ValueError(f"GPTQ damp={self.damp!r}: use a fraction in (0, 1]; the reference uses 0.01")

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> GPTQConfig:
        try:
            damp = float(groups["damp"]) if groups["damp"] else DEFAULT_DAMP
        except ValueError:
            raise ValueError(f"GPTQ damp {groups['damp']!r} is not a number; e.g. gptq-4b-g128-damp0.05") from None
        return cls(
            bits=int(groups["bits"]),
            group_size=int(groups["group_size"]),
            act_order=bool(groups["act_order"]),
            sym=bool(groups["sym"]),
            damp=damp,
        )

    @property
    def calculator_format(self) -> str:
        """Byte layout name in calculator/formats.py; sym/damp change values, not bytes."""
        return f"gptq-{self.bits}b-g{self.group_size}" + ("-actorder" if self.act_order else "")

    @property
    def method_id(self) -> str:
        damp = "" if self.damp == DEFAULT_DAMP else f"-damp{self.damp:g}"
        return self.calculator_format + ("-sym" if self.sym else "") + damp

    @property
    def description(self) -> str:
        order = ", act-order" if self.act_order else ""
        return f"GPTQ {self.bits}-bit, group {self.group_size}{order} (Hessian error feedback, simulated)"


# ---------------------------------------------------------------- primitives (pure tensor functions)


def minmax_qparams(w: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scale and zero point of one group, as reference quant.py Quantizer.find_params.

    w: [out, g] -> scale, zero: [out, 1]. The range always includes 0. Asymmetric 4-bit on a row spanning
    (-0.3, 1.2): scale = 1.5 / 15 = 0.1, zero = round(0.3 / 0.1) = 3, so 0.0 is exactly code 3.
    """
    maxq = 2**bits - 1
    zero_ = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    xmin = torch.minimum(w.min(dim=1).values, zero_)
    xmax = torch.maximum(w.max(dim=1).values, zero_)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both_zero, -1.0, xmin)
    xmax = torch.where(both_zero, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to the integer grid and map back: scale * (clamp(round(w / scale) + zero, 0, 2^b - 1) - zero)."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero)


@dataclass(frozen=True)
class GPTQWeight:
    """Result for one weight. dequantized: [out, in]; scales, zeros: [out, n_groups]; g_idx: [in].

    Column j was stored as the integer round(dequantized[:, j] / scales[:, g_idx[j]]) + zeros[:, g_idx[j]].
    """

    dequantized: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    g_idx: torch.Tensor


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """The column loop runs thousands of [out]-sized ops: on CPU, intra-op threads only add
    synchronisation (a 1536 x 576 weight took 0.07 s on 1 thread, 0.4-5 s on 2 of 2 busy cores)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig) -> GPTQWeight:
    """GPTQ of one weight [out, in] given H = 2 X X^T / n_tokens [in, in] (Algorithm 1 of the paper)."""
    with _one_cpu_thread(weight.device):
        return _gptq(weight, hessian, config)


def _gptq(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig) -> GPTQWeight:
    w = weight.detach().clone().float()
    h = hessian.detach().clone().float()
    n_cols = w.shape[1]
    g = config.group_size

    dead = torch.diag(h) == 0  # inputs that never fire: any value is exact, the reference stores 0
    h[dead, dead] = 1
    w[:, dead] = 0

    # act-order: quantize the columns with the largest diag(H) (largest input energy) first.
    perm = torch.argsort(torch.diag(h), descending=True) if config.act_order else torch.arange(n_cols, device=w.device)
    w, h = w[:, perm], h[perm][:, perm]
    h.diagonal().add_(config.damp * torch.diag(h).mean())
    # Upper Cholesky factor of H^-1: row i holds the update weights for column i (paper section 4, step 3).
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)

    n_groups = math.ceil(n_cols / g)
    q = torch.zeros_like(w)
    scales = torch.empty(w.shape[0], n_groups, device=w.device)
    zeros = torch.empty_like(scales)
    block = math.ceil(config.block_size / g) * g  # group-aligned blocks (see module docstring)
    for b1 in range(0, n_cols, block):
        b2 = min(b1 + block, n_cols)
        w1, hinv1 = w[:, b1:b2].clone(), hinv[b1:b2, b1:b2]
        err1, d = torch.zeros_like(w1), torch.diag(hinv1)
        for i in range(b2 - b1):
            col = b1 + i
            if col % g == 0:  # the group starts here: its params see all feedback so far
                scale, zero = (t[:, 0] for t in minmax_qparams(w1[:, i : i + g], config.bits, config.sym))
                scales[:, col // g], zeros[:, col // g] = scale, zero
            qcol = fake_quantize(w1[:, i], scale, zero, config.bits)
            q[:, col] = qcol
            err = (w1[:, i] - qcol).div_(d[i])
            w1[:, i:].addr_(err, hinv1[i, i:], alpha=-1)  # w1[:, i:] -= err (x) hinv1[i, i:]
            err1[:, i] = err
        w[:, b2:] -= err1 @ hinv[b1:b2, b2:]  # lazy batch update of the later columns

    inv = torch.argsort(perm)
    # Column j sat at position inv[j] of the quantization order, so it belongs to group inv[j] // g.
    g_idx = (torch.arange(n_cols, device=w.device) // g)[inv]
    return GPTQWeight(q[:, inv].to(weight.dtype), scales, zeros, g_idx)


# ---------------------------------------------------------------- checkpoint layout


def gptq_linear_bytes(in_features: int, out_features: int, bits: int, group_size: int) -> dict[str, int]:
    """Bytes of one GPTQ linear as AutoGPTQ stores it (auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py):

    qweight int32 [in * bits / 32, out], qzeros int32 [ceil(in / g), out * bits / 32],
    scales fp16 [ceil(in / g), out], g_idx int32 [in] (stored with and without act-order).
    Packed int32 words are rounded up when in * bits or out * bits is not a multiple of 32.
    """
    n_groups = math.ceil(in_features / group_size)
    return {
        "qweight": math.ceil(in_features * bits / 32) * out_features * 4,
        "qzeros": n_groups * math.ceil(out_features * bits / 32) * 4,
        "scales": n_groups * out_features * 2,
        "g_idx": in_features * 4,
    }


# ---------------------------------------------------------------- Hessians


def layer_hessians(layer: nn.Module, inputs: list[LayerInputs]) -> dict[str, torch.Tensor]:
    """H = 2 X X^T / n_tokens [in, in] for every linear of `layer`, X its inputs over all sequences."""
    linears = named_linears(layer)
    sums = {n: torch.zeros(m.in_features, m.in_features, device=m.weight.device) for n, m in linears.items()}
    counts = dict.fromkeys(linears, 0)

    def accumulate(name: str):
        def hook(_module, args):
            x = args[0].reshape(-1, args[0].shape[-1]).float()  # [tokens, in]
            sums[name].addmm_(x.T, x)
            counts[name] += x.shape[0]

        return hook

    handles = [m.register_forward_pre_hook(accumulate(n)) for n, m in linears.items()]
    try:
        for inp in inputs:
            run_layer(layer, inp)
    finally:
        for handle in handles:
            handle.remove()
    return {n: sums[n] * (2 / max(counts[n], 1)) for n in linears}


# ---------------------------------------------------------------- model-level verb


@register_method(GPTQConfig)
@torch.no_grad()
def quantize_gptq(model: nn.Module, config: GPTQConfig, calibration: list[torch.LongTensor] | None = None) -> nn.Module:
    """GPTQ every nn.Linear inside the decoder layers, layer by layer (embeddings and lm_head stay float).

    Each layer's Hessians come from inputs produced by the already-quantized earlier layers (reference
    llama.py); all linears of a layer share one pass (the reference default, not --true-sequential).
    """
    seqs = check_calibration(calibration, "GPTQ")
    layers = decoder_layers(model)
    inputs = capture_first_layer_inputs(model, seqs)
    prefix = {id(layer): name for name, layer in model.named_modules()}
    packed: dict[str, dict[str, int]] = {}
    for layer in layers:
        linears = named_linears(layer)
        hessians = layer_hessians(layer, inputs)
        for name, lin in linears.items():
            result = gptq_quantize_weight(lin.weight, hessians[name], config)
            lin.weight.copy_(result.dequantized)
            full = f"{prefix[id(layer)]}.{name}"
            packed[full] = gptq_linear_bytes(lin.in_features, lin.out_features, config.bits, config.group_size)

        for inp in inputs:  # the next layer sees what this quantized layer produces
            inp.hidden = run_layer(layer, inp)
    declare_checkpoint_bytes(model, packed)
    return model
