"""GPTQ and AWQ: layer-level error against RTN, the act-order and partial-group layouts, scale folding,
checkpoint bytes, configs and method ids. Tiny random Llama models (hidden 96, 2 layers) keep this fast;
their norm weights get a log-normal spread so that, as in real LLMs, a few input channels dominate."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from evaluation.methods import awq, gptq
from evaluation.methods import calibration as plumbing
from evaluation.methods.awq import AWQConfig
from evaluation.methods.gptq import GPTQConfig
from evaluation.methods.primitives import column_groups

HIDDEN, FFN, VOCAB = 96, 192, 256  # 96 = 64 + 32: group size 64 leaves a partial group


def tiny_llama(n_kv_heads: int = 2, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_heads, vocab_size=VOCAB, max_position_embeddings=128,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.copy_(torch.exp(torch.randn(HIDDEN, generator=g)))
    return model


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.set_num_threads(1)
    return tiny_llama()


@pytest.fixture(scope="module")
def calibration() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randint(0, VOCAB, (64,), generator=g) for _ in range(4)]


def correlated_inputs(n_tokens: int, dim: int, seed: int) -> torch.Tensor:
    """X [tokens, dim] with correlated channels and a few 10x outlier channels, like LLM activations."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
    x = torch.randn(n_tokens, dim, generator=g) @ mix + 0.1 * torch.randn(n_tokens, dim, generator=g)
    x[:, :4] *= 10
    return x


def naive_rtn(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Independent RTN with GPTQ's quantizer (range includes 0), one group at a time."""
    maxq = 2**bits - 1
    out = torch.empty_like(w)
    for start in range(0, w.shape[1], group_size):
        g = w[:, start : start + group_size]
        lo = g.min(dim=1, keepdim=True).values.clamp(max=0)
        hi = g.max(dim=1, keepdim=True).values.clamp(min=0)
        scale = (hi - lo) / maxq
        zero = torch.round(-lo / scale)
        out[:, start : start + group_size] = scale * (torch.clamp(torch.round(g / scale) + zero, 0, maxq) - zero)
    return out


def output_error(w: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    return (x @ (w - q).T).pow(2).sum().item()


# ---------------------------------------------------------------- GPTQ on one weight


def test_gptq_with_identity_hessian_is_rtn():
    # H = I has no off-diagonal terms, so there is no error feedback: GPTQ degenerates to RTN.
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(3))
    result = gptq.gptq_quantize_weight(w, torch.eye(96), GPTQConfig(bits=4, group_size=64))
    torch.testing.assert_close(result.dequantized, naive_rtn(w, 4, 64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize(("bits", "group_size"), [(4, 32), (3, 64), (4, 96)])
def test_gptq_lowers_layer_output_error_vs_rtn(bits, group_size, act_order):
    x = correlated_inputs(512, 96, seed=bits * group_size)
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(4))
    h = 2 * x.T @ x / x.shape[0]
    q = gptq.gptq_quantize_weight(w, h, GPTQConfig(bits=bits, group_size=group_size, act_order=act_order))
    gptq_err, rtn_err = output_error(w, q.dequantized, x), output_error(w, naive_rtn(w, bits, group_size), x)
    assert gptq_err < 0.7 * rtn_err, (gptq_err, rtn_err)


def test_gptq_result_is_on_its_grid_with_act_order_groups():
    # Every column is an integer code of its group's scale/zero; act-order groups hold the highest-diag(H)
    # columns first, at most group_size columns per group, the last group partial (96 = 64 + 32).
    x = correlated_inputs(256, 96, seed=5)
    w = torch.randn(16, 96, generator=torch.Generator().manual_seed(6))
    h = 2 * x.T @ x / x.shape[0]
    r = gptq.gptq_quantize_weight(w, h, GPTQConfig(bits=4, group_size=64, act_order=True))
    codes = r.dequantized / r.scales[:, r.g_idx] + r.zeros[:, r.g_idx]
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
    assert codes.round().min() >= 0 and codes.round().max() <= 15
    assert torch.bincount(r.g_idx).tolist() == [64, 32]
    order = torch.argsort(torch.diag(h), descending=True)
    assert set(order[:64].tolist()) == set(torch.nonzero(r.g_idx == 0).flatten().tolist())


def test_gptq_block_size_changes_speed_not_result():
    # Lazy batch updates are exact (paper section 4, step 2): any block size gives the same weights.
    x = correlated_inputs(256, 96, seed=7)
    w = torch.randn(16, 96, generator=torch.Generator().manual_seed(8))
    h = 2 * x.T @ x / x.shape[0]
    results = [
        gptq.gptq_quantize_weight(w, h, GPTQConfig(group_size=32, block_size=b)).dequantized for b in (8, 32, 128)
    ]
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(results[0], results[2], rtol=0, atol=1e-5)


def test_gptq_dead_inputs_get_zero_weights():
    x = correlated_inputs(128, 64, seed=9)
    x[:, 5] = 0
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(10))
    r = gptq.gptq_quantize_weight(w, 2 * x.T @ x / 128, GPTQConfig(group_size=32))
    assert torch.all(r.dequantized[:, 5] == 0)


# ---------------------------------------------------------------- GPTQ on a model


def test_gptq_quantize_model_beats_rtn_on_first_layer(model, calibration):
    # Layer 0 sees the same inputs in both models, so its q_proj error is comparable on calibration data.
    inputs = plumbing.capture_first_layer_inputs(model, plumbing.check_calibration(calibration, "test"))
    x = torch.cat([model.model.layers[0].input_layernorm(i.hidden).reshape(-1, HIDDEN) for i in inputs]).detach()
    w = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    q = gptq.quantize_gptq(copy.deepcopy(model), GPTQConfig(bits=4, group_size=32), calibration)
    gptq_w = q.model.layers[0].self_attn.q_proj.weight.detach()
    assert output_error(w, gptq_w, x) < output_error(w, naive_rtn(w, 4, 32), x)


def test_gptq_quantize_model_layout_and_bytes(model, calibration):
    q = gptq.quantize_gptq(copy.deepcopy(model), GPTQConfig(bits=4, group_size=64, act_order=True), calibration)
    torch.testing.assert_close(q.model.embed_tokens.weight, model.model.embed_tokens.weight, rtol=0, atol=0)
    assert q.lm_head.weight is q.model.embed_tokens.weight  # still tied, still float
    for layer, orig in zip(q.model.layers, model.model.layers, strict=True):
        for name, lin in plumbing.named_linears(layer).items():
            assert not torch.equal(lin.weight, plumbing.named_linears(orig)[name].weight), name
    # q_proj 96 -> 96 at 4 bits, g64: qweight 96*4/32*96*4, qzeros 2*(96*4/32)*4, scales 2*96*2, g_idx 96*4
    by_tensor = q.checkpoint_bytes_by_tensor
    parts = ("qweight", "qzeros", "scales", "g_idx")
    assert [by_tensor[f"model.layers.0.self_attn.q_proj.{p}"] for p in parts] == [4608, 96, 384, 384]
    assert by_tensor["model.embed_tokens.weight"] == VOCAB * HIDDEN * 2  # fp16, stored once (tied)
    assert "lm_head.weight" not in by_tensor
    expected = VOCAB * HIDDEN * 2 + 2 * HIDDEN * 2 * 2 + HIDDEN * 2  # embeddings, 4 layer norms, final norm
    for lin in plumbing.named_linears(model.model.layers[0]).values():
        expected += 2 * sum(gptq.gptq_linear_bytes(lin.in_features, lin.out_features, 4, 64).values())
    assert sum(by_tensor.values()) == expected


def test_partial_groups_are_quantized_not_skipped():
    # 96 columns, group 64: group 2 has 32 columns and its own scale; the layout counts ceil(96/64) = 2.
    w = torch.randn(8, 96, generator=torch.Generator().manual_seed(11))
    assert column_groups(96, 64) == [slice(0, 64), slice(64, 96)]
    r = gptq.gptq_quantize_weight(w, torch.eye(96), GPTQConfig(group_size=64))
    assert r.scales.shape == (8, 2)
    torch.testing.assert_close(r.dequantized[:, 64:], naive_rtn(w[:, 64:], 4, 32), rtol=0, atol=1e-6)
    assert gptq.gptq_linear_bytes(576, 576, 4, 128)["scales"] == 5 * 576 * 2  # SmolLM2: 576 = 4.5 groups
    assert awq.awq_linear_bytes(576, 576, 4, 128)["scales"] == 5 * 576 * 2
    a = awq.awq_pseudo_quantize(w, 4, 64)
    torch.testing.assert_close(a[:, 64:], awq.awq_pseudo_quantize(w[:, 64:], 4, 32), rtol=0, atol=0)


# ---------------------------------------------------------------- AWQ


def test_awq_scale_search_lowers_activation_weighted_error_vs_rtn():
    x = correlated_inputs(512, 96, seed=12)
    lin = torch.nn.Linear(96, 48, bias=False)
    torch.nn.init.normal_(lin.weight, generator=torch.Generator().manual_seed(13))
    w = lin.weight.detach().clone()
    cfg = AWQConfig(bits=4, group_size=32)
    with torch.no_grad():
        s = awq.search_scale(lambda i, xi: lin(xi), [x], [lin], cfg)
        assert torch.equal(lin.weight, w)  # the search restores the weights
        awq_w = awq.awq_pseudo_quantize(w * s, 4, 32) / s
    rtn_w = awq.awq_pseudo_quantize(w, 4, 32)
    assert output_error(w, awq_w, x) < 0.9 * output_error(w, rtn_w, x)


@pytest.mark.parametrize("n_kv_heads", [2, 4])
def test_awq_scale_folding_keeps_the_float_layer(n_kv_heads):
    # MHA (4 kv heads) also folds into v_proj -> o_proj; GQA (2) cannot and llm-awq skips it.
    m = tiny_llama(n_kv_heads=n_kv_heads)
    layer, inp = m.model.layers[0], plumbing.capture_first_layer_inputs(m, [torch.arange(32).reshape(1, -1)])[0]
    with torch.no_grad():
        before = plumbing.run_layer(layer, inp)
        g = torch.Generator().manual_seed(14)

        def s(n: int) -> torch.Tensor:  # positive scales spread over e^-3 .. e^3
            return torch.exp(torch.randn(n, generator=g))

        attn, mlp = layer.self_attn, layer.mlp
        awq.scale_norm_linears(layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], s(HIDDEN))
        awq.scale_norm_linears(layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], s(HIDDEN))
        awq.scale_linear_linear(mlp.up_proj, mlp.down_proj, s(FFN))
        if attn.v_proj.weight.shape == attn.o_proj.weight.shape:
            awq.scale_linear_linear(attn.v_proj, attn.o_proj, s(HIDDEN))
        torch.testing.assert_close(plumbing.run_layer(layer, inp), before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [2, 4])
def test_awq_quantize_model_beats_rtn(n_kv_heads, calibration):
    m = tiny_llama(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, VOCAB, (2, 64), generator=torch.Generator().manual_seed(15))
    cfg = AWQConfig(bits=3, group_size=32)

    def kl_to_float(q):
        with torch.no_grad():
            ref, lp = m(ids).logits.log_softmax(-1), q(ids).logits.log_softmax(-1)
        return (ref.exp() * (ref - lp)).sum(-1).mean().item()

    rtn = copy.deepcopy(m)
    with torch.no_grad():
        for layer in rtn.model.layers:
            for lin in plumbing.named_linears(layer).values():
                lin.weight.copy_(awq.awq_pseudo_quantize(lin.weight, 3, 32))
    q = awq.quantize_awq(copy.deepcopy(m), cfg, calibration)
    assert kl_to_float(q) < 0.8 * kl_to_float(rtn)
    # The stored (scaled) weights sit on the 3-bit grid: at most 8 distinct values per row and group.
    w = q.model.layers[1].mlp.down_proj.weight
    assert max(len(torch.unique(w[r, :32])) for r in range(w.shape[0])) <= 8
    torch.testing.assert_close(q.model.embed_tokens.weight, m.model.embed_tokens.weight, rtol=0, atol=0)
    # down_proj 192 -> 96 at 3 bits, g32: 96 * 3 / 32 = 9 int32 words per input row, 6 groups
    expected_down = awq.awq_linear_bytes(FFN, HIDDEN, 3, 32)
    assert expected_down == {"qweight": FFN * 9 * 4, "scales": 6 * HIDDEN * 2, "qzeros": 6 * 9 * 4}
    assert {p: q.checkpoint_bytes_by_tensor[f"model.layers.1.mlp.down_proj.{p}"] for p in expected_down} == (
        expected_down
    )


def test_awq_refuses_models_it_cannot_fold():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32)).eval()
    with pytest.raises(ValueError, match="gpt2"):
        awq.quantize_awq(gpt2, AWQConfig(), [torch.arange(8)])
    with pytest.raises(ValueError, match="model.model.layers"):
        gptq.quantize_gptq(gpt2, GPTQConfig(), [torch.arange(8)])


# ---------------------------------------------------------------- configs and method ids


@pytest.mark.parametrize(
    ("module", "bad"),
    [
        (gptq, None),
        (gptq, [torch.tensor([1.5, 2.0])]),
        (awq, []),
        (awq, [torch.zeros(0, dtype=torch.long)]),
    ],
)
def test_calibration_is_required(module, bad, model):
    quantize, cfg = (gptq.quantize_gptq, GPTQConfig()) if module is gptq else (awq.quantize_awq, AWQConfig())
    with pytest.raises(ValueError, match="calibration"):
        quantize(copy.deepcopy(model), cfg, bad)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GPTQConfig(bits=1), "GPTQ bits 1 must be a whole number from 2 to 8"),
        (lambda: GPTQConfig(bits=9), "GPTQ bits 9 must be a whole number from 2 to 8"),
        (lambda: GPTQConfig(bits=True), "GPTQ bits True must be a whole number"),
        (lambda: GPTQConfig(group_size=0), "GPTQ group_size 0 must be a whole number >= 1"),
        (lambda: GPTQConfig(damp=0), r"GPTQ damp=0: use a fraction in \(0, 1\]"),
        (lambda: GPTQConfig(block_size=0), "GPTQ block_size 0 must be a whole number >= 1"),
        (lambda: AWQConfig(bits=16), "AWQ bits 16 must be a whole number from 2 to 8"),
        (lambda: AWQConfig(group_size=1), "AWQ group_size 1 must be a whole number >= 2"),
        (lambda: AWQConfig(n_grid=0), "AWQ n_grid 0 must be a whole number >= 1"),
    ],
)
def test_bad_configs_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gptq-4b-g128", GPTQConfig()),
        ("gptq-3b-g128-actorder", GPTQConfig(bits=3, act_order=True)),
        ("GPTQ-4b-g32-sym", GPTQConfig(group_size=32, sym=True)),
        ("gptq-4b-g128-damp0.1", GPTQConfig(damp=0.1)),
        ("awq-4b-g128", AWQConfig()),
        ("awq-4b-g64", AWQConfig(group_size=64)),
        ("awq-3b-g128-noclip", AWQConfig(bits=3, clip=False)),
    ],
)
def test_parse_method_ids(text, expected):
    config_cls = GPTQConfig if text.lower().startswith("gptq") else AWQConfig
    assert config_cls.parse(text) == expected
    assert config_cls.parse(expected.method_id) == expected


def test_parse_leaves_other_methods_and_rejects_malformed_ids():
    for text in ("int4-g128", "Q4_K_M", "gguf-Q4_K_M", "fp16"):
        assert GPTQConfig.parse(text) is None and AWQConfig.parse(text) is None
    with pytest.raises(ValueError, match="gptq-4b-g128"):
        GPTQConfig.parse("gptq-4b")
    with pytest.raises(ValueError, match="awq-4b-g128"):
        AWQConfig.parse("awq-4bit")
    with pytest.raises(ValueError, match="bits"):
        GPTQConfig.parse("gptq-16b-g128")


def test_config_properties():
    cfg = GPTQConfig(bits=3, group_size=64, act_order=True, sym=True)
    assert (cfg.method_id, cfg.calculator_format, cfg.family, cfg.needs_calibration) == (
        "gptq-3b-g64-actorder-sym", "gptq-3b-g64-actorder", "gptq", True,
    )  # fmt: skip
    a = AWQConfig(group_size=64)
    assert (a.method_id, a.calculator_format, a.family, a.bits, a.group_size) == (
        "awq-4b-g64", "awq-4b-g64", "awq", 4, 64,
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 8),
    group=st.integers(1, 4096),
    act_order=st.booleans(),
    sym=st.booleans(),
    damp=st.sampled_from([0.01, 0.1, 0.05, 1.0]),
)
def test_gptq_method_id_round_trips(bits, group, act_order, sym, damp):
    cfg = GPTQConfig(bits=bits, group_size=group, act_order=act_order, sym=sym, damp=damp)
    assert GPTQConfig.parse(cfg.method_id) == cfg


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), group=st.integers(2, 4096), zp=st.booleans(), clip=st.booleans(),
       grid=st.integers(1, 40))  # fmt: skip
def test_awq_method_id_round_trips(bits, group, zp, clip, grid):
    cfg = AWQConfig(bits=bits, group_size=group, zero_point=zp, clip=clip, n_grid=grid)
    assert AWQConfig.parse(cfg.method_id) == cfg


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), group=st.sampled_from([8, 32, 64, 96, 128]), seed=st.integers(0, 2**16))
def test_quantization_error_at_most_half_a_step(bits, group, seed):
    # Both RTN quantizers map each weight to the nearest grid point of its group: |w - q| <= scale / 2.
    w = torch.randn(4, 96, generator=torch.Generator().manual_seed(seed))
    for cols in column_groups(96, group):
        g = w[:, cols]
        scale, zero = gptq.minmax_qparams(g, bits, sym=False)
        assert torch.all((g - gptq.fake_quantize(g, scale, zero, bits)).abs() <= scale / 2 + 1e-6)
        awq_scale = (g.amax(1, keepdim=True) - g.amin(1, keepdim=True)) / (2**bits - 1)
        err = (g - awq.awq_pseudo_quantize(g, bits, g.shape[1])).abs()
        # AWQ's zero point is rounded and clamped to [0, 2^b - 1] (llm-awq), so the top of the range may be
        # one more half step off, and a group of one sign only is cut at 0: check groups spanning 0.
        spans_zero = (g.amin(1) < 0) & (g.amax(1) > 0)
        err, awq_scale = err[spans_zero], awq_scale[spans_zero]
        assert torch.all(err <= awq_scale + 1e-6)
        # Without a zero point the grid is symmetric, -2^(b-1) .. 2^(b-1) - 1 steps of amax / (2^(b-1) - 1):
        # +-amax are both on it, so every weight is within half a step.
        sym_scale = g.abs().amax(1, keepdim=True) / (2 ** (bits - 1) - 1)
        sym_err = (g - awq.awq_pseudo_quantize(g, bits, g.shape[1], zero_point=False)).abs()
        assert torch.all(sym_err <= sym_scale / 2 + 1e-6)


# ---------------------------------------------------------------- through the engine's registry


@pytest.mark.parametrize("method", ["gptq-4b-g32", "gptq-3b-g32-actorder", "awq-4b-g32"])
def test_registry_quantizes_a_saved_model_and_bytes_match_the_calculator(tiny_llama_dir, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calculator.memory import weight_memory
    from calculator.models import spec_from_config
    from evaluation.methods import parse_method, quantize_

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(tiny_llama_dir)("To be, or not to be, that is the question.")["input_ids"]
    config = parse_method(method)
    quantize_(model, config, [torch.tensor(ids)])
    measured = sum(model.checkpoint_bytes_by_tensor.values())
    predicted = weight_memory(spec_from_config(model.config.to_dict()), config.calculator_format).total_bytes
    # AutoGPTQ stores g_idx (int32 per input feature) with and without act-order; the calculator's
    # gptq-*b-g* format counts it only with act-order.
    trivial_g_idx = 0
    if config.family == "gptq" and not config.act_order:
        trivial_g_idx = sum(
            4 * lin.in_features for layer in model.model.layers for lin in plumbing.named_linears(layer).values()
        )
    assert measured == predicted + trivial_g_idx
