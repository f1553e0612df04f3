"""Model specs: the tensor shapes of a transformer, from which every parameter count and byte follows.

A ``ModelSpec`` is built from a Hugging Face ``config.json`` dict. Tensors carry llama.cpp's GGUF
names (``blk.{i}.attn_q.weight`` ...; llama.cpp ``gguf-py/gguf/constants.py`` ``TENSOR_NAMES``) so
the GGUF recipe replay (``gguf_recipes``) can apply llama-quantize's name-based rules directly, and
PyTorch ``(out_features, in_features)`` shapes, so row length = ``shape[-1]`` for group/block math.

Like nanoGPT's ``transformer_sizing`` notebook checks its analytic count against a real checkpoint,
tests check ``total_params`` against the official checkpoints' counts (gpt2 = 124,439,808,
Llama-2-7b = 6,738,415,616, Meta-Llama-3-8B = 8,030,261,248; see ``assets/presets``).

The per-architecture builders (llama-like, DeepSeek MLA, GPT-2, OPT, Falcon) live in
``calculator.architectures``, with their sources.

Where a spec comes from: an offline preset (``assets/presets``, one JSON file each with its sources), a
local ``config.json``, or a Hub id (``calculator.hub``, the only networked module); ``resolve_model``
tries them in that order.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from calculator.paths import ASSETS_DIR

ASSETS = ASSETS_DIR
PRESETS_DIR = ASSETS / "presets"


EMBEDDING_ROLES = frozenset({"token_embd", "position_embd", "output"})
"""Tensor roles that GPTQ/AWQ/bitsandbytes checkpoints keep in fp16."""


@dataclass(frozen=True)
class TensorSpec:
    """One stored tensor: GGUF-style name, PyTorch shape, and its layer index (None outside blocks)."""

    name: str
    shape: tuple[int, ...]
    layer: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_matrix(self) -> bool:
        """2-D or 3-D (stacked experts) weights: what quantizers quantize. 1-D (norms, biases) stay float."""
        return len(self.shape) >= 2 and self.name.endswith(".weight")

    @property
    def role(self) -> str:
        """``blk.3.attn_q.weight`` -> ``attn_q``; ``token_embd.weight`` -> ``token_embd``."""
        parts = self.name.split(".")
        return parts[2] if parts[0] == "blk" else parts[0]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts and the full tensor list of one model (sizes in elements, not bytes).

    Per-spec results are cached one way in quantfit: ``functools.lru_cache`` on a module-level function
    whose first argument is the spec (``memory.weight_facts``, ``runtime._layout`` ...). That is cheap
    because the hash is computed once per spec (a 70B spec hashes ~700 tensors: ~60 us) and a hit on the
    same object is an identity check; an equal spec rebuilt from the same config hits too.
    """

    name: str
    arch: str
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    tie_word_embeddings: bool
    tensors: tuple[TensorSpec, ...]
    n_experts: int = 0
    n_experts_used: int = 0
    n_shared_experts: int = 0
    moe_intermediate_size: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    """Per layer "full" or "sliding" attention (empty: all full)."""
    source: str = ""
    config: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    assumed: tuple[str, ...] = field(default=(), compare=False)
    """Fields the config.json left out that took transformers' default, one note each ("num_local_experts
    missing: 8 assumed (transformers MixtralConfig default)"; ``calculator.config_fields``)."""

    def __hash__(self) -> int:  # the dataclass keeps an explicit __hash__ (and its field-wise __eq__)
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self) if f.compare))

    @functools.cached_property
    def total_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    @functools.cached_property
    def active_params(self) -> int:
        """Parameters touched per token: routed experts count ``n_experts_used / n_experts`` of theirs."""
        if not self.n_experts:
            return self.total_params
        total = 0
        for t in self.tensors:
            if t.role.endswith("_exps"):
                total += t.numel // self.n_experts * self.n_experts_used
            else:
                total += t.numel
        return total

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @functools.cached_property
    def shape_classes(self) -> tuple[tuple[str, tuple[int, ...], int], ...]:
        """(class, shape, count) with class "vector" (1-D), "embedding" (token/position embedding,
        lm_head) or "matrix": what ``memory.weight_memory`` needs, so a format costs one size per shape."""
        counts: dict[tuple[str, tuple[int, ...]], int] = {}
        for t in self.tensors:
            kind = "vector" if not t.is_matrix else "embedding" if t.role in EMBEDDING_ROLES else "matrix"
            counts[kind, t.shape] = counts.get((kind, t.shape), 0) + 1
        return tuple((kind, shape, n) for (kind, shape), n in counts.items())



def spec_from_config(config: dict, name: str = "", source: str = "") -> ModelSpec:
    """Build a ModelSpec from a Hugging Face ``config.json`` dict (``calculator.architectures`` lists the
    supported ``model_type`` values and holds one tensor-list builder per family)."""
    from calculator.architectures import build_spec  # here, not at the top: the builders build on this module

    return build_spec(config, name, source)


def spec_from_params(n_params: int, name: str = "") -> ModelSpec:
    """A shapeless stand-in for a bare parameter count: one flat tensor (no layers, no KV facts)."""
    return ModelSpec(name or f"{n_params:,} params", "params-only", 0, 0, 0, 0, 0, 0, 0, 0, False,
                     (TensorSpec("params", (n_params,)),))


# Presets ---------------------------------------------------------------------------------------------

@functools.cache
def _preset_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESETS_DIR.glob("*.json"))}


def list_presets() -> list[str]:
    """Names of the offline presets in ``assets/presets`` (one JSON file each, with sources)."""
    return list(_preset_files())


@functools.cache
def preset_record(name: str) -> dict:
    """The raw preset JSON: config facts, Hub id, official parameter count and their sources."""
    files = _preset_files()
    key = name.strip().lower()
    if key not in files:
        import difflib

        close = difflib.get_close_matches(key, list(files), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint} (run `python -m calculator models` for the list)")
    return json.loads(files[key].read_text())


@functools.cache
def load_preset(name: str) -> ModelSpec:
    record = preset_record(name)
    return spec_from_config(record["config"], name=record["name"],
                            source=f"preset {record['name']}: {record.get('config_source', '')}")


MAX_CONFIG_BYTES = 1_000_000
"""A config.json is a few KB; a larger file is not one (and is not read past this)."""


def parse_config_json(data: bytes, where: str) -> dict:
    """The JSON object in ``data`` (at most ``MAX_CONFIG_BYTES``), or a ValueError that names ``where``:
    not UTF-8, not JSON, nested too deeply for the parser, numbers beyond Python's 4,300-digit limit."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where} is over {MAX_CONFIG_BYTES:,} bytes; a config.json is a few KB")
    try:
        config = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply to be a config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON ({err}); give a transformers config.json") from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"{where} is not a usable config.json ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where} holds a JSON {type(config).__name__}, not an object; give a transformers "
                         "config.json")
    return config


def load_config_file(path: str | os.PathLike) -> ModelSpec:
    """ModelSpec from a local config.json (or a folder containing one); read up to ``MAX_CONFIG_BYTES`` + 1
    bytes whatever size the file reports (``/dev/zero`` ends at once)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    where = f"config file {str(path)!r}"
    if p.exists() and not p.is_file():
        raise ValueError(f"{where} is not a regular file; give a config.json")
    if not p.is_file():
        raise ValueError(f"{where} does not exist")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ValueError(f"{where} cannot be read ({err.strerror})") from None
    config = parse_config_json(data, where)
    return spec_from_config(config, name=p.parent.name or p.stem, source=f"config.json at {p}")


def load_config_bytes(data: bytes, name: str = "uploaded config.json") -> ModelSpec:
    """ModelSpec from the bytes of an uploaded config.json (the app's file uploader)."""
    return spec_from_config(parse_config_json(data, name), name=name, source=name)


def _is_gguf_file(path: str) -> bool:
    """A local regular file that starts with the GGUF magic, whatever its name."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def resolve_model(text: str) -> ModelSpec:
    """Preset name, path to a config.json (or its folder) or a GGUF file, a Hub id ``owner/name``, or a
    Hub GGUF file ``owner/name:file.gguf``, in that order (GGUF: ``calculator.gguf_model``, headers only)."""
    text = (text or "").strip()
    if not text:
        raise ValueError("no model given; name a preset (e.g. llama-3.1-8b), a config.json path or a Hub id")
    if text.lower() in _preset_files():
        return load_preset(text.lower())
    if text.lower().endswith(".gguf") or _is_gguf_file(text):
        from calculator.gguf_model import load_gguf  # here, not at the top: it builds on this module

        return load_gguf(text).spec
    if os.path.exists(text):
        return load_config_file(text)
    from calculator.hub import is_repo_id, load_hub  # here, not at the top: calculator.hub builds on this module

    if is_repo_id(text):
        return load_hub(text).spec
    return load_preset(text)  # raises "unknown preset ... did you mean"
