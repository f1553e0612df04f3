"""Quantized safetensors checkpoints: what a GPTQ, AWQ, compressed-tensors, FP8, bitsandbytes, HQQ or EXL2
repo really stores, which calculator format that is, and the calculator's prediction beside it.

``read_checkpoint("TheBloke/Llama-2-7B-GPTQ")`` reads ``config.json`` and every safetensors header
(``calculator.hub``: a few hundred KB) and returns a ``Checkpoint``:

- ``scheme``: ``config.json``'s ``quantization_config`` read the way transformers' quantizers read it
  (``transformers/utils/quantization_config.py``: GPTQConfig ``bits/group_size/desc_act``, AwqConfig
  ``bits/group_size/version``, CompressedTensorsConfig ``config_groups.*.weights``, FineGrainedFP8Config
  ``quant_method: fp8``, BitsAndBytesConfig ``load_in_4bit/bnb_4bit_quant_type/bnb_4bit_use_double_quant``,
  HqqConfig, and exllamav2's ``quant_method: exl2`` + ``bits``) and matched to a calculator format
  (``gptq-4b-g128-actorder``, ``awq-4b-g128``, ``fp8_e4m3``, ``nf4-dq``, ``exl2-4.65``...) or None;
- ``groups``: the stored tensors grouped per weight (``qweight + qzeros + scales + g_idx`` of one Linear is
  one group), named as the ModelSpec names it (HF -> GGUF names from ``gguf.get_tensor_name_map``), each
  with its exact bytes (the span of its ``data_offsets``);
- ``comparison``: the prediction for that format, tensor by tensor against what is stored
  (``calculator.stored.compare``), as the evaluation compares predicted with measured bytes. Known
  differences it shows: AutoGPTQ writes ``g_idx`` even without act-order; compressed-tensors FP8 stores a
  per-channel scale the ``fp8_e4m3`` format does not count; ``weight_shape`` tensors of packed int4.

The parameter count comes from the config's architecture, never from the packed tensors (an int32
``qweight`` holds 8 weights: counting its elements is how GGUF-unaware tools report 7B models as 1B).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from calculator.hub import SafetensorsTensor, load_hub
from calculator.memory import WeightMemory, weight_memory
from calculator.models import ModelSpec
from calculator.stored import Comparison, StoredWeights, compare
from calculator.units import check_int

_FLOAT_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8_e4m3", "F8_E5M2": "fp8_e5m2"}
"""Safetensors dtype of an unquantized checkpoint's matrices -> calculator format."""

_ARCH_ALIASES = {"mistral": "llama", "mixtral": "llama", "gemma3_text": "gemma3", "deepseek_v2": "deepseek2",
                 "deepseek_v3": "deepseek2", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe"}
"""Hugging Face model_type -> gguf MODEL_ARCH name, where they differ (convert_hf_to_gguf.py registrations)."""


@dataclass(frozen=True)
class Scheme:
    """What ``quantization_config`` says, and the calculator format it matches (None: no exact match)."""

    method: str
    """``gptq``, ``awq``, ``compressed-tensors``, ``fp8``, ``bitsandbytes``, ``hqq``, ``exl2``, or ``none``."""
    bits: Fraction | None
    group_size: int | None
    act_order: bool
    format: str | None
    note: str = ""


def _bits(qc: dict, key: str, method: str) -> int:
    return check_int(f"quantization_config {key} ({method})", qc.get(key), low=1, high=16)


def _group(qc: dict, key: str, method: str) -> int | None:
    value = qc.get(key)
    if value in (None, -1, 0):
        return None  # per output channel
    return check_int(f"quantization_config {key} ({method})", value)


def _existing(name: str) -> str | None:
    from calculator.formats import get_format

    try:
        return get_format(name).name
    except ValueError:
        return None


def _compressed_tensors(qc: dict) -> Scheme:
    """compressed-tensors (llm-compressor, RedHatAI/neuralmagic repos): one ``config_groups`` entry per scheme."""
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise ValueError("quantization_config (compressed-tensors) has no config_groups; is config.json complete?")
    weights = {str(sorted((g.get("weights") or {}).items())) for g in groups.values() if isinstance(g, dict)}
    if len(weights) != 1:
        return Scheme("compressed-tensors", None, None, False, None, f"{len(groups)} schemes mixed in one model")
    w = next(g.get("weights") or {} for g in groups.values())
    bits, kind, strategy = _bits(w, "num_bits", "compressed-tensors"), w.get("type"), w.get("strategy")
    group = w.get("group_size")
    act = bool(w.get("actorder"))
    if kind == "float" and bits == 8:
        return Scheme("compressed-tensors", Fraction(8), None, act, "fp8_e4m3",
                      f"FP8 E4M3 weights, {strategy} scales (stored beside each weight; the format counts none)")
    if kind == "float" and bits == 4:
        fmt = "nvfp4" if "nvfp4" in str(qc.get("format", "")) or group == 16 else "mxfp4"
        return Scheme("compressed-tensors", Fraction(4), group, act, fmt)
    if kind == "int" and strategy == "group" and group:
        g = check_int("quantization_config weights.group_size (compressed-tensors)", group)
        fmt = _existing(f"int{bits}-g{g}{'' if w.get('symmetric', True) else '-asym'}")
        return Scheme("compressed-tensors", Fraction(bits), g, act, fmt)
    if kind == "int" and strategy == "channel":
        return Scheme("compressed-tensors", Fraction(bits), None, act,
                      _existing(f"int{bits}-ch{'' if w.get('symmetric', True) else '-asym'}"))
    return Scheme("compressed-tensors", Fraction(bits), group, act, None, f"{kind} {strategy} weights: no format")


def scheme_of(config: dict, tensors: dict[str, SafetensorsTensor]) -> Scheme:
    """The checkpoint's quantization scheme from ``config.json`` (see module docstring for sources)."""
    qc = config.get("quantization_config")
    if not qc:
        dtypes: dict[str, int] = {}
        for t in tensors.values():
            if len(t.shape) >= 2:
                dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.n_bytes
        dtype = max(dtypes, key=dtypes.get) if dtypes else None
        return Scheme("none", None, None, False, _FLOAT_DTYPES.get(dtype),
                      f"unquantized {dtype} checkpoint" if dtype else "no matrices stored")
    if not isinstance(qc, dict):
        raise ValueError(f"config.json quantization_config must be an object, got {type(qc).__name__}")
    method = str(qc.get("quant_method", "")).lower()
    if method == "gptq":
        bits, group, act = _bits(qc, "bits", method), _group(qc, "group_size", method), bool(qc.get("desc_act"))
        fmt = _existing(f"gptq-{bits}b-g{group}{'-actorder' if act else ''}") if group else None
        note = "" if act else "AutoGPTQ also writes g_idx without act-order (int32 per input feature)"
        return Scheme(method, Fraction(bits), group, act, fmt, note if fmt else "per-channel GPTQ: no format")
    if method == "awq":
        bits, group = _bits(qc, "bits", method), _group(qc, "group_size", method)
        version = str(qc.get("version", "gemm")).lower()
        fmt = _existing(f"awq-{bits}b-g{group}") if group and version == "gemm" else None
        return Scheme(method, Fraction(bits), group, False, fmt, "" if fmt else f"AWQ {version} layout: no format")
    if method == "compressed-tensors":
        return _compressed_tensors(qc)
    if method in ("fp8", "fbgemm_fp8"):
        block = qc.get("weight_block_size")
        return Scheme(method, Fraction(8), None, False, "fp8_e4m3",
                      f"FP8 E4M3 with {'block ' + str(block) if block else 'per-channel'} scales (not counted)")
    if method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            kind = str(qc.get("bnb_4bit_quant_type", "fp4")).lower()
            fmt = _existing(f"{kind}{'-dq' if qc.get('bnb_4bit_use_double_quant') else ''}")
            return Scheme(method, Fraction(4), 64, False, fmt)
        return Scheme(method, Fraction(8), None, False, None, "LLM.int8 (int8 + fp32 row scale): no format")
    if method == "exl2":
        bits = qc.get("bits")
        fmt = _existing(f"exl2-{bits}") if isinstance(bits, int | float) and not isinstance(bits, bool) else None
        return Scheme(method, Fraction(str(bits)) if fmt else None, None, False, fmt)
    if method == "hqq":
        return Scheme(method, None, None, False, None, "HQQ (per-layer nbits, scale + zero): no exact format")
    return Scheme(method or "unknown", None, None, False, None, f"quant_method {method!r} is not modelled")


# Grouping stored tensors under the ModelSpec's names -------------------------------------------------

@functools.lru_cache(maxsize=32)
def _name_map(arch: str, n_blocks: int):
    from gguf import get_tensor_name_map
    from gguf.constants import MODEL_ARCH, MODEL_ARCH_NAMES

    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    arch = _ARCH_ALIASES.get(arch, arch)
    return get_tensor_name_map(by_name.get(arch, by_name.get(arch.replace("_", ""), MODEL_ARCH.LLAMA)), n_blocks)


def _spec_name(hf_name: str, spec: ModelSpec) -> str | None:
    """``model.layers.0.self_attn.q_proj.qweight`` -> ``blk.0.attn_q.weight`` (None: no such spec tensor)."""
    if ".weight." in hf_name:  # bitsandbytes: weight.absmax, weight.quant_state.bitsandbytes__nf4 ...
        module, leaf = hf_name.split(".weight.", 1)[0], "weight"
    else:
        module, _, leaf = hf_name.rpartition(".")
    module = re.sub(r"\.experts\.\d+\.", ".experts.", module)
    base = _name_map(spec.arch, spec.n_layers).get_name(module)
    return f"{base}.{'bias' if leaf == 'bias' else 'weight'}" if base else None


@dataclass(frozen=True)
class TensorGroup:
    """The stored tensors of one spec tensor (a quantized Linear's qweight/qzeros/scales/g_idx)."""

    name: str
    """The ModelSpec tensor name (``blk.0.attn_q.weight``), or ``unmapped:<hf module>``."""
    stored_tensors: tuple[str, ...]
    dtypes: tuple[str, ...]
    stored_bytes: int


@dataclass(frozen=True)
class Checkpoint:
    """A safetensors checkpoint as stored, its scheme and format, and the prediction for that format."""

    repo_id: str
    spec: ModelSpec
    scheme: Scheme
    groups: tuple[TensorGroup, ...]
    predicted: WeightMemory | None
    comparison: Comparison | None

    @property
    def stored_bytes(self) -> int:
        return sum(g.stored_bytes for g in self.groups)

    @property
    def stored_format(self) -> str | None:
        return self.scheme.format

    @property
    def bits_per_weight(self) -> float:
        return self.stored_bytes * 8 / self.spec.total_params

    @property
    def stored(self) -> StoredWeights | None:
        """The checkpoint's bytes per spec tensor, for ``fit`` (None if some stored tensor maps to none)."""
        if any(g.name.startswith("unmapped:") for g in self.groups):
            return None
        names = {t.name for t in self.spec.tensors}
        if {g.name for g in self.groups} != names:
            return None
        label = f"{self.stored_format or self.scheme.method} (stored)"
        return StoredWeights(label, tuple((g.name, "+".join(g.dtypes), g.stored_bytes) for g in self.groups),
                             f"safetensors headers of {self.repo_id}")

    def to_dict(self) -> dict:
        s = self.scheme
        data = {
            "stored_bytes": self.stored_bytes,
            "stored_format": self.stored_format,
            "stored_bits_per_weight": round(self.bits_per_weight, 6),
            "quantization": {"method": s.method, "bits": str(s.bits) if s.bits is not None else None,
                             "group_size": s.group_size, "act_order": s.act_order, "note": s.note},
            "predicted_bytes": self.predicted.total_bytes if self.predicted else None,
            "stored_groups": len(self.groups),
            "unmapped_tensors": [t for g in self.groups if g.name.startswith("unmapped:") for t in g.stored_tensors],
        }
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_dict()
        return data


def checkpoint_from_tensors(spec: ModelSpec, config: dict, tensors: dict[str, SafetensorsTensor],
                            repo_id: str = "") -> Checkpoint:
    """Group ``tensors`` (safetensors name -> dtype/shape/bytes) under ``spec``'s names and compare them
    with the prediction for the matching format (pure: the tests feed it headers they wrote)."""
    if not tensors:
        raise ValueError(f"{repo_id or spec.name} has no safetensors tensors to size")
    members: dict[str, list[str]] = {}
    spec_names = {t.name for t in spec.tensors}
    for hf_name in sorted(tensors):
        name = _spec_name(hf_name, spec)
        key = name if name in spec_names else f"unmapped:{hf_name.rpartition('.')[0] or hf_name}"
        members.setdefault(key, []).append(hf_name)
    groups = tuple(
        TensorGroup(key, tuple(names), tuple(sorted({tensors[n].dtype for n in names})),
                    sum(tensors[n].n_bytes for n in names))
        for key, names in members.items()
    )
    scheme = scheme_of(config, tensors)
    predicted = comparison = None
    if scheme.format is not None:
        numel = {t.name: math.prod(t.shape) for t in spec.tensors}
        stored = {g.name: g.stored_bytes for g in groups}
        embd = stored.get("token_embd.weight")
        quantized_embeddings = embd is not None and embd < 2 * numel["token_embd.weight"] \
            and scheme.method != "none"
        predicted = weight_memory(spec, scheme.format, quantize_embeddings=quantized_embeddings)
        comparison = compare(predicted, [(g.name, "+".join(g.dtypes), g.stored_bytes) for g in groups],
                             types=False)
    return Checkpoint(repo_id or spec.name, spec, scheme, groups, predicted, comparison)


def read_checkpoint(repo_id: str, revision: str | None = None) -> Checkpoint:
    """Read a Hub safetensors repo's config.json and headers (no weights) and build its ``Checkpoint``."""
    hub = load_hub(repo_id, revision)
    if not hub.tensors:
        raise ValueError(f"{repo_id} has no .safetensors files (a GGUF repo? use `calculator gguf --gguf {repo_id}`)")
    return checkpoint_from_tensors(hub.spec, hub.config, hub.tensors, repo_id)
