"""Sweeps on a local Ray (``ray.init(num_cpus=2)``, no dashboard: cheap on a shared 2-core machine): the
same numbers as the in-process run, a worker killed mid-sweep loses nothing (Ray retries the task), a
failing cell is recorded while the others finish, and a re-run recomputes nothing.

Marked ``slow`` and ``ci``: CI runs them (Ray's start plus a few model loads per test, about a minute each).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest
import torch

pytest.importorskip("ray")

from evaluation.results import load_results  # noqa: E402
from evaluation.sweep import SweepRecorder, make_plan, run_sweep  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.timeout(900)]
TINY = {"tokens": 128, "ctx": 64, "decode_tokens": 0, "methods": "int8,rtn-3b-g32,int4-g256,Q4_0"}


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})  # fmt: skip
    yield ray
    ray.shutdown()


def _same(a, b) -> None:
    """Two runs' results: every figure equal to 1e-6 (timings, sizes of the process and dates aside)."""
    assert [r.method_id for r in a] == [r.method_id for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.key == y.key and x.measured_bytes == y.measured_bytes and x.fallbacks == y.fallbacks
        for q, p in [(x.quality, y.quality)] + ([(x.runtime.quality, y.runtime.quality)] if x.runtime else []):
            for f in dataclasses.fields(q):
                assert getattr(q, f.name) == pytest.approx(getattr(p, f.name), rel=1e-6, abs=1e-6), (x.method_id, f)


def _in_process(settings, tmp_path):
    torch.set_num_threads(1)  # the Ray tasks' one CPU each: the same float summation order
    plan = make_plan({**settings, "cache_dir": tmp_path / "in-process"}, None, default_cache=None)
    recorder = SweepRecorder(plan)
    run_sweep(plan, recorder)
    return recorder.ordered()


def test_smollm2_on_ray_equals_the_in_process_run(local_ray, tmp_path):
    settings = {"models": "smollm2-135m", "methods": "int8,rtn-4b-g64-asym,int4-g32", "tokens": 512, "ctx": 256,
                "decode_tokens": 0}  # fmt: skip
    expected, _ = _in_process(settings, tmp_path)
    plan = make_plan({**settings, "cache_dir": tmp_path / "ray"}, {"address": "auto"}, default_cache=None)
    recorder = SweepRecorder(plan, tmp_path / "ray.json")
    run_sweep(plan, recorder, show_bar=False)
    results, failures = recorder.ordered()
    assert not failures
    _same(results, expected)
    assert load_results(tmp_path / "ray.json") == results


def test_a_killed_worker_loses_nothing_and_failures_are_recorded(local_ray, tiny_llama_dir, tmp_path):
    import psutil

    settings = {**TINY, "models": str(tiny_llama_dir)}
    expected, expected_failures = _in_process(settings, tmp_path)
    plan = make_plan({**settings, "cache_dir": tmp_path / "ray"}, {"address": "auto", "max_retries": 2},
                     default_cache=None)  # fmt: skip
    recorder = SweepRecorder(plan, tmp_path / "ray.json")
    killed: list[int] = []

    def kill_one_method_task() -> None:
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if (proc.info["cmdline"] or [""])[0].startswith("ray::method_task"):
                    os.kill(proc.info["pid"], signal.SIGKILL)  # a worker of the Ray this test started
                    killed.append(proc.info["pid"])
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_method_task, daemon=True)
    killer.start()
    run_sweep(plan, recorder, show_bar=False)
    killer.join()
    results, failures = recorder.ordered()
    assert killed, "no method task was seen running"
    _same(results, expected)  # the killed task was retried: every cell is there, with the same numbers
    assert [(f.method_id, f.attempts) for f in failures] == [("int4-g256", 1)] == [
        (f.method_id, f.attempts) for f in expected_failures]  # fmt: skip
    assert failures[0].error == expected_failures[0].error

    # Re-running recomputes nothing: from the cache, or from the earlier --out file when there is no cache.
    again = SweepRecorder(plan, tmp_path / "again.json")
    run_sweep(plan, again, show_bar=False)
    assert again.ordered()[0] == results
    no_cache = dataclasses.replace(plan, options=dataclasses.replace(plan.options, cache_dir=None))
    resumed = SweepRecorder(no_cache, tmp_path / "ray.json")
    run_sweep(no_cache, resumed, show_bar=False)
    assert resumed.ordered()[0] == results
