"""Fit page, serving engines (issue 11): it leads with "serves N concurrent requests of L tokens", draws
concurrency against context length, lays out the GPUs as the engine logs them, and the URL carries the
engine's own settings."""

from __future__ import annotations

from calculator.engines.vllm import VllmSettings, vllm_startup
from calculator.hardware import get_gpu
from calculator.models import load_preset
from tests.app.conftest import dataframe_with, metric, no_exception

LLAMA_8B_H100 = {"engine": "vllm", "model": "llama-3.1-8b", "fmt": "bf16", "gpu": "H100 SXM", "ctx": "16384"}


def test_vllm_leads_with_concurrency_from_the_url_settings(run_app):
    at = run_app("fit", **LLAMA_8B_H100, gmu="0.95")
    no_exception(at)
    assert at.number_input(key="gmu").value == 0.95
    expected = vllm_startup(load_preset("llama-3.1-8b"), "bf16", get_gpu("H100 SXM"), 1,
                            VllmSettings(gpu_memory_utilization=0.95, max_model_len=16384))
    # the llm-d-planner v0.19.0 log of this run: "Maximum concurrency for 16,384 tokens per request: 29.05x"
    assert metric(at, "Serves at once (vllm)") == f"{expected.max_concurrency:,.2f} requests of 16,384 tokens"
    assert any(c.key == "serving_concurrency_chart" for c in at.get("plotly_chart"))
    rows = dataframe_with(at, "layers").to_dict("records")
    assert rows[0]["device"] == "cuda:0 (H100 SXM)" and round(rows[0]["KV cache"]) == round(
        expected.kv_cache_bytes / 2**20)


def test_changing_a_setting_moves_the_headline_and_a_link_carries_it(run_app):
    at = run_app("fit", **LLAMA_8B_H100)
    no_exception(at)
    before = metric(at, "Serves at once (vllm)")
    at.selectbox(key="kv_dtype").select("fp8").run()
    no_exception(at)
    after = metric(at, "Serves at once (vllm)")
    assert float(after.split()[0]) > 1.9 * float(before.split()[0])  # fp8 KV: twice the blocks
    linked = run_app("fit", **LLAMA_8B_H100, kv_dtype="fp8")  # the same setting from a link
    no_exception(linked)
    assert metric(linked, "Serves at once (vllm)") == after


def test_a_context_vllm_refuses_says_so_in_its_words(run_app):
    at = run_app("fit", **{**LLAMA_8B_H100, "gpu": "RTX 4090", "ctx": "131072"})
    no_exception(at)
    assert any("To serve at least one request with the model's max seq len (131072)" in e.value for e in at.error)


def test_sglang_and_transformers(run_app):
    at = run_app("fit", **{**LLAMA_8B_H100, "engine": "sglang", "mfs": "0.88"})
    no_exception(at)
    assert metric(at, "Serves at once (sglang)").endswith("requests of 16,384 tokens")
    at = run_app("fit", **{**LLAMA_8B_H100, "engine": "transformers", "ctx": "2048", "new_tokens": "128"})
    no_exception(at)
    assert at.number_input(key="new_tokens").value == 128
    assert metric(at, "Peak max_memory_allocated").endswith("GiB")
