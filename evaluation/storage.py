"""Measured size of a (quantized) model: every parameter, buffer, scale, zero and packed weight, once.

As gpt-fast measures model size (``sum(numel * itemsize)`` over parameters and buffers), with two
additions: tensors that share storage (tied embeddings) count once, and a method that keeps float weights
while simulating a checkpoint (GPTQ, AWQ, GGUF here) declares the checkpoint's exact bytes per tensor on
the model (``declare_checkpoint_bytes``), which then *is* the stored size. Fallbacks a method took per
layer are read back from ``module.fallback`` (``collect_fallbacks``). Which matrices a method re-stored is
read against the baseline's ``module_signature`` (each module's type and weight layout), so the baseline
model itself need not be kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

CHECKPOINT_BYTES_ATTR = "checkpoint_bytes_by_tensor"
"""Model attribute: tensor name -> bytes the real checkpoint stores. When present it is the stored size."""


@dataclass(frozen=True)
class Storage:
    """Measured bytes of a model, each storage once.

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


@dataclass(frozen=True)
class ModuleSignature:
    """What ``measure_storage`` compares of a baseline module: its type and its 2-D weight's layout."""

    type: type
    weight_dtype: torch.dtype | None
    weight_shape: tuple[int, ...] | None

    @property
    def weight_numel(self) -> int:
        return math.prod(self.weight_shape) if self.weight_shape is not None else 0


def module_signature(model: nn.Module) -> dict[str, ModuleSignature]:
    """``ModuleSignature`` of every module, by name."""
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        matrix = isinstance(weight, torch.Tensor) and weight.dim() == 2
        out[name] = ModuleSignature(
            type(module), weight.dtype if matrix else None, tuple(weight.shape) if matrix else None
        )
    return out


def _signature(base: nn.Module | dict[str, ModuleSignature]) -> dict[str, ModuleSignature]:
    return base if isinstance(base, dict) else module_signature(base)


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def declare_checkpoint_bytes(model: nn.Module, packed: dict[str, dict[str, int]]) -> dict[str, int]:
    """Set and return ``model.checkpoint_bytes_by_tensor``: each packed linear's parts (``packed``: module
    name -> part -> bytes, e.g. ``{"qweight": ..., "scales": ...}``) plus every other parameter in fp16
    (GPTQ/AWQ checkpoints keep embeddings, norms, biases and lm_head in fp16). Tied weights count once,
    as ``named_parameters`` yields a shared parameter once and the checkpoint stores it once.
    """
    by_tensor: dict[str, int] = {}
    for name, param in model.named_parameters():
        module_name = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and module_name in packed:
            by_tensor.update({f"{module_name}.{part}": n for part, n in packed[module_name].items()})
        else:
            by_tensor[name] = param.numel() * 2
    setattr(model, CHECKPOINT_BYTES_ATTR, by_tensor)
    return by_tensor


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the model holds (state dict incl. quantization state, plus non-persistent buffers),
    each storage once: tied weights share one entry."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    items = list(model.state_dict(keep_vars=True).items()) + list(model.named_buffers())
    for name, t in items:
        if not isinstance(t, torch.Tensor) or name in out:
            continue
        # Offloaded weights (accelerate's disk/CPU offload) sit on the meta device, all at address 0: tell
        # them apart by object instead (tied ones are one object).
        key = (id(t), 0) if t.device.type == "meta" else (t.data_ptr(), _tensor_bytes(t))
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def _declared_storage(
    base_modules: dict[str, ModuleSignature], quantized: nn.Module, declared: dict[str, int]
) -> Storage:
    """Storage from a declared checkpoint: a module is re-stored when it declares parts that are not
    float tensors of the model (``q_proj.qweight`` instead of ``q_proj.weight``)."""
    float_names = set(dict(quantized.named_parameters())) | set(dict(quantized.named_buffers()))
    q_modules = {name.rsplit(".", 1)[0] for name in declared if name not in float_names}
    q_bytes = sum(
        n for name, n in declared.items() if name.rsplit(".", 1)[0] in q_modules and name not in float_names
    )
    q_params = sum(base_modules[m].weight_numel for m in q_modules if m in base_modules)
    return Storage(sum(declared.values()), q_bytes, q_params, dict(declared))


def measure_storage(base: nn.Module | dict[str, ModuleSignature], quantized: nn.Module) -> Storage:
    """Bytes ``quantized`` stores; which weight matrices changed is read by comparing with ``base`` (the
    baseline model, or its ``module_signature``).

    A module counts as re-stored when its type changed or its weight's dtype or shape did (a packed
    ``Int4WeightOnlyLinear`` for an ``nn.Linear``); its buffers and parameters, biases excepted, are the
    quantized bytes. A declared checkpoint (``CHECKPOINT_BYTES_ATTR``) is the stored size instead.
    """
    base_modules = _signature(base)
    declared = getattr(quantized, CHECKPOINT_BYTES_ATTR, None)
    if declared is not None:
        return _declared_storage(base_modules, quantized, declared)

    by_tensor = {name: _tensor_bytes(t) for name, t in state_tensors(quantized).items()}
    q_bytes = q_params = 0
    for name, module in quantized.named_modules():
        old = base_modules.get(name)
        if old is None or old.weight_shape is None:
            continue
        new_weight = getattr(module, "weight", None)
        unchanged = (
            type(module) is old.type
            and isinstance(new_weight, torch.Tensor)
            and new_weight.dtype == old.weight_dtype
            and tuple(new_weight.shape) == old.weight_shape
        )
        if unchanged:
            continue
        prefix = f"{name}."
        q_bytes += sum(
            n for t_name, n in by_tensor.items() if t_name.startswith(prefix) and not t_name.endswith(".bias")
        )
        q_params += old.weight_numel
    return Storage(sum(by_tensor.values()), q_bytes, q_params, by_tensor)


def collect_fallbacks(model: nn.Module) -> list[dict]:
    """Per-tensor fallbacks the method recorded (``module.fallback``), grouped by reason:
    ``[{"reason": ..., "count": n, "modules": [names]}]`` (the results file's ``fallbacks``)."""
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        reason = getattr(module, "fallback", None)
        if reason:
            groups.setdefault(reason, []).append(name)
    return [{"reason": reason, "count": len(names), "modules": names} for reason, names in groups.items()]
