"""Pure tensor primitives every method family builds on: grouping, round-to-nearest, bit packing, activations.

Conventions (as gpt-fast ``quantize.py`` and torchao ``quant_primitives.py``): a weight is [out, in];
groups run along the row (``in``), so per-group quantization parameters are [out, n_groups]; a row that
the group size does not divide ends in a shorter group, which costs a full scale as the calculator counts
it (``ceil(in / g)`` groups, ``calculator.formats``). Nothing here knows about a model except
``quantizable_linears`` and ``swap_linears``, the scope and the module swap every family shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calculator.units import ceil_div

_PACK_CHUNK_CODES = 1 << 22  # codes per chunk while packing: bounds the int64 temporaries to 32 MiB


# ---------------------------------------------------------------------------------------------- grouping


def column_groups(in_features: int, group_size: int) -> list[slice]:
    """Column ranges of the groups along a row; the last one is shorter when group_size does not divide.

    column_groups(576, 128) -> [0:128, 128:256, 256:384, 384:512, 512:576]
    """
    return [slice(s, min(s + group_size, in_features)) for s in range(0, in_features, group_size)]


def grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View a [out, in] weight as groups along the row: [out, n_groups, g].

    ``None`` is one group per row (per channel). A row that ``g`` does not divide gets a last, shorter
    group; it is padded by repeating its last element, which changes neither its min, max nor absmax.
    """
    out_features, in_features = w.shape
    if group_size is None or group_size >= in_features:
        return w.reshape(out_features, 1, in_features)
    pad = -in_features % group_size
    if pad:
        w = F.pad(w.unsqueeze(0), (0, pad), mode="replicate").squeeze(0)
    return w.reshape(out_features, -1, group_size)


def ungrouped(wg: torch.Tensor, in_features: int) -> torch.Tensor:
    """Inverse of ``grouped``: [out, n_groups, g] -> [out, in] (the padding dropped)."""
    return wg.reshape(wg.shape[0], -1)[:, :in_features]


# ---------------------------------------------------------------------------------------------- RTN


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
    wg = grouped(w.float(), group_size)  # [out, in] -> [out, n_groups, g]
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
        scales = ((hi - lo) / qmax).to(scale_dtype)  # [out, n_groups]
        mins = lo.to(scale_dtype)
        s, m = scales.float().unsqueeze(-1), mins.float().unsqueeze(-1)
        q = torch.where(s > 0, torch.round((wg - m) / torch.where(s > 0, s, 1)), 0).clamp(0, qmax)
        codes = q.to(torch.uint8)
    return RTNTensors(ungrouped(codes, in_features), scales, mins, bits, group_size)


def dequantize_rtn(t: RTNTensors, dtype: torch.dtype) -> torch.Tensor:
    """The weight ``t`` stores, computed in fp32 from the stored scales, then cast to ``dtype``."""
    in_features = t.codes.shape[1]
    cg = grouped(t.codes.float(), t.group_size)  # [out, n_groups, g]
    s = t.scales.float().unsqueeze(-1)  # [out, n_groups, 1]
    if t.mins is None:
        wg = (cg - 2 ** (t.bits - 1)) * s
    else:
        wg = cg * s + t.mins.float().unsqueeze(-1)
    return ungrouped(wg, in_features).to(dtype)


# ---------------------------------------------------------------------------------------------- packing


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
        slots = F.pad(flat.to(torch.uint8), (0, -n % per_byte)).reshape(-1, per_byte)  # [bytes, per_byte]
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
    return packed[: ceil_div(n * bits, 8)]


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of ``pack_bits``: the first ``numel`` b-bit codes as uint8."""
    data = F.pad(packed.to(torch.int64), (0, -packed.numel() % bits)).reshape(-1, bits)  # [words, b]
    words = (data << (torch.arange(bits, device=packed.device) * 8)).sum(-1, keepdim=True)  # [words, 1]
    codes = (words >> (torch.arange(8, device=packed.device) * bits)) & (2**bits - 1)  # [words, 8]
    return codes.reshape(-1)[:numel].to(torch.uint8)


# ---------------------------------------------------------------------------------------------- activations


def quantize_activations_per_token(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-token (per-row) activation quantization: x [M, K] -> int8 codes [M, K], fp32 scales [M, 1].

    As torchao's ``Int8DynamicActivationInt8WeightConfig`` (per-token symmetric activations):
    scale = absmax / (2^(b-1) - 1).
    """
    qmax = 2 ** (bits - 1) - 1
    scales = x.abs().amax(-1, keepdim=True).float().clamp(min=1e-8) / qmax
    q = torch.round(x.float() / scales).clamp(-qmax, qmax).to(torch.int8)
    return q, scales


# ---------------------------------------------------------------------------------------------- scope and swap


def quantizable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` (by qualified name) except the output head (``get_output_embeddings()``).

    The token embedding and lm_head stay in the baseline dtype, as GPTQ/AWQ/bitsandbytes checkpoints keep
    them (and SmolLM2 ties them: 21% of its parameters); the calculator is asked for the same scope.
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def check_fits_some_layer(
    linears: Sequence[tuple[str, nn.Linear]], method_id: str, fits: Callable[[nn.Linear], bool], rule: str
) -> None:
    """A setting that fits no layer at all is not a method, it is a typo: say so instead of falling back."""
    if not linears:
        raise ValueError(f"{method_id}: the model has no nn.Linear layers to quantize")
    if not any(fits(lin) for _, lin in linears):
        widths = sorted({lin.in_features for _, lin in linears})
        raise ValueError(f"{method_id}: {rule} fits none of the model's layers (in_features {widths})")


def swap_linears(model: nn.Module, build: Callable[[str, nn.Linear], nn.Module]) -> nn.Module:
    """Replace every quantizable Linear by ``build(name, linear)``, in place; returns the model.

    One layer at a time, holding no reference to the ones already replaced, so each float weight is freed
    as soon as its replacement exists (peak memory: the model plus one layer, not two models).
    """
    for name in [name for name, _ in quantizable_linears(model)]:
        model.set_submodule(name, build(name, model.get_submodule(name)))
    return model
