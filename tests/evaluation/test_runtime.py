"""GGUF methods scored as llama.cpp runs them (``evaluation.runtime``): both scores in the result, the floor
(llama.cpp on the baseline's own weights, here an F32 GGUF: agreement to round-off), the cache key that
names the engine, and the notes when llama.cpp cannot run the model."""

from __future__ import annotations

import gc
import os
from types import SimpleNamespace

import pytest
import torch

from evaluation import runner, runtime, scoring
from evaluation.methods import GGUFConfig, quantize_
from evaluation.methods.gguf import RUNTIME_FILE_ATTR, llama_cpp_available
from evaluation.options import EvaluateOptions

needs_llama_cpp = pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")
OPTIONS = EvaluateOptions(n_ctx=64, max_tokens=128, decode_tokens=0, dtype="fp32")


@pytest.fixture(scope="module")
def baseline(tiny_llama_dir):
    torch.set_num_threads(1)
    return scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", OPTIONS)


@needs_llama_cpp
def test_gguf_result_holds_weights_only_and_llama_cpp_scores(baseline, tmp_path):
    options = EvaluateOptions(n_ctx=64, max_tokens=128, decode_tokens=0, dtype="fp32", cache_dir=tmp_path)
    (r,) = runner.evaluate(None, None, ["Q4_0"], options, baseline=baseline)
    rt = r.runtime
    assert rt.engine == "llama.cpp" and rt.engine_version == runtime.engine_version()
    assert rt.quality.tokens == r.quality.tokens == 2 * 63 and rt.eval_seconds > 0
    # The floor: the tiny model's own weights as F32 through llama.cpp, against transformers in fp32.
    assert rt.floor_file == "the baseline written as an F32 GGUF"
    assert rt.floor.kld_mean < 1e-5 and rt.floor.top1_agreement == 1
    # Q4_0 through llama.cpp (Q8_0 activations) differs from the weights alone, but is the same file.
    assert rt.quality.kld_mean > 0 and rt.quality.kld_mean == pytest.approx(r.quality.kld_mean, rel=0.5)
    assert rt.quality.baseline_ppl == r.quality.baseline_ppl
    assert runner.evaluate(None, None, ["Q4_0"], options, baseline=baseline)[0].runtime == rt  # from the cache


@needs_llama_cpp
def test_the_floor_is_measured_once_per_baseline(baseline, monkeypatch):
    runtime.runtime_floor(baseline)
    calls = []
    monkeypatch.setattr(runtime, "score_file", lambda *a: calls.append(a))
    assert runtime.runtime_floor(baseline)[1] == "the baseline written as an F32 GGUF" and not calls


def test_the_cache_key_names_the_engine(baseline, monkeypatch):
    settings = runner.run_settings(baseline.source, baseline.corpus, OPTIONS)
    config = GGUFConfig("Q8_0")
    key = runner.method_key(settings, config, OPTIONS, None)
    monkeypatch.setattr(runtime, "engine_version", lambda: "llama-cpp-python 9.9")
    assert runner.method_key(settings, config, OPTIONS, None) != key
    int8 = runner.parse_method("int8")  # methods without an engine keep their keys
    assert runner.method_key(settings, int8, OPTIONS, None) == runner.method_key(settings, int8, OPTIONS, None)


def test_notes_when_llama_cpp_cannot_score(monkeypatch):
    model = SimpleNamespace(**{RUNTIME_FILE_ATTR: "/nonexistent.gguf"})
    scaled = SimpleNamespace(model_config=SimpleNamespace(rope_parameters={"rope_type": "llama3"}))
    if llama_cpp_available():
        assert runtime.runtime_quality(scaled, model) == (
            None, "llama.cpp runtime quality not measured: llama.cpp runtime scoring supports default RoPE only, "
            "this model uses 'llama3'")  # fmt: skip
    monkeypatch.setattr(runtime, "engine_version", lambda: None)
    assert runtime.runtime_quality(scaled, model)[1].endswith("pip install llama-cpp-python==0.3.36")
    assert runtime.runtime_quality(scaled, SimpleNamespace()) == (None, None)  # not a GGUF method


def test_the_quantized_file_lives_as_long_as_the_model(baseline):
    model = baseline.method_model()
    quantize_(model, GGUFConfig("Q8_0", backend="gguf-py"))
    path = getattr(model, RUNTIME_FILE_ATTR)
    assert os.path.getsize(path) > 0
    del model
    gc.collect()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
