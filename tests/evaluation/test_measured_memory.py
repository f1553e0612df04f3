"""The calculator's memory terms against what PyTorch/transformers actually allocate (measured, not assumed).

Tiny random models with the real transformers classes: the KV cache a forward pass leaves behind and
the parameter bytes of a loaded model must equal ``calculator.runtime.kv_cache_bytes`` and
``calculator.memory.weight_memory`` exactly (GQA, sliding-window hybrid layers, tied embeddings).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from calculator.memory import weight_memory
from calculator.models import spec_from_config
from calculator.runtime import kv_cache_bytes

LLAMA_GQA = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 3,
             "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 500,
             "max_position_embeddings": 512, "tie_word_embeddings": False}
QWEN2_TIED = {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400,
              "max_position_embeddings": 512, "tie_word_embeddings": True}
GEMMA2_HYBRID = {"model_type": "gemma2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 48, "vocab_size": 300,
                 "max_position_embeddings": 512, "sliding_window": 16,
                 "layer_types": ["sliding_attention", "full_attention"] * 2}


def _model(config: dict, dtype: torch.dtype):
    torch.manual_seed(0)
    hf_config = AutoConfig.for_model(**config)
    return AutoModelForCausalLM.from_config(hf_config, dtype=dtype).eval()


def _cache_bytes(cache) -> int:
    total = 0
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            total += t.numel() * t.element_size()
    return total


@pytest.mark.parametrize("config", [LLAMA_GQA, QWEN2_TIED, GEMMA2_HYBRID], ids=["llama-gqa", "qwen2", "gemma2"])
@pytest.mark.parametrize(("context", "batch"), [(40, 1), (24, 3)])
def test_kv_cache_matches_transformers(config, context, batch):
    model = _model(config, torch.float32)
    ids = torch.randint(0, config["vocab_size"], (batch, context))
    with torch.no_grad():
        out = model(ids, use_cache=True)
    measured = _cache_bytes(out.past_key_values)
    spec = spec_from_config(config)
    predicted = kv_cache_bytes(spec, context, batch, "fp32")
    # transformers' dynamic sliding-window cache keeps window - 1 tokens (cache_utils.py
    # DynamicSlidingWindowLayer); the calculator counts the window, as the static cache allocates it.
    n_sliding = sum(kind == "sliding" for kind in spec.layer_types)
    window_slack = n_sliding if spec.sliding_window and context >= spec.sliding_window else 0
    per_token_layer = 2 * spec.n_kv_heads * spec.head_dim * 4 * batch
    assert measured == predicted - window_slack * per_token_layer


@pytest.mark.parametrize("config", [LLAMA_GQA, QWEN2_TIED, GEMMA2_HYBRID], ids=["llama-gqa", "qwen2", "gemma2"])
@pytest.mark.parametrize(("dtype", "fmt"), [(torch.bfloat16, "bf16"), (torch.float32, "fp32")])
def test_weight_bytes_match_loaded_model(config, dtype, fmt):
    model = _model(config, dtype)
    measured = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights counted once
    spec = spec_from_config(config)
    assert sum(p.numel() for p in model.parameters()) == spec.total_params
    assert measured == weight_memory(spec, fmt).total_bytes
