"""Fit page, engines (issue 10): the engine selector, its URL state, the per-device breakdown as the engine's
own start-up log prints it, and the Every-format table and advice buttons computed with the chosen engine."""

from __future__ import annotations

import pytest

from calculator.engines.vllm import VllmSettings
from calculator.fit import FitOptions, Verdict, fit
from calculator.hardware import GpuSetup, get_gpu
from calculator.models import load_preset
from calculator.search import best_format
from tests.app.conftest import dataframe_with, no_exception, texts
from ui.fit_views import EVERY_FORMAT


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


ENGINE_OPTIONS = {"llama.cpp": None, "ollama": None,
                  "vllm": VllmSettings(gpu_memory_utilization=0.9, kv_cache_dtype="auto", enforce_eager=False)}
"""What the page's widgets give each engine by default (ui.serving draws vLLM's settings)."""


@pytest.mark.parametrize("engine", list(ENGINE_OPTIONS))
def test_every_format_and_advice_follow_the_engine(run_app, engine):
    """Llama 3.1 8B Q8_0 at 131,072 tokens on an RTX 4090: each row of the Every-format table is
    ``calculator.fit`` with the page's engine, and every advice button leads to a page that says it fits."""
    query = {"engine": engine, "fmt": "Q8_0", "ctx": "131072", "view": "Every format"}
    at = run_app("fit", **query)
    no_exception(at)
    table = dataframe_with(at, "quality_source").set_index("format")
    spec, setup = load_preset("llama-3.1-8b"), GpuSetup(get_gpu("RTX 4090"))
    opts = FitOptions(engine=engine, engine_options=ENGINE_OPTIONS[engine])
    verdicts = set()
    for fmt in EVERY_FORMAT:
        r = fit(spec, fmt, setup, 131072, 1, options=opts, with_max_context=False)
        row = table.loc[fmt]
        assert row["total_gb"] == pytest.approx(r.total_bytes / 1e9, rel=1e-12), fmt
        expected = {Verdict.FITS: "fits", Verdict.DOES_NOT_FIT: "does not fit"}.get(r.verdict, "offload")
        assert row["verdict"].startswith(expected), (fmt, row["verdict"], r.verdict)
        assert bool(row["best"]) == (fmt == best_format(spec, setup, 131072, 1, options=opts,
                                                        candidates=EVERY_FORMAT).format)
        verdicts.add(expected)
    assert "fits" in verdicts and len(verdicts) > 1  # the table tells formats apart on this engine
    assert not texts(at.success)  # Q8_0 at this context does not fit entirely on one RTX 4090 ...
    labels = [b.label for b in at.button if b.key and b.key.startswith("advice_")]
    assert len(labels) >= 3 and any(label.startswith("File type ") for label in labels)  # ... but changes do
    for i, label in enumerate(labels):
        at = run_app("fit", **query)
        at.button(key=f"advice_{i}").click().run()
        no_exception(at)
        assert texts(at.success) and texts(at.success)[0].startswith("**Fits**"), (label, texts(at.error))
