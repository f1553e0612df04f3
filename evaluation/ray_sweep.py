"""A sweep on Ray: each (model, corpus, method) is a Ray task; Ray schedules, places, retries and reports.

Ray is the engine here, not something we rebuild: resources per task (``num_cpus``, ``num_gpus``,
``memory``) decide where and how many tasks run at once, ``max_retries`` re-runs a task whose worker
died (and one that raised RuntimeError/OSError; a ValueError is the user's to fix and is not retried),
the object store carries each model's baseline to every task that needs it, and the dashboard shows the
tasks. Per (model, corpus):

1. a probe task resolves the model and corpus where they will be used, computes every method's cache key
   and reads the result cache (``EvaluateOptions.cache_dir``: a shared folder on a cluster); results
   found there, or in the ``--out`` file of an earlier run, are done;
2. one baseline task loads the model and computes the baseline logits once (and the baseline's own row),
   returning a ``scoring.BaselinePayload`` that stays in Ray's object store;
3. one task per remaining method loads its own copy of the model, quantizes it, and scores it against
   the payload (``runner.evaluate_method``); it writes its cache entry and returns the ``Result``.

The driver waits on the tasks as they finish (``ray.wait``), hands each result or failure to the
``SweepRecorder`` (which rewrites the results file atomically), and shows a tqdm bar and the dashboard's
address. Tasks are plain functions of this module: the cluster's Python must have quantfit installed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from evaluation.sweep import Cell, SweepPlan, SweepRecorder, describe_error

GIB = 2**30
LIBRARY_BYTES = 2 * GIB
"""Memory a task needs besides the model and logits: torch, transformers and their buffers (measured
about 0.9 GiB resident here; doubled for headroom)."""
RETRIED = (RuntimeError, OSError)
"""Exceptions raised inside a task that Ray retries (a dead worker is always retried); others are final."""


@dataclass(frozen=True)
class Probe:
    """What the driver needs to schedule one (model, corpus): per method (id, key, cached result or None),
    and the sizes that set a task's memory."""

    rows: list[tuple[str, str, object]]
    n_params: int
    vocab_size: int


def _threads(cpus: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus)))


def probe(model_ref: str, corpus_ref: str, options, method_ids: list[str]) -> Probe:
    """Resolve the model and corpus, key every method, and look each key up in the result cache."""
    from transformers import AutoConfig

    from evaluation.methods import parse_method
    from evaluation.results import ResultCache
    from evaluation.runner import calibration_spec, method_key, run_settings
    from evaluation.scoring import resolve

    source, corpus = resolve(model_ref, corpus_ref, options)
    settings = run_settings(source, corpus, options)
    cache = ResultCache(options.cache_dir) if options.cache_dir is not None else None
    rows = []
    for method_id in method_ids:
        config = parse_method(method_id)
        key = method_key(settings, config, options, calibration_spec(config, corpus, options))
        rows.append((config.method_id, key, cache.get(key) if cache is not None else None))
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    config = AutoConfig.from_pretrained(source.path, trust_remote_code=False, **kwargs)
    from calculator.models import spec_from_config

    return Probe(rows, spec_from_config(config.to_dict()).total_params, int(config.vocab_size))


def baseline_task(model_ref: str, corpus_ref: str, options, cpus: int, row_key: str | None, floor: bool):
    """The baseline's payload for the object store, and its own result row when ``row_key`` is given."""
    from evaluation.methods import BaselineConfig
    from evaluation.results import ResultCache
    from evaluation.runner import evaluate_method
    from evaluation.runtime import runtime_floor
    from evaluation.scoring import prepare_baseline

    _threads(cpus)
    baseline = prepare_baseline(model_ref, corpus_ref, options)
    try:
        row = None
        if row_key is not None:
            row = evaluate_method(baseline, BaselineConfig(), options, key=row_key)
            if options.cache_dir is not None:
                ResultCache(options.cache_dir).put(row)
        if floor:
            runtime_floor(baseline)  # llama.cpp on the baseline's own weights, carried to the GGUF tasks
        return baseline.payload(), row
    finally:
        baseline.close()


def method_task(model_ref: str, corpus_ref: str, options, cpus: int, method_id: str, key: str, payload):
    """Load a copy of the model, quantize it with ``method_id``, score it against ``payload``."""
    from evaluation.methods import parse_method
    from evaluation.models import load_model
    from evaluation.results import ResultCache
    from evaluation.runner import evaluate_method
    from evaluation.scoring import attach_payload, resolve

    _threads(cpus)
    source, corpus = resolve(model_ref, corpus_ref, options)
    model, tokenizer = load_model(source, options=options)
    baseline = attach_payload(payload, source, corpus, options, model, tokenizer)
    result = evaluate_method(baseline, parse_method(method_id), options, key=key, model=model)
    if options.cache_dir is not None:
        ResultCache(options.cache_dir).put(result)
    return result


# ----------------------------------------------------------------------------------------------- the driver


def connect(address: str):
    """Join Ray: already initialized (tests, notebooks), "local", "auto" (this machine's cluster, else a new
    local one) or a cluster address. Returns the dashboard URL ("" when the cluster runs none)."""
    import ray

    if not ray.is_initialized():
        if address == "local":
            ray.init(log_to_driver=False)
        elif address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False)
            except ConnectionError:  # no cluster running here: start one
                ray.init(log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    url = dashboard_url()
    return f"http://{url}" if url and not url.startswith("http") else url


def dashboard_url() -> str:
    """host:port of the connected cluster's dashboard, "" when it runs none."""
    from ray._private import worker

    node = getattr(worker.global_worker, "node", None)
    return (getattr(node, "address_info", None) or {}).get("webui_url") or ""


def _task_memory(plan: SweepPlan, probe_: Probe, copies: float) -> int:
    """Bytes a task reserves: ``copies`` models in the baseline dtype, the logits, the libraries."""
    if plan.ray.task_memory is not None:
        return plan.ray.task_memory
    dtype_bytes = plan.options.dtype.itemsize
    logits = plan.options.max_tokens * probe_.vocab_size * dtype_bytes
    return int(copies * probe_.n_params * dtype_bytes + logits + LIBRARY_BYTES)


def _attempts(err: BaseException, plan: SweepPlan) -> int:
    import ray

    cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) else err
    return plan.ray.max_retries + 1 if not isinstance(cause, ValueError) else 1


def _error(err: BaseException) -> str:
    import ray

    if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
        return describe_error(err.cause)
    return describe_error(err)


def run_on_ray(plan: SweepPlan, recorder: SweepRecorder, *, show_bar: bool = True) -> None:
    """Run every cell of ``plan`` as Ray tasks (see the module docstring); returns when all have finished."""
    import ray
    from tqdm import tqdm

    from evaluation.methods import parse_method
    from evaluation.runtime import engine_version

    cfg = plan.ray
    url = connect(cfg.address)
    print(f"Ray dashboard: {url}" if url else "Ray: no dashboard on this cluster (pip install 'ray[default]')",
          file=sys.stderr)  # fmt: skip
    gpus = cfg.task_gpus if cfg.task_gpus is not None else (1 if plan.options.device.type == "cuda" else 0)
    retry = {"max_retries": cfg.max_retries, "retry_exceptions": list(RETRIED)}
    remote_probe = ray.remote(probe).options(num_cpus=1, **retry)
    remote_baseline, remote_method = ray.remote(baseline_task), ray.remote(method_task)
    task = {"num_cpus": cfg.task_cpus, "num_gpus": gpus, **retry}

    known = recorder.known_results()
    groups = [(m, c) for m in plan.models for c in plan.corpora]
    probes = {g: remote_probe.remote(*g, plan.options, list(plan.methods)) for g in groups}
    bar = tqdm(total=len(plan.cells()), unit="cell", desc="sweep", file=sys.stderr, disable=not show_bar)
    pending: dict = {}
    for (model, corpus), ref in probes.items():
        try:
            found: Probe = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - the whole group fails alike
            for method_id in plan.methods:
                recorder.fail(Cell(model, corpus, method_id), _error(err), _attempts(err, plan))
                bar.update(1)
            continue
        todo = []
        for method_id, key, cached in found.rows:
            done = cached or known.get(key)
            if done is not None:
                recorder.add(Cell(model, corpus, method_id), done)
                bar.update(1)
            else:
                todo.append((method_id, key))
        if not todo:
            continue
        row_key = next((key for m, key in todo if m == "baseline"), None)
        floor = engine_version() is not None and any(parse_method(m).runtime_engine for m, _ in todo)
        payload, row = remote_baseline.options(num_returns=2, memory=_task_memory(plan, found, 1.5), **task).remote(
            model, corpus, plan.options, cfg.task_cpus, row_key, floor
        )
        if row_key is not None:
            pending[row] = Cell(model, corpus, "baseline")
        for method_id, key in todo:
            if method_id != "baseline":
                ref = remote_method.options(memory=_task_memory(plan, found, 2.5), **task).remote(
                    model, corpus, plan.options, cfg.task_cpus, method_id, key, payload
                )
                pending[ref] = Cell(model, corpus, method_id)
    try:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                recorder.add(cell, ray.get(ready))
            except Exception as err:  # noqa: BLE001 - recorded; the other tasks go on
                recorder.fail(cell, _error(err), _attempts(err, plan))
            bar.update(1)
            bar.set_postfix(failed=len(recorder.failures))
    finally:
        for ref in pending:
            ray.cancel(ref)
        bar.close()

