"""``python -m evaluation sweep`` in-process: plans from flags and TOML/JSON files, one results file for
models x corpora x methods, a failing cell recorded without losing the others, a re-run that recomputes
nothing, and bad plans refused with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.results import load_results, parse_failures
from evaluation.sweep import Cell, RayConfig, SweepRecorder, make_plan, read_plan_file, run_sweep

FAST = {"tokens": 128, "ctx": 64, "decode_tokens": 0}


def _sweep(*args, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("RAY_ADDRESS", None) if "RAY_ADDRESS" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "evaluation", "sweep", *args], capture_output=True, text=True,
                          env=env)  # fmt: skip


def test_plan_from_a_toml_file_with_flags_winning(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('models = ["smollm2-135m", "./mine"]\nmethods = "int8, Q4_K_M"\ntokens = 2048\n'
                    '[ray]\naddress = "ray://head:10001"\ntask_gpus = 1\ntask_memory = "16GiB"\n')  # fmt: skip
    data = read_plan_file(path)
    ray = data.pop("ray")
    plan = make_plan({**data, "tokens": 1024}, ray, default_cache=tmp_path)
    assert plan.models == ("smollm2-135m", "./mine") and plan.corpora == ("shakespeare",)
    assert plan.methods == ("baseline", "int8", "gguf-Q4_K_M")  # the baseline row first, ids normalised
    assert plan.options.max_tokens == 1024 and plan.options.cache_dir == tmp_path
    assert plan.ray == RayConfig("ray://head:10001", task_gpus=1, task_memory=16 * 2**30)
    assert len(plan.cells()) == 2 * 1 * 3 and plan.cells()[1] == Cell("smollm2-135m", "shakespeare", "int8")


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('{"modles": ["x"]}', ".json", r"unknown key\(s\) modles; known: models"),
        ("models = [", ".toml", "is not valid TOML"),
        ('{"models": []}', ".json", "plan 'models' is empty"),
        ('{"models": [1]}', ".json", "must be a list of strings"),
        ('{"methods": ["int9"]}', ".json", "unknown method 'int9'"),
        ('{"ray": {"max_retries": -1}}', ".json", "max_retries -1 must be a whole number from 0 to 100"),
        ('{"ray": {"nodes": 3}}', ".json", r"unknown key\(s\) ray.nodes"),
        ('{"max_memory": "0=1GiB"}', ".json", "max_memory limits a device_map"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(tmp_path, text, suffix, message):
    path = tmp_path / f"plan{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        data = read_plan_file(path)
        make_plan(data, data.pop("ray", None), default_cache=None)


def test_in_process_sweep_records_a_failure_and_keeps_the_rest(tiny_llama_dir, tiny_tied_llama_dir, tmp_path):
    settings = {**FAST, "models": [str(tiny_llama_dir), str(tiny_tied_llama_dir)],
                "methods": "int8,int4-g256,rtn-3b-g32", "cache_dir": tmp_path / "cache"}  # fmt: skip
    plan = make_plan(settings, None, default_cache=None)
    out = tmp_path / "sweep.json"
    seen = []
    run_sweep(plan, SweepRecorder(plan, out, on_result=seen.append))
    results = load_results(out)
    assert [(r.model.id, r.method_id) for r in results] == [
        (m, x) for m in (tiny_llama_dir.name, tiny_tied_llama_dir.name) for x in ("baseline", "int8", "rtn-3b-g32")
    ]
    failures = parse_failures(json.loads(out.read_text()))
    assert [(f.model, f.method_id, f.attempts) for f in failures] == [
        (str(tiny_llama_dir), "int4-g256", 1), (str(tiny_tied_llama_dir), "int4-g256", 1)]  # fmt: skip
    assert failures[0].error.startswith("ValueError: int4-g256: group size 256")
    # Re-running recomputes nothing: every result comes from the cache, unchanged.
    again = SweepRecorder(plan, tmp_path / "again.json")
    run_sweep(plan, again)
    assert again.ordered()[0] == results


def test_sweep_command_line(tiny_llama_dir, tmp_path):
    out = tmp_path / "sweep.json"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"models": [str(tiny_llama_dir)], "methods": ["int8"], **FAST}))
    proc = _sweep("--plan", str(plan), "--methods", "int8,int4-g256", "--cache-dir", str(tmp_path / "c"),
                  "--out", str(out), "--quiet")  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a cell failed: status 1, the rest in the file
    assert "failed: " in proc.stderr and "int4-g256" in proc.stderr
    assert f"results: {out} (2 of 3 cells, 1 failed)" in proc.stdout
    assert [r.method_id for r in load_results(out)] == ["baseline", "int8"]
    proc = _sweep("--plan", str(plan), "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet")
    assert proc.returncode == 0 and "retrying 1 cell(s) that failed before" not in proc.stderr
    bad = _sweep("--plan", str(tmp_path / "missing.toml"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot read plan file")


def test_recorder_reads_back_an_earlier_out_file(tmp_path):
    plan = make_plan({"models": "m", "methods": "int8"}, None, default_cache=None)
    rows = load_results(Path(__file__).parent / "data" / "results-v1.json")
    out = tmp_path / "out.json"
    recorder = SweepRecorder(plan, out)
    recorder.add(Cell("m", "shakespeare", "baseline"), rows[0])
    recorder.fail(Cell("m", "shakespeare", "int8"), "RuntimeError: boom", 3)
    assert SweepRecorder(plan, out).known_results() == {rows[0].key: rows[0]}
    recorder.add(Cell("m", "shakespeare", "int8"), rows[1])  # a retry that worked clears the failure
    assert not parse_failures(json.loads(out.read_text()))
