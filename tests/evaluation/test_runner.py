"""The runner on the tiny Llama: identical model, uniform model, caching and resume, the cache probe, stop,
progress, options, and cache keys that still find results cached before schema version 2."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from evaluation import runner, scoring
from evaluation.methods import Int8WeightOnlyConfig, parse_method
from evaluation.metrics import summarize
from evaluation.options import EvaluateOptions
from evaluation.results import ModelKind, ResultCache, Scoring, load_results, result_key, save_results

N_CTX, TOKENS = 64, 256
OPTIONS = EvaluateOptions(n_ctx=N_CTX, max_tokens=TOKENS, decode_tokens=2)
RESULTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "results"


@pytest.fixture(scope="module")
def baseline(tiny_llama_dir):
    torch.set_num_threads(1)
    return scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", OPTIONS)


@pytest.fixture(scope="module")
def results(baseline):
    return runner.evaluate(None, None, ["baseline", "int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"],
                           baseline=baseline)  # fmt: skip


def test_identical_model_scores_zero_kld_and_full_agreement(baseline):
    stats, seconds = scoring.score_model(baseline, copy.deepcopy(baseline.model))
    m = summarize(stats)
    assert m.kld_mean == 0 and m.kld_percentiles["99.9"] == 0 and m.top1_agreement == 1
    assert m.ppl == m.baseline_ppl and m.rms_dp == 0 and seconds > 0


def test_uniform_model_perplexity_is_the_vocabulary_size(baseline):
    model = copy.deepcopy(baseline.model)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1 / V for every token
    m = summarize(scoring.score_model(baseline, model)[0])
    assert m.ppl == pytest.approx(model.config.vocab_size, rel=1e-6)
    assert m.ppl_err < 1e-6 * m.ppl  # every NLL is ln V: no spread beyond float round-off


def test_result_rows(results, baseline):
    by_id = {r.method_id: r for r in results}
    assert list(by_id) == ["baseline", "int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"]
    base = by_id["baseline"].quality
    assert base.kld_mean == 0 and base.top1_agreement == 1 and base.ppl == base.baseline_ppl
    assert by_id["baseline"].bits_per_weight == pytest.approx(16, rel=1e-3)
    # Fewer bits: more drift and fewer bytes, measured.
    order = ["int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"]
    klds = [by_id[m].quality.kld_mean for m in order]
    assert klds == sorted(klds) and klds[0] > 0
    sizes = [by_id[m].measured_bytes for m in order]
    assert sizes == sorted(sizes, reverse=True)
    for r in results:
        assert r.windows.n_windows == TOKENS // N_CTX and r.windows.scored_tokens == 4 * (N_CTX - 1)
        assert r.quality.tokens == r.windows.scored_tokens and r.windows.scoring is Scoring.WHOLE
        assert r.model.kind is ModelKind.FOLDER and r.model.n_params == baseline.n_params
        assert r.predicted_bytes is not None and abs(r.predicted_error_pct) < 0.1
        assert r.tokens_per_s > 0 and r.decode_ms_per_token > 0 and r.peak_rss_bytes > 0
        assert r.corpus["eval_files"][0] == "alls_well_that_ends_well_gut.txt"
        assert r.env["torch"] == torch.__version__
    # int8 per channel: 8 bits + one 16-bit scale per output row; per layer 36864 weights in 512 rows.
    assert by_id["int8"].bits_per_weight == pytest.approx(8 + 16 * 512 / 36864)
    assert by_id["rtn-3b-g32-asym"].bits_per_weight == pytest.approx(3 + 32 / 32)
    # The baseline's own perplexity, from the stored per-token NLLs: exp(mean).
    assert base.baseline_ppl == pytest.approx(math.exp(baseline.stats.nll_base.mean().item()), rel=1e-9)


def test_results_file_round_trip(results, tmp_path):
    path = tmp_path / "out" / "results.json"
    save_results(path, results)
    assert load_results(path) == results
    assert not [p for p in path.parent.iterdir() if p.name != "results.json"]  # no temp file left


def test_cache_makes_reruns_instant_and_resumes(tiny_llama_dir, tmp_path, monkeypatch):
    calls = []

    def progress(method_id, done, total):
        calls.append((method_id, done, total))

    options = EvaluateOptions(n_ctx=N_CTX, max_tokens=128, cache_dir=tmp_path, decode_tokens=0)
    first = runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], options, progress=progress)
    assert ("int8", 2, 2) in calls and ("baseline", 0, 2) in calls
    assert (tmp_path / "results" / f"{first[0].key}.json").is_file()

    def no_loading(*args, **kw):
        raise AssertionError("a cached re-run must not load the model")

    monkeypatch.setattr(scoring, "load_model", no_loading)
    again = runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], options)
    assert again == first
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", options) == first[0]
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8-dyn", options) is None
    # A different setting is a different key: it would need the model.
    other = replace(options, max_tokens=192)
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", other) is None
    with pytest.raises(AssertionError, match="must not load"):
        runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], other)


def test_cached_result_needs_a_cache_dir(tiny_llama_dir):
    with pytest.raises(ValueError, match="cached_result needs options.cache_dir"):
        runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", EvaluateOptions())


@pytest.mark.parametrize("name", ["smollm2-135m-shakespeare-sweep.json", "smollm2-135m-shakespeare-gptq-awq-cal4.json"])
def test_keys_of_results_cached_before_schema_2_are_found(name, tmp_path):
    """Every bundled result's key is what the runner computes today for the same settings: a cache filled
    before the schema changes is still hit. Except GGUF results made before llama.cpp scored them too
    (schema version 3's ``runtime``): their keys name the engine now, so they are measured again; and
    rows made before the key named the CPU's ATen kernels (``runner.cpu_kernels``), on 2026-11-27 with
    AVX-512 kernels: they are not served. Rows made since were made with AVX2 kernels, so their keys match
    where torch runs AVX2 kernels."""
    for r in load_results(RESULTS_DIR / name):
        options = EvaluateOptions(
            n_ctx=r.windows.n_ctx, max_tokens=r.windows.max_tokens, scoring=r.windows.scoring, dtype=r.model.dtype,
            decode_tokens=0, calibration_samples=(r.calibration or {}).get("n_samples", 32), cache_dir=tmp_path,
        )  # fmt: skip
        source, corpus = scoring.resolve(r.model.ref, r.corpus["name"], options)
        config = parse_method(r.method_id)
        key = runner.method_key(runner.run_settings(source, corpus, options), config, options,
                                runner.calibration_spec(config, corpus, options))  # fmt: skip
        if (r.family == "gguf" and r.runtime is None) or r.created < "2026-12-02":
            assert key != r.key, r.method_id
        elif runner.cpu_kernels() == "AVX2":
            assert key == r.key, r.method_id


def test_result_cached_with_other_cpu_kernels_is_measured_again(tiny_llama_dir, tmp_path, monkeypatch):
    """bf16 logits depend on the CPU's ATen kernels (SmolLM2's GPL-3 PPL: 23.764 AVX2, 23.793 on the
    AVX-512 host of 2026-11-27): an entry cached under other kernels, or before the key named them, is not
    served; the same kernels hit the cache."""
    options = EvaluateOptions(n_ctx=N_CTX, max_tokens=128, cache_dir=tmp_path, decode_tokens=0)
    (first,) = runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], options)
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", options) == first
    monkeypatch.setattr(runner, "cpu_kernels", lambda: "OTHER")
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", options) is None
    monkeypatch.undo()
    # An entry the runner cached before its key named the kernels (the same parts less cpu_kernels).
    parts: dict = {}
    monkeypatch.setattr(runner, "result_key", lambda p: parts.update(p) or result_key(p))
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", options) == first
    monkeypatch.undo()
    assert parts.pop("cpu_kernels") == torch.backends.cpu.get_cpu_capability()
    cache = ResultCache(tmp_path)
    cache.path(first.key).unlink()
    cache.put(replace(first, key=result_key(parts)))
    assert cache.get(result_key(parts)) is not None
    assert runner.cached_result(str(tiny_llama_dir), "shakespeare", "int8", options) is None


def test_should_stop_keeps_finished_results(baseline):
    seen = []
    out = runner.evaluate(None, None, ["int8", "nf4"], replace(OPTIONS, decode_tokens=0), baseline=baseline,
                          on_result=seen.append, should_stop=lambda: len(seen) >= 1)  # fmt: skip
    assert [r.method_id for r in out] == ["int8"] == [r.method_id for r in seen]


def test_stop_during_a_method_drops_only_that_method(baseline):
    windows = []

    def progress(method_id, done, total):
        windows.append((method_id, done))

    out = runner.evaluate(None, None, ["int8", "nf4"], replace(OPTIONS, decode_tokens=0), baseline=baseline,
                          progress=progress, should_stop=lambda: ("nf4", 1) in windows)  # fmt: skip
    assert [r.method_id for r in out] == ["int8"]


def test_baseline_with_other_settings_is_refused(baseline):
    with pytest.raises(ValueError, match="n_ctx: baseline 64, asked 128"):
        runner.evaluate(None, None, ["int8"], EvaluateOptions(n_ctx=128, max_tokens=TOKENS), baseline=baseline)
    with pytest.raises(ValueError, match="give a model and a corpus, or a prepared baseline"):
        runner.evaluate(None, None, ["int8"])


def test_group_size_that_fits_nothing_fails_after_earlier_results(baseline):
    seen = []
    with pytest.raises(ValueError, match="int4-g256: group size 256 .* fits none"):
        runner.evaluate(None, None, ["int8", "int4-g256"], replace(OPTIONS, decode_tokens=0), baseline=baseline,
                        on_result=seen.append)  # fmt: skip
    assert [r.method_id for r in seen] == ["int8"]


def test_fallbacks_are_recorded_in_the_result(baseline):
    (r,) = runner.evaluate(None, None, ["int4-g128"], replace(OPTIONS, decode_tokens=0), baseline=baseline)
    assert r.fallbacks[0]["count"] == 12 and "int4 group 64" in r.fallbacks[0]["reason"]
    assert any("fallback in 12 layer(s)" in n for n in r.notes)


def test_keys_depend_on_every_setting(baseline):
    settings = runner.run_settings(baseline.source, baseline.corpus, OPTIONS)
    key = runner.method_key(settings, Int8WeightOnlyConfig(), OPTIONS, None)
    assert key != runner.method_key(settings, parse_method("int8-dyn"), OPTIONS, None)
    assert key != runner.method_key({**settings, "dtype": "fp32"}, Int8WeightOnlyConfig(), OPTIONS, None)
    assert key != runner.method_key(settings, Int8WeightOnlyConfig(), replace(OPTIONS, decode_tokens=3), None)
    assert key == runner.method_key(dict(settings), Int8WeightOnlyConfig(), OPTIONS, None)
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ctx": 4}, "n_ctx 4 must be a whole number from 8 to"),
        ({"n_ctx": 512, "max_tokens": 256}, "max_tokens 256 is less than one window of n_ctx 512"),
        ({"decode_tokens": -1}, "decode_tokens -1 must be a whole number >= 0"),
        ({"calibration_samples": 0}, "calibration_samples 0 must be a whole number >= 1"),
        ({"n_ctx": 64.0}, "n_ctx 64.0 must be a whole number"),
        ({"scoring": "half"}, "scoring 'half': use whole or second-half"),
        ({"dtype": "int3"}, "dtype 'int3' is not supported"),
        ({"device": "tpu"}, "is not a device name: use cpu or cuda"),
    ],
)
def test_options_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvaluateOptions(**kwargs)


def test_options_take_strings_and_store_typed_values(tmp_path):
    o = EvaluateOptions(scoring="second-half", device="cpu", dtype="fp32", cache_dir=str(tmp_path))
    assert (o.scoring, o.device, o.dtype, o.cache_dir) == (Scoring.SECOND_HALF, torch.device("cpu"), torch.float32,
                                                           tmp_path)  # fmt: skip
    assert o == EvaluateOptions(scoring=Scoring.SECOND_HALF, dtype=torch.float32, cache_dir=tmp_path)
