"""GGUF file types: the block formats against a naive reference, the gguf-py path (runs everywhere), the
llama.cpp path (when llama-cpp-python is installed), and measured tensor types/bytes against the
calculator's prediction for the same model."""

import copy
import math

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)  # fmt: skip

from calculator.gguf_recipes import FILE_TYPES, gguf_file
from calculator.models import spec_from_config
from evaluation.methods import gguf as gguf_methods
from evaluation.methods.gguf import GGUFBackend, GGUFConfig

needs_llama_cpp = pytest.mark.skipif(
    not gguf_methods.llama_cpp_available(),
    reason="llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36 builds llama.cpp)",
)

_MODELS = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
           "qwen2": (Qwen2Config, Qwen2ForCausalLM)}  # fmt: skip


def tiny(model_type: str = "llama", hidden: int = 192, tied: bool = True) -> torch.nn.Module:
    """Rows of 192 are whole Q4_0/Q8_0 blocks (32) but not Q4_K super-blocks (256), so llama.cpp's shape
    fallbacks show; ffn_down rows of 512 take the K-quants themselves. head_dim 32, GQA 3."""
    torch.manual_seed(0)
    config_cls, model_cls = _MODELS[model_type]
    cfg = config_cls(
        hidden_size=hidden, intermediate_size=512, num_hidden_layers=2, num_attention_heads=hidden // 32,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=128, tie_word_embeddings=tied,
    )  # fmt: skip
    return model_cls(cfg).eval()


def predicted(model: torch.nn.Module, file_type: str) -> dict[str, tuple[str, int]]:
    spec = spec_from_config(model.config.to_dict(), name="tiny")
    return {name: (t, n) for name, t, n in gguf_file(spec, file_type, imatrix=False).tensor_types}


def measured(model: torch.nn.Module) -> dict[str, tuple[str, int]]:
    return {name: (t, model.checkpoint_bytes_by_tensor[name]) for name, t in model.gguf_tensor_types.items()}


def roundtrip(w: torch.Tensor, qtype: T) -> torch.Tensor:
    arr = w.detach().float().numpy()
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(arr, qtype), qtype).copy())


# ---------------------------------------------------------------- block formats vs a naive reference


def naive_q8_0(row: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ggml-quants.c quantize_row_q8_0_ref, one element at a time: d = amax / 127 (stored fp16),
    q = roundf(x / d) (half away from zero), block = fp16 d + 32 int8."""
    data, values = bytearray(), []
    for b in range(0, row.size, 32):
        block = [np.float32(v) for v in row[b : b + 32]]
        d = max(abs(v) for v in block) / np.float32(127)
        inv = np.float32(1) / d if d else np.float32(0)
        qs = [int(math.copysign(math.floor(abs(float(v * inv)) + 0.5), float(v))) for v in block]
        d16 = np.float16(d)
        data += d16.tobytes() + bytes(q & 0xFF for q in qs)
        values += [np.float32(q) * np.float32(d16) for q in qs]
    return bytes(data), np.array(values, dtype=np.float32)


def naive_q4_0(row: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ggml-quants.c quantize_row_q4_0_ref: d = (signed value of largest magnitude) / -8, q = min(15,
    trunc(x / d + 8.5)); block = fp16 d + 16 bytes, byte j = q[j] | q[j + 16] << 4; value = (q - 8) * d."""
    data, values = bytearray(), []
    for b in range(0, row.size, 32):
        block = [np.float32(v) for v in row[b : b + 32]]
        amax, vmax = np.float32(0), np.float32(0)
        for v in block:
            if amax < abs(v):
                amax, vmax = abs(v), v
        d = vmax / np.float32(-8)
        inv = np.float32(1) / d if d else np.float32(0)
        qs = [min(15, int(v * inv + np.float32(8.5))) for v in block]
        d16 = np.float16(d)
        data += d16.tobytes() + bytes(qs[j] | (qs[j + 16] << 4) for j in range(16))
        values += [np.float32(q - 8) * np.float32(d16) for q in qs]
    return bytes(data), np.array(values, dtype=np.float32)


# Weights, not denormals: below ~1e-36 the block scale's reciprocal 1/d overflows to inf, where ggml's
# float -> int8 conversion is undefined behaviour.
_weights = st.floats(-1000, 1000, width=32, allow_subnormal=False).filter(lambda v: v == 0 or abs(v) > 1e-30)
rows = arrays(np.float32, (2, 64), elements=_weights)


@settings(max_examples=40, deadline=None)
@given(x=rows)
@example(x=np.zeros((2, 64), dtype=np.float32))
@example(x=np.tile(np.float32([3.0, -3.0]), (2, 32)))  # magnitude tie: the first one sets the sign
def test_q8_0_and_q4_0_are_bit_exact_with_the_block_format(x):
    for qtype, naive in ((T.Q8_0, naive_q8_0), (T.Q4_0, naive_q4_0)):
        packed = gguf.quants.quantize(x, qtype)
        values = gguf.quants.dequantize(packed, qtype)
        type_size = gguf.GGML_QUANT_SIZES[qtype][1]
        for r in range(x.shape[0]):
            ref_bytes, ref_values = naive(x[r])
            got = packed[r].tobytes()
            for b in range(0, len(got), type_size):
                got_block, ref_block = got[b : b + type_size], ref_bytes[b : b + type_size]
                if qtype == T.Q4_0 and not np.any(x[r, b // type_size * 32 : b // type_size * 32 + 32]):
                    # A block of zeros: ggml starts its signed max at +0.0, so -0.0 / -8 stores d = -0.0;
                    # gguf-py takes the -0.0 element itself, storing +0.0: same values, other sign bit of d.
                    assert {got_block[:2], ref_block[:2]} <= {b"\x00\x00", b"\x00\x80"}
                    got_block, ref_block = got_block[2:], ref_block[2:]
                assert got_block == ref_block, (qtype.name, r, b)
            np.testing.assert_array_equal(values[r], ref_values)
        # Error per block: Q8_0 half a step, Q4_0 one step (the side opposite the largest magnitude has
        # codes up to +7 only), plus what storing d in fp16 moves the largest code (127 or 8 steps).
        block = x.reshape(-1, 32).astype(np.float64)
        codes, steps = (127, 0.5) if qtype == T.Q8_0 else (8, 1.0)
        d = np.abs(block).max(axis=1, keepdims=True) / codes
        d16 = d.astype(np.float16).astype(np.float64)
        bound = steps * d + codes * np.abs(d - d16) + 1e-6 * codes * d
        assert np.all(np.abs(values.reshape(-1, 32) - block) <= bound)


def test_permute_matches_convert_hf_to_gguf():
    # One head of 4 rows: rotate-half order (0, 1 | 2, 3) becomes interleaved pairs (0, 2, 1, 3).
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(gguf_methods.permute_qk(w, 1)[:, 0], [0, 4, 2, 6])
    w = np.random.default_rng(0).standard_normal((96, 5)).astype(np.float32)
    np.testing.assert_array_equal(gguf_methods.unpermute_qk(gguf_methods.permute_qk(w, 3), 3), w)


# ---------------------------------------------------------------- gguf-py path (no llama.cpp needed)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("file_type", ["Q4_0", "Q8_0", "Q5_1", "F16"])
def test_gguf_py_run_matches_llama_cpp_recipe_and_calculator(model_type, file_type):
    base = tiny(model_type)
    q = gguf_methods.quantize_gguf(copy.deepcopy(base), GGUFConfig(file_type, backend="gguf-py"))
    # measured types and bytes == the calculator's replay of llama.cpp's recipe for this model
    assert measured(q) == predicted(base, file_type)
    types = q.gguf_tensor_types
    if file_type != "F16":  # tied token_embd is the output: Q6_K wanted, 192 % 256 -> Q8_0 fallback
        assert types["token_embd.weight"] == "Q8_0"
        assert types["blk.0.attn_q.weight"] == types["blk.1.ffn_down.weight"] == file_type
    assert types["blk.0.attn_norm.weight"] == "F32"
    # every weight is the row-wise block round trip of the original (so q/k un-permute is right)
    for layer, orig in zip(q.model.layers, base.model.layers, strict=True):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"):
            got, w = layer.get_submodule(name).weight, orig.get_submodule(name).weight
            torch.testing.assert_close(got, roundtrip(w, T[types["blk.0.attn_q.weight"]]), rtol=0, atol=0)
    if model_type == "qwen2":  # 1-D biases stay F32, exactly
        assert types["blk.0.attn_q.bias"] == "F32"
        torch.testing.assert_close(q.model.layers[0].self_attn.q_proj.bias, base.model.layers[0].self_attn.q_proj.bias)


def test_gguf_py_untied_output_and_embedding():
    base = tiny(tied=False)
    q = gguf_methods.quantize_gguf(copy.deepcopy(base), GGUFConfig("Q4_0", backend="gguf-py"))
    assert (q.gguf_tensor_types["token_embd.weight"], q.gguf_tensor_types["output.weight"]) == (
        "Q4_0",
        "Q8_0",
    )
    assert measured(q) == predicted(base, "Q4_0")
    # bytes are whole blocks: 256 rows x 192 / 32 blocks x 18 bytes (Q4_0) for the embedding
    assert q.checkpoint_bytes_by_tensor["token_embd.weight"] == 256 * 6 * 18


def test_gguf_py_refuses_types_it_cannot_make():
    with pytest.raises(ValueError, match="llama-cpp-python"):
        gguf_methods.quantize_gguf(tiny(), GGUFConfig("Q4_K_M", backend="gguf-py"))
    # hidden 256: the output tensor needs Q6_K, which only llama.cpp can write
    with pytest.raises(ValueError, match="Q6_K"):
        gguf_methods.quantize_gguf(tiny(hidden=256), GGUFConfig("Q4_0", backend="gguf-py"))


def test_unsupported_architecture():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(ValueError, match="gpt2"):
        gguf_methods.quantize_gguf(gpt2, GGUFConfig("Q8_0", backend="gguf-py"))


# ---------------------------------------------------------------- llama.cpp path


@needs_llama_cpp
@pytest.mark.parametrize("file_type", ["Q4_0", "Q8_0"])
def test_llama_cpp_and_gguf_py_agree_bit_for_bit(file_type):
    base = tiny()
    a = gguf_methods.quantize_gguf(copy.deepcopy(base), GGUFConfig(file_type, backend="llama.cpp"))
    b = gguf_methods.quantize_gguf(copy.deepcopy(base), GGUFConfig(file_type, backend="gguf-py"))
    assert measured(a) == measured(b)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


@needs_llama_cpp
@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q3_K_M", "Q6_K", "IQ4_XS", "Q2_K"])
def test_llama_cpp_k_quants_match_the_calculator(file_type):
    base = tiny()
    q = gguf_methods.quantize_gguf(copy.deepcopy(base), GGUFConfig(file_type, backend="llama.cpp"))
    assert measured(q) == predicted(base, file_type)
    with torch.no_grad():
        ids = torch.arange(64).reshape(1, -1)
        assert torch.isfinite(q(ids).logits).all()


@needs_llama_cpp
def test_llama_cpp_q4_k_m_recipe_on_two_layers():
    # use_more_bits(i, 2) is true for the last layer only: its ffn_down gets Q6_K, layer 0 keeps Q4_K;
    # 192-wide rows cannot hold 256-blocks, so Q4_K falls back to Q5_0 and Q6_K to Q8_0.
    q = gguf_methods.quantize_gguf(tiny(), GGUFConfig("Q4_K_M", backend="llama.cpp"))
    t = q.gguf_tensor_types
    assert (t["blk.0.ffn_down.weight"], t["blk.1.ffn_down.weight"]) == ("Q4_K", "Q6_K")
    assert (t["blk.0.attn_v.weight"], t["blk.1.attn_v.weight"], t["blk.0.attn_q.weight"]) == (
        "Q5_0",
        "Q8_0",
        "Q5_0",
    )


# ---------------------------------------------------------------- configs and method ids


@pytest.mark.parametrize(
    ("text", "file_type"),
    [
        ("gguf-Q4_K_M", "Q4_K_M"),
        ("Q4_K_M", "Q4_K_M"),
        ("q3_k_m", "Q3_K_M"),
        ("gguf-f16", "F16"),
        ("Q8_0", "Q8_0"),
    ],
)
def test_parse(text, file_type):
    assert GGUFConfig.parse(text) == GGUFConfig(file_type)


def test_parse_leaves_other_methods():
    for text in ("F16", "bf16", "int4-g32", "gptq-4b-g128", "awq-4b-g128", "nf4"):
        assert GGUFConfig.parse(text) is None


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GGUFConfig("Q4_K"), "Q4_K_M"),  # a tensor type, not a file type
        (lambda: GGUFConfig("Q4_K_X"), "unknown GGUF file type"),
        (lambda: GGUFConfig("IQ2_XXS"), "importance matrix"),
        (lambda: GGUFConfig("Q4_0", backend="ggml"), "backend"),
        (lambda: GGUFConfig.parse("gguf-Q9_0"), "unknown GGUF file type"),
    ],
)
def test_bad_configs_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("file_type", sorted(set(FILE_TYPES) - gguf_methods.NEEDS_IMATRIX))
def test_every_file_type_round_trips(file_type):
    cfg = GGUFConfig(file_type)
    assert GGUFConfig.parse(cfg.method_id) == cfg
    assert (cfg.method_id, cfg.calculator_format, cfg.family) == (f"gguf-{file_type}", file_type, "gguf")
    assert not cfg.needs_calibration and cfg.bits >= 1 and cfg.group_size >= 1


def test_nominal_bits_and_block_sizes():
    got = {ft: (GGUFConfig(ft).bits, GGUFConfig(ft).group_size) for ft in ("Q4_K_M", "Q3_K_M", "Q8_0", "F16", "Q6_K")}
    assert got == {"Q4_K_M": (4, 256), "Q3_K_M": (3, 256), "Q8_0": (8, 32), "F16": (16, 1), "Q6_K": (6, 256)}
    assert GGUFConfig("Q4_0").backend is GGUFBackend.AUTO


def test_registry_quantizes_a_saved_model(tiny_llama_dir):
    # Through the engine: a method id from the CLI, a model saved as safetensors (untied, hidden 64).
    from transformers import AutoModelForCausalLM

    from evaluation.methods import parse_method, quantize_

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    config = parse_method("Q8_0")
    assert config == GGUFConfig("Q8_0")
    quantize_(model, config)
    assert measured(model) == predicted(model, "Q8_0")
    assert set(model.gguf_tensor_types.values()) == {"Q8_0", "F32"}


# ---------------------------------------------------------------- fallbacks from the calculator's recipe replay


def test_recipe_fallbacks_are_recorded_on_the_owning_module():
    # Tied token_embd is the output tensor: the recipe wants Q6_K, and 192 is not whole 256-blocks -> Q8_0.
    from evaluation.storage import collect_fallbacks

    q = gguf_methods.quantize_gguf(tiny(), GGUFConfig("Q4_0", backend="gguf-py"))
    assert collect_fallbacks(q) == [{
        "reason": "row length 192 is not a multiple of the Q6_K block: Q8_0 (llama.cpp tensor_type_fallback)",
        "count": 1, "modules": ["model.embed_tokens"],
    }]  # fmt: skip


@needs_llama_cpp
def test_llama_cpp_fallbacks_match_what_it_wrote():
    # Q4_K_M on 192-wide rows: every Q4_K tensor but ffn_down (rows of 512) falls back to Q5_0, as llama.cpp's
    # own file shows, and layer 1's Q6_K attn_v to Q8_0. The tied token_embd gets Q8_0 by the output rule
    # itself (rows that do not fit the default type's block), which is not a fallback.
    from evaluation.storage import collect_fallbacks

    q = gguf_methods.quantize_gguf(tiny(), GGUFConfig("Q4_K_M", backend="llama.cpp"))
    by_reason = {f["reason"].split(": ")[1].split(" ")[0]: f["modules"] for f in collect_fallbacks(q)}
    types = q.gguf_tensor_types
    assert set(by_reason) == {"Q5_0", "Q8_0"}
    assert "model.layers.0.self_attn.q_proj" in by_reason["Q5_0"] and types["blk.0.attn_q.weight"] == "Q5_0"
    assert by_reason["Q8_0"] == ["model.layers.1.self_attn.v_proj"] and types["token_embd.weight"] == "Q8_0"
    assert not any("mlp.down_proj" in m for modules in by_reason.values() for m in modules)
