"""Hub lookups with the real huggingface_hub client against a local fake Hub (HF_ENDPOINT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from calculator.hub import REPO_ID_RE, is_repo_id, load_hub
from calculator.models import resolve_model
from tests.conftest import LLAMA_TINY_CONFIG


def test_hub_config_and_safetensors_counts(fake_hub):
    hub = load_hub("acme/tiny-llama")
    # The spec built from config.json and the checkpoint's own header count agree exactly.
    assert hub.parameter_count == {"BF16": hub.spec.total_params}
    assert hub.spec.total_params == 2 * 1000 * 256 + 256 + 2 * (2 * 256 * 256 + 2 * 128 * 256 + 3 * 688 * 256 + 2 * 256)
    assert hub.spec.n_kv_heads == 2
    assert any("/resolve/" in r for r in fake_hub.requests)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("Qwen/Qwen2.5-7B", True), ("meta-llama/Llama-3.1-8B", True), ("a_b/c.d-e", True),
     ("llama-3.1-8b", False), ("a/b/c", False), ("/abs/path", False), ("-x/y", False), ("", False)],
)
def test_one_definition_of_a_hub_id(text, ok):
    assert is_repo_id(text) is ok and bool(REPO_ID_RE.match(text)) is ok


def test_resolve_model_takes_hub_ids(fake_hub):
    assert resolve_model("acme/tiny-llama").name == "acme/tiny-llama"


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("acme/gated-llama", "gated"),
        ("acme/missing", "was not found"),
        ("acme/no-config", "has no config.json"),
        ("not a repo id", "is not a Hub model id"),
    ],
)
def test_hub_errors_are_actionable(fake_hub, repo, message):
    with pytest.raises(ValueError, match=message):
        load_hub(repo)


def test_offline_hub_says_what_to_do(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="cannot reach the Hugging Face Hub.*offline preset"):
        load_hub("acme/tiny-llama")


def test_cli_info_against_fake_hub(fake_hub):
    env = {**os.environ, "HF_ENDPOINT": fake_hub.endpoint}
    out = subprocess.run([sys.executable, "-m", "calculator", "info", "--model", "acme/tiny-llama", "--json"],
                         capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout)
    assert data["checkpoint_parameter_count"]["BF16"] == data["params"]
    assert data["hidden_size"] == LLAMA_TINY_CONFIG["hidden_size"]
