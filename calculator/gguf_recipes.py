"""GGUF file types (Q4_K_M, IQ2_XS, ...) as per-tensor recipes, replayed from llama.cpp's quantizer.

A *tensor type* (``Q4_K``: super-blocks of 256 weights in 144 bytes) says how one tensor is stored;
see ``calculator.formats`` and ``gguf.GGML_QUANT_SIZES``. A *file type* (``Q4_K_M``) is a recipe:
``llama-quantize`` picks a tensor type for every tensor from its name, its layer, the row length and the
model's hyper-parameters (GQA ratio, expert count, "70B"). This module replays that choice over a
model's real tensor list and sums the exact bytes of the tensor data.

Followed: ggml-org/llama.cpp@007dbbf3fd17eefe9b47fee45f48f7ba5e62b714 ``src/llama-quant.cpp``:
``tensor_get_category``, ``tensor_allows_quantization``, ``llama_tensor_get_type``,
``llama_tensor_get_type_impl``, ``tensor_type_fallback``, ``tensor_requires_imatrix``,
``llama_ftype_get_default_type``, ``init_quantize_state_counters`` and ``llama_model_quantize_impl``
(the ``--dry-run`` size: ``nrows * ggml_row_size(type, ne0)`` per tensor, bpw = bytes * 8 / elements).
Tensor order (which matters for the ``i_attention_wv`` / ``i_ffn_down`` counters): llama.cpp
``src/llama-model-loader.h`` ``weight_name_comparer`` (non-block tensors first, then by block, then by
name). ``LLM_TYPE_70B``: ``load_arch_hparams`` in ``src/models/{llama,qwen2,deci,olmo,jais2}.cpp``.
Block sizes and bytes: ``gguf.GGML_QUANT_SIZES``; file-type ids: ``gguf.LlamaFileType`` (gguf 0.19).

Input assumed: the F16 GGUF that ``convert_hf_to_gguf.py`` writes (as in llama.cpp
``tools/quantize/README.md``), where 1-D tensors, norms, biases and router weights are F32
(``conversion/base.py`` ``ModelBase.prepare_tensors``, as bundled with llama-cpp-python 0.3.36) and
every other tensor is F16. Not replayed: the
``--pure``, ``--tensor-type``, ``--output-tensor-type``, ``--token-embedding-type`` and
``--leave-output-tensor`` overrides, and architecture rules for archs quantfit does not model
(BailingMoE3 MXFP4 experts).

``tensor_data_bytes`` is tensor data only: the GGUF header, the metadata (tokenizer included) and the
zero padding that aligns each tensor to ``gguf.GGUF_DEFAULT_ALIGNMENT`` (32) bytes are not in it;
``padded_tensor_data_bytes`` adds the padding.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, LlamaFileType

from calculator.units import ceil_div

if TYPE_CHECKING:
    from calculator.models import ModelSpec

__all__ = ["FILE_TYPES", "LLAMA_CPP_COMMIT", "SOURCE", "Fallback", "FileType", "GGUFFile",
           "describe_file_type", "get_file_type", "gguf_file"]

LLAMA_CPP_COMMIT = "007dbbf3fd17eefe9b47fee45f48f7ba5e62b714"
SOURCE = f"ggml-org/llama.cpp@{LLAMA_CPP_COMMIT} src/llama-quant.cpp (llama_tensor_get_type_impl)"

T = GGMLQuantizationType  # short aliases: the rules below read like llama-quant.cpp's
FT = LlamaFileType


# --- file types ----------------------------------------------------------------------------------

_DEFAULT_TYPE: dict[LlamaFileType, GGMLQuantizationType] = {
    # llama-quant.cpp llama_ftype_get_default_type: the tensor type "most" tensors get.
    FT.ALL_F32: T.F32, FT.MOSTLY_F16: T.F16, FT.MOSTLY_BF16: T.BF16,
    FT.MOSTLY_Q4_0: T.Q4_0, FT.MOSTLY_Q4_1: T.Q4_1, FT.MOSTLY_Q5_0: T.Q5_0, FT.MOSTLY_Q5_1: T.Q5_1,
    FT.MOSTLY_Q8_0: T.Q8_0, FT.MOSTLY_Q1_0: T.Q1_0,
    FT.MOSTLY_MXFP4_MOE: T.MXFP4, FT.MOSTLY_NVFP4: T.NVFP4,
    FT.MOSTLY_Q2_K_S: T.Q2_K, FT.MOSTLY_Q2_K: T.Q2_K,
    FT.MOSTLY_Q3_K_S: T.Q3_K, FT.MOSTLY_Q3_K_M: T.Q3_K, FT.MOSTLY_Q3_K_L: T.Q3_K,
    FT.MOSTLY_Q4_K_S: T.Q4_K, FT.MOSTLY_Q4_K_M: T.Q4_K,
    FT.MOSTLY_Q5_K_S: T.Q5_K, FT.MOSTLY_Q5_K_M: T.Q5_K,
    FT.MOSTLY_Q6_K: T.Q6_K,
    FT.MOSTLY_TQ1_0: T.TQ1_0, FT.MOSTLY_TQ2_0: T.TQ2_0,
    FT.MOSTLY_IQ2_XXS: T.IQ2_XXS, FT.MOSTLY_IQ2_XS: T.IQ2_XS,
    FT.MOSTLY_IQ2_S: T.IQ2_XS,  # sic: IQ2_S files are mostly IQ2_XS tensors
    FT.MOSTLY_IQ2_M: T.IQ2_S,
    FT.MOSTLY_IQ3_XXS: T.IQ3_XXS, FT.MOSTLY_IQ3_XS: T.IQ3_S,
    FT.MOSTLY_IQ3_S: T.IQ3_S, FT.MOSTLY_IQ3_M: T.IQ3_S,
    FT.MOSTLY_IQ1_S: T.IQ1_S, FT.MOSTLY_IQ1_M: T.IQ1_M,
    FT.MOSTLY_IQ4_NL: T.IQ4_NL, FT.MOSTLY_IQ4_XS: T.IQ4_XS,
}

# One line per file type for the Formats page, read off llama_tensor_get_type_impl for a dense,
# non-Falcon model. Every quantized file also keeps 1-D tensors (norms, biases) F32; models with 8
# experts (Mixtral) get attn_v and attn_k Q8_0, and attn_output Q5_K in the <= 4-bit k- and i-quants.
_SUMMARY: dict[str, str] = {
    "F32": "F32 for every tensor",
    "F16": "F16 for every weight matrix",
    "BF16": "BF16 for every weight matrix",
    "Q8_0": "Q8_0 for every weight matrix, output included",
    "Q4_0": "Q4_0 for most tensors; output Q6_K (with an imatrix: first 1/8 of ffn_down Q4_1)",
    "Q4_1": "Q4_1 for most tensors; output Q6_K",
    "Q5_0": "Q5_0 for most tensors; output Q6_K (with an imatrix: first 1/8 of ffn_down Q5_1)",
    "Q5_1": "Q5_1 for most tensors; output Q6_K",
    "Q2_K": "Q2_K for most tensors; ffn_down, attn_output and attn_v Q3_K (attn_v Q4_K when "
            "n_head/n_head_kv >= 4); output Q6_K",
    "Q2_K_S": "Q2_K for most tensors; first 1/8 of ffn_down Q4_K, attn_v Q4_K when n_head/n_head_kv >= 4; "
              "output Q6_K; needs an imatrix",
    "Q3_K_S": "Q3_K for most tensors; output Q6_K",
    "Q3_K_M": "Q3_K for most tensors; attn_v Q5_K in the first 2 layers then Q4_K; attn_output Q4_K; "
              "ffn_down Q5_K in the first 1/16 of layers then Q4_K; output Q6_K",
    "Q3_K_L": "Q3_K for most tensors; attn_v, attn_output and ffn_down Q5_K; output Q6_K",
    "Q4_K_S": "Q4_K for most tensors; attn_v in the first 4 layers and ffn_down in the first 1/8 of layers "
              "Q5_K; output Q6_K",
    "Q4_K_M": "Q4_K for most tensors; Q6_K for half of attn_v and ffn_down (first and last 1/8 of layers "
              "and every third between); output Q6_K",
    "Q5_K_S": "Q5_K for most tensors; output Q6_K",
    "Q5_K_M": "Q5_K for most tensors; Q6_K for half of attn_v and ffn_down (first and last 1/8 of layers "
              "and every third between); output Q6_K",
    "Q6_K": "Q6_K for every weight matrix, output included",
    "IQ1_S": "IQ1_S for most tensors; attn_output IQ2_XXS; attn_v and first 1/8 of ffn_down Q2_K (attn_v "
             "Q4_K when n_head/n_head_kv >= 4 or >= 4 experts); token_embd Q2_K; output Q5_K; "
             "needs an imatrix",
    "IQ1_M": "IQ1_M for most tensors; attn_output IQ2_XXS; attn_v and first 1/8 of ffn_down Q2_K (attn_v "
             "Q4_K when n_head/n_head_kv >= 4 or >= 4 experts); token_embd Q2_K; output Q5_K; "
             "needs an imatrix",
    "IQ2_XXS": "IQ2_XXS for most tensors; attn_v and first 1/8 of ffn_down Q2_K (attn_v Q4_K when "
               "n_head/n_head_kv >= 4 or >= 4 experts); token_embd Q2_K; output Q5_K; needs an imatrix",
    "IQ2_XS": "IQ2_XS for most tensors; attn_v and first 1/8 of ffn_down Q2_K (attn_v Q4_K when "
              "n_head/n_head_kv >= 4 or >= 4 experts); token_embd Q2_K; output Q5_K; needs an imatrix",
    "IQ2_S": "IQ2_XS for most tensors; attn_output, attn_v and first 1/8 of ffn_down IQ3_S (attn_v Q4_K "
             "when n_head/n_head_kv >= 4 or >= 4 experts); token_embd IQ3_S; output Q5_K; needs an imatrix",
    "IQ2_M": "IQ2_S for most tensors; attn_output, attn_v and first 1/8 of ffn_down IQ3_S (attn_v Q4_K "
             "when n_head/n_head_kv >= 4 or >= 4 experts); token_embd IQ3_S; output Q5_K; needs an imatrix",
    "IQ3_XXS": "IQ3_XXS for most tensors; attn_q and attn_k IQ2_S; attn_output IQ3_S; attn_v Q4_K when "
               "n_head/n_head_kv >= 4; token_embd IQ3_S; output Q5_K; needs an imatrix",
    "IQ3_XS": "IQ3_S for most tensors; attn_q, attn_k and the middle 3/4 of ffn_gate/ffn_up IQ3_XXS; "
              "attn_v Q4_K when n_head/n_head_kv >= 4; output Q6_K; needs an imatrix",
    "IQ3_S": "IQ3_S for most tensors; attn_v Q4_K when n_head/n_head_kv >= 4; output Q6_K",
    "IQ3_M": "IQ3_S for most tensors; attn_v, attn_output and first 1/8 of ffn_down Q4_K; output Q6_K",
    "IQ4_NL": "IQ4_NL for most tensors; attn_v Q5_K when n_head/n_head_kv >= 4; output Q6_K (without an "
              "imatrix: first 1/8 of ffn_down Q5_K)",
    "IQ4_XS": "IQ4_XS for most tensors; attn_v Q5_K when n_head/n_head_kv >= 4; output Q6_K (without an "
              "imatrix: first 1/8 of ffn_down Q5_K)",
    "TQ1_0": "TQ1_0 (ternary) for most tensors; token_embd Q4_K; output Q6_K",
    "TQ2_0": "TQ2_0 (ternary) for most tensors; token_embd Q4_K; output Q6_K",
    "MXFP4_MOE": "MXFP4 for the 3-D expert tensors (ffn_*_exps); Q8_0 for everything else, output included",
    "NVFP4": "NVFP4 for most tensors; output Q6_K",
    "Q1_0": "Q1_0 for most tensors; output Q6_K",
}


def _file_type_name(ftype: LlamaFileType) -> str:
    """``MOSTLY_Q4_K_M`` -> ``Q4_K_M``, ``ALL_F32`` -> ``F32`` (llama-quantize's names)."""
    return ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")


@dataclass(frozen=True)
class FileType:
    """A llama.cpp file type: its ``general.file_type`` id and the tensor type most tensors get."""

    name: str
    ftype: LlamaFileType
    default_type: GGMLQuantizationType
    summary: str


FILE_TYPES: dict[str, FileType] = {
    _file_type_name(ft): FileType(_file_type_name(ft), ft, default, _SUMMARY[_file_type_name(ft)])
    for ft, default in _DEFAULT_TYPE.items()
}
# Cross-checks: every file type gguf knows (bar GUESSED) has a default type and a summary, and every
# default type has its block layout in GGML_QUANT_SIZES. llama.cpp's newer Q2_0 is absent from gguf 0.19.
assert set(_DEFAULT_TYPE) == set(FT) - {FT.GUESSED}, set(FT) ^ set(_DEFAULT_TYPE)
assert set(_SUMMARY) == set(FILE_TYPES), set(_SUMMARY) ^ set(FILE_TYPES)
assert all(t in GGML_QUANT_SIZES for t in _DEFAULT_TYPE.values())


def get_file_type(name: str) -> FileType:
    """Look up a file type by llama-quantize's name, case-insensitively (it upper-cases its argument)."""
    key = str(name).strip().upper()
    if key in FILE_TYPES:
        return FILE_TYPES[key]
    close = difflib.get_close_matches(key, list(FILE_TYPES), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown GGUF file type {name!r}{hint}; valid file types: {', '.join(FILE_TYPES)}"
    )


def describe_file_type(name: str) -> str:
    """One line for the Formats page, e.g. ``"Q6_K: Q6_K for every weight matrix, output included"``."""
    ft = get_file_type(name)
    return f"{ft.name}: {ft.summary}"


# --- tensor classification (llama-quant.cpp tensor_get_category, tensor_allows_quantization) -------

class _Cat(Enum):
    TOKEN_EMBD = "token_embd"
    ATTENTION_Q = "attn_q"
    ATTENTION_V = "attn_v"
    ATTENTION_K = "attn_k"
    ATTENTION_QKV = "attn_qkv"
    ATTENTION_KV_B = "attn_kv_b"
    ATTENTION_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


@functools.lru_cache(maxsize=16384)  # names repeat across file types: a best-format search replays ~30
def _category(name: str) -> _Cat:
    """First match wins, in tensor_get_category's order (``ffn_gate_exps`` is FFN_GATE, etc.)."""
    if name == "output.weight":
        return _Cat.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return _Cat.TOKEN_EMBD
    for needle, cat in (("attn_qkv.weight", _Cat.ATTENTION_QKV), ("attn_kv_b.weight", _Cat.ATTENTION_KV_B),
                        ("attn_v.weight", _Cat.ATTENTION_V), ("attn_k.weight", _Cat.ATTENTION_K),
                        ("attn_q.weight", _Cat.ATTENTION_Q), ("attn_output.weight", _Cat.ATTENTION_OUTPUT),
                        ("ffn_up", _Cat.FFN_UP), ("ffn_gate", _Cat.FFN_GATE), ("ffn_down", _Cat.FFN_DOWN)):
        if needle in name:
            return cat
    return _Cat.OTHER


_ATTN_V_LIKE = (_Cat.ATTENTION_V, _Cat.ATTENTION_QKV, _Cat.ATTENTION_KV_B)  # category_is_attn_v

# Substrings that tensor_allows_quantization refuses (small or precision-critical tensors).
_NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
_NEVER_QUANTIZED_EXACT = ("position_embd.weight", "token_types.weight")  # LLM_TN POS_EMBD, TOKEN_TYPES

# convert_hf_to_gguf.py (conversion/base.py prepare_tensors) writes these F32 whatever --outtype says.
_CONVERTED_F32 = ("ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight", "position_embd.weight",
                  "token_types.weight", "ssm_conv1d", "shortconv.conv", "time_mix_first", "time_mix_w1",
                  "time_mix_w2", "time_mix_decay_w1", "time_mix_decay_w2", "time_mix_lerp_fused")


# One alternation each instead of ~35 substring tests per name ("any of these substrings occurs").
_NEVER_QUANTIZED_RE = re.compile("|".join(map(re.escape, _NEVER_QUANTIZED)))
_CONVERTED_F32_RE = re.compile("|".join(map(re.escape, _CONVERTED_F32)))


def _ne(shape: tuple[int, ...]) -> tuple[int, ...]:
    """PyTorch shape -> ggml ``ne`` (innermost first): (n_expert, out, in) -> (in, out, n_expert)."""
    return tuple(reversed(shape)) or (1,)


def _ggml_n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: trailing ``ne`` of 1 do not count, so a (1, 576) weight is 1-D."""
    ne = _ne(shape)
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


@functools.lru_cache(maxsize=16384)
def _allows_quantization(name: str, shape: tuple[int, ...]) -> bool:
    if _ggml_n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name in _NEVER_QUANTIZED_EXACT:
        return False
    return _NEVER_QUANTIZED_RE.search(name) is None


@functools.lru_cache(maxsize=16384)
def _source_type(name: str, shape: tuple[int, ...]) -> GGMLQuantizationType:
    """Type of the tensor in the F16 GGUF that convert_hf_to_gguf.py writes (llama-quantize's input)."""
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return T.F32
    if _CONVERTED_F32_RE.search(name):
        return T.F32
    return T.F16


_NOT_QUANTIZED = frozenset((T.F32, T.F16, T.BF16, T.F64, T.I8, T.I16, T.I32, T.I64))


def _is_quantized(t: GGMLQuantizationType) -> bool:
    """ggml_is_quantized: block types; the float and integer types are not."""
    return t not in _NOT_QUANTIZED


def _block(t: GGMLQuantizationType) -> int:
    return GGML_QUANT_SIZES[t][0]


_BLOCK_RE = re.compile(r"blk\.([+-]?\d+)\.")


def _block_layer(name: str) -> int:
    """``sscanf(name, "blk.%d.")``: the block index, -1 for tensors outside the blocks."""
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else -1


# --- model facts llama-quant.cpp reads ------------------------------------------------------------

# Hugging Face model_type -> llama.cpp architecture, only where a rule depends on the architecture.
_LLAMA_ARCH = {"llama", "mistral", "mixtral"}  # convert_hf_to_gguf.py: LlamaModel for all three
_FALCON_ARCH = {"falcon", "refinedweb", "refinedwebmodel"}
# load_arch_hparams: LLM_TYPE_70B for qwen2/deci/olmo at 80 layers, jais2 at 68, and llama at 80 layers
# with GQA (80 layers without GQA is LLM_TYPE_65B; 8 experts is 8x7B/8x22B).
_TYPE_70B_LAYERS = {"qwen2": 80, "nemotron-nas": 80, "deci": 80, "olmo": 80, "jais2": 68}


@dataclass(frozen=True)
class _Model:
    arch: str
    n_layer: int
    n_gqa: int
    n_expert: int
    is_70b: bool
    has_tied_embeddings: bool


def _model_facts(spec: ModelSpec) -> _Model:
    arch = spec.arch.lower()
    n_expert = int(spec.n_experts or 0)
    # llama_hparams::n_gqa(il=0) = n_head / n_head_kv (integer division; 0 when n_head_kv is 0)
    n_gqa = spec.n_heads // spec.n_kv_heads if spec.n_kv_heads else 0
    if arch in _LLAMA_ARCH:
        is_70b = n_expert != 8 and spec.n_layers == 80 and spec.n_heads != spec.n_kv_heads
    else:
        is_70b = _TYPE_70B_LAYERS.get(arch) == spec.n_layers
    # init_quantize_state_counters: tied until an output.weight is seen
    tied = not any(t.name == "output.weight" for t in spec.tensors)
    return _Model(arch, spec.n_layers, n_gqa, n_expert, is_70b, tied)


# --- the recipe -----------------------------------------------------------------------------------

def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    """First and last eighth of the layers, and every third layer between (llama-quant.cpp)."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


# quantize_state_impl's counters, by index: i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up.
_WV, _DOWN, _GATE, _UP = range(4)


@dataclass
class _State:
    """quantize_state_impl: the counters llama-quantize has advanced when it reaches one tensor.

    llama-quantize adds one to a category's counter each time its rule sees a tensor of that category, so
    the counter is the tensor's index among the quantized tensors of its category in file order:
    ``_plan`` computes it once per model and ``_replay`` sets ``counters`` before each rule call (the
    increments of llama_tensor_get_type_impl are therefore not written below). ``read`` records whether
    the rule looked at a counter or a block index, i.e. whether its answer may differ from layer to layer.
    """

    model: _Model
    has_imatrix: bool
    n_attention_wv: int
    n_ffn_down: int
    counters: tuple[int, int, int, int] = (0, 0, 0, 0)
    read: bool = False

    def count(self, which: int) -> int:
        self.read = True
        return self.counters[which]


_IQ2_FAMILY = (FT.MOSTLY_IQ2_XXS, FT.MOSTLY_IQ2_XS, FT.MOSTLY_IQ1_S, FT.MOSTLY_IQ2_S, FT.MOSTLY_IQ2_M,
               FT.MOSTLY_IQ1_M)
_OUTPUT_Q5_K = _IQ2_FAMILY + (FT.MOSTLY_IQ3_XXS,)
_MOE8_ATTN_OUTPUT_Q5_K = (FT.MOSTLY_Q2_K, FT.MOSTLY_IQ3_XS, FT.MOSTLY_IQ3_XXS, FT.MOSTLY_Q3_K_S,
                          FT.MOSTLY_Q3_K_M, FT.MOSTLY_IQ4_NL, FT.MOSTLY_Q4_K_S, FT.MOSTLY_Q4_K_M,
                          FT.MOSTLY_IQ3_S, FT.MOSTLY_IQ3_M, FT.MOSTLY_IQ4_XS)


def _layer_info(qs: _State, which: int, name: str) -> tuple[int, int]:
    """layer_info: with experts the layer comes from the name (Mixtral's experts are not in order)."""
    qs.read = True
    if max(1, qs.model.n_expert) > 1:
        i_layer = _block_layer(name)
        if not 0 <= i_layer < qs.model.n_layer:
            raise ValueError(f"tensor {name}: cannot tell its layer in [0, {qs.model.n_layer}) "
                             "(llama-quantize needs blk.N. names for MoE models)")
        return i_layer, qs.model.n_layer
    return qs.counters[which], qs.n_ffn_down


def _impl(qs: _State, new_type: T, name: str, ne: tuple[int, ...], ftype: FT, cat: _Cat) -> T:
    """llama_tensor_get_type_impl, branch for branch (the if/else-if order is the rule)."""
    m = qs.model
    falcon = m.arch in _FALCON_ARCH

    if cat is _Cat.OUTPUT or (m.has_tied_embeddings and cat is _Cat.TOKEN_EMBD):
        # tied embeddings: token_embd doubles as the output matrix, so it gets the output rule
        if ftype is FT.MOSTLY_MXFP4_MOE:
            return T.Q8_0
        if falcon or ne[0] % _block(new_type) != 0:
            return T.Q8_0
        if ftype in _OUTPUT_Q5_K:
            return T.Q5_K
        return T.Q6_K if new_type is not T.Q8_0 else new_type

    if ftype is FT.MOSTLY_MXFP4_MOE:
        # experts (3-D) -> MXFP4, everything else -> Q8_0
        return T.MXFP4 if len(ne) > 2 and ne[2] > 1 else T.Q8_0

    if cat is _Cat.TOKEN_EMBD:
        if ftype in (FT.MOSTLY_IQ2_XXS, FT.MOSTLY_IQ2_XS, FT.MOSTLY_IQ1_S, FT.MOSTLY_IQ1_M):
            return T.Q2_K
        if ftype in (FT.MOSTLY_IQ2_S, FT.MOSTLY_IQ2_M, FT.MOSTLY_IQ3_XXS):
            return T.IQ3_S
        if ftype in (FT.MOSTLY_TQ1_0, FT.MOSTLY_TQ2_0):
            return T.Q4_K
        return new_type

    if ftype in _IQ2_FAMILY:
        iq2_s_or_m = ftype in (FT.MOSTLY_IQ2_S, FT.MOSTLY_IQ2_M)
        if cat in _ATTN_V_LIKE:
            if m.n_gqa >= 4 or m.n_expert >= 4:
                new_type = T.Q4_K
            else:
                new_type = T.IQ3_S if iq2_s_or_m else T.Q2_K
        elif m.n_expert == 8 and cat is _Cat.ATTENTION_K:
            new_type = T.Q4_K
        elif cat is _Cat.FFN_DOWN:
            if qs.count(_DOWN) < qs.n_ffn_down // 8:
                new_type = T.IQ3_S if iq2_s_or_m else T.Q2_K
        elif cat is _Cat.ATTENTION_OUTPUT:
            if m.n_expert == 8:
                new_type = T.Q5_K
            elif ftype in (FT.MOSTLY_IQ1_S, FT.MOSTLY_IQ1_M):
                new_type = T.IQ2_XXS
            elif iq2_s_or_m:
                new_type = T.IQ3_S
        return new_type

    if cat in _ATTN_V_LIKE:
        if ftype is FT.MOSTLY_Q2_K:
            new_type = T.Q4_K if m.n_gqa >= 4 else T.Q3_K
        elif ftype is FT.MOSTLY_Q2_K_S and m.n_gqa >= 4:
            new_type = T.Q4_K
        elif ftype is FT.MOSTLY_IQ3_XXS:
            new_type = T.Q4_K if m.n_gqa >= 4 else (T.IQ3_XXS if qs.has_imatrix else T.IQ3_S)
        elif ftype in (FT.MOSTLY_IQ3_XS, FT.MOSTLY_IQ3_S) and m.n_gqa >= 4:
            new_type = T.Q4_K
        elif ftype is FT.MOSTLY_IQ3_M:
            new_type = T.Q4_K
        elif ftype is FT.MOSTLY_Q3_K_M:
            new_type = T.Q5_K if qs.count(_WV) < 2 else T.Q4_K
        elif ftype is FT.MOSTLY_Q3_K_L:
            new_type = T.Q5_K
        elif ftype in (FT.MOSTLY_IQ4_NL, FT.MOSTLY_IQ4_XS) and m.n_gqa >= 4:
            new_type = T.Q5_K
        elif ftype in (FT.MOSTLY_Q4_K_M, FT.MOSTLY_Q5_K_M) and _use_more_bits(qs.count(_WV),
                                                                               qs.n_attention_wv):
            new_type = T.Q6_K
        elif ftype is FT.MOSTLY_Q4_K_S and qs.count(_WV) < 4:
            new_type = T.Q5_K
        if m.is_70b and new_type in (T.Q3_K, T.Q4_K):
            # 70B: 8 heads share each attn_v row, so more bits there cost little
            new_type = T.Q5_K
        if m.n_expert == 8:
            new_type = T.Q8_0
        return new_type

    if cat is _Cat.ATTENTION_K:
        if m.n_expert == 8:
            return T.Q8_0
        if ftype is FT.MOSTLY_IQ3_XS:
            return T.IQ3_XXS
        if ftype is FT.MOSTLY_IQ3_XXS:
            return T.IQ2_S
        return new_type

    if cat is _Cat.ATTENTION_Q:
        if ftype is FT.MOSTLY_IQ3_XS:
            return T.IQ3_XXS
        if ftype is FT.MOSTLY_IQ3_XXS:
            return T.IQ2_S
        return new_type

    if cat is _Cat.FFN_DOWN:
        i_layer, n_layer = _layer_info(qs, _DOWN, name)
        if ftype is FT.MOSTLY_Q2_K:
            new_type = T.Q3_K
        elif ftype is FT.MOSTLY_Q2_K_S:
            if i_layer < n_layer // 8:
                new_type = T.Q4_K
        elif ftype is FT.MOSTLY_IQ3_XXS and not qs.has_imatrix:
            new_type = T.Q4_K if i_layer < n_layer // 8 else T.Q3_K
        elif ftype is FT.MOSTLY_Q3_K_M:
            if i_layer < n_layer // 16:
                new_type = T.Q5_K
            elif not falcon or _use_more_bits(i_layer, n_layer):
                new_type = T.Q4_K
            else:
                new_type = T.Q3_K
        elif ftype is FT.MOSTLY_IQ3_M and (i_layer < n_layer // 8
                                           or (m.n_expert == 8 and _use_more_bits(i_layer, n_layer))):
            new_type = T.Q4_K
        elif ftype is FT.MOSTLY_Q3_K_L:
            new_type = T.Q4_K if falcon else T.Q5_K
        elif ftype is FT.MOSTLY_Q4_K_M:
            if falcon:
                new_type = (T.Q6_K if i_layer < n_layer // 16
                            else T.Q5_K if _use_more_bits(i_layer, n_layer) else T.Q4_K)
            elif _use_more_bits(i_layer, n_layer):
                new_type = T.Q6_K
        elif (i_layer < n_layer // 8 and ftype in (FT.MOSTLY_IQ4_NL, FT.MOSTLY_IQ4_XS)
              and not qs.has_imatrix):
            new_type = T.Q5_K
        elif ftype is FT.MOSTLY_Q5_K_M and _use_more_bits(i_layer, n_layer):
            new_type = T.Q6_K
        elif ftype is FT.MOSTLY_Q4_K_S and not falcon and i_layer < n_layer // 8:
            new_type = T.Q5_K
        elif ftype in (FT.MOSTLY_Q4_0, FT.MOSTLY_Q5_0) and qs.has_imatrix and i_layer < n_layer // 8:
            # guard against the first ffn_down layers going wrong, only with an imatrix
            new_type = T.Q4_1 if ftype is FT.MOSTLY_Q4_0 else T.Q5_1
        return new_type

    if cat is _Cat.ATTENTION_OUTPUT:
        if not falcon:
            if m.n_expert == 8:
                if ftype in _MOE8_ATTN_OUTPUT_Q5_K:
                    new_type = T.Q5_K
            else:
                new_type = {FT.MOSTLY_Q2_K: T.Q3_K, FT.MOSTLY_IQ3_XXS: T.IQ3_S, FT.MOSTLY_Q3_K_M: T.Q4_K,
                            FT.MOSTLY_Q3_K_L: T.Q5_K, FT.MOSTLY_IQ3_M: T.Q4_K}.get(ftype, new_type)
        elif ftype is FT.MOSTLY_Q3_K_L:
            new_type = T.Q4_K
        return new_type

    # (An ATTENTION_QKV branch follows in the source, but category_is_attn_v already took attn_qkv.)

    if cat in (_Cat.FFN_GATE, _Cat.FFN_UP):
        # Only IQ3_XS reads the layer here; layer_info runs for every file type of an MoE model all the same,
        # as llama.cpp's does, because it refuses names without a block index.
        if ftype is FT.MOSTLY_IQ3_XS or max(1, m.n_expert) > 1:
            i_layer, n_layer = _layer_info(qs, _GATE if cat is _Cat.FFN_GATE else _UP, name)
            if ftype is FT.MOSTLY_IQ3_XS and n_layer // 8 <= i_layer < 7 * n_layer // 8:
                new_type = T.IQ3_XXS
        return new_type

    return new_type


# tensor_type_fallback: rows whose length is not a multiple of the block size get a type whose block
# fits (256-weight k/i-quants -> a 32-weight type); if that does not fit either, F16.
_FALLBACK: dict[T, T] = {
    T.IQ1_S: T.IQ4_NL, T.IQ1_M: T.IQ4_NL, T.IQ2_XXS: T.IQ4_NL, T.IQ2_XS: T.IQ4_NL, T.IQ2_S: T.IQ4_NL,
    T.IQ3_XXS: T.IQ4_NL, T.IQ3_S: T.IQ4_NL, T.IQ4_XS: T.IQ4_NL,
    T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.TQ1_0: T.Q4_0, T.TQ2_0: T.Q4_0,
    T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
}


def _fallback(name: str, ne0: int, target: T) -> T:
    if ne0 % _block(target) == 0:
        return target
    if target not in _FALLBACK:
        raise ValueError(
            f"tensor {name}: row length {ne0} is not a multiple of the {target.name} block size "
            f"{_block(target)}, and llama.cpp defines no fallback type for {target.name} (llama-quantize "
            "aborts); pick a file type whose blocks divide the row"
        )
    back = _FALLBACK[target]
    return back if ne0 % _block(back) == 0 else T.F16


def _requires_imatrix(name: str, t: T, ftype: FT) -> bool:
    """tensor_requires_imatrix: llama-quantize refuses these without an importance matrix."""
    if name in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight"):
        return False
    if t in (T.IQ3_XXS, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_M, T.IQ1_S):
        return True
    return t is T.Q2_K and ftype is FT.MOSTLY_Q2_K_S


def _tensor_bytes(name: str, shape: tuple[int, ...], t: T) -> int:
    """``nrows * ggml_row_size(t, ne0)``: whole blocks per row, bytes per block from GGML_QUANT_SIZES."""
    block, type_size = GGML_QUANT_SIZES[t]
    ne0 = _ne(shape)[0]
    if ne0 % block:
        raise ValueError(
            f"tensor {name}: row length {ne0} is not a multiple of the {t.name} block size {block}"
        )
    n_rows = 1
    for d in shape[:-1]:
        n_rows *= d
    return n_rows * (ne0 // block) * type_size


# --- result ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fallback:
    """A tensor whose row length did not fit the block of the type the recipe wanted."""

    name: str
    row_length: int
    wanted: str
    got: str


@dataclass(frozen=True)
class GGUFFile:
    """The tensor data of a GGUF file as llama-quantize would write it.

    ``tensor_types``: (name, ggml type name, bytes) in the order llama-quantize visits the tensors.
    ``tensor_data_bytes``: exact sum of those bytes (no header, metadata or alignment padding).
    ``bits_per_weight``: ``tensor_data_bytes * 8 / total_params``, the "BPW" llama-quantize prints.
    """

    model: str
    file_type: str
    tensor_types: tuple[tuple[str, str, int], ...]
    tensor_data_bytes: int
    total_params: int
    quantized_params: int
    """Elements stored in a block-quantized type (Q*, IQ*, TQ*, MXFP4, NVFP4)."""
    imatrix: bool
    """Whether the replay assumed an importance matrix (it changes a few IQ3/IQ4/Q4_0/Q5_0 choices)."""
    requires_imatrix: bool
    """llama-quantize refuses to write this file without an importance matrix."""
    fallbacks: tuple[Fallback, ...]
    source: str

    @property
    def bits_per_weight(self) -> Fraction:
        return Fraction(self.tensor_data_bytes * 8, self.total_params)

    @property
    def type_counts(self) -> dict[str, int]:
        """ggml type name -> number of tensors, most common first."""
        return dict(Counter(t for _, t, _ in self.tensor_types).most_common())

    @property
    def bytes_by_type(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for _, t, n in self.tensor_types:
            out[t] += n
        return dict(out.most_common())

    @property
    def padded_tensor_data_bytes(self) -> int:
        """Tensor data as laid out in the file: each tensor padded to GGUF_DEFAULT_ALIGNMENT bytes."""
        a = GGUF_DEFAULT_ALIGNMENT
        return sum(ceil_div(n, a) * a for _, _, n in self.tensor_types)


# --- the replay -----------------------------------------------------------------------------------
#
# Speed (issue 14): the Fit page sizes ~30 file types of one model, and a link may bring a model nobody has
# sized. What depends only on the model is computed once per spec (``_plan``): the file order, each
# tensor's category, quantizability and source type (once per name with its block index taken out: the
# rules' substrings never contain a digit), and the counters llama-quantize holds when it reaches each
# tensor. The tensors llama-quantize may quantize fall into groups of equal (category, ne); a file type
# runs ``_impl`` once per group, and once per tensor only where that call read a counter or a block index
# (attn_v and ffn_down of Q4_K_M, for instance). Llama 3.1 405B at Q4_K_M: 9 groups, 259 rule calls for
# 884 quantizable tensors. Where a rule or a fallback raises, the replay runs again tensor by tensor in
# file order (``_replay_in_order``), so the error names the tensor llama-quantize would stop at.

_COUNTER_GROUP = {_Cat.ATTENTION_V: _WV, _Cat.ATTENTION_QKV: _WV, _Cat.ATTENTION_KV_B: _WV,
                  _Cat.FFN_DOWN: _DOWN, _Cat.FFN_GATE: _GATE, _Cat.FFN_UP: _UP}
"""The _State counter each category advances."""

_OUTPUT_NAMES = frozenset(("token_embd.weight", "per_layer_token_embd.weight", "output.weight"))


class _Entry(NamedTuple):
    """One tensor llama-quantize may quantize, with what ``_impl`` reads besides the file type."""

    position: int
    """Index in the file order."""
    name: str
    counters: tuple[int, int, int, int]
    """(i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up) when llama-quantize reaches this tensor."""
    output_name: bool
    """token_embd/output: never "requires an imatrix" (tensor_requires_imatrix)."""


class _Group(NamedTuple):
    """The quantizable tensors of one (category, ne), in file order: every ``_impl`` input but the counters,
    the block index and the name is the same for them, and so are their bytes in any one type."""

    cat: _Cat
    ne: tuple[int, ...]
    n_rows: int
    entries: list[_Entry]


class _Plan(NamedTuple):
    """Everything of a replay that depends on the model only (see the comment above)."""

    facts: _Model
    names: tuple[str, ...]
    """Tensor names in llama-quantize's order (weight_name_comparer)."""
    fixed: tuple[tuple[int, str, int], ...]
    """(position, source type name, bytes) of the tensors no file type quantizes."""
    groups: tuple[_Group, ...]
    """By first position."""
    n_attention_wv: int
    total_params: int


@functools.lru_cache(maxsize=64)
def _plan(spec: ModelSpec) -> _Plan:
    facts = _model_facts(spec)
    order = []
    for t in spec.tensors:
        m = _BLOCK_RE.match(t.name)
        # a name with its block index taken out ("blk.#.attn_q.weight"): what the name rules read
        order.append((int(m.group(1)), t.name, t.shape, f"blk.#.{t.name[m.end():]}") if m else
                     (-1, t.name, t.shape, t.name))
    # llama_model_loader::weight_name_comparer: non-block tensors (layer -1) first, then by block, then name
    order.sort(key=lambda row: row[:2])
    by_name: dict[tuple[str, tuple[int, ...]], tuple] = {}
    fixed: list[tuple[int, str, int]] = []
    groups: dict[tuple[_Cat, tuple[int, ...]], _Group] = {}
    counters = [0, 0, 0, 0]
    total_params = n_attention_wv = 0
    for position, (_, name, shape, pattern) in enumerate(order):
        facts_of = by_name.get((pattern, shape))
        if facts_of is None:
            numel = 1
            for d in shape:
                numel *= d
            cat = _category(name)
            allowed = _allows_quantization(name, shape)
            source = None if allowed else _source_type(name, shape)
            ne = _ne(shape)
            facts_of = by_name[pattern, shape] = (
                numel, cat, allowed, ne, numel // ne[0] if ne[0] else 0,
                None if allowed else (source.name, _tensor_bytes(name, shape, source)))
        numel, cat, allowed, ne, n_rows, fixed_row = facts_of
        total_params += numel
        n_attention_wv += cat in _ATTN_V_LIKE
        if not allowed:
            fixed.append((position, *fixed_row))
            continue
        group = groups.get((cat, ne))
        if group is None:
            group = groups[cat, ne] = _Group(cat, ne, n_rows, [])
        group.entries.append(_Entry(position, name, tuple(counters), name in _OUTPUT_NAMES))
        which = _COUNTER_GROUP.get(cat)
        if which is not None:
            counters[which] += 1
    return _Plan(facts, tuple(row[1] for row in order), tuple(fixed), tuple(groups.values()), n_attention_wv,
                 total_params)


def _choose(qs: _State, g: _Group, e: _Entry, ft: FileType) -> tuple[T, T]:
    """(the type the recipe wants, the type stored after tensor_type_fallback) for one tensor."""
    qs.counters, qs.read = e.counters, False
    wanted = _impl(qs, ft.default_type, e.name, g.ne, ft.ftype, g.cat)
    return wanted, _fallback(e.name, g.ne[0], wanted)


def _result(spec: ModelSpec, plan: _Plan, ft: FileType, has_imatrix: bool, types: list, sizes: list,
            quantized_params: int, requires_imatrix: bool, fallbacks: list[tuple[int, Fallback]]) -> GGUFFile:
    for position, type_name, n_bytes in plan.fixed:
        types[position], sizes[position] = type_name, n_bytes
    return GGUFFile(
        model=spec.name, file_type=ft.name, tensor_types=tuple(zip(plan.names, types, sizes, strict=True)),
        tensor_data_bytes=sum(sizes), total_params=plan.total_params, quantized_params=quantized_params,
        imatrix=has_imatrix, requires_imatrix=requires_imatrix,
        fallbacks=tuple(f for _, f in sorted(fallbacks, key=lambda pf: pf[0])), source=SOURCE,
    )


def _start(spec: ModelSpec, has_imatrix: bool) -> tuple:
    """(plan, llama.cpp's quantize state, a tensor-type slot and a byte slot per tensor): what both replays
    start from."""
    plan = _plan(spec)
    qs = _State(model=plan.facts, has_imatrix=has_imatrix, n_attention_wv=plan.n_attention_wv,
                n_ffn_down=plan.facts.n_layer)
    n = len(plan.names)
    return plan, qs, [""] * n, [0] * n


def _replay_in_order(spec: ModelSpec, ft: FileType, has_imatrix: bool) -> GGUFFile:
    """llama_model_quantize_impl's loop, one tensor at a time in file order: the reference ``_replay`` is
    checked against, and the path that raises at the tensor llama-quantize would stop at."""
    plan, qs, types, sizes = _start(spec, has_imatrix)
    quantized_params, requires_imatrix, fallbacks = 0, False, []
    visits = sorted((e.position, g, e) for g in plan.groups for e in g.entries)
    for _, g, e in visits:
        new_type = ft.default_type
        if _is_quantized(new_type):
            wanted, new_type = _choose(qs, g, e, ft)
            if new_type is not wanted:
                fallbacks.append((e.position, Fallback(e.name, g.ne[0], wanted.name, new_type.name)))
        requires_imatrix |= _requires_imatrix(e.name, new_type, ft.ftype)
        if _is_quantized(new_type):
            quantized_params += g.n_rows * g.ne[0]
        types[e.position] = new_type.name
        sizes[e.position] = g.n_rows * _tensor_bytes(e.name, (g.ne[0],), new_type)
    return _result(spec, plan, ft, has_imatrix, types, sizes, quantized_params, requires_imatrix, fallbacks)


def _replay(spec: ModelSpec, ft: FileType, has_imatrix: bool) -> GGUFFile:
    """The same answer as ``_replay_in_order``, one rule call per group where the rule reads no counter."""
    plan, qs, types, sizes = _start(spec, has_imatrix)
    quantized_params, requires_imatrix, fallbacks = 0, False, []
    quantized_default = _is_quantized(ft.default_type)
    try:
        for g in plan.groups:
            first = g.entries[0]
            if quantized_default:
                wanted, new_type = _choose(qs, g, first, ft)
                per_tensor = qs.read  # the answer may change from layer to layer: ask for every tensor
            else:
                wanted = new_type = ft.default_type
                per_tensor = False
            chosen = [(e, wanted, new_type) if not per_tensor or e is first else (e, *_choose(qs, g, e, ft))
                      for e in g.entries]
            # type -> (its name, bytes of one tensor, quantized, needs an imatrix unless token_embd/output)
            stored: dict[T, tuple[str, int, bool, bool]] = {}
            for e, wanted, new_type in chosen:
                row = stored.get(new_type)
                if row is None:
                    row = stored[new_type] = (new_type.name, g.n_rows * _tensor_bytes(e.name, (g.ne[0],), new_type),
                                              _is_quantized(new_type), _requires_imatrix("", new_type, ft.ftype))
                types[e.position], sizes[e.position] = row[0], row[1]
                if row[2]:
                    quantized_params += g.n_rows * g.ne[0]
                if row[3] and not e.output_name:
                    requires_imatrix = True
                if new_type is not wanted:
                    fallbacks.append((e.position, Fallback(e.name, g.ne[0], wanted.name, new_type.name)))
    except ValueError:
        return _replay_in_order(spec, ft, has_imatrix)
    return _result(spec, plan, ft, has_imatrix, types, sizes, quantized_params, requires_imatrix, fallbacks)


def gguf_file(spec: ModelSpec, file_type: str, *, imatrix: bool | None = None) -> GGUFFile:
    """Predict the tensor types and exact tensor-data bytes of ``spec`` quantized to ``file_type``.

    ``imatrix``: whether llama-quantize is given an importance matrix. ``None`` (default) assumes one
    exactly when the file type cannot be made without it (IQ1_*, IQ2_*, IQ3_XXS, IQ3_XS, Q2_K_S), as
    published quants of those types are made. Worked example: Llama-3.1-8B (292 tensors, 8,030,261,312
    elements) at Q4_K_M: 193 tensors Q4_K, 33 Q6_K (16 attn_v, 16 ffn_down, output), 66 F32 ->
    4,912,898,304 bytes of tensor data = 4.8944 bits per weight, as llama.cpp tools/quantize/README.md
    publishes.
    """
    ft = get_file_type(file_type)
    if not spec.tensors:
        raise ValueError(
            f"model {spec.name!r} has no tensor list; a GGUF recipe needs the tensor names and shapes"
        )
    if imatrix is None:
        plain = _replay(spec, ft, has_imatrix=False)
        return _replay(spec, ft, has_imatrix=True) if plain.requires_imatrix else plain
    return _replay(spec, ft, has_imatrix=bool(imatrix))
