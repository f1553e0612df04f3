"""Sweeps: models x corpora x methods into one results file, in this process or as tasks on a Ray cluster.

    python -m evaluation sweep --models smollm2-135m --methods int8,int4-g32,Q4_K_M --tokens 1024 --out sweep.json
    python -m evaluation sweep --plan plan.toml --ray auto          # or RAY_ADDRESS=ray://head:10001

A plan is flags or a TOML/JSON file whose keys are the flags' names (``models = ["smollm2-135m"]``,
``tokens = 1024``, a ``[ray]`` table for ``address``, ``task_cpus``, ``task_gpus``, ``task_memory``,
``max_retries``); a flag given on the command line wins over the file. Every cell (model, corpus, method)
is evaluated exactly as ``python -m evaluation run`` evaluates it, under the same cache key, so a sweep
and a run share the result cache and a re-run recomputes nothing that finished.

Engines. In-process (the default): per model and corpus, the baseline once, then the methods in order, as
``run`` does. Ray (``--ray``, or ``RAY_ADDRESS`` in the environment): see ``evaluation.ray_sweep``. Either
way ``SweepRecorder`` writes the results file atomically after every cell, and a cell that fails (after
Ray's retries) is recorded in the file's ``failures`` without losing the others.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calculator.units import check_int, parse_bytes
from evaluation.results import Failure, Result, parse_failures, save_results

PLAN_KEYS = ("models", "corpora", "methods", "tokens", "ctx", "scoring", "dtype", "device", "device_map",
             "max_memory", "logits_storage", "decode_tokens", "calibration_samples", "threads", "cache_dir", "out")
RAY_KEYS = ("address", "task_cpus", "task_gpus", "task_memory", "max_retries")
DEFAULT_MAX_RETRIES = 2
"""Ray retries a task whose worker died (and one that raised RuntimeError/OSError) twice before recording it."""


@dataclass(frozen=True)
class RayConfig:
    """How cells become Ray tasks. ``address``: "auto" (the cluster on this machine, else a new local one),
    "local" (always a new local one) or a cluster address (``ray://head:10001``, ``head:6379``)."""

    address: str = "auto"
    task_cpus: int = 1
    """CPUs per task (also its torch threads)."""
    task_gpus: float | None = None
    """GPUs per task; None: 1 when the device is cuda, else 0."""
    task_memory: int | None = None
    """Bytes of memory a task reserves; None: estimated from the model's parameters and logits."""
    max_retries: int = DEFAULT_MAX_RETRIES

    def __post_init__(self) -> None:
        if not str(self.address).strip():
            raise ValueError("Ray address is empty: use auto, local or the cluster's address (ray://head:10001)")
        check_int("task_cpus", self.task_cpus, example="1 CPU per task")
        check_int("max_retries", self.max_retries, low=0, high=100, example="2")
        if self.task_gpus is not None and not 0 <= self.task_gpus <= 64:
            raise ValueError(f"task_gpus {self.task_gpus} must be between 0 and 64 (fractions share a GPU)")
        if self.task_memory is not None:
            object.__setattr__(self, "task_memory", parse_bytes(self.task_memory))


@dataclass(frozen=True)
class Cell:
    """One evaluation of a sweep: a method on a model and a corpus."""

    model: str
    corpus: str
    method_id: str


@dataclass(frozen=True)
class SweepPlan:
    """models x corpora x methods under one ``EvaluateOptions``; ``ray`` None runs in this process."""

    models: tuple[str, ...]
    corpora: tuple[str, ...]
    methods: tuple[str, ...]
    """Method ids as the engine spells them, the baseline first (its row costs no extra pass)."""
    options: Any
    """``evaluation.options.EvaluateOptions``."""
    threads: int = 0
    ray: RayConfig | None = None

    def cells(self) -> list[Cell]:
        return [Cell(m, c, x) for m in self.models for c in self.corpora for x in self.methods]


def _names(key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise ValueError(f"plan {key!r} must be a list of strings or a comma-separated string, got {value!r}")
    names = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    if not names:
        example = {"models": "smollm2-135m", "corpora": "shakespeare"}.get(key, "int8")
        raise ValueError(f"plan {key!r} is empty: name at least one (e.g. {key} = [\"{example}\"])")
    return names


def read_plan_file(path: str | Path) -> dict:
    """The settings of a TOML (``.toml``) or JSON plan file, unknown keys refused."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read plan file {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"plan file {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"plan file {path} must hold a table/object of settings")
    unknown = set(data) - set(PLAN_KEYS) - {"ray"}
    unknown |= {f"ray.{k}" for k in data.get("ray", {})} - {f"ray.{k}" for k in RAY_KEYS}
    if unknown:
        raise ValueError(f"plan file {path}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(PLAN_KEYS)} and [ray] {', '.join(RAY_KEYS)}")
    return data


def make_plan(settings: Mapping[str, Any], ray: Mapping[str, Any] | None, *, default_cache: Path | None) -> SweepPlan:
    """A ``SweepPlan`` from merged settings (``PLAN_KEYS``; missing ones take ``run``'s defaults) and a Ray
    table (None: in-process)."""
    from evaluation.cli import DEFAULT_METHODS
    from evaluation.methods import BaselineConfig, parse_method
    from evaluation.options import DEFAULT_CALIBRATION_SAMPLES, EvaluateOptions

    s = dict(settings)
    methods = [parse_method(m).method_id for m in _names("methods", s.get("methods", DEFAULT_METHODS))]
    methods = list(dict.fromkeys([BaselineConfig().method_id, *methods]))
    cache = s.get("cache_dir", default_cache)
    options = EvaluateOptions(
        n_ctx=s.get("ctx", 512), max_tokens=s.get("tokens", 4096), scoring=s.get("scoring", "whole"),
        device=s.get("device", "cpu"), dtype=s.get("dtype", "bf16"), cache_dir=Path(cache) if cache else None,
        decode_tokens=s.get("decode_tokens", 16),
        calibration_samples=s.get("calibration_samples") or DEFAULT_CALIBRATION_SAMPLES,
        device_map=s.get("device_map"), max_memory=s.get("max_memory"),
        logits_storage=s.get("logits_storage", "auto"),
    )  # fmt: skip
    threads = check_int("threads", s.get("threads", 0), low=0, high=4096, example="4, or 0 for torch's choice")
    return SweepPlan(
        _names("models", s.get("models", "smollm2-135m")), _names("corpora", s.get("corpora", "shakespeare")),
        tuple(methods), options, threads, RayConfig(**ray) if ray is not None else None,
    )  # fmt: skip


def ray_address_from_env() -> str | None:
    """``RAY_ADDRESS``, which makes a sweep use Ray even without ``--ray``."""
    return os.environ.get("RAY_ADDRESS") or None


# ----------------------------------------------------------------------------------------------- recording


def describe_error(err: BaseException) -> str:
    """One line: the exception's type and first line (``ValueError: group size 256 fits no layer``)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass
class SweepRecorder:
    """A sweep's results and failures, written to ``out`` (atomically) after every change, in plan order."""

    plan: SweepPlan
    out: Path | None = None
    on_result: Callable[[Result], None] | None = None
    on_failure: Callable[[Failure], None] | None = None
    results: dict[Cell, Result] = field(default_factory=dict)
    failures: dict[Cell, Failure] = field(default_factory=dict)

    def known_results(self) -> dict[str, Result]:
        """Results already in ``out`` by key (a previous run of the sweep), for an engine to skip."""
        if self.out is None or not self.out.is_file():
            return {}
        from evaluation.results import load_results

        try:
            return {r.key: r for r in load_results(self.out)}
        except ValueError:
            return {}

    def add(self, cell: Cell, result: Result) -> None:
        self.results[cell] = result
        self.failures.pop(cell, None)
        self._save()
        if self.on_result is not None:
            self.on_result(result)

    def fail(self, cell: Cell, error: str, attempts: int) -> None:
        failure = Failure(cell.model, cell.corpus, cell.method_id, error, attempts)
        self.failures[cell] = failure
        self._save()
        if self.on_failure is not None:
            self.on_failure(failure)

    def ordered(self) -> tuple[list[Result], list[Failure]]:
        cells = self.plan.cells()
        return ([self.results[c] for c in cells if c in self.results],
                [self.failures[c] for c in cells if c in self.failures])  # fmt: skip

    def _save(self) -> None:
        if self.out is not None:
            save_results(self.out, *self.ordered())


def previous_failures(out: Path | None) -> list[Failure]:
    """The failures recorded in an earlier sweep's ``out`` (to report what a re-run retries)."""
    if out is None or not out.is_file():
        return []
    try:
        return parse_failures(json.loads(out.read_text()), str(out))
    except (ValueError, OSError):
        return []


# ----------------------------------------------------------------------------------------------- in process


def run_in_process(plan: SweepPlan, recorder: SweepRecorder, progress=None) -> None:
    """Every cell in order, one baseline per (model, corpus), as ``run`` does; a failing cell is recorded
    and the sweep goes on (Ctrl-C stops it, keeping what finished)."""
    import torch

    from evaluation.runner import evaluate

    if plan.threads:
        torch.set_num_threads(plan.threads)
    for model in plan.models:
        for corpus in plan.corpora:
            held: list = []
            try:
                for method_id in plan.methods:
                    cell = Cell(model, corpus, method_id)
                    baseline = held[0] if held else None
                    try:
                        (result,) = evaluate(model, corpus, [method_id], plan.options, baseline=baseline,
                                             progress=progress, on_baseline=held.append)  # fmt: skip
                    except Exception as err:  # noqa: BLE001 - recorded, then the next cell runs
                        recorder.fail(cell, describe_error(err), 1)
                    else:
                        recorder.add(cell, result)
            finally:
                for baseline in held:
                    baseline.close()


def run_sweep(plan: SweepPlan, recorder: SweepRecorder, *, progress=None, show_bar: bool = True) -> None:
    """Run ``plan`` with its engine (Ray when ``plan.ray`` is set)."""
    if plan.ray is None:
        run_in_process(plan, recorder, progress)
    else:
        from evaluation.ray_sweep import run_on_ray

        run_on_ray(plan, recorder, show_bar=show_bar)


# ----------------------------------------------------------------------------------------------- command line


def register(sub) -> None:
    """``python -m evaluation sweep``: flags default to the plan file's values, then to ``run``'s defaults."""
    import argparse

    p = sub.add_parser("sweep", help="models x corpora x methods into one results file (in-process or on Ray)",
                       argument_default=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--plan", type=Path, help="TOML or JSON plan file; its keys are these flags' names")
    p.add_argument("--models", help="comma-separated model references (default: smollm2-135m)")
    p.add_argument("--corpora", help="comma-separated corpora (default: shakespeare)")
    p.add_argument("--methods", help="comma-separated method ids (the baseline row is always added)")
    p.add_argument("--tokens", type=int, help="token budget per model and corpus (default: 4096)")
    p.add_argument("--ctx", type=int, help="tokens per window (default: 512)")
    p.add_argument("--scoring", choices=["whole", "second-half"])
    p.add_argument("--dtype", help="baseline dtype: bf16 (default), fp32 or fp16")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--device-map", dest="device_map", help="auto | balanced | balanced_low_0 | sequential")
    p.add_argument("--max-memory", dest="max_memory", help="per device for --device-map: 0=70GiB,1=70GiB,cpu=200GiB")
    p.add_argument("--logits-storage", dest="logits_storage", choices=["auto", "memory", "file"])
    p.add_argument("--decode-tokens", dest="decode_tokens", type=int, help="decode steps timed per method (16)")
    p.add_argument("--calibration-samples", dest="calibration_samples", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads in this process (in-process engine)")
    p.add_argument("--cache-dir", dest="cache_dir", type=Path, help="result cache (shared storage on a cluster)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--out", type=Path, help="results JSON, rewritten atomically after every cell")
    p.add_argument("--force", action="store_true", help="let --out replace a file that is not a results file")
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run cells as Ray tasks: auto (default), local, or a cluster address; RAY_ADDRESS too")
    p.add_argument("--task-cpus", dest="task_cpus", type=int, help="CPUs (and torch threads) per Ray task (1)")
    p.add_argument("--task-gpus", dest="task_gpus", type=float, help="GPUs per Ray task (1 with --device cuda)")
    p.add_argument("--task-memory", dest="task_memory", help="memory a Ray task reserves (default: estimated)")
    p.add_argument("--max-retries", dest="max_retries", type=int, help="Ray retries of a failed task (2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results document instead of a table")
    p.set_defaults(func=command)


def plan_from_args(args) -> tuple[SweepPlan, Path | None]:
    """The plan the flags and the plan file describe, and the ``--out`` path."""
    from evaluation.cli import default_cache_dir

    given = vars(args)
    data = read_plan_file(given["plan"]) if "plan" in given else {}
    ray_table = dict(data.pop("ray", {}))
    settings = {**data, **{k: v for k, v in given.items() if k in PLAN_KEYS}}
    ray_table.update({k: v for k, v in given.items() if k in RAY_KEYS[1:]})
    address = given.get("ray") or ray_table.pop("address", None) or ray_address_from_env()
    if given.get("no_cache"):
        settings["cache_dir"] = None
    plan = make_plan(settings, {**ray_table, "address": address} if address else None,
                     default_cache=default_cache_dir())  # fmt: skip
    return plan, Path(settings["out"]) if settings.get("out") else None


def command(args) -> int:
    """Run the sweep; exit status 1 when a cell failed (its error is in the file's ``failures``)."""
    import sys

    from evaluation.cli import _Bars, format_context, format_table
    from evaluation.results import check_results_output, results_document

    plan, out = plan_from_args(args)
    if out is not None:
        out = check_results_output(out, force=getattr(args, "force", False))
    quiet = getattr(args, "quiet", False)
    retried = previous_failures(out)
    if retried and not quiet:
        print(f"retrying {len(retried)} cell(s) that failed before", file=sys.stderr)

    def said(failure: Failure) -> None:
        print(f"failed: {failure.model} / {failure.corpus} / {failure.method_id}: {failure.error}", file=sys.stderr)

    recorder = SweepRecorder(plan, out, on_failure=said)
    bars = _Bars(not quiet and plan.ray is None)
    try:
        run_sweep(plan, recorder, progress=bars, show_bar=not quiet)
    except KeyboardInterrupt:
        kept = len(recorder.results)
        print(f"interrupted: {kept} result(s) kept{f' in {out}' if out else ''}; run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        bars.close()
    results, failures = recorder.ordered()
    if getattr(args, "json", False):
        print(json.dumps(results_document(results, failures), indent=1))
    else:
        print(format_table(results))
        print(format_context(results))
        if out is not None:
            print(f"results: {out} ({len(results)} of {len(plan.cells())} cells, {len(failures)} failed)")
    return 1 if failures else 0
