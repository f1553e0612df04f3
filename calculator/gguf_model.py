"""A model read from GGUF headers: its ModelSpec, every tensor's stored type and bytes, split files summed,
local or on the Hub, and the recipe replay beside the real file.

``load_gguf("path/model-Q4_K_M.gguf")`` or ``load_gguf("bartowski/Qwen2.5-7B-Instruct-GGUF:
Qwen2.5-7B-Instruct-Q4_K_M.gguf")`` reads the header(s) only (``calculator.gguf_file``; Hub range reads in
``calculator.hub``) and returns a ``GGUFModel``:

- ``spec``: the architecture from llama.cpp's metadata keys (``{arch}.block_count``, ``.embedding_length``,
  ``.attention.head_count[_kv]``, ``.attention.key_length``/``value_length``, ``.context_length``,
  ``.expert_count``/``expert_used_count``, ``.attention.sliding_window``, ``.attention.kv_lora_rank``; key
  names from ``gguf.Keys``), with the file's own tensor list (names and shapes), so a GGUF-only repo, which
  has no ``config.json``, resolves like any model;
- ``stored``: a ``calculator.stored.StoredWeights`` of every tensor's type and exact bytes, which
  ``fit(spec, stored, gpu)`` sizes as stored;
- ``comparison()``: llama-quantize's recipe (``calculator.gguf_recipes``) replayed on the same tensor list,
  tensor by tensor against the file.

Split files (``-00001-of-00003.gguf``, llama.cpp ``llama_split_path``) are read part by part and summed.
``gguf_choices(repo)`` lists a repo's GGUF files with their sizes, one row per file (split parts joined).
A vision projector (``mmproj-*.gguf``, ``general.architecture = clip``) has bytes but no language-model spec;
``companion_rows`` (``calculator.companions``) adds it, or a draft model, to a fit.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from dataclasses import dataclass

from gguf import Keys, LlamaFileType

from calculator.gguf_file import ArrayInfo, GGUFHeader, TensorInfo, read_local_header
from calculator.models import ModelSpec, TensorSpec
from calculator.stored import Comparison, StoredWeights, compare
from calculator.units import check_int

SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
"""llama.cpp ``llama_split_path``: ``"%s-%05d-of-%05d.gguf"``."""

SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2}
"""Every n-th layer attends globally, the rest use the sliding window: llama.cpp ``src/llama-model.cpp``
``load_hparams`` (``hparams.set_swa_pattern(n)``: layer ``il`` slides when ``il % n < n - 1``). A file may
carry its own ``{arch}.attention.sliding_window_pattern``, which wins."""

PROJECTOR_ARCHS = {"clip"}
"""``general.architecture`` of multimodal projector files (llama.cpp ``tools/mtmd``)."""


def _file_type_name(metadata: dict) -> str:
    """``general.file_type`` as llama-quantize names it (``MOSTLY_Q4_K_M`` -> ``Q4_K_M``)."""
    value = metadata.get(Keys.General.FILE_TYPE)
    if value is None:
        return "unknown"
    try:
        ftype = LlamaFileType(int(value) & ~LlamaFileType.GUESSED)
    except (TypeError, ValueError):
        return f"file type id {value!r}"
    return ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")


@dataclass(frozen=True)
class GGUFModel:
    """One GGUF file (all its split parts), read from headers only."""

    name: str
    parts: tuple[GGUFHeader, ...]

    @property
    def metadata(self) -> dict:
        return self.parts[0].metadata

    @property
    def arch(self) -> str:
        return str(self.metadata.get(Keys.General.ARCHITECTURE, "unknown"))

    @property
    def is_projector(self) -> bool:
        return self.arch in PROJECTOR_ARCHS or self.metadata.get(Keys.General.TYPE) == "mmproj"

    @property
    def file_type(self) -> str:
        return _file_type_name(self.metadata)

    @functools.cached_property
    def tensors(self) -> tuple[TensorInfo, ...]:
        return tuple(t for part in self.parts for t in part.tensors)

    @property
    def tensor_data_bytes(self) -> int:
        """Exact tensor bytes (no header, metadata or alignment padding): what a fit loads."""
        return sum(p.tensor_data_bytes for p in self.parts)

    @property
    def file_size_bytes(self) -> int | None:
        sizes = [p.file_size for p in self.parts]
        return None if None in sizes else sum(sizes)

    @property
    def header_bytes_read(self) -> int:
        return sum(p.bytes_read for p in self.parts)

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def tensor_types(self) -> dict[str, int]:
        """ggml type -> number of tensors, most common first."""
        return dict(Counter(t.type_name for t in self.tensors).most_common())

    @property
    def bytes_by_type(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for t in self.tensors:
            out[t.type_name] += t.n_bytes
        return dict(out.most_common())

    @functools.cached_property
    def spec(self) -> ModelSpec:
        """The language model's architecture and tensors (ValueError for a projector or missing keys)."""
        if self.is_projector:
            raise ValueError(
                f"{self.name} is a multimodal projector (mmproj, architecture {self.arch!r}), not a language "
                "model: size it with the model it belongs to (fit --mmproj)"
            )
        return spec_from_gguf(self.metadata, self.tensors, self.name)

    @functools.cached_property
    def stored(self) -> StoredWeights:
        """Every tensor's type and bytes, to pass wherever a format goes (``fit(spec, stored, gpu)``)."""
        return StoredWeights(f"{self.file_type} (stored)",
                             tuple((t.name, t.type_name, t.n_bytes) for t in self.tensors),
                             f"GGUF header of {self.name}")

    @property
    def imatrix(self) -> bool:
        """Whether llama-quantize recorded an importance matrix (``quantize.imatrix.*`` keys)."""
        return any(k.startswith("quantize.imatrix.") for k in self.metadata)

    def comparison(self, base: ModelSpec | None = None) -> Comparison:
        """llama-quantize's recipe for this file type replayed on ``base`` (default: this file's own tensor
        list, which is what llama-quantize saw), tensor by tensor against the file.

        ``base`` (a preset or the base model's config.json) must have the same tensors; a mismatch is a
        ValueError naming the first difference.
        """
        from calculator.gguf_recipes import FILE_TYPES, gguf_file
        from calculator.memory import TensorMemory, WeightMemory

        spec = self.spec
        if self.file_type not in FILE_TYPES:
            raise ValueError(f"{self.name}: file type {self.file_type!r} has no llama-quantize recipe to replay")
        if base is not None:
            mine, theirs = {t.name: t.shape for t in spec.tensors}, {t.name: t.shape for t in base.tensors}
            if mine != theirs:
                name = sorted(set(mine) ^ set(theirs) or {n for n in mine if mine[n] != theirs[n]})[0]
                raise ValueError(
                    f"{base.name} does not have the tensors of {self.name} (first difference: {name}); "
                    "compare with the model the file was converted from"
                )
            spec = base
        gf = gguf_file(spec, self.file_type, imatrix=self.imatrix or None)
        shapes = {t.name: t.shape for t in spec.tensors}
        predicted = WeightMemory(spec.name, gf.file_type, gf.tensor_data_bytes, spec.total_params, gf.source,
                                 tuple(TensorMemory(n, shapes[n], t, b) for n, t, b in gf.tensor_types))
        return compare(predicted, list(self.stored.rows))

    def to_dict(self) -> dict:
        data = {
            "model": self.name,
            "arch": self.arch,
            "kind": "mmproj" if self.is_projector else "model",
            "file_type": self.file_type,
            "file_bytes": self.tensor_data_bytes,
            "file_size_bytes": self.file_size_bytes,
            "header_bytes_read": self.header_bytes_read,
            "parts": len(self.parts),
            "gguf_version": self.parts[0].version,
            "params": self.params,
            "tensors": len(self.tensors),
            "tensor_types": self.tensor_types,
            "bytes_by_type": self.bytes_by_type,
            "bits_per_weight": self.tensor_data_bytes * 8 / self.params if self.params else 0.0,
            "imatrix": self.imatrix,
            "note": "file_bytes counts tensor data only (no GGUF header, metadata or alignment padding)",
        }
        if not self.is_projector:
            spec = self.spec
            data |= {"active_params": spec.active_params, "layers": spec.n_layers, "hidden_size": spec.hidden_size,
                     "heads": spec.n_heads, "kv_heads": spec.n_kv_heads, "head_dim": spec.head_dim,
                     "vocab_size": spec.vocab_size, "max_context": spec.max_context,
                     "sliding_window": spec.sliding_window, "experts": spec.n_experts,
                     "experts_used": spec.n_experts_used}
        return data


# Metadata -> ModelSpec -------------------------------------------------------------------------------

def _key(metadata: dict, arch: str, template: str, *, default=None, required: bool = True) -> int | None:
    key = template.format(arch=arch)
    value = metadata.get(key, default)
    if isinstance(value, list) and value:  # per-layer values (OpenELM, hybrid models): the largest
        value = max(value)
    if value is None:
        if required:
            raise ValueError(f"GGUF metadata lacks {key}; it is needed to size the model")
        return None
    return check_int(f"GGUF metadata {key}", value, low=0)


def _layer_kinds(metadata: dict, arch: str, n_layers: int, window: int | None) -> tuple[tuple[str, ...], int | None]:
    if not window:
        return ("full",) * n_layers, None
    pattern = metadata.get(Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=arch), SWA_PATTERN.get(arch))
    if isinstance(pattern, list) and len(pattern) == n_layers:  # per layer: True = sliding
        kinds = tuple("sliding" if p else "full" for p in pattern)
    elif isinstance(pattern, int) and not isinstance(pattern, bool) and pattern >= 1:
        kinds = tuple("sliding" if il % pattern < pattern - 1 else "full" for il in range(n_layers))
    else:  # llama.cpp applies no window for this architecture: the cache is full size
        return ("full",) * n_layers, None
    return kinds, window if "sliding" in kinds else None


def spec_from_gguf(metadata: dict, tensors: tuple[TensorInfo, ...], name: str) -> ModelSpec:
    """ModelSpec from GGUF metadata and the file's tensor infos. ``arch`` is llama.cpp's architecture
    name (``llama`` also for Mistral/Mixtral files, ``qwen2moe``, ``deepseek2``...)."""
    arch = metadata.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"{name} has no general.architecture; is it a llama.cpp model file?")
    n_layers = _key(metadata, arch, Keys.LLM.BLOCK_COUNT)
    hidden = _key(metadata, arch, Keys.LLM.EMBEDDING_LENGTH)
    n_heads = _key(metadata, arch, Keys.Attention.HEAD_COUNT)
    n_kv = _key(metadata, arch, Keys.Attention.HEAD_COUNT_KV, default=n_heads)
    kv_lora = _key(metadata, arch, Keys.Attention.KV_LORA_RANK, default=0)
    # MLA files since 2025 store the absorbed (MQA) key length in key_length and the per-head one in *_mla
    mla_k = _key(metadata, arch, Keys.Attention.KEY_LENGTH_MLA, required=False)
    head_dim = mla_k or _key(metadata, arch, Keys.Attention.KEY_LENGTH, default=hidden // max(n_heads, 1))
    v_dim = (_key(metadata, arch, Keys.Attention.VALUE_LENGTH_MLA, required=False) if mla_k else None) \
        or _key(metadata, arch, Keys.Attention.VALUE_LENGTH, default=head_dim)
    n_experts = _key(metadata, arch, Keys.LLM.EXPERT_COUNT, default=0)
    by_name = {t.name: t for t in tensors}
    exps = next((t for t in tensors if t.name.endswith("ffn_up_exps.weight")), None)
    moe_inter = _key(metadata, arch, Keys.LLM.EXPERT_FEED_FORWARD_LENGTH,
                     default=exps.shape[-2] if exps is not None and n_experts else 0)
    tokens = metadata.get(Keys.Tokenizer.LIST)
    vocab_default = (tokens.count if isinstance(tokens, ArrayInfo) else len(tokens) if isinstance(tokens, list)
                     else by_name["token_embd.weight"].shape[0] if "token_embd.weight" in by_name else None)
    vocab = _key(metadata, arch, Keys.LLM.VOCAB_SIZE, default=vocab_default)
    window = _key(metadata, arch, Keys.Attention.SLIDING_WINDOW, default=0)
    for label, value in (("block_count", n_layers), ("embedding_length", hidden), ("head_count", n_heads)):
        check_int(f"GGUF metadata {arch}.{label}", value)
    specs = []
    for t in tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        layer = int(m.group(1)) if m else None
        if layer is not None and layer >= n_layers:
            raise ValueError(f"{name}: tensor {t.name} is in block {layer}, but {arch}.block_count is {n_layers}")
        specs.append(TensorSpec(t.name, t.shape, layer))
    kinds, window = _layer_kinds(metadata, arch, n_layers, window)
    return ModelSpec(
        name=name, arch=arch, hidden_size=hidden, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=n_heads if kv_lora else n_kv or n_heads, head_dim=head_dim,
        intermediate_size=_key(metadata, arch, Keys.LLM.FEED_FORWARD_LENGTH, default=0),
        vocab_size=vocab, max_context=_key(metadata, arch, Keys.LLM.CONTEXT_LENGTH, default=2048),
        tie_word_embeddings="output.weight" not in by_name, tensors=tuple(specs),
        n_experts=n_experts, n_experts_used=_key(metadata, arch, Keys.LLM.EXPERT_USED_COUNT, default=0),
        n_shared_experts=_key(metadata, arch, Keys.LLM.EXPERT_SHARED_COUNT, default=0),
        moe_intermediate_size=moe_inter if n_experts else 0, kv_lora_rank=kv_lora,
        qk_rope_head_dim=_key(metadata, arch, Keys.Rope.DIMENSION_COUNT, default=0) if kv_lora else 0,
        v_head_dim=v_dim, sliding_window=window, layer_types=kinds,
        source=f"GGUF header of {name}",
    )


# Files: local, split parts, Hub -----------------------------------------------------------------------

def split_parts(filename: str) -> list[str] | None:
    """``m-00001-of-00003.gguf`` -> the three part names (same folder); None for a single file."""
    folder, base = os.path.split(filename)
    m = SPLIT_RE.match(base)
    if not m:
        return None
    count = int(m.group("count"))
    check_int(f"split count in {base!r}", count, high=9999)
    return [os.path.join(folder, f"{m.group('prefix')}-{i:05d}-of-{count:05d}.gguf") if folder
            else f"{m.group('prefix')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def _check_parts(name: str, parts: list[GGUFHeader]) -> None:
    """Every part says it is part ``i`` of ``n`` (``split.no`` / ``split.count``), when it says so."""
    for i, part in enumerate(parts):
        no, count = part.get(Keys.Split.LLM_KV_SPLIT_NO), part.get(Keys.Split.LLM_KV_SPLIT_COUNT)
        if no is not None and (no != i or count != len(parts)):
            raise ValueError(f"{part.name} says it is split part {no} of {count}, expected {i} of {len(parts)}")


def load_gguf_file(path: str) -> GGUFModel:
    """A local GGUF file; a split part brings its siblings from the same folder."""
    names = split_parts(path) or [path]
    missing = [n for n in names if not os.path.isfile(n)]
    if missing:
        raise ValueError(f"{path} is one of {len(names)} split parts; {missing[0]} is missing")
    parts = [read_local_header(n) for n in names]
    _check_parts(path, parts)
    return GGUFModel(os.path.basename(names[0]), tuple(parts))


def parse_gguf_ref(text: str) -> tuple[str, str | None]:
    """``"owner/repo:dir/file.gguf"`` -> ("owner/repo", "dir/file.gguf"); ``"owner/repo"`` -> (repo, None)."""
    repo, _, filename = text.partition(":")
    return repo.strip(), (filename.strip() or None)


def load_gguf(text: str, *, revision: str | None = None) -> GGUFModel:
    """A GGUF file from a local path, or ``REPO[:FILE]`` on the Hub (headers only; see module docstring).

    ``REPO`` alone picks the repo's only language-model GGUF; with several, the ValueError lists them.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("no GGUF given; pass a local .gguf path or a Hub repo, e.g. owner/repo:file.gguf")
    if os.path.exists(text):
        if os.path.isdir(text):
            raise ValueError(f"{text!r} is a folder; give the .gguf file inside it")
        return load_gguf_file(text)
    from calculator import hub  # the networked module; imported here so local reads stay offline

    repo, filename = parse_gguf_ref(text)
    if not hub.is_repo_id(repo):
        raise ValueError(f"{text!r} is neither an existing file nor a Hub repo (owner/repo[:file.gguf])")
    files = hub.repo_files(repo, revision)
    if filename is None:
        models = [c for c in gguf_choices(repo, files) if c.kind == "model"]
        if not models:
            raise ValueError(f"{repo} has no .gguf files; pick a GGUF repository (or use --model for safetensors)")
        if len(models) > 1:
            listing = ", ".join(f"{c.file} ({c.size_bytes / 1e9:.2f} GB)" if c.size_bytes else c.file
                                for c in models[:12])
            more = f" and {len(models) - 12} more" if len(models) > 12 else ""
            raise ValueError(f"{repo} has {len(models)} GGUF files; pick one as {repo}:FILE: {listing}{more}")
        filename = models[0].file
    if filename not in files:
        raise ValueError(f"{repo} has no file {filename!r} (see `python -m calculator gguf --gguf {repo} --list`)")
    names = split_parts(filename) or [filename]
    missing = [n for n in names if n not in files]
    if missing:
        raise ValueError(f"{repo}:{filename} is one of {len(names)} split parts; {missing[0]} is not in the repo")
    from calculator.gguf_file import read_header

    parts = [read_header(hub.HubRangeFile(repo, n, revision, size=files[n])) for n in names]
    _check_parts(filename, parts)
    return GGUFModel(f"{repo}:{names[0]}", tuple(parts))


@dataclass(frozen=True)
class GGUFChoice:
    """One GGUF file of a repo (split parts joined): what a user picks from."""

    file: str
    """The first part's path in the repo (what ``REPO:FILE`` takes)."""
    parts: int
    size_bytes: int | None
    """Whole files on disk (header included), from the Hub listing."""
    file_type: str
    """As the file name spells it (``Q4_K_M``, ``UD-Q4_K_XL``...); the header's ``general.file_type`` rules."""
    kind: str
    """``model`` or ``mmproj``."""

    def to_dict(self) -> dict:
        return {"file": self.file, "parts": self.parts, "size_bytes": self.size_bytes,
                "file_type": self.file_type, "kind": self.kind}


def _name_file_type(filename: str) -> str:
    from calculator.gguf_recipes import FILE_TYPES

    stem = os.path.basename(filename)
    m = SPLIT_RE.match(stem)
    stem = m.group("prefix") if m else stem.removesuffix(".gguf")
    tokens = re.split(r"[-.]", stem)
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i].upper() in FILE_TYPES:
            return tokens[i].upper() if i == 0 or tokens[i - 1].upper() != "UD" else f"UD-{tokens[i].upper()}"
    return tokens[-1]


def gguf_choices(repo: str, files: dict[str, int | None] | None = None) -> list[GGUFChoice]:
    """The repo's GGUF files, one row per file (split parts summed), smallest first; mmproj rows last."""
    if files is None:
        from calculator import hub

        files = hub.repo_files(repo)
    rows, seen = [], set()
    for name in sorted(files):
        if not name.lower().endswith(".gguf") or name in seen:
            continue
        names = split_parts(name) or [name]
        seen.update(names)
        sizes = [files.get(n) for n in names]
        size = None if None in sizes else sum(sizes)
        kind = "mmproj" if "mmproj" in os.path.basename(name).lower() else "model"
        rows.append(GGUFChoice(names[0], len(names), size, _name_file_type(name), kind))
    return sorted(rows, key=lambda c: (c.kind != "model", c.size_bytes or 0, c.file))
