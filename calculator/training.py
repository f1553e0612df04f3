"""Training memory: full fine-tuning, LoRA and QLoRA, every term in bytes with its source.

Model states (per trainable parameter), following Hugging Face's "Model training anatomy"
(transformers docs, model_memory_anatomy): mixed-precision weights 6 bytes (an fp32 master copy and a
half-precision copy), gradients 4 bytes ("gradients are always kept in fp32"), AdamW 8 bytes (two fp32
moments), 8-bit AdamW 2 bytes. Full fine-tuning with AdamW in mixed precision is therefore 18 bytes
per parameter (ZeRO, Rajbhandari et al. 2020, arXiv 1910.02054 §3.1, counts 16 with fp16 gradients).
bitsandbytes' 8-bit AdamW keeps two uint8 states plus one fp32 absmax per 256 values for each state,
and full fp32 states for tensors under 4096 elements (bitsandbytes 0.50 ``optim/optimizer.py``
``Optimizer2State.init_state``: ``blocksize = 256``, ``min_8bit_size=4096``).

Training memory depends on the parameter count and the training dtypes, never on the size of a
quantized checkpoint: an int4 file does not make full fine-tuning 4x its size (the anchor bug this
module exists to avoid). Quantization enters only through the frozen base of QLoRA.

LoRA (Hu et al. 2021, arXiv 2106.09685): each targeted matrix ``W (out, in)`` gains ``A (r, in)`` and
``B (out, r)``: ``r x (in + out)`` trainable parameters (stacked experts count once per expert). PEFT
stores adapters in fp32 (``autocast_adapter_dtype=True``, peft >= 0.12), so they carry the fp32 rules
above (4 weight + 4 grad + optimizer). The frozen base is bf16 (LoRA) or NF4 with double quantization
(QLoRA, Dettmers et al. 2023, arXiv 2305.14314), sized by ``calculator.memory.weight_memory``.

Activations per transformer layer (Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", arXiv 2205.05198, eq. 1, 16-bit activations, no tensor parallelism)::

    s x b x h x (34 + 5 x a x s / h)  bytes

``5as/h`` is the stored attention matrix; FlashAttention (Dao et al. 2022) never stores it, which
leaves the paper's selective-recomputation figure ``34 s b h`` (§4.2). Full activation checkpointing
keeps only each layer's input, ``2 s b h`` per layer, plus one layer's full activations while it is
recomputed. The paper's constant 34 assumes a 4h MLP with dropout; it is used as published.
The loss adds fp32 logits and their gradient: ``2 x s x b x vocab x 4`` bytes (transformers upcasts
logits with ``logits.float()`` in ``loss/loss_utils.py``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import StrEnum

from calculator.memory import weight_memory
from calculator.models import ModelSpec
from calculator.units import ceil_div, check_int


@functools.lru_cache(maxsize=4096)
def _frozen_base_bytes(spec: ModelSpec, fmt: str) -> int:
    return weight_memory(spec, fmt).total_bytes


class TrainingMode(StrEnum):
    """What is trained."""

    INFERENCE = "inference"
    """No training: weights, KV cache and runtime overhead only (handled by ``calculator.fit``)."""
    FULL = "full"
    """Every parameter is trained."""
    LORA = "lora"
    """Frozen bf16 base + trainable low-rank adapters."""
    QLORA = "qlora"
    """Frozen NF4 (double-quantized) base + trainable low-rank adapters."""


class Optimizer(StrEnum):
    """Optimizer whose states are kept for every trainable parameter."""

    ADAMW = "adamw"
    """Two fp32 moments: 8 bytes per parameter."""
    ADAMW_8BIT = "adamw_8bit"
    """bitsandbytes AdamW8bit: two uint8 moments + fp32 absmax per 256 (fp32 under 4096 elements)."""
    SGD_MOMENTUM = "sgd_momentum"
    """One fp32 momentum buffer: 4 bytes per parameter."""
    SGD = "sgd"
    """No state."""


class Precision(StrEnum):
    """How trainable weights and gradients are held."""

    MIXED = "mixed"
    """fp32 master + 16-bit copy (6 bytes) and fp32 gradients (4 bytes), per the HF training anatomy."""
    BF16 = "bf16"
    """Pure bf16 weights and gradients (2 + 2 bytes), optimizer states still as the optimizer keeps them."""
    FP32 = "fp32"
    """fp32 weights and gradients (4 + 4 bytes)."""


_WEIGHT_GRAD_BYTES = {Precision.MIXED: (6, 4), Precision.BF16: (2, 2), Precision.FP32: (4, 4)}
_ADAPTER_WEIGHT_GRAD_BYTES = (4, 4)  # PEFT keeps adapters in fp32 (autocast_adapter_dtype=True)
_BNB_BLOCK, _BNB_MIN_8BIT = 256, 4096

PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")
"""PEFT's default LoRA targets for Llama-family models
(peft ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``)."""

# Hugging Face module names -> GGUF tensor roles of our ModelSpec (llama.cpp convert_hf_to_gguf names).
_HF_TO_ROLES = {
    "q_proj": ("attn_q",),
    "k_proj": ("attn_k",),
    "v_proj": ("attn_v",),
    "o_proj": ("attn_output",),
    "qkv_proj": ("attn_qkv",),
    "query_key_value": ("attn_qkv",),
    "c_attn": ("attn_qkv",),
    "dense": ("attn_output",),
    "c_proj": ("attn_output", "ffn_down"),
    "out_proj": ("attn_output",),
    "gate_proj": ("ffn_gate", "ffn_gate_exps", "ffn_gate_shexp"),
    "up_proj": ("ffn_up", "ffn_up_exps", "ffn_up_shexp"),
    "down_proj": ("ffn_down", "ffn_down_exps", "ffn_down_shexp"),
    "gate_up_proj": ("ffn_up",),
    "fc1": ("ffn_up",),
    "fc2": ("ffn_down",),
    "c_fc": ("ffn_up",),
    "q_a_proj": ("attn_q_a",),
    "q_b_proj": ("attn_q_b",),
    "kv_a_proj_with_mqa": ("attn_kv_a_mqa",),
    "kv_b_proj": ("attn_kv_b",),
}
_ALL_LINEAR = "all-linear"


def _target_roles(spec: ModelSpec, targets: tuple[str, ...]) -> set[str]:
    block_roles = {t.role for t in spec.tensors if t.layer is not None and t.is_matrix}
    if _ALL_LINEAR in targets:
        # PEFT "all-linear": every Linear inside the blocks (the router gate too), not embeddings / lm_head.
        return block_roles
    roles: set[str] = set()
    for target in targets:
        if target not in _HF_TO_ROLES:
            raise ValueError(
                f"LoRA target {target!r} is not known; use module names such as "
                f"{', '.join(PEFT_DEFAULT_TARGETS)}, "
                f"o_proj, gate_proj, up_proj, down_proj, or {_ALL_LINEAR!r}"
            )
        roles.update(r for r in _HF_TO_ROLES[target] if r in block_roles)
    if not roles:
        raise ValueError(
            f"LoRA targets {', '.join(targets)} match no weight of {spec.name} ({spec.arch}); "
            f"its block weights are {', '.join(sorted(block_roles))}; try {_ALL_LINEAR!r}"
        )
    return roles


def lora_params(spec: ModelSpec, rank: int, targets: tuple[str, ...] = PEFT_DEFAULT_TARGETS) -> list[int]:
    """Trainable adapter parameters of each LoRA-wrapped tensor: ``experts x r x (in + out)``."""
    check_int("LoRA rank", rank, example="16")
    roles = _target_roles(spec, tuple(targets))
    out = []
    for t in spec.tensors:
        if t.layer is not None and t.is_matrix and t.role in roles:
            *stack, rows, cols = t.shape
            out.append(math.prod(stack) * rank * (rows + cols))
    return out


def _optimizer_bytes(optimizer: Optimizer, tensor_params: list[int]) -> int:
    if optimizer is Optimizer.ADAMW:
        return 8 * sum(tensor_params)
    if optimizer is Optimizer.SGD_MOMENTUM:
        return 4 * sum(tensor_params)
    if optimizer is Optimizer.SGD:
        return 0
    total = 0
    for n in tensor_params:  # two states, each uint8 + fp32 absmax per block of 256
        total += 2 * (n + 4 * ceil_div(n, _BNB_BLOCK)) if n >= _BNB_MIN_8BIT else 8 * n
    return total


def activation_bytes(
    spec: ModelSpec,
    seq_len: int,
    batch: int = 1,
    *,
    gradient_checkpointing: bool = False,
    flash_attention: bool = True,
) -> int:
    """Stored activations of one micro-batch (Korthikanti et al. 2022 eq. 1; see module docstring)."""
    check_int("sequence length", seq_len, example="2048 tokens")
    check_int("batch", batch, example="1 sequence")
    if not spec.n_layers:
        raise ValueError(f"model {spec.name!r} has no layer facts; activations need a config")
    s, b, h, a = seq_len, batch, spec.hidden_size, spec.n_heads
    full_layer = 34 * s * b * h + (0 if flash_attention else 5 * a * s * s * b)
    if gradient_checkpointing:
        return spec.n_layers * 2 * s * b * h + full_layer
    return spec.n_layers * full_layer


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes to train one model, by term. ``total_bytes`` excludes the runtime's CUDA context."""

    mode: TrainingMode
    optimizer: Optimizer
    precision: Precision
    seq_len: int
    batch: int
    gradient_checkpointing: bool
    total_params: int
    trainable_params: int
    frozen_weight_bytes: int
    """Base weights that are not trained (LoRA: bf16; QLoRA: NF4 + double quant). 0 for full."""
    trainable_weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    logits_bytes: int
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] = ()
    base_format: str | None = None

    @property
    def weight_bytes(self) -> int:
        return self.frozen_weight_bytes + self.trainable_weight_bytes

    @property
    def state_bytes(self) -> int:
        """Weights + gradients + optimizer: what ZeRO-3/FSDP shards across devices."""
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes + self.logits_bytes

    def to_dict(self) -> dict:
        return {
            "mode": self.mode.value,
            "optimizer": self.optimizer.value,
            "precision": self.precision.value,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "gradient_checkpointing": self.gradient_checkpointing,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "frozen_weight_bytes": self.frozen_weight_bytes,
            "trainable_weight_bytes": self.trainable_weight_bytes,
            "gradient_bytes": self.gradient_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activation_bytes": self.activation_bytes,
            "logits_bytes": self.logits_bytes,
            "training_total_bytes": self.total_bytes,
            "lora_rank": self.lora_rank,
            "lora_targets": list(self.lora_targets),
            "base_format": self.base_format,
        }


def _enum(cls, value, label: str):
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        raise ValueError(
            f"{label} {value!r} is not known; choose one of {', '.join(m.value for m in cls)}"
        ) from None


def parse_mode(value: str | TrainingMode) -> TrainingMode:
    return _enum(TrainingMode, value, "mode")


def parse_optimizer(value: str | Optimizer) -> Optimizer:
    return _enum(Optimizer, value, "optimizer")


def parse_precision(value: str | Precision) -> Precision:
    return _enum(Precision, value, "precision")


def training_memory(
    spec: ModelSpec,
    mode: str | TrainingMode = TrainingMode.FULL,
    *,
    seq_len: int = 2048,
    batch: int = 1,
    optimizer: str | Optimizer = Optimizer.ADAMW,
    precision: str | Precision = Precision.MIXED,
    gradient_checkpointing: bool = False,
    flash_attention: bool = True,
    lora_rank: int = 16,
    lora_targets: tuple[str, ...] = PEFT_DEFAULT_TARGETS,
    base_format: str | None = None,
) -> TrainingMemory:
    """Memory to train ``spec`` (see module docstring for every term and its source).

    Worked number: Llama-3.1-8B (8,030,261,248 params) full fine-tuning, AdamW, mixed precision:
    weights 6 + grads 4 + AdamW 8 = 18 bytes/param = 144,544,702,464 bytes before activations.
    ``base_format`` overrides the frozen base's format (LoRA default bf16, QLoRA default nf4-dq).
    """
    mode = parse_mode(mode)
    if mode is TrainingMode.INFERENCE:
        raise ValueError("mode 'inference' has no training memory; use calculator.fit.fit for inference")
    optimizer = parse_optimizer(optimizer)
    precision = parse_precision(precision)
    if not spec.n_layers:
        raise ValueError(f"model {spec.name!r} has no layer facts; training memory needs a config")
    acts = activation_bytes(
        spec, seq_len, batch, gradient_checkpointing=gradient_checkpointing, flash_attention=flash_attention
    )
    logits = 2 * seq_len * batch * spec.vocab_size * 4
    common = dict(
        mode=mode,
        optimizer=optimizer,
        precision=precision,
        seq_len=seq_len,
        batch=batch,
        gradient_checkpointing=gradient_checkpointing,
        total_params=spec.total_params,
        activation_bytes=acts,
        logits_bytes=logits,
    )
    if mode is TrainingMode.FULL:
        if base_format is not None:
            raise ValueError(
                "full fine-tuning trains the weights in --precision; a base format applies to lora/qlora"
            )
        w, g = _WEIGHT_GRAD_BYTES[precision]
        n = spec.total_params
        return TrainingMemory(
            **common,
            trainable_params=n,
            frozen_weight_bytes=0,
            trainable_weight_bytes=w * n,
            gradient_bytes=g * n,
            optimizer_bytes=_optimizer_bytes(optimizer, [t.numel for t in spec.tensors]),
        )
    adapters = lora_params(spec, lora_rank, tuple(lora_targets))
    n = sum(adapters)
    fmt = base_format or ("bf16" if mode is TrainingMode.LORA else "nf4-dq")
    frozen = _frozen_base_bytes(spec, fmt)
    w, g = _ADAPTER_WEIGHT_GRAD_BYTES
    return TrainingMemory(
        **common,
        trainable_params=n,
        frozen_weight_bytes=frozen,
        trainable_weight_bytes=w * n,
        gradient_bytes=g * n,
        optimizer_bytes=_optimizer_bytes(optimizer, adapters),
        lora_rank=lora_rank,
        lora_targets=tuple(lora_targets),
        base_format=fmt,
    )
