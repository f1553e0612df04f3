"""The Hugging Face Hub: file listings, ``config.json``, safetensors and GGUF headers; never the weights.

``load_hub("Qwen/Qwen2.5-7B")`` lists the repo (``HfApi.model_info(files_metadata=True)``: names and sizes),
reads ``config.json`` and every safetensors header (``HfApi.parse_safetensors_file_metadata``: HTTP range
reads of each shard's first bytes), so a 140 GB checkpoint costs a few hundred KB. A repo without
``config.json`` but with GGUF files is read from a GGUF header instead (``calculator.gguf_model``), through
``HubRangeFile``: range reads of a file's first bytes, in growing chunks, until its tensor-info table ends.

Every request has a timeout: ``QUANTFIT_HUB_TIMEOUT`` seconds (default 20) to connect and between bytes,
and no retries, so a Hub that accepts the connection but never answers costs one timeout, and the error
says "timed out" and names the URL. (huggingface_hub's ``hf_hub_download`` retries a stalled metadata call
five times with 60 s timeouts, which is why this module reads files with single range requests.)
``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` are honoured. Like accelerate's ``estimate-memory``,
every Hub failure becomes a ValueError that says what to do (gated repo -> accept the licence and log in;
offline -> use a preset or a local config.json).

This is the only module of the calculator that touches the network; ``huggingface_hub`` is imported on
first use, so ``import calculator`` stays offline and fast. ``REPO_ID_RE`` is the one definition of a Hub
model id for the whole project (the app's Hub picker and the evaluation's model loader use it too).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from calculator.models import ModelSpec, spec_from_config

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
"""A Hub model id ``owner/name`` (letters, digits, ``_ . -``; the owner starts with a letter or digit)."""

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_ENV = "QUANTFIT_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0
MAX_TIMEOUT_S = 600.0
MAX_JSON_BYTES = 4_000_000
"""config.json and safetensors index files are KB; refuse anything bigger than this."""
MAX_SHARDS = 2000
"""Safetensors shards read per repo (the largest public checkpoints have a few hundred)."""


def is_repo_id(text: str) -> bool:
    """``"Qwen/Qwen2.5-7B"`` -> True; ``"llama-3.1-8b"``, ``"a/b/c"``, ``""`` -> False."""
    return bool(REPO_ID_RE.match(text or ""))


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def hub_timeout_s() -> float:
    """``QUANTFIT_HUB_TIMEOUT`` seconds (default 20): per connect and per read, for every Hub request."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], e.g. 20")
    return value


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """A TCP connect to the endpoint: know in seconds, not after huggingface_hub's five back-off retries."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except (OSError, ValueError):
        return False
    return True


def _offline(what: str) -> ValueError:
    return ValueError(
        f"cannot reach the Hugging Face Hub at {hub_endpoint()} to read {what} (offline?); use an offline "
        "preset (`python -m calculator models`), a local config.json or a local .gguf file"
    )


@contextlib.contextmanager
def hub_errors(repo_id: str, what: str, url: str = "") -> Iterator[None]:
    """Turn every huggingface_hub / HTTP failure inside the block into one actionable ValueError.

    Order matters: GatedRepoError subclasses RepositoryNotFoundError, and LocalEntryNotFoundError
    (the offline cache miss) subclasses EntryNotFoundError in huggingface_hub 2.x.
    """
    import httpx2
    from huggingface_hub import errors as hf

    timeout = hub_timeout_s()
    try:
        yield
    except hf.OfflineModeIsEnabled:
        raise ValueError(f"HF_HUB_OFFLINE is set, so {what} of {repo_id} cannot be read; unset it, or use an "
                         "offline preset, a local config.json or a local .gguf file") from None
    except httpx2.TimeoutException:
        raise ValueError(
            f"the Hub timed out after {timeout:g} s reading {what} of {repo_id} ({url or hub_endpoint()}); "
            f"retry, or raise {TIMEOUT_ENV} (seconds)"
        ) from None
    except httpx2.TransportError:
        raise _offline(f"{what} of {repo_id}") from None
    except hf.GatedRepoError:
        raise ValueError(
            f"{repo_id} is gated: accept its licence on the Hub page, then log in "
            "(`hf auth login`) or set HF_TOKEN; or pick an offline preset"
        ) from None
    except hf.RepositoryNotFoundError:
        raise ValueError(
            f"Hub model {repo_id!r} was not found (or is private): check the spelling, or set HF_TOKEN "
            "for a private repo"
        ) from None
    except hf.RevisionNotFoundError:
        raise ValueError(f"that revision of {repo_id} does not exist") from None
    except hf.LocalEntryNotFoundError:
        raise _offline(f"{what} of {repo_id}") from None
    except (hf.RemoteEntryNotFoundError, hf.EntryNotFoundError):
        raise ValueError(f"{repo_id} has no {what}") from None
    except hf.HfHubHTTPError as err:
        raise ValueError(f"the Hub answered an error for {what} of {repo_id}: {str(err).splitlines()[0]}") from None


def _api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token)


def _check_reachable(repo_id: str) -> None:
    if not is_repo_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub model id; use the form owner/name, e.g. Qwen/Qwen2.5-7B")
    if not hub_reachable(hub_endpoint(), min(3.0, hub_timeout_s())):
        raise _offline(repo_id)


def repo_files(repo_id: str, revision: str | None = None, token: str | None = None) -> dict[str, int | None]:
    """Every file of a repo with its size in bytes (None where the Hub gives none). One request."""
    _check_reachable(repo_id)
    with hub_errors(repo_id, "the file list"):
        info = _api(token).model_info(repo_id, revision=revision, files_metadata=True, timeout=hub_timeout_s())
    return {s.rfilename: s.size for s in (info.siblings or [])}


def _get(repo_id: str, filename: str, revision: str | None, token: str | None, headers: dict,
         max_bytes: int) -> tuple[bytes, int | None, int]:
    """One GET of a file (or a byte range), streamed and cut at ``max_bytes``: a server that ignores
    ``Range`` costs ``max_bytes``, not the file. Returns (bytes, file size if the server said, status)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub_endpoint())
    with hub_errors(repo_id, filename, url):
        with get_session().stream("GET", url, headers={**build_hf_headers(token=token), **headers},
                                  timeout=hub_timeout_s()) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= max_bytes:
                    break
            total = None
            if m := re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("content-range", "")):
                total = int(m.group(1))
            elif response.status_code == 200 and response.headers.get("content-length", "").isdigit():
                total = int(response.headers["content-length"])
            status = response.status_code
    return bytes(body[:max_bytes]), total, status


def fetch_json(repo_id: str, filename: str, revision: str | None = None, token: str | None = None) -> dict:
    """A small JSON file of a repo (``config.json``), size-capped."""
    data, _, _ = _get(repo_id, filename, revision, token, {}, MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{repo_id}/{filename} is over {MAX_JSON_BYTES:,} bytes; a {filename} is a few KB")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{repo_id}/{filename} is not valid JSON ({str(err)[:80]})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{repo_id}/{filename} must be a JSON object, got {type(value).__name__}")
    return value


class HubRangeFile:
    """A Hub file read by HTTP range requests (a ``calculator.gguf_file.ByteSource``)."""

    def __init__(self, repo_id: str, filename: str, revision: str | None = None, token: str | None = None,
                 size: int | None = None) -> None:
        self.repo_id, self.filename, self.revision, self.token = repo_id, filename, revision, token
        self.name = f"{repo_id}:{filename}"
        self.size = size
        self.bytes_read = 0

    def read(self, offset: int, n: int) -> bytes:
        if n <= 0 or (self.size is not None and offset >= self.size):
            return b""
        data, total, status = _get(self.repo_id, self.filename, self.revision, self.token,
                                   {"Range": f"bytes={offset}-{offset + n - 1}"}, n)
        if status != 206 and offset:
            raise ValueError(f"the Hub server ignored a byte-range request for {self.name}; cannot read its header")
        self.size = self.size if self.size is not None else total
        self.bytes_read += len(data)
        return data


@dataclass(frozen=True)
class SafetensorsTensor:
    """One tensor of a safetensors header: dtype, shape and exact stored bytes (its data_offsets span)."""

    dtype: str
    shape: tuple[int, ...]
    n_bytes: int


@dataclass(frozen=True)
class HubModel:
    """A Hub lookup: the spec, the repo's files, and (safetensors repos) every stored tensor."""

    spec: ModelSpec
    repo_id: str
    parameter_count: dict[str, int]
    """dtype -> parameters, as stored (from the safetensors headers; empty if none)."""
    files: dict[str, int | None] = field(default_factory=dict, compare=False, repr=False)
    config: dict = field(default_factory=dict, compare=False, repr=False)
    tensors: dict[str, SafetensorsTensor] = field(default_factory=dict, compare=False, repr=False)
    """Safetensors tensor name -> dtype, shape, bytes, over every shard."""
    gguf: object | None = field(default=None, compare=False, repr=False)
    """The ``calculator.gguf_model.GGUFModel`` the spec came from, for GGUF-only repos."""

    @property
    def checkpoint_params(self) -> int:
        return sum(self.parameter_count.values())


def _safetensors(repo_id: str, files: dict[str, int | None], revision: str | None,
                 token: str | None) -> dict[str, SafetensorsTensor]:
    from huggingface_hub import errors as hf

    shards = sorted(f for f in files if f.endswith(".safetensors") and "/" not in f)
    if len(shards) > MAX_SHARDS:
        raise ValueError(f"{repo_id} has {len(shards):,} safetensors files; at most {MAX_SHARDS:,} are read")
    api = _api(token)

    def header(filename: str):
        with hub_errors(repo_id, filename):
            try:
                return api.parse_safetensors_file_metadata(repo_id, filename, revision=revision,
                                                           timeout=hub_timeout_s())
            except hf.SafetensorsParsingError as err:
                raise ValueError(f"{repo_id}/{filename} has a corrupt safetensors header ({err})") from None

    with ThreadPoolExecutor(max_workers=8) as pool:
        metas = list(pool.map(header, shards))
    out = {}
    for meta in metas:
        for name, t in meta.tensors.items():
            out[name] = SafetensorsTensor(t.dtype, tuple(t.shape), t.data_offsets[1] - t.data_offsets[0])
    return out


def load_hub(repo_id: str, revision: str | None = None, token: str | None = None) -> HubModel:
    """List a repo, read its ``config.json`` and safetensors headers (or, with no ``config.json``, one GGUF
    header) and build the spec. No weights are downloaded; failures say what to do (module docstring)."""
    files = repo_files(repo_id, revision, token)
    if "config.json" not in files:
        from calculator.gguf_model import gguf_choices, load_gguf

        models = [c for c in gguf_choices(repo_id, files) if c.kind == "model"]
        if not models:
            raise ValueError(
                f"{repo_id} has no config.json and no .gguf files; is it a transformers or GGUF model repo?"
            )
        gguf = load_gguf(f"{repo_id}:{models[0].file}", revision=revision)  # any file: same tensors
        spec = replace(gguf.spec, name=repo_id)
        return HubModel(spec, repo_id, {}, files, {}, {}, gguf)
    config = fetch_json(repo_id, "config.json", revision, token)
    spec = spec_from_config(config, name=repo_id, source=f"Hub {repo_id} config.json")
    tensors = _safetensors(repo_id, files, revision, token)
    counts: dict[str, int] = {}
    for t in tensors.values():
        counts[t.dtype] = counts.get(t.dtype, 0) + math.prod(t.shape)
    return HubModel(spec, repo_id, counts, files, config, tensors)
