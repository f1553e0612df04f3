"""Layer-by-layer calibration plumbing shared by GPTQ and AWQ: find the decoder layers, capture what enters
the first one for each calibration sequence, and replay one layer on those inputs.

As the reference implementations do it (IST-DASLab/gptq@9f2abd32533c83079847435a7c971bb4420285c8
``llama.py``: the ``Catcher`` module that stops the forward at layer 0, then a sequential layer loop;
mit-han-lab/llm-awq ``awq/quantize/pre_quant.py`` the same): each layer is quantized on the outputs of
the already-quantized layers before it, so only one layer's activations are held at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


class _StopForward(Exception):
    """Raised by a hook once the first decoder layer's inputs are captured; nothing after it runs."""


@dataclass
class LayerInputs:
    """One calibration sequence at one decoder layer: hidden [1, T, hidden] plus the extra call arguments
    (position embeddings, mask, ...) that every layer of the model receives unchanged."""

    hidden: torch.Tensor
    args: tuple
    kwargs: dict


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Llama-layout causal LM (model.model.layers: Llama, Mistral, Qwen2, ...)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"{type(model).__name__} has no decoder layers at model.model.layers; GPTQ/AWQ here support "
            "Llama-layout causal LMs (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"
        )
    layer_types = getattr(getattr(model, "config", None), "layer_types", None) or []
    if len(set(layer_types)) > 1:
        raise ValueError(
            f"layer_types {sorted(set(layer_types))}: layers with different attention masks are not "
            "supported, because every layer is replayed with the inputs captured at layer 0"
        )
    return layers


def check_calibration(calibration: Sequence[torch.Tensor] | None, method: str) -> list[torch.Tensor]:
    """Calibration token sequences as [1, T] LongTensors; ValueError naming the fix when unusable."""
    if not calibration:
        raise ValueError(
            f"{method} needs calibration data: pass calibration=[LongTensor of token ids, ...] "
            "(e.g. 128 sequences of 512 tokens, as the paper; a few thousand tokens work for small models)"
        )
    seqs = []
    for i, ids in enumerate(calibration):
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.numel() == 0:
            raise ValueError(f"calibration[{i}] must be a non-empty torch.LongTensor of token ids")
        seqs.append(ids.reshape(1, -1))
    return seqs


def capture_first_layer_inputs(model: nn.Module, calibration: list[torch.Tensor]) -> list[LayerInputs]:
    """Run the embeddings for each sequence and keep what enters decoder layer 0 (reference: Catcher)."""
    device = next(model.parameters()).device
    captured: list[LayerInputs] = []

    def catch(_module, args, kwargs):
        captured.append(LayerInputs(args[0], args[1:], kwargs))
        raise _StopForward

    handle = decoder_layers(model)[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for ids in calibration:
            try:
                model(input_ids=ids.to(device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return captured


def run_layer(layer: nn.Module, inp: LayerInputs) -> torch.Tensor:
    """One decoder layer on one captured sequence; returns the hidden states [1, T, hidden]."""
    out = layer(inp.hidden, *inp.args, **inp.kwargs)
    return out[0] if isinstance(out, tuple) else out


def named_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside one decoder layer, by its name within the layer ("self_attn.q_proj")."""
    return {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
