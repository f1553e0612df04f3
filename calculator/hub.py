"""The Hugging Face Hub: a model's ``config.json`` and its checkpoint's exact parameter counts, no weights.

``load_hub("Qwen/Qwen2.5-7B")`` downloads ``config.json`` (``huggingface_hub.HfApi.hf_hub_download``)
and reads the safetensors headers (``HfApi.get_safetensors_metadata``: HTTP range reads of the first
bytes of each shard), so a 140 GB checkpoint costs a few KB. ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured.
Like accelerate's ``estimate-memory`` command, every Hub failure becomes a ValueError that says what to do
(gated repo -> accept the licence and log in; offline -> use a preset or a local config.json).

This is the only module of the calculator that touches the network; ``huggingface_hub`` is imported on
first use, so ``import calculator`` stays offline and fast. ``REPO_ID_RE`` is the one definition of a Hub
model id for the whole project (the app's Hub picker and the evaluation's model loader use it too).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from calculator.models import ModelSpec, load_config_file

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
"""A Hub model id ``owner/name`` (letters, digits, ``_ . -``; the owner starts with a letter or digit)."""

DEFAULT_ENDPOINT = "https://huggingface.co"


def is_repo_id(text: str) -> bool:
    """``"Qwen/Qwen2.5-7B"`` -> True; ``"llama-3.1-8b"``, ``"a/b/c"``, ``""`` -> False."""
    return bool(REPO_ID_RE.match(text or ""))


@dataclass(frozen=True)
class HubModel:
    """A Hub lookup: the spec from config.json plus the checkpoint's exact counts from safetensors headers."""

    spec: ModelSpec
    repo_id: str
    parameter_count: dict[str, int]
    """dtype -> parameters, as stored (from ``get_safetensors_metadata``; empty if no safetensors)."""

    @property
    def checkpoint_params(self) -> int:
        return sum(self.parameter_count.values())


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """A TCP connect to the endpoint: know in seconds, not after huggingface_hub's five back-off retries."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def load_hub(repo_id: str, revision: str | None = None, token: str | None = None) -> HubModel:
    """Read ``config.json`` and the safetensors headers of a Hub repo (no weight download).

    Failures become ValueErrors that say what to do (see module docstring).
    """
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    if not is_repo_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub model id; use the form owner/name, e.g. Qwen/Qwen2.5-7B")
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        raise ValueError(
            f"cannot reach the Hugging Face Hub at {endpoint} (offline?); use an offline preset "
            "(`python -m calculator models`) or a local config.json"
        )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        config_path = api.hf_hub_download(repo_id, "config.json", revision=revision)
        try:
            counts = dict(api.get_safetensors_metadata(repo_id, revision=revision).parameter_count)
        except (hf_errors.NotASafetensorsRepoError, hf_errors.SafetensorsParsingError):
            counts = {}
    except hf_errors.GatedRepoError:
        raise ValueError(
            f"{repo_id} is gated: accept its licence on the Hub page, then log in "
            "(`hf auth login`) or set HF_TOKEN; or pick an offline preset"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise ValueError(
            f"Hub model {repo_id!r} was not found (or is private): check the spelling, or set HF_TOKEN "
            "for a private repo"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise ValueError(f"revision {revision!r} of {repo_id} does not exist") from None
    except (hf_errors.EntryNotFoundError, hf_errors.RemoteEntryNotFoundError):
        raise ValueError(f"{repo_id} has no config.json; is it a transformers model repo?") from None
    except hf_errors.LocalEntryNotFoundError:
        raise ValueError(
            f"cannot reach the Hugging Face Hub to look up {repo_id} (offline?); use an offline preset "
            "(`python -m calculator models`) or a local config.json"
        ) from None
    except hf_errors.HfHubHTTPError as err:
        raise ValueError(f"the Hub answered an error for {repo_id}: {str(err).splitlines()[0]}") from None
    spec = load_config_file(config_path)
    spec = replace(spec, name=repo_id, source=f"Hub {repo_id} config.json")
    return HubModel(spec, repo_id, counts)
