"""Shared fixtures: a local fake Hugging Face Hub (the real one is unreachable here)."""

from __future__ import annotations

import json

import pytest

from tests.hub_server import FakeHub, safetensors_header_only

LLAMA_TINY_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "intermediate_size": 688, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 1000, "max_position_embeddings": 2048, "tie_word_embeddings": False,
}


def _llama_tensors(config: dict) -> dict[str, tuple[str, list[int]]]:
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    out = {"model.embed_tokens.weight": ("BF16", [v, h]), "model.norm.weight": ("BF16", [h]),
           "lm_head.weight": ("BF16", [v, h])}
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out |= {p + "self_attn.q_proj.weight": ("BF16", [h, h]), p + "self_attn.k_proj.weight": ("BF16", [kv, h]),
                p + "self_attn.v_proj.weight": ("BF16", [kv, h]), p + "self_attn.o_proj.weight": ("BF16", [h, h]),
                p + "mlp.gate_proj.weight": ("BF16", [i, h]), p + "mlp.up_proj.weight": ("BF16", [i, h]),
                p + "mlp.down_proj.weight": ("BF16", [h, i]), p + "input_layernorm.weight": ("BF16", [h]),
                p + "post_attention_layernorm.weight": ("BF16", [h])}
    return out


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running fake Hub with ``acme/tiny-llama`` (safetensors, one shard) and a gated repo.

    Sets ``HF_ENDPOINT`` (for subprocesses) and patches huggingface_hub's already-read constants.
    """
    import huggingface_hub.constants as hf_constants

    hub = FakeHub()
    weights = safetensors_header_only(_llama_tensors(LLAMA_TINY_CONFIG))
    hub.repos["acme/tiny-llama"] = {"config.json": json.dumps(LLAMA_TINY_CONFIG).encode(),
                                    "model.safetensors": weights}
    hub.repos["acme/gated-llama"] = dict(hub.repos["acme/tiny-llama"])
    hub.gated.add("acme/gated-llama")
    hub.repos["acme/no-config"] = {"README.md": b"# nothing here"}
    endpoint = hub.start()
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    hub.endpoint = endpoint
    yield hub
    hub.stop()
