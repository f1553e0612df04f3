"""The Quality page's run, as a user sees it: beside Run, how long it should take on this machine; during it,
one line per step (loading the model, the unquantized reference, each method) with its elapsed time and an
ETA; after it, the model stays loaded for the next run (``evaluation.plan.BaselineStore``).

Estimates come from measured timings (``evaluation.plan.estimate_run``): this server's runs first (any
session), else the bundled results' (made with the same CLI), scaled to the token budget. The ETA of a step is its
elapsed time over the windows done, times the windows left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from evaluation.plan import RunEstimate, RunSettings, estimate_run, method_ids_to_run, run_methods
from evaluation.results import Result
from ui.labels import plural
from ui.quality_data import baseline_store, bundled_results, machine_timings

LOADING, REFERENCE = "loading the model", "unquantized reference"


def duration(seconds: float) -> str:
    """12 s, 3 min 5 s, 1 h 02 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def estimate(settings: RunSettings, plan: list[str]) -> RunEstimate | None:
    """The expected time of running ``plan`` with ``settings``; None when no timing of this model exists."""
    model = settings.model.strip().lower()
    mine = [r for r in machine_timings().values() if r.model.ref.strip().lower() == model]
    bundled = [r for r in bundled_results()[0] if r.model.ref.strip().lower() == model]
    if not mine and not bundled:
        return None
    store = baseline_store()
    held = store.holds(settings)
    basis = "runs on this machine" if mine else "the bundled runs' timings"
    measured_load = store.compute_seconds if store.settings is not None and not held else None
    return estimate_run(plan, bundled + mine, settings, basis=basis,
                        baseline_seconds=0.0 if held else measured_load)


def run_caption(settings: RunSettings, plan: list[str]) -> str:
    """What pressing Run costs, in words, for the caption beside it."""
    if not plan:
        return ("Every chosen method is already on the chart: pick more methods or bit widths, or another "
                "model, text or budget.")
    held = baseline_store().holds(settings)
    found = estimate(settings, plan)
    when = (f"About **{duration(found.seconds)}** on this machine ({found.basis}, scaled to "
            f"{settings.tokens:,} tokens)" if found else "No timing of this model yet")
    model = ("the model is loaded (kept from the last run)" if held else
             "the first run also loads the model and computes the unquantized reference; it then stays "
             "loaded for the next run")
    return (f"{when}; {model}. Will run: " + ", ".join(f"`{m}`" for m in plan) +
            ". Methods measured before come from the engine's cache at once.")


class StepBoard:
    """One progress line per step, updated from ``run_methods``' callbacks with elapsed time and ETA."""

    def __init__(self, method_ids: list[str], found: RunEstimate | None) -> None:
        self.expected = dict(found.method_seconds) if found else {}
        self.bars = {name: st.progress(0.0, text=f"{name}: waiting") for name in method_ids}
        self.start: dict[str, float] = {}
        self.first_window: dict[str, float] = {}
        self.order = method_ids
        self.last_end = time.perf_counter()

    def _bar(self, name: str):
        return self.bars.get(name) or self.bars.setdefault(name, st.progress(0.0, text=name))

    def baseline(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if total == 0:  # before loading
            self.start[LOADING] = now
            self._bar(LOADING).progress(0.0, text=f"{LOADING}: started (once per model, text and budget)")
            return
        if REFERENCE not in self.start:
            loaded = now - self.start.get(LOADING, now)
            self._bar(LOADING).progress(1.0, text=f"{LOADING}: done in {duration(loaded)}")
            self.start[REFERENCE] = now
        self._windows(REFERENCE, done, total, now)
        self.last_end = now

    def method(self, method_id: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if method_id not in self.start:
            self.start[method_id] = self.last_end  # quantizing ran from the previous step's end until now
            self.first_window[method_id] = now
        self._windows(method_id, done, total, now)
        if total and done >= total:
            self.last_end = now
            following = self.order[self.order.index(method_id) + 1:] if method_id in self.order else []
            if following:
                nxt = following[0]
                expected = self.expected.get(nxt)
                about = f" (about {duration(expected)} in all)" if expected else ""
                self._bar(nxt).progress(0.0, text=f"{nxt}: quantizing{about}")

    def _windows(self, name: str, done: int, total: int, now: float) -> None:
        elapsed = now - self.start[name]
        if total and done >= total:
            self._bar(name).progress(1.0, text=f"{name}: done in {duration(elapsed)}")
            return
        scoring = now - self.first_window.get(name, self.start[name])
        eta = f" · ETA {duration(scoring / done * (total - done))}" if done else ""
        self._bar(name).progress(done / total if total else 0.0,
                                 text=f"{name}: window {done} of {total} · {duration(elapsed)} elapsed{eta}")


def run_with_progress(settings: RunSettings, plan: list[str], on_result: Callable[[Result], None],
                      shown: set[str]) -> int:
    """``evaluation.plan.run_methods`` inside an ``st.status`` with a ``StepBoard``; returns how many methods
    were newly measured."""
    ids = method_ids_to_run(plan, skip=shown)  # a typo fails here, before anything runs
    found = estimate(settings, ids)
    with st.status(f"Evaluating {plural(len(ids), 'method')} on {settings.model}…", expanded=True) as status:
        if found:
            st.caption(f"Expected: about {duration(found.seconds)} ({found.basis}).")
        board = StepBoard(ids, found)
        start = time.perf_counter()
        fresh = run_methods(settings, ids, store=baseline_store(), on_result=on_result, progress=board.method,
                            on_baseline=board.baseline)
        status.update(label=f"Done in {duration(time.perf_counter() - start)}", state="complete",
                      expanded=False)
    return fresh
