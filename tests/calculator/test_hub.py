"""Hub lookups with the real huggingface_hub client against a local fake Hub (HF_ENDPOINT), and against an
endpoint that accepts connections but never answers (every call times out after QUANTFIT_HUB_TIMEOUT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from calculator.hub import REPO_ID_RE, hub_errors, hub_timeout_s, is_repo_id, load_hub
from calculator.models import resolve_model
from tests.calculator.gguf_fixtures import hung_endpoint
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
        ("acme/no-config", "has no config.json and no .gguf files"),
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


# Timeouts: a Hub that accepts the connection but never answers ---------------------------------------

def test_a_hub_that_never_answers_times_out_naming_the_endpoint(monkeypatch):
    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", "1")
    start = time.monotonic()
    with hung_endpoint() as endpoint, pytest.raises(
        ValueError, match=rf"timed out after 1 s reading the file list of acme/tiny-llama \({endpoint}\); "
                          "retry, or raise QUANTFIT_HUB_TIMEOUT"):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        load_hub("acme/tiny-llama")
    assert time.monotonic() - start < 5  # one timeout, no retries


def test_cli_info_against_a_hung_hub_is_one_line():
    start = time.monotonic()
    with hung_endpoint() as endpoint:
        env = {**os.environ, "HF_ENDPOINT": endpoint, "QUANTFIT_HUB_TIMEOUT": "1"}
        out = subprocess.run([sys.executable, "-m", "calculator", "info", "--model", "acme/tiny-llama"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "timed out after 1 s" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and time.monotonic() - start < 20


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "1e9", "soon"])
def test_hub_timeout_setting_is_validated(monkeypatch, value):
    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", value)
    with pytest.raises(ValueError, match=rf"QUANTFIT_HUB_TIMEOUT='{value}' must be a number of seconds in \(0, 600\]"):
        hub_timeout_s()


def test_hub_timeout_default_and_override(monkeypatch):
    monkeypatch.delenv("QUANTFIT_HUB_TIMEOUT", raising=False)
    assert hub_timeout_s() == 20.0
    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", "2.5")
    assert hub_timeout_s() == 2.5


def test_offline_cache_miss_is_not_read_as_a_missing_file():
    # huggingface_hub 2.x: LocalEntryNotFoundError subclasses EntryNotFoundError; it means offline
    from huggingface_hub import errors as hf_errors

    assert issubclass(hf_errors.LocalEntryNotFoundError, hf_errors.EntryNotFoundError)
    with pytest.raises(ValueError, match="cannot reach the Hugging Face Hub"):
        with hub_errors("acme/x", "config.json"):
            raise hf_errors.LocalEntryNotFoundError("not in the cache")


def test_hub_offline_mode_is_named(fake_hub, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        load_hub("acme/tiny-llama")


def test_repo_without_config_or_gguf(fake_hub):
    with pytest.raises(ValueError, match="acme/no-config has no config.json and no .gguf files"):
        load_hub("acme/no-config")
