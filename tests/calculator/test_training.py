"""Training memory: golden bytes for real configs, LoRA parameter counts, the int4 anchor bug."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator.memory import weight_memory
from calculator.models import load_preset, spec_from_config
from calculator.training import (
    Optimizer,
    TrainingMode,
    activation_bytes,
    lora_params,
    training_memory,
)

LLAMA_8B_PARAMS = 8_030_261_248  # meta-llama/Llama-3.1-8B safetensors total


@pytest.fixture(scope="module")
def llama8b():
    spec = load_preset("llama-3.1-8b")
    assert spec.total_params == LLAMA_8B_PARAMS
    return spec


def test_full_finetune_adamw_mixed_is_18_bytes_per_param(llama8b):
    # HF "Model training anatomy": weights 6 (fp32 master + half copy) + grads 4 + AdamW 8 bytes/param
    tm = training_memory(llama8b, "full", seq_len=2048)
    n = LLAMA_8B_PARAMS
    assert (tm.trainable_weight_bytes, tm.gradient_bytes, tm.optimizer_bytes) == (6 * n, 4 * n, 8 * n)
    assert tm.state_bytes == 18 * n == 144_544_702_464
    assert tm.frozen_weight_bytes == 0 and tm.trainable_params == n
    assert tm.total_bytes == tm.state_bytes + tm.activation_bytes + tm.logits_bytes


def test_full_finetune_precisions(llama8b):
    n = LLAMA_8B_PARAMS
    assert training_memory(llama8b, "full", precision="bf16").state_bytes == (2 + 2 + 8) * n
    assert training_memory(llama8b, "full", precision="fp32").state_bytes == (4 + 4 + 8) * n
    assert training_memory(llama8b, "full", optimizer="sgd").optimizer_bytes == 0
    assert training_memory(llama8b, "full", optimizer="sgd_momentum").optimizer_bytes == 4 * n


def test_eight_bit_adamw_follows_bitsandbytes_layout():
    # One-layer toy model: 9 matrices of 1024x1024 (>= 4096 elements: two uint8 states + fp32 absmax per
    # 256 values each) and 3 norms of 1024 (< min_8bit_size 4096: two fp32 states).
    config = {
        "model_type": "llama",
        "hidden_size": 1024,
        "intermediate_size": 1024,
        "num_hidden_layers": 1,
        "num_attention_heads": 8,
        "vocab_size": 1024,
        "tie_word_embeddings": False,
    }
    spec = spec_from_config(config, "toy")
    tm = training_memory(spec, "full", optimizer="adamw_8bit", seq_len=16)
    matrix = 2 * (1024 * 1024 + 4 * (1024 * 1024 // 256))
    assert tm.optimizer_bytes == 9 * matrix + 3 * 8 * 1024 == 19_193_856
    assert tm.optimizer is Optimizer.ADAMW_8BIT


def test_int4_checkpoint_does_not_make_training_4x_its_size(llama8b):
    """The anchor bug: "training = 4 x model size" applied to an int4 file gives ~16 GB for an 8B model.

    Full fine-tuning trains every parameter in training dtypes, whatever format the weights were
    downloaded in; only QLoRA's frozen base is 4-bit.
    """
    int4_file = weight_memory(llama8b, "int4").total_bytes
    full = training_memory(llama8b, "full")
    assert full.state_bytes == 18 * LLAMA_8B_PARAMS
    assert full.state_bytes > 8 * 4 * int4_file
    qlora = training_memory(llama8b, "qlora")
    assert qlora.frozen_weight_bytes == weight_memory(llama8b, "nf4-dq").total_bytes
    assert qlora.state_bytes < 2 * int4_file


def test_lora_counts_match_peft(llama8b):
    # r=16 on q_proj (4096x4096) and v_proj (1024x4096): 16 x (8192 + 5120) x 32 layers = 6,815,744,
    # the figure PEFT's print_trainable_parameters prints for Llama-3-8B with these targets.
    assert sum(lora_params(llama8b, 16, ("q_proj", "v_proj"))) == 6_815_744
    # all-linear adds k, o, gate, up, down: 16 x (8192 + 5120 + 5120 + 8192 + 3 x 18432) x 32
    assert sum(lora_params(llama8b, 16, ("all-linear",))) == 41_943_040


def test_lora_on_moe_experts_counts_every_expert():
    spec = load_preset("mixtral-8x7b")
    per_expert_layer = 8 * 16 * (14336 + 4096)  # 8 experts, r=16, gate_proj (14336 x 4096)
    assert sum(lora_params(spec, 16, ("gate_proj",))) == 32 * per_expert_layer


def test_lora_and_qlora_terms(llama8b):
    lora = training_memory(llama8b, "lora", lora_rank=16, lora_targets=("q_proj", "v_proj"))
    assert lora.mode is TrainingMode.LORA and lora.base_format == "bf16"
    assert lora.frozen_weight_bytes == weight_memory(llama8b, "bf16").total_bytes
    n = 6_815_744  # adapters kept in fp32 by PEFT: 4 weight + 4 grad + 8 AdamW bytes
    assert (lora.trainable_weight_bytes, lora.gradient_bytes, lora.optimizer_bytes) == (4 * n, 4 * n, 8 * n)
    qlora = training_memory(llama8b, "qlora")
    assert (
        qlora.base_format == "nf4-dq" and qlora.frozen_weight_bytes < lora.frozen_weight_bytes / 2
    )  # embeddings stay fp16
    full = training_memory(llama8b, "full")
    assert qlora.total_bytes < lora.total_bytes < full.total_bytes


def test_korthikanti_activations(llama8b):
    # s=2048, b=1, h=4096, a=32, L=32; eq. 1: s b h (34 + 5 a s / h) per layer
    s, h, a, L = 2048, 4096, 32, 32
    assert (
        activation_bytes(llama8b, s, flash_attention=False)
        == L * (34 * s * h + 5 * a * s * s)
        == 30_601_641_984
    )
    assert activation_bytes(llama8b, s) == L * 34 * s * h == 9_126_805_504
    # full checkpointing: each layer's input (2 s b h) + one layer recomputed
    assert (
        activation_bytes(llama8b, s, gradient_checkpointing=True) == L * 2 * s * h + 34 * s * h == 822_083_584
    )


def test_logits_term(llama8b):
    tm = training_memory(llama8b, "lora", seq_len=1024, batch=2)
    assert tm.logits_bytes == 2 * 1024 * 2 * 128256 * 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "inference"}, "inference"),
        ({"mode": "dreambooth"}, "mode 'dreambooth'"),
        ({"optimizer": "lion"}, "optimizer 'lion'"),
        ({"mode": "lora", "lora_targets": ("qq_proj",)}, "LoRA target 'qq_proj'"),
        ({"mode": "lora", "lora_rank": 0}, "LoRA rank 0"),
        ({"seq_len": 0}, "sequence length 0"),
        ({"mode": "full", "base_format": "nf4"}, "base format"),
    ],
)
def test_bad_training_inputs(llama8b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        training_memory(llama8b, **kwargs)


def test_target_that_matches_nothing_names_the_weights():
    with pytest.raises(ValueError, match="match no weight of gpt2"):
        lora_params(load_preset("gpt2"), 8, ("q_proj",))


@settings(max_examples=30, deadline=None)
@given(seq=st.integers(1, 32_768), batch=st.integers(1, 16), ckpt=st.booleans(), fa=st.booleans())
def test_activations_linear_in_batch_and_checkpointing_helps(seq, batch, ckpt, fa):
    spec = load_preset("qwen2.5-0.5b")
    one = activation_bytes(spec, seq, 1, gradient_checkpointing=ckpt, flash_attention=fa)
    assert activation_bytes(spec, seq, batch, gradient_checkpointing=ckpt, flash_attention=fa) == batch * one
    assert activation_bytes(
        spec, seq, batch, gradient_checkpointing=True, flash_attention=fa
    ) <= activation_bytes(spec, seq, batch, gradient_checkpointing=False, flash_attention=fa)
