"""Formats: exact bits and bytes, table-driven over every format, plus hypothesis properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from gguf.constants import GGML_QUANT_SIZES
from hypothesis import given
from hypothesis import strategies as st

from calculator.formats import FORMATS, Family, get_format
from calculator.memory import weight_memory

SEVENTY_B = 70_000_000_000


@pytest.mark.parametrize(
    ("fmt", "expected_bytes"),
    [("fp32", 280_000_000_000), ("fp16", 140_000_000_000), ("bf16", 140_000_000_000),
     ("fp8_e4m3", 70_000_000_000), ("int8", 70_000_000_000), ("int4", 35_000_000_000),
     ("int3", 26_250_000_000), ("int2", 17_500_000_000)],
)
def test_seed_examples_exact(fmt, expected_bytes):
    assert weight_memory(SEVENTY_B, fmt).total_bytes == expected_bytes


def test_seventy_b_fp16_in_gib():
    assert round(weight_memory(SEVENTY_B, "fp16").total_bytes / 2**30, 1) == 130.4


@pytest.mark.parametrize(
    ("fmt", "bits"),
    [("int4-g128", Fraction(4) + Fraction(16, 128)), ("int4-g128-asym", Fraction(4) + Fraction(32, 128)),
     ("int4-g32", Fraction(9, 2)), ("gptq-4b-g128", Fraction(4) + Fraction(20, 128)),
     ("awq-4b-g128", Fraction(4) + Fraction(20, 128)), ("nf4", Fraction(9, 2)),
     ("nf4-dq", Fraction(4) + Fraction(8, 64) + Fraction(32, 64 * 256)), ("mxfp4", Fraction(17, 4)),
     ("nvfp4", Fraction(9, 2)), ("Q4_0", Fraction(9, 2)), ("Q8_0", Fraction(17, 2)),
     ("Q4_K", Fraction(9, 2)), ("Q6_K", Fraction(105, 16)), ("Q2_K", Fraction(21, 8)),
     ("IQ4_XS", Fraction(17, 4)), ("exl2-4.65", Fraction("4.65"))],
)
def test_nominal_bits_per_weight(fmt, bits):
    assert get_format(fmt).bits_per_weight() == bits


def test_nf4_double_quant_is_about_4_127_bits():
    assert round(float(get_format("nf4-dq").bits_per_weight()), 3) == 4.127


def test_gguf_types_come_from_gguf_table():
    gguf_formats = {f.name: f for f in FORMATS.values() if f.family is Family.GGUF}
    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        if qtype.name in gguf_formats:
            assert (gguf_formats[qtype.name].block_size, gguf_formats[qtype.name].block_bytes) == (block, size)
    assert {"Q4_0", "Q4_K", "IQ2_XXS", "TQ1_0", "MXFP4", "BF16", "F16", "F32"} <= set(gguf_formats)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_sizes_a_real_tensor(name):
    fmt = FORMATS[name]
    shape = (4096, 4096)  # divisible by every block and group size we list
    n_bytes = fmt.tensor_bytes(shape)
    assert n_bytes > 0
    # Exact: the bytes of a divisible tensor equal nominal bits (+ per-tensor/column extras), rounded up once.
    extra = fmt.tensor_bits + fmt.column_bits * shape[-1]
    if fmt.group_size == 0:  # per-channel: one scale (+ zero) per row; nominal bits leave it out
        extra += shape[0] * fmt.group_bits
    assert n_bytes * 8 - (fmt.bits_per_weight() * 4096 * 4096 + extra) < 8
    assert get_format(name) is fmt


def test_gptq_layout_matches_checkpoint_tensors():
    # AutoGPTQ for a 4096x4096 Linear at 4 bits, group 128: qweight int32 [in*4/32, out],
    # qzeros int32 [in/128, out*4/32], scales fp16 [in/128, out], g_idx int32 [in] (act-order).
    out_f, in_f, g = 4096, 4096, 128
    qweight = in_f * 4 // 32 * out_f * 4
    qzeros = in_f // g * out_f * 4 // 32 * 4
    scales, g_idx = in_f // g * out_f * 2, in_f * 4
    assert get_format("gptq-4b-g128").tensor_bytes((out_f, in_f)) == qweight + qzeros + scales
    assert get_format("gptq-4b-g128-actorder").tensor_bytes((out_f, in_f)) == qweight + qzeros + scales + g_idx


def test_partial_last_group_still_pays_a_scale():
    # SmolLM2's hidden size 576 = 4.5 groups of 128: five scales per row.
    assert get_format("int4-g128").tensor_bytes((10, 576)) == (10 * 576 * 4 + 10 * 5 * 16) // 8


def test_gguf_rows_must_divide_the_block():
    with pytest.raises(ValueError, match="576 .* not a multiple of the Q4_K block size 256"):
        get_format("Q4_K").tensor_bytes((10, 576))


def test_unknown_format_suggests():
    with pytest.raises(ValueError, match="did you mean"):
        get_format("int4-g12S")
    with pytest.raises(ValueError, match="unknown format 'int5'"):
        get_format("int5")


def test_file_type_is_not_a_tensor_format():
    with pytest.raises(ValueError, match="GGUF file type"):
        get_format("Q4_K_M")


def test_custom_group_and_exl2():
    assert get_format("int3-g96").bits_per_weight() == 3 + Fraction(16, 96)
    assert get_format("exl2-3.25").bits_per_weight() == Fraction("3.25")
    with pytest.raises(ValueError, match="EXL2"):
        get_format("exl2-9.0")


_GROUP_FAMILY = st.sampled_from(["", "-asym"])


@given(b=st.integers(2, 7), g=st.sampled_from([32, 64, 128, 256]), tag=_GROUP_FAMILY,
       rows=st.integers(1, 64), cols=st.integers(1, 2048))
def test_more_bits_never_fewer_bytes(b, g, tag, rows, cols):
    lo, hi = get_format(f"int{b}-g{g}{tag}"), get_format(f"int{b + 1}-g{g}{tag}")
    assert hi.tensor_bytes((rows, cols)) >= lo.tensor_bytes((rows, cols))


@given(b=st.integers(2, 8), small=st.sampled_from([32, 64, 128]), rows=st.integers(1, 64),
       blocks=st.integers(1, 16))
def test_group_overhead_shrinks_with_group_size(b, small, rows, blocks):
    cols = 256 * blocks
    assert get_format(f"int{b}-g{small * 2}").tensor_bytes((rows, cols)) <= get_format(
        f"int{b}-g{small}").tensor_bytes((rows, cols))


@given(n=st.integers(1, 10**13), k=st.integers(1, 50), name=st.sampled_from(sorted(FORMATS)))
def test_bytes_linear_in_params(n, k, name):
    fmt = FORMATS[name]
    one, many = fmt.params_bytes(n), fmt.params_bytes(n * k)
    # Linear up to the single final round-up.
    assert k * one - k < many <= k * one
