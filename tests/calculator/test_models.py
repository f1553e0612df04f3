"""ModelSpec: parameter counts equal the official checkpoints' counts (the nanoGPT check)."""

from __future__ import annotations

import json

import pytest

from calculator.models import (
    list_presets,
    load_config_bytes,
    load_config_file,
    load_preset,
    preset_record,
    resolve_model,
    spec_from_config,
)

GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096, "tie_word_embeddings": False}
LLAMA3_8B = {**LLAMA2_7B, "intermediate_size": 14336, "num_key_value_heads": 8, "vocab_size": 128256,
             "max_position_embeddings": 8192}
QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
              "max_position_embeddings": 32768, "tie_word_embeddings": True}
MIXTRAL = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2, "max_position_embeddings": 32768, "tie_word_embeddings": False}


@pytest.mark.parametrize(
    ("config", "params"),
    [(GPT2, 124_439_808), (LLAMA2_7B, 6_738_415_616), (LLAMA3_8B, 8_030_261_248),
     (QWEN25_05B, 494_032_768), (MIXTRAL, 46_702_792_704)],
    ids=["gpt2", "llama-2-7b", "llama-3-8b", "qwen2.5-0.5b", "mixtral-8x7b"],
)
def test_official_parameter_counts(config, params):
    assert spec_from_config(config).total_params == params


def test_moe_active_parameters():
    spec = spec_from_config(MIXTRAL)
    # 2 of 8 experts per token: the expert FFNs count a quarter, everything else in full.
    experts = 32 * 3 * 8 * 14336 * 4096
    assert spec.active_params == spec.total_params - experts + experts // 4
    assert spec.is_moe and spec.n_experts_used == 2


def test_tensor_names_and_shapes_follow_gguf():
    spec = spec_from_config(LLAMA3_8B)
    shapes = {t.name: t.shape for t in spec.tensors}
    assert shapes["blk.0.attn_k.weight"] == (1024, 4096)
    assert shapes["blk.31.ffn_down.weight"] == (4096, 14336)
    assert shapes["output.weight"] == (128256, 4096)
    assert shapes["output_norm.weight"] == (4096,)
    assert "output.weight" not in {t.name for t in spec_from_config(QWEN25_05B).tensors}  # tied


def test_presets_match_official_counts():
    names = list_presets()
    assert len(names) >= 25
    checked = 0
    for name in names:
        record = preset_record(name)
        spec = load_preset(name)
        assert spec.total_params > 0
        if record.get("official_params"):
            assert spec.total_params == record["official_params"], (name, record["official_params_source"])
            checked += 1
    assert checked >= 10


def test_config_file_and_errors(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA2_7B))
    assert load_config_file(path).total_params == 6_738_415_616
    assert resolve_model(str(tmp_path)).total_params == 6_738_415_616
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config_file(bad)
    with pytest.raises(ValueError, match="model_type 'mamba' is not supported"):
        spec_from_config({"model_type": "mamba"})
    with pytest.raises(ValueError, match="config.json field hidden_size -4 must be a whole number >= 1"):
        spec_from_config({**LLAMA2_7B, "hidden_size": -4})
    # A missing field takes transformers' default (LlamaConfig: 32 layers), and the spec says so.
    spec = spec_from_config({k: v for k, v in LLAMA2_7B.items() if k != "num_hidden_layers"})
    assert spec.n_layers == 32
    assert spec.assumed == ("num_hidden_layers missing: 32 assumed (transformers LlamaConfig default)",)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config_bytes(b"\xff\xfe")


def test_unknown_preset_suggests():
    with pytest.raises(ValueError, match="did you mean"):
        resolve_model("llama-3.1-8")
