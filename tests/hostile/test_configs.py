"""Hostile config.json files: fields missing, of the wrong type, negative, huge or inconsistent, and JSON that is
not what it claims. Each case ends in one clear ValueError naming the field and value, or in the answer
transformers would give (a missing field takes its config class's default, and the spec says so)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calculator.models import load_config_bytes, load_config_file, spec_from_config

MAX_CONFIG_BYTES = 1_000_000
"""The most of a config.json that is read (``calculator.models.MAX_CONFIG_BYTES``)."""
MODEL_TYPES = ["deepseek_v2", "deepseek_v3", "falcon", "gemma", "gemma2", "gemma3_text", "gpt2", "granite", "llama",
               "mistral", "mixtral", "olmo2", "opt", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "smollm3"]
"""Every supported model_type with a transformers config class."""

LLAMA = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
         "max_position_embeddings": 4096, "tie_word_embeddings": False}
MIXTRAL = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2, "max_position_embeddings": 32768, "tie_word_embeddings": False,
           "sliding_window": None}
MISTRAL = {**MIXTRAL, "model_type": "mistral", "sliding_window": 4096}
for key in ("num_local_experts", "num_experts_per_tok"):
    del MISTRAL[key]
QWEN2_MOE = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
             "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936, "num_experts": 60,
             "num_experts_per_tok": 4, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
             "max_position_embeddings": 8192, "decoder_sparse_step": 1, "mlp_only_layers": []}
DEEPSEEK_V2 = {"model_type": "deepseek_v2", "hidden_size": 2048, "intermediate_size": 10944, "num_hidden_layers": 27,
               "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 102400, "n_routed_experts": 64,
               "num_experts_per_tok": 6, "moe_intermediate_size": 1408, "n_shared_experts": 2,
               "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": None,
               "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "max_position_embeddings": 163840}
GEMMA3 = {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
          "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208,
          "max_position_embeddings": 131072, "sliding_window": 1024, "sliding_window_pattern": 6}
FALCON_40B = {"model_type": "falcon", "hidden_size": 8192, "num_hidden_layers": 60, "num_attention_heads": 128,
              "num_kv_heads": 8, "new_decoder_architecture": True, "vocab_size": 65024, "parallel_attn": True,
              "bias": False}
GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
OPT = {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "ffn_dim": 3072,
       "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 768}

DROP = object()
"""A mutation value meaning "leave the field out"."""


def _with(base: dict, **changes) -> dict:
    config = dict(base)
    for key, value in changes.items():
        if value is DROP:
            config.pop(key, None)
        else:
            config[key] = value
    return config


# (id, config, the start of the one-line error it must end in)
REFUSED = [
    ("hidden-size-string", _with(LLAMA, hidden_size="4096"),
     "config.json field hidden_size '4096' must be a whole number >= 1"),
    ("hidden-size-float", _with(LLAMA, hidden_size=4096.0),
     "config.json field hidden_size 4096.0 must be a whole number >= 1"),
    ("hidden-size-negative", _with(LLAMA, hidden_size=-4096),
     "config.json field hidden_size -4096 must be a whole number >= 1"),
    ("hidden-size-bool", _with(LLAMA, hidden_size=True),
     "config.json field hidden_size True must be a whole number >= 1"),
    ("hidden-size-null", _with(LLAMA, hidden_size=None), "config.json field hidden_size is null; give a whole number"),
    ("hidden-size-huge", _with(LLAMA, hidden_size=2**40),
     "config.json field hidden_size 1099511627776 is above 16,777,216: no real model is that large"),
    ("hidden-size-list", _with(LLAMA, hidden_size=[4096]),
     "config.json field hidden_size [4096] must be a whole number"),
    ("layers-1e12-float", _with(LLAMA, num_hidden_layers=1e12),
     "config.json field num_hidden_layers 1000000000000.0 must be a whole number >= 1"),
    ("layers-1e12-int", _with(LLAMA, num_hidden_layers=10**12),
     "config.json field num_hidden_layers 1000000000000 is above 512: no real model has that many blocks"),
    ("layers-5000-digits", _with(LLAMA, num_hidden_layers=10**5000),
     "config.json field num_hidden_layers 5001-digit number is above 512"),
    ("layers-zero", _with(LLAMA, num_hidden_layers=0),
     "config.json field num_hidden_layers 0 must be a whole number >= 1"),
    ("layers-nan", _with(LLAMA, num_hidden_layers=float("nan")), "config.json field num_hidden_layers nan must be"),
    ("heads-zero", _with(LLAMA, num_attention_heads=0),
     "config.json field num_attention_heads 0 must be a whole number"),
    ("heads-huge", _with(LLAMA, num_attention_heads=10**6),
     "config.json field num_attention_heads 1000000 is above 16,384"),
    ("kv-heads-not-dividing", _with(LLAMA, num_key_value_heads=3),
     "config.json field num_key_value_heads 3 does not divide num_attention_heads 32"),
    ("kv-heads-more-than-heads", _with(LLAMA, num_key_value_heads=64),
     "config.json field num_key_value_heads 64 does not divide num_attention_heads 32"),
    ("hidden-not-split-by-heads", _with(LLAMA, hidden_size=4100),
     "config.json field hidden_size 4100 is not a multiple of num_attention_heads 32"),
    ("vocab-string", _with(LLAMA, vocab_size="32000"), "config.json field vocab_size '32000' must be a whole number"),
    ("tie-string-false", _with(LLAMA, tie_word_embeddings="false"),
     "config.json field tie_word_embeddings 'false' must be true or false"),
    ("attention-bias-int", _with(LLAMA, attention_bias=1), "config.json field attention_bias 1 must be true or false"),
    ("context-huge", _with(LLAMA, max_position_embeddings=10**10),
     "config.json field max_position_embeddings 10000000000 is above 134,217,728"),
    ("model-type-list", _with(LLAMA, model_type=["llama"]), "config.json field model_type ['llama'] must be a string"),
    ("model-type-unknown", _with(LLAMA, model_type="mamba"), "model_type 'mamba' is not supported"),
    ("model-type-missing", _with(LLAMA, model_type=DROP), "config.json has no model_type"),
    ("experts-per-token-above-experts", _with(MIXTRAL, num_experts_per_tok=9),
     "config.json field num_experts_per_tok 9 is more than the 8 experts (num_local_experts)"),
    ("experts-string", _with(MIXTRAL, num_local_experts="8"),
     "config.json field num_local_experts '8' must be a whole number >= 1"),
    ("experts-zero", _with(MIXTRAL, num_local_experts=0),
     "config.json field num_local_experts 0 must be a whole number"),
    ("experts-huge", _with(MIXTRAL, num_local_experts=10**6),
     "config.json field num_local_experts 1000000 is above 16,384"),
    ("sliding-window-negative", _with(MISTRAL, sliding_window=-1),
     "config.json field sliding_window -1 must be a whole number >= 1"),
    ("sliding-window-string", _with(MISTRAL, sliding_window="4096"), "config.json field sliding_window '4096' must be"),
    ("layer-types-wrong-length", _with(MISTRAL, layer_types=["sliding_attention"] * 3),
     "config.json field layer_types lists 3 layers but num_hidden_layers is 32"),
    ("layer-types-not-strings", _with(MISTRAL, layer_types=[1] * 32),
     "config.json field layer_types must be a list of strings"),
    ("window-pattern-zero", _with(GEMMA3, sliding_window_pattern=0),
     "config.json field sliding_window_pattern 0 must be a whole number >= 1"),
    ("sparse-step-zero", _with(QWEN2_MOE, decoder_sparse_step=0),
     "config.json field decoder_sparse_step 0 must be a whole number >= 1"),
    ("mlp-only-layers-strings", _with(QWEN2_MOE, mlp_only_layers=["a"]),
     "config.json field mlp_only_layers[0] 'a' must be a whole number from 0 to 23"),
    ("mlp-only-layers-out-of-range", _with(QWEN2_MOE, mlp_only_layers=[99]),
     "config.json field mlp_only_layers[0] 99 must be a whole number from 0 to 23"),
    ("deepseek-v2-no-experts-per-token", _with(DEEPSEEK_V2, num_experts_per_tok=DROP),
     "config.json lacks num_experts_per_tok, and transformers' DeepseekV2Config has no default"),
    ("deepseek-dense-layers-negative", _with(DEEPSEEK_V2, first_k_dense_replace=-1),
     "config.json field first_k_dense_replace -1 must be a whole number >= 0"),
    ("falcon-kv-heads-not-dividing", _with(FALCON_40B, num_kv_heads=3),
     "config.json field num_kv_heads 3 does not divide num_attention_heads 128"),
    ("gpt2-heads-not-splitting", _with(GPT2, n_head=7), "config.json field n_embd 768 is not a multiple of n_head 7"),
    ("opt-ffn-zero", _with(OPT, ffn_dim=0), "config.json field ffn_dim 0 must be a whole number >= 1"),
    ("gemma3-without-text-config", {"model_type": "gemma3", "text_config": "none"},
     "gemma3 config.json has no text_config object"),
    ("billions-of-billions", _with(LLAMA, hidden_size=2**24, intermediate_size=2**24, vocab_size=2**24,
                                   num_hidden_layers=512, num_attention_heads=2**10, num_key_value_heads=2**10),
     "config.json describes 1.01e+18 parameters, above 1e+15: check hidden_size"),
    ("not-an-object", ["llama"], "config must be a JSON object (dict), got list"),
]


@pytest.mark.parametrize(("config", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_the_field_named(config, message):
    start = time.process_time()
    with pytest.raises(ValueError, match="^" + _literal(message)) as err:
        spec_from_config(config)
    assert "\n" not in str(err.value)
    assert time.process_time() - start < 0.5


def _literal(text: str) -> str:
    import re

    return re.escape(text)


def _note(field: str, value: int, cls: str) -> str:
    return f"{field} missing: {value:,} assumed (transformers {cls} default)"


# (id, config, check(spec)) for configs that must give transformers' answer
ANSWERED = [
    ("mixtral-without-experts", _with(MIXTRAL, num_local_experts=DROP),
     lambda s: s.n_experts == 8 and s.total_params == 46_702_792_704
     and s.assumed == (_note("num_local_experts", 8, "MixtralConfig"),)),
    ("mixtral-without-experts-per-token", _with(MIXTRAL, num_experts_per_tok=DROP),
     lambda s: s.n_experts_used == 2 and s.assumed == (_note("num_experts_per_tok", 2, "MixtralConfig"),)),
    ("llama-without-layers", _with(LLAMA, num_hidden_layers=DROP),
     lambda s: s.n_layers == 32 and s.total_params == 6_738_415_616
     and s.assumed == (_note("num_hidden_layers", 32, "LlamaConfig"),)),
    ("llama-without-kv-heads", _with(LLAMA, num_key_value_heads=DROP),
     lambda s: s.n_kv_heads == 32 and s.assumed == ()),
    ("llama-kv-heads-null", _with(LLAMA, num_key_value_heads=None), lambda s: s.n_kv_heads == 32),
    ("mistral-without-kv-heads", _with(MISTRAL, num_key_value_heads=DROP),
     lambda s: s.n_kv_heads == 8 and s.assumed == (_note("num_key_value_heads", 8, "MistralConfig"),)),
    ("mistral-without-window", _with(MISTRAL, sliding_window=DROP),
     lambda s: s.sliding_window == 4096 and set(s.layer_types) == {"sliding"}
     and s.assumed == (_note("sliding_window", 4096, "MistralConfig"),)),
    ("mistral-window-null", _with(MISTRAL, sliding_window=None),
     lambda s: s.sliding_window is None and set(s.layer_types) == {"full"}),
    ("mistral-window-zero", _with(MISTRAL, sliding_window=0), lambda s: s.sliding_window is None),
    ("qwen2-moe-without-shared-expert", _with(QWEN2_MOE, shared_expert_intermediate_size=DROP),
     lambda s: s.n_shared_experts == 1
     and s.assumed == (_note("shared_expert_intermediate_size", 5632, "Qwen2MoeConfig"),)),
    ("deepseek-q-lora-null-means-none", DEEPSEEK_V2,
     lambda s: not any("attn_q_a" in t.name for t in s.tensors) and s.assumed == ()),
    ("deepseek-q-lora-missing-takes-default", _with(DEEPSEEK_V2, q_lora_rank=DROP),
     lambda s: any("attn_q_a" in t.name for t in s.tensors)
     and s.assumed == (_note("q_lora_rank", 1536, "DeepseekV2Config"),)),
    ("falcon-ln-null-means-two", _with(FALCON_40B, num_ln_in_parallel_attn=None),
     lambda s: "blk.0.attn_norm_2.weight" in {t.name for t in s.tensors}),
    ("falcon-without-context", FALCON_40B,
     lambda s: s.max_context == 2048 and s.assumed == (_note("max_position_embeddings", 2048, "FalconConfig"),)),
    ("name-not-a-string", _with(LLAMA, _name_or_path={"x": 1}), lambda s: s.name == "llama"),
    ("dense-type-ignores-expert-fields", _with(LLAMA, num_local_experts=8), lambda s: s.n_experts == 0),
    ("gpt2-inner-null", _with(GPT2, n_inner=None), lambda s: s.intermediate_size == 3072 and s.assumed == ()),
]


@pytest.mark.parametrize(("config", "check"), [c[1:] for c in ANSWERED], ids=[c[0] for c in ANSWERED])
def test_answered_as_transformers_would(config, check):
    assert check(spec_from_config(config))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_defaults_table_matches_transformers(model_type):
    """Every default in the table is the installed transformers config class's (None: derived there too)."""
    from transformers import CONFIG_MAPPING

    from calculator.config_fields import TRANSFORMERS_DEFAULTS

    assert sorted(TRANSFORMERS_DEFAULTS) == MODEL_TYPES
    instance = CONFIG_MAPPING[model_type]()
    for field, value in TRANSFORMERS_DEFAULTS[model_type].items():
        actual = getattr(instance, field, None)
        if value is None and field in DERIVED:  # transformers fills it from other fields, as the builders do
            assert actual is None or actual == DERIVED[field](instance), (model_type, field, actual)
        else:
            assert actual == value, (model_type, field, actual, value)


DERIVED = {
    "num_key_value_heads": lambda c: c.num_attention_heads,
    "head_dim": lambda c: c.hidden_size // c.num_attention_heads,
    "num_kv_heads": lambda c: c.num_attention_heads,
    "n_inner": lambda c: 4 * c.n_embd,
    "ffn_hidden_size": lambda c: 4 * c.hidden_size,
    "word_embed_proj_dim": lambda c: c.hidden_size,
    "num_ln_in_parallel_attn": lambda c: 2,
}
"""How transformers fills a field left ``None`` (what the builders' ``derived=`` computes)."""


# JSON that is not a config.json: (id, raw bytes, the start of the message naming it)
RAW = [
    ("nested-200000-deep", b"[" * 200_000, "cfg.json is nested too deeply to be a config.json"),
    ("objects-nested-deep", b'{"a":' * 100_000, "cfg.json is nested too deeply to be a config.json"),
    ("5000-digit-number", b'{"model_type": "llama", "hidden_size": ' + b"9" * 5000 + b"}",
     "cfg.json is not a usable config.json (Exceeds the limit (4300 digits)"),
    ("nan-literal", json.dumps(_with(LLAMA, hidden_size=None)).replace("null", "NaN").encode(),
     "config.json field hidden_size nan must be a whole number"),
    ("infinity-literal", json.dumps(_with(LLAMA, num_hidden_layers=None)).replace("null", "Infinity").encode(),
     "config.json field num_hidden_layers inf must be a whole number"),
    ("binary", b"\xff\xfe\x00\x01", "cfg.json is not valid JSON"),
    ("empty", b"", "cfg.json is not valid JSON"),
    ("top-level-array", b"[1, 2, 3]", "cfg.json holds a JSON list, not an object"),
    ("top-level-string", b'"llama"', "cfg.json holds a JSON str, not an object"),
    ("two-megabytes", b'{"model_type": "llama", "pad": "' + b"x" * 2_000_000 + b'"}',
     f"cfg.json is over {MAX_CONFIG_BYTES:,} bytes"),
]


@pytest.mark.parametrize(("raw", "message"), [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_uploaded_bytes_refused(raw, message):
    with pytest.raises(ValueError, match="^" + _literal(message)):
        load_config_bytes(raw, name="cfg.json")


def test_config_file_capped_by_reading_not_by_size(tmp_path):
    """/dev/zero reports size 0 and never ends: refused as what it is, at once."""
    with pytest.raises(ValueError, match="^config file '/dev/zero' is not a regular file; give a config.json$"):
        load_config_file("/dev/zero")
    with pytest.raises(ValueError, match=f"^config file '{tmp_path}' does not exist$"):
        load_config_file(tmp_path)  # a folder without config.json
    big = tmp_path / "config.json"
    big.write_bytes(b"{" + b" " * (MAX_CONFIG_BYTES + 10) + b"}")
    with pytest.raises(ValueError, match=f"is over {MAX_CONFIG_BYTES:,} bytes; a config.json is a few KB$"):
        load_config_file(big)


def test_deep_config_through_the_cli(tmp_path, calc):
    from tests.hostile.conftest import one_line_error

    path = tmp_path / "config.json"
    path.write_bytes(b"[" * 200_000)
    status, _, err = calc("weights", "--model", str(path), "--format", "fp16")
    assert status == 2
    assert one_line_error(err) == f"config file '{path}' is nested too deeply to be a config.json"


# Hypothesis: any value in any field ends in a spec within the bounds or one ValueError, fast.
HOSTILE_VALUES = st.one_of(
    st.integers(-10, 10**20), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.booleans(), st.none(), st.lists(st.integers(0, 40), max_size=4), st.just(DROP),
)
FIELDS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
          "vocab_size", "intermediate_size", "max_position_embeddings", "tie_word_embeddings", "sliding_window",
          "layer_types", "num_local_experts", "num_experts_per_tok", "attention_bias"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([LLAMA, MIXTRAL, MISTRAL]), st.dictionaries(st.sampled_from(FIELDS), HOSTILE_VALUES, max_size=4))
def test_any_field_value_is_bounded_or_refused(base, changes):
    from calculator.units import MAX_LAYERS, MAX_PARAMS

    start = time.process_time()
    try:
        spec = spec_from_config(_with(base, **changes))
    except ValueError as err:
        assert str(err).startswith(("config.json ", "model_type ")), err
        assert "\n" not in str(err)
    else:
        assert 1 <= spec.n_layers <= MAX_LAYERS and 0 < spec.total_params <= MAX_PARAMS
        assert spec.n_heads % spec.n_kv_heads == 0
    assert time.process_time() - start < 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.sampled_from([1, 2, 4, 8]), st.integers(1, 48), st.sampled_from([None, 2, 8]))
def test_valid_configs_answer_with_their_own_counts(kv_groups, n_kv, n_layers, experts):
    """A well-formed config is never refused, and its parameters are the tensors' sum."""
    heads = kv_groups * n_kv
    config = _with(MIXTRAL if experts else LLAMA, num_attention_heads=heads, num_key_value_heads=n_kv,
                   hidden_size=64 * heads, num_hidden_layers=n_layers, intermediate_size=128, vocab_size=512)
    if experts:
        config.update(num_local_experts=experts, num_experts_per_tok=min(2, experts))
    spec = spec_from_config(config)
    assert spec.n_layers == n_layers and spec.n_experts == (experts or 0) and spec.assumed == ()
    per_layer_attention = 2 * (64 * heads) ** 2 + 2 * (64 * heads) * 64 * n_kv
    assert spec.total_params > n_layers * per_layer_attention
