"""Weight memory of real model specs: which tensors each format touches, exact bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from calculator.formats import get_format
from calculator.memory import weight_memory
from calculator.models import spec_from_config
from tests.calculator.test_models import LLAMA2_7B, QWEN25_05B


def test_fp16_is_two_bytes_per_param():
    spec = spec_from_config(LLAMA2_7B)
    assert weight_memory(spec, "fp16").total_bytes == 2 * 6_738_415_616


def test_gptq_keeps_embeddings_and_head_fp16():
    spec = spec_from_config(QWEN25_05B)
    mem = weight_memory(spec, "gptq-4b-g128")
    types = {t.name: t.type_name for t in mem.tensors}
    assert types["token_embd.weight"] == "fp16"
    assert types["blk.0.attn_q.weight"] == "gptq-4b-g128"
    assert types["blk.0.attn_q.bias"] == "fp16"
    # Qwen2.5-0.5B's tied embedding is 28% of its parameters: GPTQ 4-bit is far above params/2.
    assert mem.total_bytes > 0.4 * spec.total_params


def test_int4_quantizes_everything_matrix_shaped():
    spec = spec_from_config(LLAMA2_7B)
    mem = weight_memory(spec, "int4")
    norms = sum(t.numel for t in spec.tensors if len(t.shape) == 1)
    assert mem.total_bytes == (spec.total_params - norms) // 2 + 2 * norms


def test_group_format_bytes_per_tensor():
    spec = spec_from_config(LLAMA2_7B)
    mem = weight_memory(spec, "int4-g128")
    q = next(t for t in mem.tensors if t.name == "blk.0.attn_q.weight")
    assert q.bytes == 4096 * 4096 // 2 + 4096 * 32 * 2


@given(fmt=st.sampled_from(["fp16", "int8", "int4-g64", "nf4", "Q8_0", "awq-4b-g128"]),
       n=st.integers(10**6, 10**12))
def test_params_only_matches_nominal(fmt, n):
    f = get_format(fmt)
    assert weight_memory(n, fmt).total_bytes == f.params_bytes(n)
