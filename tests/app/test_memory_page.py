"""Memory page through AppTest: the 70B example on the first screen, exact bytes, bad inputs, URL state."""

from __future__ import annotations

import json

from calculator.models import load_preset
from tests.app.conftest import dataframe_with, no_exception, number, numbers, texts
from tests.conftest import LLAMA_TINY_CONFIG
from ui.url_state import encode_config


def _table(at) -> dict[str, int]:
    df = dataframe_with(at, "weight_bytes")
    return dict(zip(df["format"], df["weight_bytes"], strict=True))


def test_default_is_the_70b_example(run_app):
    at = run_app("memory")
    no_exception(at)
    assert number(at, "fp16 weights") == "140.00 GB"
    assert number(at, "int4 weights") == "35.00 GB"
    assert numbers(at) == {"Parameters": "70B", "fp16 weights": "140.00 GB", "int8 weights": "70.00 GB",
                           "int4 weights": "35.00 GB"}
    table = _table(at)
    assert table["fp16"] == 140_000_000_000
    assert table["int4"] == 35_000_000_000
    assert table["fp32"] == 280_000_000_000
    assert table["nf4"] == 70 * 10**9 * 9 // 16  # 4 bits + fp32 absmax per 64 = 4.5 bits
    # Every number in the table carries its unit in the header, and the sidebar defines both units.
    assert any("GB = 10⁹ bytes, GiB = 2³⁰ bytes" in c for c in texts(at.sidebar.caption))


def test_preset_exact_bytes_and_gguf_recipe(run_app):
    at = run_app("memory")
    at.segmented_control(key="src").set_value("Preset").run()
    at.selectbox(key="model").select("llama-3.1-8b").run()
    no_exception(at)
    table = _table(at)
    n = load_preset("llama-3.1-8b").total_params
    assert n == 8_030_261_248
    assert table["fp16"] == 2 * n
    assert table["Q4_K_M"] == 4_912_898_048  # real file: +256 (rope_freqs, F32 x 64)
    df = dataframe_with(at, "weight_bytes")
    q4km = df[df["format"] == "Q4_K_M"].iloc[0]
    assert q4km["family"] == "GGUF file type"
    assert round(q4km["bits_per_weight"], 4) == 4.8944  # llama.cpp tools/quantize/README.md publishes 4.8944
    assert "Q6_K" in q4km["tensor_types"]


def test_added_format_appears(run_app):
    at = run_app("memory")
    at.multiselect(key="add").select("gptq-3b-g128").run()
    no_exception(at)
    assert _table(at)["gptq-3b-g128"] == 70 * 10**9 * (3 * 128 + 16 + 3) // (128 * 8)


def test_bad_parameter_counts_show_errors(run_app):
    at = run_app("memory")
    for text, message in [("abc", "is not a number"), ("-5", "must be positive"), ("0.5", "whole number"),
                          ("1e30", "beyond any model")]:
        at.text_input(key="params").set_value(text).run()
        no_exception(at)
        assert any(message in e for e in texts(at.error)), (text, texts(at.error))
    at.text_input(key="params").set_value("50T").run()
    no_exception(at)
    assert any("more than any published model" in w for w in texts(at.warning))


def test_query_params_restore_state(run_app):
    at = run_app("memory", src="Preset", model="qwen2.5-7b", gpus=["RTX 3090", "A100 80GB SXM"], add="Q5_K_S")
    no_exception(at)
    assert at.segmented_control(key="src").value == "Preset"
    assert at.selectbox(key="model").value == "qwen2.5-7b"
    assert at.multiselect(key="gpus").value == ["RTX 3090", "A100 80GB SXM"]
    assert "Q5_K_S" in _table(at)
    assert number(at, "fp16 weights") == "15.23 GB"  # Qwen2.5-7B: 7,615,616,512 parameters (its safetensors) x 2


def test_unknown_preset_in_link_warns(run_app):
    at = run_app("memory", src="Preset", model="llama-9000")
    no_exception(at)
    assert any("llama-9000" in w for w in texts(at.warning))


def test_uploaded_config_and_its_link(run_app):
    data = json.dumps(LLAMA_TINY_CONFIG).encode()
    at = run_app("memory")
    at.segmented_control(key="src").set_value("config.json").run()
    assert any("Upload" in i for i in texts(at.info))
    at.file_uploader(key="upload").set_value(("config.json", data, "application/json")).run()
    no_exception(at)
    assert at.query_params["cfg"] == encode_config(data)
    n = 2 * 1000 * 256 + 2 * (4 * 256 * 256 // 2 + 2 * 256 * 128 + 3 * 256 * 688 + 2 * 256) + 256
    assert _table(at)["fp16"] == 2 * n
    # The link alone (no upload) reopens the same model.
    again = run_app("memory", src="config.json", cfg=encode_config(data))
    no_exception(again)
    assert _table(again)["fp16"] == 2 * n


def test_malformed_config_upload_and_damaged_link(run_app):
    at = run_app("memory")
    at.segmented_control(key="src").set_value("config.json").run()
    at.file_uploader(key="upload").set_value(("config.json", b"{not json", "application/json")).run()
    no_exception(at)
    assert any("not valid JSON" in e for e in texts(at.error))
    at.file_uploader(key="upload").set_value(("c.json", b'{"model_type": "mamba"}', "application/json")).run()
    assert any("not supported" in e for e in texts(at.error))
    damaged = run_app("memory", src="config.json", cfg="!!!not-base64")
    no_exception(damaged)
    assert any("damaged" in e for e in texts(damaged.error))


def test_hub_lookup_with_spinner_and_errors(run_app, fake_hub):
    at = run_app("memory", src="Hub id")
    assert any("Hub model id" in i for i in texts(at.info))
    at.text_input(key="hub").set_value("acme/tiny-llama").run()
    no_exception(at)
    assert "fp16" in _table(at)
    for repo, message in [("acme/gated-llama", "gated"), ("acme/missing", "not found"),
                          ("acme/no-config", "no config.json"), ("not a repo id", "not a Hub model id")]:
        at.text_input(key="hub").set_value(repo).run()
        no_exception(at)
        assert any(message in e for e in texts(at.error)), (repo, texts(at.error))


def test_offline_hub_is_an_error_not_a_traceback(run_app, monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused, like an offline Hub
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    at = run_app("memory", src="Hub id", hub="meta-llama/Llama-3.1-8B")
    no_exception(at)
    assert any("cannot reach the Hugging Face Hub" in e for e in texts(at.error))
    assert at.button(key="hub_retry")
