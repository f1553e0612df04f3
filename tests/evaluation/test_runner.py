"""The runner on the tiny Llama: identical model, uniform model, caching and resume, stop, progress, results
files and their validation."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from evaluation import runner
from evaluation.methods import Int8WeightOnlyConfig, parse_method
from evaluation.metrics import summarize
from evaluation.results import (
    MAX_RESULTS_FILE_BYTES,
    SCHEMA_VERSION,
    ResultCache,
    load_results,
    loads_results,
    save_results,
)

N_CTX, TOKENS = 64, 256


@pytest.fixture(scope="module")
def baseline(tiny_llama_dir):
    torch.set_num_threads(1)
    return runner.prepare_baseline(str(tiny_llama_dir), "shakespeare", n_ctx=N_CTX, max_tokens=TOKENS)


@pytest.fixture(scope="module")
def results(baseline):
    return runner.evaluate(
        None,
        None,
        ["baseline", "int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"],
        n_ctx=N_CTX,
        max_tokens=TOKENS,
        baseline=baseline,
        decode_tokens=2,
    )


def test_identical_model_scores_zero_kld_and_full_agreement(baseline):
    stats, seconds = runner.score_model(baseline, copy.deepcopy(baseline.model))
    m = summarize(stats)
    assert m.kld_mean == 0 and m.kld_percentiles["99.9"] == 0 and m.top1_agreement == 1
    assert m.ppl == m.baseline_ppl and m.rms_dp == 0 and seconds > 0


def test_uniform_model_perplexity_is_the_vocabulary_size(baseline):
    model = copy.deepcopy(baseline.model)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1 / V for every token
    m = summarize(runner.score_model(baseline, model)[0])
    assert m.ppl == pytest.approx(model.config.vocab_size, rel=1e-6)
    assert m.ppl_err < 1e-6 * m.ppl  # every NLL is ln V: no spread beyond float round-off


def test_result_rows(results, baseline):
    by_id = {r.method_id: r for r in results}
    assert list(by_id) == ["baseline", "int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"]
    base = by_id["baseline"]
    assert base.kld_mean == 0 and base.top1_agreement == 1 and base.ppl == base.baseline_ppl
    assert base.bits_per_weight == pytest.approx(16, rel=1e-3)
    # Fewer bits: more drift and fewer bytes, measured.
    order = ["int8", "int4-g32", "rtn-3b-g32-asym", "rtn-2b-g32"]
    klds = [by_id[m].kld_mean for m in order]
    assert klds == sorted(klds) and klds[0] > 0
    sizes = [by_id[m].measured_bytes for m in order]
    assert sizes == sorted(sizes, reverse=True)
    for r in results:
        assert r.windows["n_windows"] == TOKENS // N_CTX and r.windows["scored_tokens"] == 4 * (N_CTX - 1)
        assert r.predicted_bytes is not None and abs(r.predicted_error_pct) < 0.1
        assert r.tokens_per_s > 0 and r.decode_ms_per_token > 0 and r.peak_rss_bytes > 0
        assert r.corpus["eval_files"][0] == "alls_well_that_ends_well_gut.txt"
        assert r.env["torch"] == torch.__version__
    # int8 per channel: 8 bits + one 16-bit scale per output row; per layer 36864 weights in 512 rows.
    assert by_id["int8"].bits_per_weight == pytest.approx(8 + 16 * 512 / 36864)
    assert by_id["rtn-3b-g32-asym"].bits_per_weight == pytest.approx(3 + 32 / 32)


def test_results_file_round_trip(results, tmp_path):
    path = tmp_path / "out" / "results.json"
    save_results(path, results)
    assert load_results(path) == results
    assert not [p for p in path.parent.iterdir() if p.name != "results.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["results"]) == len(results)


def _doc(results):
    return {
        "schema": "quantfit.evaluation.results",
        "schema_version": SCHEMA_VERSION,
        "results": [r.to_dict() for r in results],
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=99), "schema_version 99 is not supported"),
        (lambda d: d.update(schema="other"), "not a quantfit results file"),
        (lambda d: d["results"][0].pop("ppl"), "required field 'ppl' is missing"),
        (lambda d: d["results"][0].update(ppl="high"), "field 'ppl' must be int or float"),
        (lambda d: d["results"][0].update(measured_bytes=1.5), "field 'measured_bytes' must be int"),
        (lambda d: d["results"][0].update(notes=[1]), "notes must be a list of strings"),
        (lambda d: d["results"][0].update(surprise=1), "unknown field"),
        (lambda d: d["results"][0]["windows"].pop("n_ctx"), "windows lacks n_ctx"),
        (lambda d: d.update(results={}), "'results' must be a list"),
        (lambda d: d["results"][0].update(kld_mean=None), "must not be null"),
    ],
)
def test_malformed_results_are_rejected_with_the_reason(results, mutate, message):
    doc = _doc(results[:1])
    mutate(doc)
    with pytest.raises(ValueError, match=message):
        loads_results(json.dumps(doc))


def test_results_file_limits(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        loads_results(b"{broken")
    with pytest.raises(ValueError, match="over the"):
        loads_results(b" " * (MAX_RESULTS_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="cannot read results file"):
        load_results(tmp_path / "nope.json")


def test_cache_makes_reruns_instant_and_resumes(tiny_llama_dir, tmp_path, monkeypatch):
    calls = []

    def progress(method_id, done, total):
        calls.append((method_id, done, total))

    kwargs = dict(n_ctx=N_CTX, max_tokens=128, cache_dir=tmp_path, decode_tokens=0, progress=progress)
    first = runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], **kwargs)
    assert ("int8", 2, 2) in calls and ("baseline", 0, 2) in calls
    assert (tmp_path / "results" / f"{first[0].key}.json").is_file()

    def no_loading(*args, **kw):
        raise AssertionError("a cached re-run must not load the model")

    monkeypatch.setattr(runner, "load_model", no_loading)
    again = runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], **kwargs)
    assert again == first
    # A different setting is a different key: it would need the model.
    with pytest.raises(AssertionError, match="must not load"):
        runner.evaluate(str(tiny_llama_dir), "shakespeare", ["int8"], **{**kwargs, "max_tokens": 192})


def test_should_stop_keeps_finished_results(baseline):
    seen = []

    def stop():
        return len(seen) >= 1

    out = runner.evaluate(
        None,
        None,
        ["int8", "nf4"],
        n_ctx=N_CTX,
        max_tokens=TOKENS,
        baseline=baseline,
        decode_tokens=0,
        on_result=seen.append,
        should_stop=stop,
    )
    assert [r.method_id for r in out] == ["int8"] == [r.method_id for r in seen]


def test_stop_during_a_method_drops_only_that_method(baseline):
    windows = []

    def progress(method_id, done, total):
        windows.append((method_id, done))

    out = runner.evaluate(
        None,
        None,
        ["int8", "nf4"],
        n_ctx=N_CTX,
        max_tokens=TOKENS,
        baseline=baseline,
        decode_tokens=0,
        progress=progress,
        should_stop=lambda: ("nf4", 1) in windows,
    )
    assert [r.method_id for r in out] == ["int8"]


def test_baseline_with_other_settings_is_refused(baseline):
    with pytest.raises(ValueError, match="n_ctx: baseline 64, asked 128"):
        runner.evaluate(None, None, ["int8"], n_ctx=128, max_tokens=TOKENS, baseline=baseline)


def test_group_size_that_fits_nothing_fails_after_earlier_results(baseline):
    seen = []
    with pytest.raises(ValueError, match="fits none"):
        runner.evaluate(
            None,
            None,
            ["int8", "int4-g256"],
            n_ctx=N_CTX,
            max_tokens=TOKENS,
            baseline=baseline,
            decode_tokens=0,
            on_result=seen.append,
        )
    assert [r.method_id for r in seen] == ["int8"]


def test_fallbacks_are_recorded_in_the_result(baseline):
    (r,) = runner.evaluate(
        None, None, ["int4-g128"], n_ctx=N_CTX, max_tokens=TOKENS, baseline=baseline, decode_tokens=0
    )
    assert r.fallbacks[0]["count"] == 12 and "int4 group 64" in r.fallbacks[0]["reason"]
    assert any("fallback in 12 layer(s)" in n for n in r.notes)


def test_keys_depend_on_every_setting(baseline):
    settings = runner.run_settings(
        baseline.source, baseline.corpus, N_CTX, TOKENS, "whole", torch.bfloat16, torch.device("cpu")
    )
    key = runner._method_key(settings, Int8WeightOnlyConfig(), 16, None)
    assert key != runner._method_key(settings, parse_method("int8-dyn"), 16, None)
    assert key != runner._method_key({**settings, "dtype": "fp32"}, Int8WeightOnlyConfig(), 16, None)
    assert key == runner._method_key(dict(settings), Int8WeightOnlyConfig(), 16, None)
    assert len(key) == 64 and int(key, 16) >= 0


def test_cache_ignores_corrupt_entries(results, tmp_path):
    cache = ResultCache(tmp_path)
    cache.put(results[1])
    assert cache.get(results[1].key) == results[1]
    cache.path(results[1].key).write_text("{")
    assert cache.get(results[1].key) is None


def test_bundled_smollm2_results_are_valid_and_carry_the_q4_1_note():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "assets" / "results" / "smollm2-135m-shakespeare.json"
    rows = {r.method_id: r for r in load_results(path)}
    assert {"baseline", "int8", "int4-g32", "rtn-3b-g64-asym", "nf4"} <= set(rows)
    assert all(any("Q4_1" in n for n in r.notes) for r in rows.values())
    assert rows["rtn-3b-g64-asym"].kld_mean > rows["int4-g64"].kld_mean > rows["int8"].kld_mean
    assert all(abs(r.predicted_error_pct) < 2 for r in rows.values())
