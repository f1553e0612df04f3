"""Run planning (``evaluation.plan``), which the quality pages use: method plans against the engine's own
method parser, the chart filter, run-time estimates, the source-grid rule, validated run settings, the Pareto
frontier against its definition, bundled-file reading, the shared baseline store."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluation.plan import (
    BUNDLED_SWEEP,
    RESULT_FAMILIES,
    RESULTS_DIR,
    BaselineStore,
    PlanFamily,
    RunSettings,
    estimate_run,
    pareto_front,
    plan_methods,
    read_results_files,
    requantizes_source_grid,
    results_files,
    shown_by_choice,
)
from evaluation.results import load_results


def test_plan_methods():
    assert plan_methods(["RTN", "GGUF"], [8, 4], 128) == [
        "baseline", "rtn-8b-g128-asym", "gguf-Q8_0", "rtn-4b-g128-asym", "gguf-Q4_K_M", "gguf-Q4_0"]
    assert plan_methods(["int kernels", "bitsandbytes"], [4, 8], 32) == [
        "baseline", "int8", "int8-dyn", "int4-g32", "nf4", "nf4-dq", "fp4", "fp4-dq"]
    assert plan_methods([PlanFamily.BITSANDBYTES], [3], 64, " Q5_0, int8 ,,Q5_0") == ["baseline", "Q5_0", "int8"]
    assert plan_methods([], [], 128) == ["baseline"]


def test_plan_methods_rejects_what_is_not_offered():
    with pytest.raises(ValueError, match="'QAT' is not a valid PlanFamily"):
        plan_methods(["QAT"], [4], 128)
    with pytest.raises(ValueError, match=r"bit width\(s\) \[7\] are not offered"):
        plan_methods(["RTN"], [7, 4], 128)
    with pytest.raises(ValueError, match="group size 0 must be a whole number >= 1"):
        plan_methods(["RTN"], [4], 0)


def test_every_planned_method_is_an_engine_method():
    from evaluation.methods import parse_method

    every = [f.value for f in PlanFamily]
    planned = {m for g in (32, 64, 128) for m in plan_methods(every, [8, 6, 5, 4, 3, 2], g)}
    assert len(planned) == 1 + 3 * (6 + 1 + 6 + 6) + 2 + 4 + 7  # group-wise families x 3 groups, the rest
    assert {parse_method(m).method_id for m in planned} == planned


def test_run_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="the model is empty"):
        RunSettings("  ", "shakespeare", 1024, 512)
    with pytest.raises(ValueError, match="a token budget of 256 is less than one 512-token window"):
        RunSettings("smollm2-135m", "shakespeare", 256, 512)
    with pytest.raises(ValueError, match="context 0 must be a whole number >= 1"):
        RunSettings("smollm2-135m", "shakespeare", 256, 0)
    with pytest.raises(ValueError, match="token budget 1024.0 must be a whole number >= 1"):
        RunSettings("smollm2-135m", "shakespeare", 1024.0, 512)


def test_bundled_sweep_settings_match_its_file():
    """BUNDLED_SWEEP is read off the file's own records, not the other way round."""
    doc = json.loads((RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json").read_text())
    records = doc["results"]
    assert {(r["model"]["ref"], r["corpus"]["name"], r["windows"]["max_tokens"], r["windows"]["n_ctx"])
            for r in records} == {("smollm2-135m", "shakespeare", 1024, 512)}
    results = load_results(RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json")
    assert all(BUNDLED_SWEEP.matches(r) for r in results)
    assert not any(RunSettings("SmolLM2-135M", "shakespeare", 2048, 512).matches(r) for r in results)
    assert all(RunSettings(" SmolLM2-135M ", "shakespeare", 1024, 512).matches(r) for r in results)


def test_a_bad_results_file_is_reported_not_fatal(tmp_path):
    (tmp_path / "b-broken.json").write_text('{"schema": "quantfit.evaluation.results", "results": [')
    good = RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json"
    (tmp_path / "a-good.json").write_bytes(good.read_bytes())
    paths = results_files(tmp_path)
    assert [p.name for p in paths] == ["a-good.json", "b-broken.json"]
    results, problems = read_results_files(paths)
    assert len(results) == len(json.loads(good.read_text())["results"])
    assert len(problems) == 1 and "b-broken.json" in problems[0]


def test_baseline_store_computes_once_per_key_and_frees_the_old_one():
    store, calls = BaselineStore(), []

    def compute(tag):
        def run():
            calls.append(tag)
            return object()
        return run

    first = store.get(("smollm2", 1024), compute("a"))
    threads = [threading.Thread(target=store.get, args=(("smollm2", 1024), compute("b"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"] and store.get(("smollm2", 1024), compute("c")) is first
    other = store.get(("smollm2", 2048), compute("d"))
    assert other is not first and calls == ["a", "d"]


points_strategy = st.lists(st.tuples(st.floats(0, 20), st.floats(-5, 1e4)), min_size=1, max_size=40)


@given(points_strategy, st.booleans())
def test_pareto_front_is_the_set_of_undominated_points(points, lower_is_better):
    sign = 1 if lower_is_better else -1
    front = pareto_front(points, lower_is_better=lower_is_better)
    xs = [points[i][0] for i in front]
    ys = [sign * points[i][1] for i in front]
    # Better quality as size grows along the frontier.
    assert xs == sorted(xs) and all(a > b for a, b in zip(ys, ys[1:], strict=False))
    for px, py in points:
        assert any(points[i][0] <= px and sign * points[i][1] <= sign * py for i in front)
    for i in front:
        fx, fy = points[i][0], sign * points[i][1]
        assert not any(x <= fx and sign * y < fy for x, y in points)


def test_pareto_front_worked_example():
    assert pareto_front([(4, 0.1), (8, 0.01), (5, 0.2)]) == [0, 1]
    assert pareto_front([(4, 90.0), (8, 99.0), (5, 80.0)], lower_is_better=False) == [0, 1]


SWEEP = load_results(RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json")


def test_the_filter_shows_what_the_choice_names():
    by_id = {r.method_id: r for r in SWEEP}
    assert {r.family for r in SWEEP} - {"baseline"} <= set(RESULT_FAMILIES.values())
    assert shown_by_choice(by_id["gguf-Q4_K_M"], ["GGUF"], [4])
    assert not shown_by_choice(by_id["gguf-Q4_K_M"], ["RTN"], [4])
    assert not shown_by_choice(by_id["gguf-Q4_K_M"], ["GGUF"], [8])
    assert shown_by_choice(by_id["baseline"], [], [])  # the reference point always
    assert shown_by_choice(by_id["int4-g32"], ["int kernels"], [4])  # any group size
    assert shown_by_choice(by_id["nf4"], [], [], extra="gguf-Q8_0, nf4")  # typed ids too


def test_only_the_q4_1_grid_points_are_set_apart():
    flagged = {r.method_id for r in SWEEP if requantizes_source_grid(r)}
    assert flagged == {"int4-g32"}  # asymmetric 4-bit, group 32: Q4_1's own grid
    reason = requantizes_source_grid(next(r for r in SWEEP if r.method_id == "int4-g32"))
    assert "Q4_1" in reason and "losslessly" in reason


def test_run_estimate_scales_evaluation_and_keeps_quantization():
    by_id = {r.method_id: r for r in SWEEP}
    q4_0, base = by_id["gguf-Q4_0"], by_id["baseline"]
    twice = RunSettings("smollm2-135m", "shakespeare", tokens=2 * q4_0.windows.max_tokens, ctx=512)
    found = estimate_run(["baseline", "gguf-Q4_0"], SWEEP, twice)
    assert dict(found.method_seconds) == {"gguf-Q4_0": pytest.approx(q4_0.quantize_seconds + 2 * q4_0.eval_seconds)}
    assert found.baseline_seconds == pytest.approx(2 * base.eval_seconds)
    held = estimate_run(["gguf-Q4_0"], SWEEP, twice, baseline_seconds=0.0)
    assert held.seconds == pytest.approx(found.seconds - found.baseline_seconds)
    # Never timed: the median of its family prefix (gptq-*), not zero.
    gptq = sorted(r.quantize_seconds + 2 * r.eval_seconds for r in SWEEP if r.method_id.startswith("gptq-"))
    guess = dict(estimate_run(["gptq-6b-g128"], SWEEP, twice).method_seconds)["gptq-6b-g128"]
    assert gptq[0] <= guess <= gptq[-1]


def test_baseline_store_says_what_it_holds():
    store = BaselineStore()
    assert not store.holds(BUNDLED_SWEEP) and store.compute_seconds is None
    store.get(("k",), lambda: "model", BUNDLED_SWEEP)
    assert store.holds(BUNDLED_SWEEP) and store.compute_seconds >= 0
    other = RunSettings("smollm2-135m", "shakespeare", tokens=2048, ctx=512)
    assert not store.holds(other)
