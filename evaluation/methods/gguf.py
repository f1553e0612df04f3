"""GGUF file types (Q4_K_M, Q8_0, ...) applied to a torch model, by way of a real GGUF file.

Flow: write the model's tensors to a GGUF file under llama.cpp's tensor names (gguf-py's TensorNameMap),
quantize it, read the quantized file back with gguf.GGUFReader and copy each dequantized tensor
(gguf.quants.dequantize) into the model. The quantized file is the measurement: its per-tensor types and
data sizes (`ReaderTensor.n_bytes`) are what a llama.cpp user downloads.

Two quantizers, chosen by `GGUFConfig.backend`:
- llama.cpp (`llama_cpp.llama_model_quantize` from llama-cpp-python): every file type with llama.cpp's own
  per-tensor recipe (llama_tensor_get_type in src/llama-quant.cpp) and shape fallbacks, e.g. Q4_K rows
  whose length is not a multiple of 256 become Q5_0, as `llama-quantize` does. The input file holds F32
  tensors plus the hyper-parameters llama.cpp reads, and a placeholder vocabulary of the model's size
  ("<t0>", "<t1>", ...): llama.cpp is only ever fed token ids, never text.
- gguf-py (the `gguf` package's numpy reference quantizers, bit-exact with ggml's reference code): the
  legacy and float file types F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0. Each tensor's type is the one the
  calculator's replay of llama.cpp's recipe gives (`calculator.gguf_recipes.gguf_file`, the only copy
  of llama.cpp's type choice and fallbacks in quantfit). Where that recipe needs Q6_K (the output
  tensor of a Q4_0 model whose hidden size is a multiple of 256) it raises: gguf-py cannot make K-quants.

Shape fallbacks the recipe takes (a Q4_K row of 576 is not whole 256-blocks: Q5_0) are recorded on the
module that owns the tensor (`module.fallback`), as every other family records its per-tensor fallbacks.

Like `convert_hf_to_gguf.py` (LlamaModel.permute) the llama architecture stores attn_q/attn_k rows
interleaved per head; we permute on write and un-permute on read (as transformers' GGUF loader does).
Quantization is row-wise, so this reordering never changes a value.

Measured bytes: `model.checkpoint_bytes_by_tensor` (``evaluation.storage``) maps each GGUF tensor name to
its data bytes and `model.gguf_tensor_types` to its type name. No importance matrix is used (llama-quantize
without --imatrix). The quantized file stays next to the model (`model.runtime_file`, deleted with the
model) so that ``evaluation.runtime`` can also score it as llama.cpp runs it. Files are written one tensor
at a time (gguf-py's tensor-info-first API), so the F32 copy of the model is never in memory at once.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from torch import nn

from calculator.gguf_recipes import FILE_TYPES, GGUFFile, describe_file_type, get_file_type, gguf_file
from calculator.models import TensorSpec, spec_from_config
from evaluation.methods.base import MethodConfig, MethodFamily, register_method
from evaluation.storage import CHECKPOINT_BYTES_ATTR

TYPES_ATTR = "gguf_tensor_types"
RUNTIME_FILE_ATTR = "runtime_file"
"""Model attribute: the quantized GGUF file, kept until the model is collected (``evaluation.runtime``)."""

# File types whose recipe includes tensor types llama.cpp refuses to make without an importance matrix
# (llama-quant.cpp tensor_requires_imatrix: IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS, and Q2_K in Q2_K_S;
# IQ3_XS sends attn_k and ffn_gate/up to IQ3_XXS).
NEEDS_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"})

# File types gguf-py can write for a dense model: their recipes use only types gguf.quants can quantize,
# except Q6_K for an output tensor whose rows are a multiple of 256 (refused when it happens).
GGUF_PY_FILE_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")
_FLOAT_TYPES = frozenset({T.F32, T.F16, T.BF16})


class GGUFBackend(StrEnum):
    AUTO = "auto"
    """llama.cpp when llama-cpp-python is importable, otherwise gguf-py."""
    LLAMA_CPP = "llama.cpp"
    """llama.cpp's own quantizer: every file type, llama.cpp's exact per-tensor recipe."""
    GGUF_PY = "gguf-py"
    """numpy reference quantizers of the gguf package: legacy and float file types only."""


@dataclass(frozen=True)
class GGUFConfig(MethodConfig):
    """A llama.cpp file type, e.g. GGUFConfig("Q4_K_M"): mostly Q4_K, with Q6_K for half of attn_v and
    ffn_down and for the output tensor (llama.cpp's recipe decides per tensor)."""

    file_type: str = "Q4_K_M"
    backend: GGUFBackend = GGUFBackend.AUTO

    family: ClassVar[str] = MethodFamily.GGUF
    label: ClassVar[str] = "GGUF"
    id_prefix: ClassVar[str] = "gguf-"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"gguf-(?P<file_type>\w+)")
    id_syntax: ClassVar[str] = "gguf-<file type> (gguf-Q4_K_M), or a quantized file type alone (Q4_K_M)"
    examples: ClassVar[tuple[str, ...]] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
    runtime_engine: ClassVar[str] = "llama.cpp"

    def __post_init__(self) -> None:
        # File type names, ids and default tensor types come from the calculator's llama.cpp tables.
        name = get_file_type(str(self.file_type).strip().upper().removeprefix("GGUF-")).name
        if name in NEEDS_IMATRIX:
            raise ValueError(
                f"GGUF file type {name} needs an importance matrix (llama-imatrix), which quantfit does not "
                "pass to llama.cpp; pick IQ3_S, IQ4_XS, Q2_K or a K-quant instead"
            )
        try:
            backend = GGUFBackend(self.backend)
        except ValueError:
            raise ValueError(f"GGUF backend {self.backend!r}: use one of {[b.value for b in GGUFBackend]}") from None
        object.__setattr__(self, "file_type", name)
        object.__setattr__(self, "backend", backend)

    @classmethod
    def parse(cls, text: str) -> GGUFConfig | None:
        """"gguf-Q4_K_M" (any file type) or a bare quantized file type such as "Q4_K_M"; else None.

        Bare F32/F16/BF16 are left to the float baselines; write gguf-F16 for the GGUF float file type.
        """
        name = text.strip().upper()
        if name.startswith("GGUF-"):
            return cls(name)
        if name in FILE_TYPES and FILE_TYPES[name].default_type not in _FLOAT_TYPES:
            return cls(name)
        return None

    @property
    def tensor_type(self) -> T:
        """The file type's default tensor type (Q4_K for Q4_K_M)."""
        return FILE_TYPES[self.file_type].default_type

    @property
    def calculator_format(self) -> str:
        return self.file_type

    @property
    def method_id(self) -> str:
        return f"gguf-{self.file_type}"

    @property
    def description(self) -> str:
        return f"llama.cpp file type {describe_file_type(self.file_type)}"

    @property
    def bits(self) -> int:
        """Nominal bits: whole bits per weight of the default type (Q4_K: 8 * 144 B / 256 = 4.5 -> 4)."""
        block, type_size = gguf.GGML_QUANT_SIZES[self.tensor_type]
        return 8 * type_size // block

    @property
    def group_size(self) -> int:
        """Block length of the default type along a row (32 for Q4_0, 256 for Q4_K, 1 for F16)."""
        return gguf.GGML_QUANT_SIZES[self.tensor_type][0]


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- layout: names, permutation, metadata


# model_type -> (GGUF architecture, whether q/k rows are stored interleaved per head)
_ARCHS = {
    "llama": (gguf.MODEL_ARCH.LLAMA, True),  # convert_hf_to_gguf.py LlamaModel
    "mistral": (gguf.MODEL_ARCH.LLAMA, True),  # MistralModel(LlamaModel): same arch name and permute
    "qwen2": (gguf.MODEL_ARCH.QWEN2, False),  # Qwen2Model: no permute
}


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order -> GGUF interleaved (convert_hf_to_gguf.py LlamaModel.permute).

    w: [n_head * head_dim, ...]; within each head rows (0..d/2-1, d/2..d-1) become pairs (0, d/2), (1, d/2+1).
    """
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of permute_qk (transformers modeling_gguf_pytorch_utils `_reverse_permute_weights`)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass(frozen=True)
class _Layout:
    arch: gguf.MODEL_ARCH
    names: dict[str, str]  # torch parameter name -> GGUF tensor name
    permute_heads: dict[str, int]  # GGUF name -> n_head used by permute_qk (attn_q: heads, attn_k: kv heads)


def gguf_layout(model: nn.Module) -> _Layout:
    cfg = model.config
    if cfg.model_type not in _ARCHS:
        raise ValueError(
            f"GGUF export supports model types {sorted(_ARCHS)}; got {cfg.model_type!r}. "
            "Convert the model with llama.cpp's convert_hf_to_gguf.py instead."
        )
    arch, permute = _ARCHS[cfg.model_type]
    name_map = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    names, heads = {}, {}
    for name, _ in model.named_parameters():
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"parameter {name!r} has no GGUF tensor name for architecture {arch.name}")
        names[name] = gguf_name
        if permute and gguf_name.endswith("attn_q.weight"):
            heads[gguf_name] = cfg.num_attention_heads
        elif permute and gguf_name.endswith("attn_k.weight"):
            heads[gguf_name] = cfg.num_key_value_heads
    return _Layout(arch, names, heads)


def rope_theta(cfg) -> float:
    """RoPE base frequency of a transformers config (``rope_parameters`` in transformers 5, else ``rope_theta``)."""
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def _add_hparams(writer: gguf.GGUFWriter, cfg, file_type: str) -> None:
    """The hyper-parameters llama.cpp's load_hparams needs for llama/qwen2 (keys as convert_hf_to_gguf), and a
    placeholder vocabulary of the model's size (llama.cpp loads one; only token ids are ever fed)."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_theta(cfg))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(FILE_TYPES[file_type].ftype.value)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<t{i}>" for i in range(cfg.vocab_size)])
    writer.add_token_scores([0.0] * cfg.vocab_size)
    writer.add_token_types([gguf.TokenType.NORMAL] * cfg.vocab_size)


def _gguf_arrays(model: nn.Module, layout: _Layout):
    """(GGUF name, float32 array in GGUF row order) for every parameter, one at a time."""
    for name, param in model.named_parameters():
        gguf_name = layout.names[name]
        arr = param.detach().float().cpu().numpy()
        if gguf_name in layout.permute_heads:
            arr = permute_qk(arr, layout.permute_heads[gguf_name])
        yield gguf_name, arr


def write_gguf(model: nn.Module, layout: _Layout, path: str, file_type: str, types: dict[str, T]) -> None:
    """Write a runnable GGUF of ``model`` (``layout`` from ``gguf_layout``) to ``path``, each parameter as the
    type ``types`` names (F32, F16 or a gguf-py quantized type), one tensor at a time: infos first (sizes
    by ggml's block arithmetic), then each tensor's data."""
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[layout.arch])
    _add_hparams(writer, model.config, file_type)
    for name, param in model.named_parameters():
        gguf_name, qtype = layout.names[name], types[layout.names[name]]
        shape = tuple(param.shape)
        if qtype in (T.F32, T.F16):
            dtype = np.float32 if qtype is T.F32 else np.float16
            writer.add_tensor_info(gguf_name, shape, np.dtype(dtype), param.numel() * np.dtype(dtype).itemsize)
        else:
            byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
            writer.add_tensor_info(gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for gguf_name, arr in _gguf_arrays(model, layout):
        qtype = types[gguf_name]
        if qtype is T.F16:
            arr = arr.astype(np.float16)
        elif qtype is not T.F32:
            try:
                arr = gguf.quants.quantize(arr, qtype)
            except NotImplementedError:
                writer.close()
                raise ValueError(
                    f"GGUF {file_type}: llama.cpp stores {gguf_name} {arr.shape} as {qtype.name}, which gguf-py "
                    "cannot quantize; install llama-cpp-python==0.3.36 and use backend 'llama.cpp'"
                ) from None
        writer.write_tensor_data(arr)
    writer.close()


def recipe(model: nn.Module, layout: _Layout, file_type: str) -> GGUFFile:
    """llama.cpp's per-tensor type choice and fallbacks for this model's own tensors, from the calculator's
    replay of llama-quantize (``calculator.gguf_recipes.gguf_file``; no importance matrix).

    The replay reads the model's hyper-parameters (GQA ratio, layer count) from its config and the tensor
    list from the model itself, under the GGUF names and shapes this module writes.
    """
    spec = spec_from_config(model.config.to_dict(), name=getattr(model.config, "name_or_path", "") or "model")
    tensors = []
    for name, param in model.named_parameters():
        gguf_name = layout.names[name]
        block = re.match(r"blk\.(\d+)\.", gguf_name)
        tensors.append(TensorSpec(gguf_name, tuple(param.shape), int(block[1]) if block else None))
    return gguf_file(dataclasses.replace(spec, tensors=tuple(tensors)), file_type, imatrix=False)


def _record_fallbacks(model: nn.Module, layout: _Layout, plan: GGUFFile, types: dict[str, str]) -> None:
    """Set ``module.fallback`` on the module owning each tensor the recipe moved to a fallback type (when the
    file holds that type), so ``collect_fallbacks`` reports it like any family's per-tensor fallback."""
    param_of = {g: n for n, g in layout.names.items()}
    for fb in plan.fallbacks:
        if types.get(fb.name) != fb.got:
            continue
        module = model.get_submodule(param_of[fb.name].rsplit(".", 1)[0])
        module.fallback = (
            f"row length {fb.row_length} is not a multiple of the {fb.wanted} block: {fb.got} "
            "(llama.cpp tensor_type_fallback)"
        )


# ---------------------------------------------------------------- the two quantizers


def _write_gguf_py(model: nn.Module, layout: _Layout, plan: GGUFFile, path: str) -> None:
    """Write the file with gguf-py's reference quantizers, each tensor in the type ``plan`` gives it."""
    write_gguf(model, layout, path, plan.file_type, {name: T[t] for name, t, _ in plan.tensor_types})


def _quantize_llama_cpp(model: nn.Module, layout: _Layout, file_type: str, path: str, tmp: str) -> None:
    import llama_cpp

    source = os.path.join(tmp, "source-f32.gguf")
    write_gguf(model, layout, source, "F32", dict.fromkeys(layout.names.values(), T.F32))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[file_type].ftype.value
    params.nthread = torch.get_num_threads()
    # llama-cpp-python routes llama.cpp's log through this logger; its per-tensor lines (llama.cpp warnings
    # arrive as ERROR) are silenced unless the user configured the logger.
    log = logging.getLogger("llama-cpp-python")
    quiet = log.level == logging.NOTSET
    if quiet:
        log.setLevel(logging.CRITICAL)
    try:
        rc = llama_cpp.llama_model_quantize(source.encode(), path.encode(), ctypes.byref(params))
    finally:
        if quiet:
            log.setLevel(logging.NOTSET)
        os.unlink(source)
    if rc != 0:
        raise RuntimeError(
            f"llama_model_quantize to {file_type} failed with code {rc}; to see llama.cpp's messages run "
            "logging.getLogger('llama-cpp-python').setLevel(logging.DEBUG) first"
        )


def _load_gguf(model: nn.Module, layout: _Layout, path: str) -> None:
    """Copy every dequantized tensor of `path` into the model; record bytes and types per tensor."""
    params = dict(model.named_parameters())
    by_gguf = {g: params[n] for n, g in layout.names.items()}
    reader = gguf.GGUFReader(path)
    by_tensor, types = {}, {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        if t.name in layout.permute_heads:
            values = unpermute_qk(values, layout.permute_heads[t.name])
        param = by_gguf.pop(t.name)
        values = np.array(values, dtype=np.float32)  # a writable copy: F32 data is a view of the file
        param.data.copy_(torch.from_numpy(values).reshape(param.shape))
        by_tensor[t.name] = int(t.n_bytes)
        types[t.name] = t.tensor_type.name
    if by_gguf:  # internal invariant: the file we wrote holds every parameter
        raise RuntimeError(f"quantized GGUF lacks tensors {sorted(by_gguf)}")
    setattr(model, CHECKPOINT_BYTES_ATTR, by_tensor)
    setattr(model, TYPES_ATTR, types)


@register_method(GGUFConfig)
@torch.no_grad()
def quantize_gguf(model: nn.Module, config: GGUFConfig, calibration: list[torch.LongTensor] | None = None) -> nn.Module:
    """Quantize all of the model's tensors to `config.file_type` as llama.cpp would, in place.

    `calibration` is accepted for a uniform signature and not used (no importance matrix).
    """
    backend = config.backend
    if backend is GGUFBackend.AUTO:
        backend = GGUFBackend.LLAMA_CPP if llama_cpp_available() else GGUFBackend.GGUF_PY
    if backend is GGUFBackend.GGUF_PY and config.file_type not in GGUF_PY_FILE_TYPES:
        raise ValueError(
            f"GGUF {config.file_type} needs llama.cpp's quantizer: pip install llama-cpp-python==0.3.36 "
            f"(it builds llama.cpp), or use one of {', '.join(GGUF_PY_FILE_TYPES)}"
        )
    if backend is GGUFBackend.LLAMA_CPP and not llama_cpp_available():
        raise ValueError("GGUF backend 'llama.cpp' needs llama-cpp-python: pip install llama-cpp-python==0.3.36")
    layout = gguf_layout(model)
    plan = recipe(model, layout, config.file_type)
    tmp = tempfile.mkdtemp(prefix="quantfit-gguf-")
    try:
        path = os.path.join(tmp, f"model-{config.file_type}.gguf")
        if backend is GGUFBackend.LLAMA_CPP:
            _quantize_llama_cpp(model, layout, config.file_type, path, tmp)
        else:
            _write_gguf_py(model, layout, plan, path)
        _load_gguf(model, layout, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, tmp, True)  # the file lives as long as the model
    setattr(model, RUNTIME_FILE_ATTR, path)
    _record_fallbacks(model, layout, plan, getattr(model, TYPES_ATTR))
    return model
