"""AWQ weight-only quantization (simulated: weights are replaced by their dequantized values).

AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", arXiv:2306.00978) protects the input channels that see large activations:
it multiplies W's input columns by s = mean|x|^alpha, grid-searches alpha in [0, 1) for the smallest error
of the block's output after round-to-nearest (RTN) of W * diag(s), and folds 1/s into the operation that
produces x (an RMSNorm weight or the previous linear's rows), so the float model is unchanged.

We follow mit-han-lab/llm-awq: `awq/quantize/auto_scale.py`@bc500ae6b435b39dc8440b646cc81d6562bb1b36
(auto_scale_block / _search_module_scale / scale_ln_fcs / scale_fc_fc, the Llama/Qwen2 branch),
`awq/quantize/auto_clip.py`@e65873f42026e24257428a171a15ddce0042c68e (auto_clip_layer: per-group
clipping search, run by default in llm-awq's run_awq) and
`awq/quantize/quantizer.py`@e984ba46ed48efb3530eb9c01c418f9afe08ef48 (pseudo_quantize_tensor, group-wise
asymmetric RTN). As in llm-awq's run_awq, each layer's inputs are the
float outputs of the previous layer (scaling preserves them), and quantization is RTN after search.

Differences, stated: calibration is a list of sequences run one at a time (llm-awq stacks 128 x 512 tokens in
one batch); a row whose length is not a multiple of the group size gets a final shorter group with its own
scale/zero (llm-awq and AutoAWQ assert divisibility; SmolLM2-135M's 576 = 4 x 128 + 64 would be refused).

Measured bytes: `model.checkpoint_bytes_by_tensor` holds the AutoAWQ GEMM checkpoint layout (see
`awq_linear_bytes`) plus the unquantized tensors in fp16.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from calculator.units import check_int
from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.methods.calibration import (
    capture_first_layer_inputs,
    check_calibration,
    decoder_layers,
    named_linears,
    run_layer,
)
from evaluation.methods.primitives import column_groups
from evaluation.storage import declare_checkpoint_bytes

# llm-awq: n_grid = 20 ratios 0, 0.05, ..., 0.95 (auto_scale.py); clipping tries max-shrink up to 0.5 on
# the same grid and subsamples 512 tokens (auto_clip.py defaults max_shrink=0.5, n_sample_token=512).
DEFAULT_N_GRID = 20
CLIP_MAX_SHRINK = 0.5
CLIP_SAMPLE_TOKENS = 512

# Folding 1/s into an RMSNorm needs norm(x) = weight * x_hat; these model types have exactly that
# (Gemma's (1 + weight) would not fold this way).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class AWQConfig(MethodConfig):
    """AWQ settings: `n_grid` ratios alpha = k / n_grid are tried; `clip` runs llm-awq's clipping search.

    Example: `AWQConfig(bits=4, group_size=64)` is "awq-4b-g64".
    """

    bits: int = 4
    group_size: int = 128
    zero_point: bool = True
    n_grid: int = DEFAULT_N_GRID
    clip: bool = True

    family: ClassVar[str] = MethodFamily.AWQ
    label: ClassVar[str] = "AWQ"
    id_prefix: ClassVar[str] = "awq-"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"awq-(?P<bits>\d+)b-g(?P<group_size>\d+)(?P<sym>-sym)?(?P<noclip>-noclip)?(?:-grid(?P<n_grid>\d+))?"
    )
    id_syntax: ClassVar[str] = "awq-{bits}b-g{group}[-sym][-noclip][-grid{n}]"
    examples: ClassVar[tuple[str, ...]] = ("awq-4b-g128", "awq-3b-g128")
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int("AWQ bits", self.bits, low=2, high=8, example="4, what AWQ kernels ship")
        check_int("AWQ group_size", self.group_size, low=2, example="128 or 64")
        check_int("AWQ n_grid", self.n_grid, example="20, llm-awq's")

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> AWQConfig:
        n_grid = int(groups["n_grid"]) if groups["n_grid"] else DEFAULT_N_GRID
        return cls(
            bits=int(groups["bits"]),
            group_size=int(groups["group_size"]),
            zero_point=not groups["sym"],
            n_grid=n_grid,
            clip=not groups["noclip"],
        )

    @property
    def calculator_format(self) -> str:
        return f"awq-{self.bits}b-g{self.group_size}"

    @property
    def method_id(self) -> str:
        grid = "" if self.n_grid == DEFAULT_N_GRID else f"-grid{self.n_grid}"
        sym = "" if self.zero_point else "-sym"
        return self.calculator_format + sym + ("" if self.clip else "-noclip") + grid

    @property
    def description(self) -> str:
        return f"AWQ {self.bits}-bit, group {self.group_size} (activation-aware scales and clipping, simulated)"


# ---------------------------------------------------------------- primitives


def awq_pseudo_quantize(w: torch.Tensor, bits: int, group_size: int, zero_point: bool = True) -> torch.Tensor:
    """Group-wise RTN as llm-awq pseudo_quantize_tensor; w: [out, in] -> same shape, dequantized.

    Asymmetric 4-bit on a group spanning (-0.3, 1.2): scale = 1.5 / 15 = 0.1, zero = round(0.3 / 0.1) = 3.
    Unlike GPTQ's quantizer the range is the group's own min/max (0 need not be inside it).
    """
    n_out, n_in = w.shape
    n_full = n_in - n_in % group_size
    pieces = []
    if n_full:  # w[:, :n_full] -> [out, n_groups, group_size]: every full group at once
        full = w[:, :n_full].reshape(n_out, n_full // group_size, group_size)
        pieces.append(_rtn_last_dim(full, bits, zero_point).reshape(n_out, n_full))
    if n_full < n_in:  # the final partial group (column_groups' last slice)
        pieces.append(_rtn_last_dim(w[:, n_full:], bits, zero_point))
    return torch.cat(pieces, dim=1)


def _rtn_last_dim(g: torch.Tensor, bits: int, zero_point: bool) -> torch.Tensor:
    """RTN with one scale (and zero point) per slice along the last dimension."""
    if zero_point:
        max_val, min_val = g.amax(dim=-1, keepdim=True), g.amin(dim=-1, keepdim=True)
        max_int, min_int = 2**bits - 1, 0
        scales = (max_val - min_val).clamp(min=1e-5) / max_int
        zeros = (-torch.round(min_val / scales)).clamp(min_int, max_int)
    else:
        max_int, min_int = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
        scales = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5) / max_int
        zeros = torch.zeros_like(scales)
    return (torch.clamp(torch.round(g / scales) + zeros, min_int, max_int) - zeros) * scales


def activation_scale(xs: list[torch.Tensor]) -> torch.Tensor:
    """mean |x| per input channel over all calibration tokens (llm-awq get_act_scale): [in]."""
    flat = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]).float()
    return flat.abs().mean(dim=0)


def search_scale(
    inspect: Callable[[int, torch.Tensor], torch.Tensor],
    xs: list[torch.Tensor],
    linears: list[nn.Linear],
    config: AWQConfig,
) -> torch.Tensor:
    """Grid-search s = mean|x|^alpha (normalised by sqrt(max * min)) minimising the inspected block's output
    MSE when `linears` are RTN-quantized as Q(W * s) / s. inspect(i, x) runs the block on sample i.
    Weights are restored before returning.
    """
    x_mean = activation_scale(xs)
    reference = [inspect(i, x) for i, x in enumerate(xs)]
    originals = [lin.weight.detach().clone() for lin in linears]
    best_loss, best_scale = math.inf, None
    try:
        for k in range(config.n_grid):
            s = x_mean.pow(k / config.n_grid).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            for lin, w in zip(linears, originals, strict=True):
                scaled = w.float() * s
                q = awq_pseudo_quantize(scaled, config.bits, config.group_size, config.zero_point)
                lin.weight.copy_(q / s)
            sq_err = sum(
                (ref - inspect(i, x)).float().pow(2).sum().item()
                for i, (ref, x) in enumerate(zip(reference, xs, strict=True))
            )
            loss = sq_err / sum(r.numel() for r in reference)
            if loss < best_loss:
                best_loss, best_scale = loss, s
    finally:
        for lin, w in zip(linears, originals, strict=True):
            lin.weight.copy_(w)
    if best_scale is None:  # every candidate gave NaN: the calibration activations are not finite
        raise ValueError("AWQ scale search found no finite loss; check the model and calibration for inf/NaN")
    return best_scale


def search_clip(w: torch.Tensor, x: torch.Tensor, config: AWQConfig) -> list[torch.Tensor]:
    """Per (row, group) clipping threshold minimising the group's partial output error after RTN
    (llm-awq auto_clip_layer). w: [out, in]; x: [tokens, in] -> one [out, 1] tensor per group."""
    x = x[:: max(1, x.shape[0] // CLIP_SAMPLE_TOKENS)].float()
    thresholds = []
    for cols in column_groups(w.shape[1], config.group_size):
        wg, xg = w[:, cols].float(), x[:, cols]
        reference = xg @ wg.T  # [tokens, out]: this group's share of the output
        org_max = wg.abs().amax(dim=1, keepdim=True)
        best, best_err = org_max.clone(), torch.full_like(org_max, math.inf)
        for i_s in range(int(CLIP_MAX_SHRINK * config.n_grid)):
            max_val = org_max * (1 - i_s / config.n_grid)
            q = awq_pseudo_quantize(wg.clamp(-max_val, max_val), config.bits, wg.shape[1], config.zero_point)
            err = (xg @ q.T - reference).pow(2).mean(dim=0).unsqueeze(1)  # [out, 1]
            better = err < best_err
            best_err, best = torch.where(better, err, best_err), torch.where(better, max_val, best)
        thresholds.append(best)
    return thresholds


def scale_norm_linears(norm: nn.Module, linears: list[nn.Linear], s: torch.Tensor) -> None:
    """norm(x) / s feeds linears whose columns are multiplied by s: outputs unchanged (scale_ln_fcs)."""
    norm.weight.div_(s.to(norm.weight.dtype))
    if getattr(norm, "bias", None) is not None:
        norm.bias.div_(s.to(norm.bias.dtype))
    for lin in linears:
        lin.weight.mul_(s.to(lin.weight.dtype).view(1, -1))


def scale_linear_linear(prev: nn.Linear, nxt: nn.Linear, s: torch.Tensor) -> None:
    """prev's output rows / s, nxt's input columns * s (scale_fc_fc). prev's last len(s) rows are the ones
    feeding nxt (up_proj -> down_proj; v_proj -> o_proj when they have the same shape)."""
    prev.weight[-s.numel() :].div_(s.to(prev.weight.dtype).view(-1, 1))
    if prev.bias is not None:
        prev.bias.div_(s.to(prev.bias.dtype))
    nxt.weight.mul_(s.to(nxt.weight.dtype).view(1, -1))


def awq_linear_bytes(
    in_features: int, out_features: int, bits: int, group_size: int, zero_point: bool = True
) -> dict[str, int]:
    """Bytes of one AWQ linear in AutoAWQ's GEMM layout (awq/modules/linear/gemm.py WQLinear_GEMM):
    qweight int32 [in, out * bits / 32], qzeros int32 [in / g, out * bits / 32], scales fp16 [in / g, out].
    Group counts round up (final partial group, see module docstring); no qzeros without a zero point.
    """
    n_groups = math.ceil(in_features / group_size)
    words_per_row = math.ceil(out_features * bits / 32)
    parts = {"qweight": in_features * words_per_row * 4, "scales": n_groups * out_features * 2}
    if zero_point:
        parts["qzeros"] = n_groups * words_per_row * 4
    return parts


# ---------------------------------------------------------------- one decoder layer


@dataclass
class _Call:
    """How a submodule was called for one sample, so it can be re-run on a different input x."""

    args: tuple
    kwargs: dict

    def run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.args:
            out = module(x, *self.args[1:], **self.kwargs)
        else:
            out = module(**{**self.kwargs, "hidden_states": x})
        return out[0] if isinstance(out, tuple) else out


def _capture_layer(layer: nn.Module, inputs) -> tuple[dict[str, list[torch.Tensor]], list[_Call], list]:
    """Run the float layer on every sample, recording each linear's inputs and the self_attn call."""
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in named_linears(layer)}
    attn_calls: list[_Call] = []
    handles = [
        lin.register_forward_pre_hook(lambda _m, args, name=name: feats[name].append(args[0].detach()))
        for name, lin in named_linears(layer).items()
    ]
    handles.append(
        layer.self_attn.register_forward_pre_hook(
            lambda _m, args, kwargs: attn_calls.append(_Call(args, dict(kwargs))), with_kwargs=True
        )
    )
    try:
        outputs = [run_layer(layer, inp) for inp in inputs]
    finally:
        for handle in handles:
            handle.remove()
    return feats, attn_calls, outputs


def _awq_layer(layer: nn.Module, inputs, config: AWQConfig) -> list:
    """Search and fold scales, search clipping, RTN-quantize every linear; returns the float outputs."""
    feats, attn_calls, outputs = _capture_layer(layer, inputs)
    attn, mlp = layer.self_attn, layer.mlp

    # (prev op, linears scaled together, name of their shared input, block whose output is inspected)
    groups: list[tuple[nn.Module, list[nn.Linear], str, Callable[[int, torch.Tensor], torch.Tensor]]] = [
        (
            layer.input_layernorm,
            [attn.q_proj, attn.k_proj, attn.v_proj],
            "self_attn.q_proj",
            lambda i, x: attn_calls[i].run(attn, x),
        ),
    ]
    # GQA: v_proj has fewer output rows than o_proj has inputs, so 1/s cannot be folded (llm-awq PR #67).
    if attn.v_proj.weight.shape == attn.o_proj.weight.shape:
        groups.append((attn.v_proj, [attn.o_proj], "self_attn.o_proj", lambda i, x: attn.o_proj(x)))
    groups.append((layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], "mlp.gate_proj", lambda i, x: mlp(x)))
    groups.append((mlp.up_proj, [mlp.down_proj], "mlp.down_proj", lambda i, x: mlp.down_proj(x)))

    # All searches see the unscaled layer, then all scales are applied (auto_scale_block, apply_scale).
    scales = [search_scale(inspect, feats[feat], linears, config) for _, linears, feat, inspect in groups]
    names = {id(m): n for n, m in layer.named_modules()}
    for (prev, linears, _, _), s in zip(groups, scales, strict=True):
        if isinstance(prev, nn.Linear):
            scale_linear_linear(prev, linears[0], s)
        else:
            scale_norm_linears(prev, linears, s)
        for lin in linears:  # clipping must see the inputs the scaled weights now receive
            feats[names[id(lin)]] = [x / s.to(x.dtype) for x in feats[names[id(lin)]]]

    for name, lin in named_linears(layer).items():
        w = lin.weight.float()
        # q/k errors pass through softmax(QK^T); llm-awq does not clip them (auto_clip_block).
        if config.clip and not name.endswith(("q_proj", "k_proj")):
            x = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats[name]])
            for cols, max_val in zip(
                column_groups(w.shape[1], config.group_size), search_clip(w, x, config), strict=True
            ):
                w[:, cols] = w[:, cols].clamp(-max_val, max_val)
        lin.weight.copy_(awq_pseudo_quantize(w, config.bits, config.group_size, config.zero_point))
    return outputs


@register_method(AWQConfig)
@torch.no_grad()
def quantize_awq(model: nn.Module, config: AWQConfig, calibration: list[torch.LongTensor] | None = None) -> nn.Module:
    """AWQ every nn.Linear inside the decoder layers; embeddings and lm_head stay float."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"AWQ here supports model types {SUPPORTED_MODEL_TYPES} (RMSNorm weight * x folding); got "
            f"{model_type!r}. Use GPTQ or a GGUF type for this model."
        )
    seqs = check_calibration(calibration, "AWQ")
    layers = decoder_layers(model)
    inputs = capture_first_layer_inputs(model, seqs)
    prefix = {id(layer): name for name, layer in model.named_modules()}
    packed: dict[str, dict[str, int]] = {}
    for layer in layers:
        outputs = _awq_layer(layer, inputs, config)
        for name, lin in named_linears(layer).items():
            packed[f"{prefix[id(layer)]}.{name}"] = awq_linear_bytes(
                lin.in_features, lin.out_features, config.bits, config.group_size, config.zero_point
            )
        for inp, out in zip(inputs, outputs, strict=True):
            inp.hidden = out
    declare_checkpoint_bytes(model, packed)
    return model
