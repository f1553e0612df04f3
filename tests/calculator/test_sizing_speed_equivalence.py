"""The fast GGUF sizing (``gguf_recipes._replay``: one rule call per tensor group, per-spec plan) gives exactly
what the tensor-by-tensor replay gave before it (issue 14: sizing a file type must get cheaper without moving a
byte).

``BEFORE`` holds, per model, a digest of every file type x imatrix (None, False, True): the tensor types, bytes,
parameter counts, the imatrix flags and fallbacks, or the error message, as computed by the tensor-by-tensor
replay of commit 74474c4 (before the change). Hypothesis then checks the grouped replay against
``_replay_in_order`` (one rule call per tensor, in llama-quantize's file order) on random models.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import gguf_recipes
from calculator.gguf_recipes import FILE_TYPES, get_file_type, gguf_file
from calculator.models import TensorSpec, list_presets, load_preset, spec_from_config
from tests.calculator.test_gguf_recipes import ORACLE_MODELS


def _digest(spec) -> str:
    h = hashlib.sha256()
    for ft in FILE_TYPES:
        for imatrix in (None, False, True):
            try:
                g = gguf_file(spec, ft, imatrix=imatrix)
                out = (g.tensor_types, g.tensor_data_bytes, g.total_params, g.quantized_params, g.imatrix,
                       g.requires_imatrix, g.fallbacks)
            except ValueError as err:
                out = ("error", str(err))
            h.update(repr((ft, imatrix, out)).encode())
    return h.hexdigest()[:16]


BEFORE = {
    "deepseek-v2-lite": "af24deafbf81843f",
    "deepseek-v3": "c8a4c1717c5b0927",
    "falcon-7b": "079e2259adee8f6a",
    "gemma-2-27b": "0b3a7e9eb7887fb9",
    "gemma-2-2b": "2f8f567dbb888ead",
    "gemma-2-9b": "e07c004bae2783c1",
    "gpt2-large": "f69761410e1ac738",
    "gpt2-medium": "33c504aa9d6a18d6",
    "gpt2-xl": "badc4b9ddd64c51e",
    "gpt2": "b18c57c90a456a0f",
    "llama-2-13b": "efdfa697c575b03f",
    "llama-2-70b": "2428cf261232502f",
    "llama-2-7b": "aa08b5e38ed0cd9c",
    "llama-3-70b": "c305b8d4bbe75596",
    "llama-3-8b": "666ec7e079fa8b2a",
    "llama-3.1-405b": "6b8d7025191924b1",
    "llama-3.1-70b": "c305b8d4bbe75596",
    "llama-3.1-8b": "666ec7e079fa8b2a",
    "llama-3.2-1b": "a233a19d802221eb",
    "llama-3.2-3b": "dc65894157930728",
    "mistral-7b-v0.1": "29ca7f710a4e4efe",
    "mistral-7b-v0.3": "5c145ed7af4e9728",
    "mixtral-8x22b": "6953218676ae727e",
    "mixtral-8x7b": "90b2123bbb7daff4",
    "opt-1.3b": "eeb75c53d7236559",
    "opt-125m": "d5340fb88c4609bb",
    "opt-6.7b": "ce74aa61cd0a79a7",
    "phi-3-medium-4k": "758c218162386c5c",
    "phi-3-mini-4k": "31292968158a739c",
    "qwen2.5-0.5b": "be213de7bd51fd45",
    "qwen2.5-1.5b": "e382347ccfffe061",
    "qwen2.5-14b": "b5fde32ef12f17cd",
    "qwen2.5-32b": "a4c341c6d3418156",
    "qwen2.5-3b": "577ee1b2f935ddb9",
    "qwen2.5-72b": "440251132abc7d4b",
    "qwen2.5-7b": "87db27a6853be2e3",
    "qwen3-8b": "55ccc23595e725bb",
    "smollm2-1.7b": "184f8b61ab47df9d",
    "smollm2-135m": "3cf21f56a483f8f4",
    "smollm2-360m": "09c1386749ef0cd7",
    "dense": "ad7d5a0aee3303ab",
    "tied576": "e38cc2201ef410af",
    "moe8": "c081eb817eb09090",
    "llama_80": "72be7a41c266f482",
    "qwen2_80": "cc54911fc1cedbf0",
    "falcon": "ed8f9509568b3cff",
    "phi3": "d3dad2d038689dec",
    "qwen2moe": "e2127dfb7dbf346c",
    "deepseek2": "d7b78d0f441507c0",
    "moe8-stray": "6142bb1334ef3ebb",
    "odd-rows": "b304efd8d63c7ed0",
}


def _extra_specs() -> dict:
    specs = {key: spec_from_config(cfg, name=key) for key, cfg in ORACLE_MODELS.items()}
    moe = specs["moe8"]
    # an expert model with a tensor outside the blocks: llama-quantize's layer_info refuses it
    specs["moe8-stray"] = dataclasses.replace(
        moe, name="moe8-stray", tensors=moe.tensors + (TensorSpec("ffn_down_extra.weight", (256, 256)),))
    # rows of 288 and 544: a multiple of 32, not of 256, so k- and i-quants fall back (113 tensors at Q4_K_M)
    specs["odd-rows"] = spec_from_config(
        {**ORACLE_MODELS["dense"], "hidden_size": 288, "head_dim": 36, "intermediate_size": 544}, name="odd")
    return specs


def test_every_model_covered():
    assert set(BEFORE) == set(list_presets()) | set(_extra_specs())


@pytest.mark.parametrize("preset", list_presets())
def test_presets_size_exactly_as_before(preset):
    assert _digest(load_preset(preset)) == BEFORE[preset]


@pytest.mark.parametrize("key", sorted(set(ORACLE_MODELS) | {"moe8-stray", "odd-rows"}))
def test_rule_models_size_exactly_as_before(key):
    assert _digest(_extra_specs()[key]) == BEFORE[key]


def test_the_error_names_the_tensor_llama_quantize_stops_at():
    with pytest.raises(ValueError, match=r"^tensor ffn_down_extra\.weight: cannot tell its layer in \[0, 4\)"):
        gguf_file(_extra_specs()["moe8-stray"], "Q4_K_M")


def test_405b_q4_k_m_takes_few_rule_calls(monkeypatch):
    """Llama 3.1 405B at Q4_K_M: 884 quantizable tensors in 9 groups (output, token_embd and 7 per block); only
    attn_v and ffn_down (126 each) read their layer, so 9 + 2 x 125 = 259 rule calls, not 884."""
    calls = []
    impl = gguf_recipes._impl
    monkeypatch.setattr(gguf_recipes, "_impl", lambda *args: calls.append(args[5]) or impl(*args))
    spec = load_preset("llama-3.1-405b")
    plan = gguf_recipes._plan(spec)
    assert (len(plan.groups), sum(len(g.entries) for g in plan.groups)) == (9, 884)
    gguf_recipes._replay(spec, get_file_type("Q4_K_M"), has_imatrix=False)
    assert len(calls) == 259


@st.composite
def models(draw):
    head_dim = draw(st.sampled_from([32, 36, 64, 128]))
    n_kv = draw(st.sampled_from([1, 2, 4, 8]))
    n_heads = n_kv * draw(st.sampled_from([1, 2, 4]))
    config = dict(model_type=draw(st.sampled_from(["llama", "qwen2", "mixtral", "qwen2_moe", "falcon", "phi3"])),
                  hidden_size=n_heads * head_dim, head_dim=head_dim, num_hidden_layers=draw(st.integers(1, 90)),
                  num_attention_heads=n_heads, num_key_value_heads=n_kv,
                  intermediate_size=32 * draw(st.integers(1, 40)), vocab_size=32 * draw(st.integers(1, 40)),
                  tie_word_embeddings=draw(st.booleans()), max_position_embeddings=2048)
    if config["model_type"] in ("mixtral", "qwen2_moe"):
        config.update(num_local_experts=8, num_experts=draw(st.sampled_from([4, 8, 16])), num_experts_per_tok=2,
                      moe_intermediate_size=32 * draw(st.integers(1, 8)),
                      shared_expert_intermediate_size=32 * draw(st.integers(1, 8)))
    if config["model_type"] == "falcon":
        config.update(new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=False)
    return config


def _outcome(replay, spec, ft, imatrix):
    try:
        return replay(spec, ft, imatrix)
    except ValueError as err:
        return str(err)


@settings(max_examples=60, deadline=None)
@given(models(), st.sampled_from(sorted(FILE_TYPES)), st.booleans())
def test_grouped_replay_equals_tensor_by_tensor(config, file_type, imatrix):
    spec = spec_from_config(config, name="hypothesis")
    ft = get_file_type(file_type)
    assert (_outcome(gguf_recipes._replay, spec, ft, imatrix)
            == _outcome(gguf_recipes._replay_in_order, spec, ft, imatrix))
