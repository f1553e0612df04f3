"""Fit page, engines (issue 10): the engine selector, its URL state, and the per-device breakdown as the engine's
own start-up log prints it."""

from __future__ import annotations

from tests.app.conftest import dataframe_with, no_exception


def _devices(at) -> dict[str, dict]:
    df = dataframe_with(at, "layers")
    return {row["device"]: row for row in df.to_dict("records")}


def test_llama_cpp_is_the_default_and_the_table_reads_like_its_log(run_app):
    at = run_app("fit")
    no_exception(at)
    assert at.selectbox(key="engine").value == "llama.cpp"
    rows = _devices(at)
    gpu, host = rows["CUDA0 (RTX 4090)"], rows["host (CPU RAM)"]
    # llama.cpp logs "CUDA0 buffer size = 4403.49 MiB" and "CPU buffer size = 281.81 MiB" for this file
    # (XiongjieDai/GPU-Benchmarks-on-LLM-Inference@aa72e0ec, LLaMA 3/Gaming GPUs/4090_v3.ipynb)
    assert round(gpu["weights"], 2) == 4403.49 and round(host["weights"], 2) == 281.81
    assert gpu["KV cache"] == 1024.0 and gpu["layers"] == "32 + output"


def test_engine_in_the_url_and_per_card_bars(run_app):
    at = run_app("fit", engine="ollama", n_gpus="2", model="llama-3.1-70b")
    no_exception(at)
    assert at.selectbox(key="engine").value == "ollama"
    rows = _devices(at)
    assert {"CUDA0 (RTX 4090)", "CUDA1 (RTX 4090)", "host (CPU RAM)"} <= set(rows)
    assert any(c.key == "fit_device_chart" for c in at.get("plotly_chart"))
    at.selectbox(key="engine").select("llama.cpp").run()
    no_exception(at)
    assert at.selectbox(key="engine").value == "llama.cpp" and "CUDA1 (RTX 4090)" in _devices(at)


def test_an_unknown_engine_in_a_link_says_so(run_app):
    at = run_app("fit", engine="tgi")
    no_exception(at)
    assert any("engine 'tgi'" in w.value for w in at.warning)
    assert at.selectbox(key="engine").value == "llama.cpp"


def test_mlx_on_a_mac(run_app):
    at = run_app("fit", engine="mlx", gpu="Apple M4 Max 128GB", fmt="int4-g64-asym")
    no_exception(at)
    assert "Metal (Apple M4 Max 128GB)" in _devices(at)
