"""Quantization primitives, real kernels against references and simulated twins, fallbacks, the registry,
the method-id parser, and measured bytes against the calculator's prediction."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from evaluation import methods as M
from evaluation.methods import (
    BnB4bitConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationConfig,
    Int8WeightOnlyConfig,
    RTNConfig,
    parse_method,
    quantize_,
)
from evaluation.methods import kernels as K
from evaluation.methods import primitives as P
from evaluation.methods.primitives import dequantize_rtn, pack_bits, quantize_rtn, unpack_bits
from evaluation.methods.rtn import SimulatedLinear
from evaluation.metrics import log_probs, sqnr_db, token_stats
from evaluation.models import load_model, resolve_model_source
from evaluation.storage import CHECKPOINT_BYTES_ATTR, collect_fallbacks, measure_storage


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.set_num_threads(1)
    model, tokenizer = load_model(resolve_model_source(str(tiny_llama_dir)), dtype=torch.bfloat16)
    return model


@pytest.fixture(scope="module")
def tiny_ids(tiny):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, tiny.config.vocab_size, (1, 96), generator=g)


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits[0].float()


# ------------------------------------------------------------------ primitives


def test_symmetric_worked_example():
    # absmax 0.7 at 4 bits: scale 0.7 / 7 = 0.1; 0.34 -> round(3.4) = 3 -> 0.3.
    w = torch.tensor([[0.7, 0.34, -0.7, 0.0]])
    t = quantize_rtn(w, 4, None, symmetric=True, scale_dtype=torch.float32)
    assert t.scales.item() == pytest.approx(0.1)
    assert dequantize_rtn(t, torch.float32)[0].tolist() == pytest.approx([0.7, 0.3, -0.7, 0.0])


def test_asymmetric_worked_example():
    # range [-0.5, 1.0] at 4 bits: scale 1.5 / 15 = 0.1, min -0.5; 0.34 -> round(8.4) = 8 -> 0.3.
    w = torch.tensor([[-0.5, 0.34, 1.0, 0.0]])
    t = quantize_rtn(w, 4, None, symmetric=False, scale_dtype=torch.float32)
    assert (t.scales.item(), t.mins.item()) == pytest.approx((0.1, -0.5))
    assert t.codes[0].tolist() == [0, 8, 15, 5]
    assert dequantize_rtn(t, torch.float32)[0].tolist() == pytest.approx([-0.5, 0.3, 1.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 8),
    group=st.sampled_from([None, 4, 8, 16, 24]),
    symmetric=st.booleans(),
    rows=st.integers(1, 5),
    cols=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_rtn_error_at_most_half_a_step(bits, group, symmetric, rows, cols, seed):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    t = quantize_rtn(w, bits, group, symmetric, scale_dtype=torch.float32)
    err = (dequantize_rtn(t, torch.float32) - w).abs()
    step = (
        P.ungrouped(t.scales.unsqueeze(-1).expand(*t.scales.shape, group or cols), cols)
        if group
        else t.scales.expand(rows, cols)
    )
    assert torch.all(err <= step / 2 + 1e-6)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), n=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_pack_bits_round_trip_and_exact_size(bits, n, seed):
    codes = torch.randint(0, 2**bits, (n,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, n), codes)


def test_partial_last_group_uses_only_its_own_weights():
    # 6 weights in groups of 4: the last group [10, -10] gets scale 10/7, not influenced by padding.
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0, 10.0, -10.0]])
    t = quantize_rtn(w, 4, 4, symmetric=True, scale_dtype=torch.float32)
    assert t.scales.shape == (1, 2)
    assert t.scales[0].tolist() == pytest.approx([1 / 7, 10 / 7])


def test_stored_codes_dequantize_to_the_compute_weight():
    lin = nn.Linear(40, 16, bias=False)
    sim = SimulatedLinear(lin, 3, 16, symmetric=False)
    assert torch.equal(dequantize_rtn(sim.stored(), lin.weight.dtype), sim.weight_dequantized)
    assert sim.fallback and "last group of 8" in sim.fallback


# ------------------------------------------------------------------ real kernels vs references


def _deq_int8(module):
    return module.weight_int8.float() * module.scales.float().unsqueeze(-1)


def test_int8_kernel_matches_dequantized_matmul():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48).to(torch.bfloat16)
    q = K.Int8WeightOnlyLinear(lin)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    ref = x.float() @ _deq_int8(q).T + lin.bias.float()
    assert torch.allclose(q(x).float(), ref, rtol=2e-2, atol=2e-2)
    assert sqnr_db(ref, q(x).float()) > 35


def test_int4_kernel_dequantizes_what_rtn_stores():
    # Feeding the identity through the kernel reads back every dequantized weight: (q - 8) * s + z.
    torch.manual_seed(0)
    lin = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
    q = K.Int4WeightOnlyLinear(lin, 32)
    eye = torch.eye(64, dtype=torch.bfloat16)
    read_back = q(eye).float().T  # [out, in]
    t = quantize_rtn(lin.weight.detach(), 4, 32, symmetric=False, scale_dtype=torch.bfloat16)
    twin = dequantize_rtn(t, torch.float32)
    # Same codes; the kernel's zero = min + 8 * scale is rounded to bf16 once more.
    assert torch.allclose(read_back, twin, atol=2e-2 * lin.weight.abs().max().item())
    assert q.weight_int4.numel() * q.weight_int4.element_size() == 64 * 32 // 2


def test_int8_dynamic_is_an_exact_integer_matmul():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48, bias=False).to(torch.bfloat16)
    q = K.Int8DynamicActivationLinear(lin)
    x = torch.randn(7, 64, dtype=torch.bfloat16)
    xq, xs = P.quantize_activations_per_token(x)
    ref = (xq.double() @ q.weight_int8.double().T) * xs.double() * q.scales.double()
    assert torch.allclose(q(x).double(), ref, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize(
    "config",
    [Int8WeightOnlyConfig(), Int4WeightOnlyConfig(32), Int8DynamicActivationConfig()],
    ids=lambda c: c.method_id,
)
def test_real_kernel_matches_its_simulated_twin(tiny, tiny_ids, config):
    """Same logits within tolerance, and the twin far closer to the kernel than the baseline is.

    What remains is arithmetic: the kernels scale fp32 accumulators, the twin rounds its dequantized
    weight to bf16 (7-bit codes x 8-bit-mantissa scales need 15 bits; bf16 keeps 8), which at 8 bits is
    a third of the quantization error itself.
    """
    base = _logits(tiny, tiny_ids)
    real = _logits(quantize_(copy.deepcopy(tiny), config), tiny_ids)
    twin = _logits(quantize_(copy.deepcopy(tiny), config.twin()), tiny_ids)
    targets = tiny_ids[0, 1:]
    kld_real = token_stats(real[:-1], log_probs(base[:-1]), targets).kld.mean().item()
    kld_twin = token_stats(real[:-1], log_probs(twin[:-1]), targets).kld.mean().item()
    assert kld_real > 0
    assert kld_twin < 0.4 * kld_real
    assert torch.allclose(real, twin, atol=0.05 * base.abs().max().item())


def test_bnb_forward_matches_its_dequantized_weight(tiny, tiny_ids):
    import bitsandbytes as bnb

    for config in (BnB4bitConfig("nf4"), BnB4bitConfig("fp4", double_quant=True)):
        model = quantize_(copy.deepcopy(tiny), config)
        layer = model.model.layers[0].mlp.up_proj
        assert isinstance(layer, bnb.nn.Linear4bit)
        w = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
        x = torch.randn(3, layer.in_features, dtype=torch.bfloat16)
        assert torch.allclose(layer(x).float(), x.float() @ w.float().T, atol=3e-2)


# ------------------------------------------------------------------ scope, fallbacks, errors


def test_every_decoder_linear_is_swapped_and_lm_head_kept(tiny):
    model = quantize_(copy.deepcopy(tiny), Int8WeightOnlyConfig())
    swapped = [n for n, m in model.named_modules() if isinstance(m, K.Int8WeightOnlyLinear)]
    assert len(swapped) == 7 * tiny.config.num_hidden_layers
    assert type(model.lm_head) is nn.Linear and model.lm_head.weight.dtype == torch.bfloat16


def test_int4_group_that_does_not_divide_falls_back_per_tensor(tiny):
    model = quantize_(copy.deepcopy(tiny), Int4WeightOnlyConfig(128))
    fallbacks = collect_fallbacks(model)
    # in_features 64 (q, k, v, o, gate, up) fall back to group 64; down_proj (128) keeps group 128.
    assert len(fallbacks) == 1 and fallbacks[0]["count"] == 6 * tiny.config.num_hidden_layers
    assert "not a multiple of 128: int4 group 64" in fallbacks[0]["reason"]
    assert model.model.layers[0].mlp.down_proj.group_size == 128


def test_int4_shape_no_kernel_takes_falls_back_to_int8():
    # 24 rows: not a multiple of 16; in_features 24: no int4 group divides it. The third layer fits.
    model = nn.Sequential(nn.Linear(64, 24), nn.Linear(24, 64), nn.Linear(64, 64)).to(torch.bfloat16)
    quantize_(model, Int4WeightOnlyConfig(32))
    assert isinstance(model[0], K.Int8WeightOnlyLinear) and "fits no int4 kernel group" in model[0].fallback
    assert isinstance(model[1], K.Int8WeightOnlyLinear)
    assert isinstance(model[2], K.Int4WeightOnlyLinear) and model[2].fallback is None
    assert [f["count"] for f in collect_fallbacks(model)] == [1, 1]


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("int4-g256", "group size 256 .* fits none of the model's layers"),
        ("rtn-4b-g1024", "group size 1024 fits none of the model's layers"),
    ],
)
def test_group_size_that_fits_nothing_is_an_error(tiny, method, message):
    with pytest.raises(ValueError, match=message):
        quantize_(copy.deepcopy(tiny), parse_method(method))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda: RTNConfig(bits=9), "RTN bits 9 must be a whole number from 2 to 8"),
        (lambda: RTNConfig(bits=4, group_size=1), "RTN group_size 1 must be a whole number >= 2"),
        (lambda: RTNConfig(act_bits=1), "RTN act_bits 1 must be a whole number from 2 to 8"),
        (lambda: RTNConfig(scale_dtype="fp32"), "RTN scale_dtype 'fp32': use 'fp16'"),
        (lambda: Int4WeightOnlyConfig(48), "int4 kernel group_size=48: PyTorch's int4 kernels take 32, 64"),
        (lambda: BnB4bitConfig("int4"), "bitsandbytes quant_type 'int4': use 'nf4' or 'fp4'"),
        (lambda: RTNConfig(bits=True), "RTN bits True must be a whole number"),
    ],
)
def test_configs_validate(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


def test_string_choices_become_enums():
    assert RTNConfig(scale_dtype="bf16").scale_dtype is M.ScaleDType.BF16
    assert BnB4bitConfig("fp4").quant_type is M.BnBQuantType.FP4
    # JSON-ready and equal to what version-1 results stored: the plain strings.
    assert M.method_config_dict(BnB4bitConfig("fp4", True)) == {
        "class": "BnB4bitConfig", "quant_type": "fp4", "double_quant": True,
    }  # fmt: skip
    assert type(M.method_config_dict(RTNConfig())["scale_dtype"]) is str


# ------------------------------------------------------------------ parser and registry


@pytest.mark.parametrize("text", [*M.example_method_ids(), "rtn-5b-g96-asym-a8-sbf16", "RTN-3B-CH", "int4-g256"])
def test_method_ids_round_trip_and_name_a_calculator_format(text):
    from calculator.formats import get_format
    from calculator.gguf_recipes import FILE_TYPES

    config = parse_method(text)
    assert parse_method(config.method_id) == config
    # The format is one the calculator's own tables hold (a GGUF file type is a recipe, not a format).
    if config.family == M.MethodFamily.GGUF:
        assert config.calculator_format in FILE_TYPES
    elif config.calculator_format is not None:
        assert get_format(config.calculator_format).name == config.calculator_format


def test_examples_are_listed_in_family_order():
    families = [c.family for c in M.available_methods()]
    order = list(M.MethodFamily)
    assert [order.index(f) for f in families] == sorted(order.index(f) for f in families)
    assert set(families) == set(M.MethodFamily)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("int9", "unknown method .int9.; did you mean int8"),
        ("rtn-4b-g32-sfp32", "RTN method .rtn-4b-g32-sfp32. not understood"),
        ("rtn-3b-x32", "RTN method 'rtn-3b-x32' not understood"),
        ("int4-g48", "int4 kernel group_size=48"),
        ("gguf-Q9_0", "unknown GGUF file type"),
        ("", "is empty"),
    ],
)
def test_bad_method_ids_say_what_to_do(text, message):
    with pytest.raises(ValueError, match=message):
        parse_method(text)


def test_parse_methods_keeps_order_and_drops_duplicates():
    ids = [c.method_id for c in M.parse_methods("int8, nf4,int8 ,rtn-3b-g32-asym,w8a8")]
    assert ids == ["int8", "nf4", "rtn-3b-g32-asym", "int8-dyn"]
    with pytest.raises(ValueError, match="no methods"):
        M.parse_methods(" , ")


def test_only_frozen_method_configs_register():
    with pytest.raises(ValueError, match="must be a frozen dataclass subclassing MethodConfig"):
        M.register_method(int)

    @dataclass(frozen=True)
    class NotAMethodConfig:
        method_id = "x"

    with pytest.raises(ValueError, match="must be a frozen dataclass subclassing MethodConfig"):
        M.register_method(NotAMethodConfig)


def test_unregistered_config_is_an_error():
    @dataclass(frozen=True)
    class Unknown(RTNConfig):
        pass

    with pytest.raises(ValueError, match="Unknown is not a registered method config; known: BaselineConfig"):
        quantize_(nn.Linear(2, 2), Unknown())


def test_every_family_module_is_registered():
    """A family file in evaluation/methods/ whose configs the package does not import would be silently
    missing from the parser: each config class defined in the package is registered."""
    import importlib
    import inspect
    import pkgutil

    defined = set()
    for info in pkgutil.iter_modules(M.__path__):
        module = importlib.import_module(f"evaluation.methods.{info.name}")
        defined |= {
            obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, M.MethodConfig) and obj is not M.MethodConfig and obj.__module__ == module.__name__
        }  # fmt: skip
    assert defined == set(M.registered_configs())


# ------------------------------------------------------------------ measured bytes vs the calculator


def _predicted(model, config):
    from calculator.formats import get_format
    from calculator.memory import weight_memory
    from calculator.models import spec_from_config

    spec = spec_from_config(model.config.to_dict())
    return weight_memory(spec, get_format(config.calculator_format), quantize_embeddings=False).total_bytes


@pytest.mark.parametrize(
    "method",
    [
        "int8",
        "int8-dyn",
        "int4-g32",
        "int4-g64",
        "rtn-3b-g32-asym",
        "rtn-5b-g24",
        "rtn-2b-ch",
        "rtn-8b-ch-asym",
    ],
)
def test_measured_bytes_equal_the_calculator_prediction(tiny, method):
    config = parse_method(method)
    model = quantize_(copy.deepcopy(tiny), config)
    storage = measure_storage(tiny, model)
    buffers = sum(b.numel() * b.element_size() for b in tiny.buffers())  # rotary tables: not weights
    assert storage.total_bytes - buffers == _predicted(tiny, config)
    assert storage.quantized_params == sum(lin.weight.numel() for _, lin in P.quantizable_linears(tiny))


@pytest.mark.parametrize("method", ["nf4", "nf4-dq", "fp4-dq"])
def test_bnb_bytes_are_the_prediction_plus_per_layer_constants(tiny, method):
    config = parse_method(method)
    model = quantize_(copy.deepcopy(tiny), config)
    storage = measure_storage(tiny, model)
    n_layers = len(P.quantizable_linears(tiny))
    extra = storage.total_bytes - _predicted(tiny, config)
    # Each Linear4bit also stores its 16-entry code book (64 B), a JSON quant-state record (< 200 B) and,
    # double-quantized, the 256-entry code book of the absmax (1 KiB): small, fixed per layer.
    assert 0 < extra <= n_layers * (64 + 200 + (1024 + 8 if config.double_quant else 0)) + 64


def test_tied_embeddings_count_once(tiny_tied_llama_dir):
    model, _ = load_model(resolve_model_source(str(tiny_tied_llama_dir)), dtype=torch.bfloat16)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    storage = measure_storage(model, model)
    assert "lm_head.weight" not in storage.by_tensor or "model.embed_tokens.weight" not in storage.by_tensor
    emb = model.model.embed_tokens.weight
    all_params = sum(p.numel() * p.element_size() for p in model.parameters())  # parameters() dedupes too
    assert storage.total_bytes == all_params + sum(b.numel() * b.element_size() for b in model.buffers())
    assert storage.total_bytes < all_params + emb.numel() * emb.element_size()


def test_declared_checkpoint_bytes_are_the_stored_size(tiny):
    model = copy.deepcopy(tiny)
    declared = {name: p.numel() * 2 for name, p in model.named_parameters()}
    q_proj = "model.layers.0.self_attn.q_proj"
    del declared[f"{q_proj}.weight"]
    declared |= {f"{q_proj}.qweight": 2048, f"{q_proj}.scales": 256}
    setattr(model, CHECKPOINT_BYTES_ATTR, declared)
    storage = measure_storage(tiny, model)
    assert storage.total_bytes == sum(declared.values())
    assert (storage.quantized_bytes, storage.quantized_params) == (2304, 64 * 64)
    assert storage.bits_per_weight == pytest.approx(2304 * 8 / 4096)


def test_int8_drift_matches_torchao_int8_weight_only(tiny, tiny_ids):
    """Cross-check with torchao 0.18's Int8WeightOnlyConfig (per-channel symmetric int8 too; its scale is
    amax / 127.5 over [-128, 127] where ours is amax / 127): the drift is of the same size."""
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int8WeightOnlyConfig as TorchaoInt8
    from torchao.quantization import quantize_ as torchao_quantize_

    base = log_probs(_logits(tiny, tiny_ids)[:-1])
    targets = tiny_ids[0, 1:]
    theirs = copy.deepcopy(tiny)
    torchao_quantize_(theirs, TorchaoInt8())
    ours = quantize_(copy.deepcopy(tiny), Int8WeightOnlyConfig())
    kld_theirs = token_stats(_logits(theirs, tiny_ids)[:-1], base, targets).kld.mean().item()
    kld_ours = token_stats(_logits(ours, tiny_ids)[:-1], base, targets).kld.mean().item()
    assert 0.5 < kld_ours / kld_theirs < 2.0
