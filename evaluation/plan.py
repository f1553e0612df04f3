"""Run planning for front ends (the app's quality pages): which method ids a choice of families x bit widths
x group size means (and which results such a choice shows), the settings a run and its results are keyed by,
how long a run will take (from measured timings), the Pareto frontier over (size, quality), the bundled
results files, one shared prepared baseline, and a run that reports as it goes.

Pure Python and free of torch at import time (``tests/app/test_structure.py`` imports it in a fresh
interpreter and checks), so a page that only reads results never loads torch; ``run_methods`` imports
the engine when it is called. Never streamlit: a page passes callbacks that draw.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from calculator.paths import ASSETS_DIR
from calculator.units import check_int
from evaluation.results import Result, load_results

RESULTS_DIR = ASSETS_DIR / "results"
"""The bundled results (``python -m evaluation run --out``), shown on first launch."""
DECODE_TOKENS = 0
"""Decode steps timed per method in a front-end run: none, as in the bundled sweep (``--decode-tokens 0``),
so that runs share its cache keys; decode timings of a busy CPU mislead anyway."""


@dataclass(frozen=True)
class RunSettings:
    """What a run is, besides its methods: the model reference, the corpus and the evaluation windows.
    ``RunSettings("smollm2-135m", "shakespeare", tokens=1024, ctx=512)``: two windows of 512 tokens."""

    model: str
    """A model reference as ``evaluation.models.resolve_model_source`` takes it (preset, folder, .gguf, Hub id)."""
    corpus: str
    tokens: int
    """Evaluation tokens in all (``max_tokens``)."""
    ctx: int
    """Tokens per window (``n_ctx``)."""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("the model is empty: type smollm2-135m, a model folder, a .gguf file or a Hub id")
        check_int("token budget", self.tokens, example="1024 tokens")
        check_int("context", self.ctx, example="512 tokens per window")
        if self.tokens < self.ctx:
            raise ValueError(f"a token budget of {self.tokens} is less than one {self.ctx}-token window: raise "
                             "the budget or lower the context")

    def matches(self, result: Result) -> bool:
        """Whether ``result`` was measured with these settings (model reference compared case-blind)."""
        return (
            result.model.ref.strip().lower() == self.model.strip().lower()
            and result.corpus.get("name") == self.corpus
            and result.windows.n_ctx == self.ctx
            and result.windows.max_tokens == self.tokens
        )


BUNDLED_SWEEP = RunSettings("smollm2-135m", "shakespeare", tokens=1024, ctx=512)
"""The settings of ``assets/results/smollm2-135m-shakespeare-sweep.json``: a page that opens with these
shows the bundled curves at once."""


class PlanFamily(str, Enum):
    """The method families a front end offers; the values are what the Quality page shows and links carry."""

    RTN = "RTN"
    """Round-to-nearest, asymmetric, one group size (simulated: quantize then dequantize)."""
    INT_KERNELS = "int kernels"
    """PyTorch's int8 / int8-dynamic / int4 weight-only kernels (8 and 4 bits only)."""
    BITSANDBYTES = "bitsandbytes"
    """NF4 and FP4, with and without double quantization (4 bits only)."""
    GPTQ = "GPTQ"
    AWQ = "AWQ"
    GGUF = "GGUF"
    """llama.cpp file types whose main tensor type has the chosen bits (``GGUF_BY_BITS``)."""


BITS = (8, 6, 5, 4, 3, 2)
GROUPS = (32, 64, 128)
GGUF_BY_BITS = {8: ("Q8_0",), 6: ("Q6_K",), 5: ("Q5_K_M",), 4: ("Q4_K_M", "Q4_0"), 3: ("Q3_K_M",),
                2: ("Q2_K",)}
"""llama.cpp file types by their main tensor type's bits (llama-quant.cpp recipes)."""
assert set(GGUF_BY_BITS) == set(BITS), set(GGUF_BY_BITS) ^ set(BITS)


def plan_methods(families: Iterable[PlanFamily | str], bits: Iterable[int], group: int, extra: str = ""
                 ) -> list[str]:
    """Method ids for the chosen families x bit widths (a family without such a width adds nothing), then
    the comma-separated ``extra`` ids; duplicates dropped, order kept, ``baseline`` always first.

    ``plan_methods(["RTN", "GGUF"], [4], 128)`` -> ``["baseline", "rtn-4b-g128-asym", "gguf-Q4_K_M",
    "gguf-Q4_0"]``.
    """
    chosen = {PlanFamily(f) for f in families}  # ValueError names an unknown family
    widths = sorted(set(bits), reverse=True)
    if unknown := [b for b in widths if b not in BITS]:
        raise ValueError(f"bit width(s) {unknown} are not offered; pick from {list(BITS)}")
    check_int("group size", group, example="128 weights per scale")
    ids = ["baseline"]
    for b in widths:
        if PlanFamily.RTN in chosen:
            ids.append(f"rtn-{b}b-g{group}-asym")
        if PlanFamily.INT_KERNELS in chosen:
            ids += {8: ["int8", "int8-dyn"], 4: [f"int4-g{group}"]}.get(b, [])
        if PlanFamily.BITSANDBYTES in chosen and b == 4:
            ids += ["nf4", "nf4-dq", "fp4", "fp4-dq"]
        if PlanFamily.GPTQ in chosen:
            ids.append(f"gptq-{b}b-g{group}")
        if PlanFamily.AWQ in chosen:
            ids.append(f"awq-{b}b-g{group}")
        if PlanFamily.GGUF in chosen:
            ids += [f"gguf-{t}" for t in GGUF_BY_BITS[b]]
    ids += [m.strip() for m in extra.split(",") if m.strip()]
    return list(dict.fromkeys(ids))


RESULT_FAMILIES = {PlanFamily.RTN: "rtn-simulated", PlanFamily.INT_KERNELS: "int-kernel",
                   PlanFamily.BITSANDBYTES: "bnb", PlanFamily.GPTQ: "gptq", PlanFamily.AWQ: "awq",
                   PlanFamily.GGUF: "gguf"}
"""A plan family -> the ``family`` its results carry (``evaluation.results.Result.family``)."""
assert set(RESULT_FAMILIES) == set(PlanFamily), set(PlanFamily) ^ set(RESULT_FAMILIES)


def shown_by_choice(result: Result, families: Iterable[PlanFamily | str], bits: Iterable[int],
                    extra: str = "") -> bool:
    """Whether a choice of families x bit widths (a front end's filter) shows ``result``: the baseline always,
    a method whose family and bit width are both chosen (any group size), and any id typed in ``extra``.

    ``shown_by_choice(gguf_q4_k_m, ["GGUF"], [4])`` -> True; with ``["RTN"]`` -> False.
    """
    wanted = {RESULT_FAMILIES[PlanFamily(f)] for f in families}
    typed = {m.strip() for m in extra.split(",") if m.strip()}
    return (result.family == "baseline" or result.method_id in typed
            or (result.family in wanted and result.bits in set(bits)))


SOURCE_GRIDS = {"Q4_1": frozenset({"int4-g32-asym", "Q4_1"})}
"""A source GGUF's tensor type -> the stored formats that land exactly on its grid (asymmetric 4-bit,
group 32, for Q4_1): re-quantizing weights that are already on that grid loses nothing, so such a point
measures the source file, not the method."""


def requantizes_source_grid(result: Result) -> str | None:
    """Why ``result`` is no fair point (its method re-quantizes the source file's own grid), or None.

    SmolLM2-135M ships here as a Q4_1 GGUF (``evaluation.models.SMOLLM2_NOTE``), so int4-g32 (asymmetric,
    group 32) reproduces those weights nearly exactly; on the original bf16 weights it would not.
    """
    source = result.model.gguf_file or ""
    for grid, formats in SOURCE_GRIDS.items():
        if f".{grid}." in source and result.calculator_format in formats:
            return (f"not a fair point: the model's weights are already {grid} (asymmetric 4-bit, group 32; "
                    f"{source}), and {result.method_id} re-quantizes that grid losslessly")
    return None


@dataclass(frozen=True)
class RunEstimate:
    """How long a planned run should take, from timings measured before (seconds)."""

    baseline_seconds: float
    """The unquantized reference pass (0 when a prepared baseline is held), model loading not included
    unless it was measured (``BaselineStore.compute_seconds``)."""
    method_seconds: tuple[tuple[str, float], ...]
    """(method id, quantize + evaluate seconds) in run order."""
    basis: str
    """Where the timings come from, for the page to say."""

    @property
    def seconds(self) -> float:
        return self.baseline_seconds + sum(s for _, s in self.method_seconds)


def _timed(r: Result, tokens: int) -> float:
    """A result's quantize + evaluate time scaled to ``tokens`` evaluation tokens (evaluation is linear in
    the windows; quantization, calibration included, does not depend on them)."""
    return r.quantize_seconds + r.eval_seconds * tokens / max(r.windows.max_tokens, 1)


def estimate_run(method_ids: Sequence[str], timings: Iterable[Result], settings: RunSettings, *,
                 baseline_seconds: float | None = None, basis: str = "earlier runs") -> RunEstimate:
    """Expected seconds of a run of ``method_ids`` with ``settings``, from ``timings`` (results of the same
    model, later ones winning: this machine's runs after the bundled ones). A method never timed takes
    the median of its family prefix (``gptq-`` ...), else of all methods. ``baseline_seconds``: the
    measured preparation of the reference (model load + pass); None uses the baseline result's pass, 0
    when the baseline is already held.

    ``estimate_run(["gguf-Q4_0"], [r], settings)`` with r: 7.7 s quantize + 35.2 s for 1024 tokens and
    settings of 2048 tokens -> 7.7 + 70.4 = 78.1 s for the method.
    """
    latest: dict[str, Result] = {}
    for r in timings:
        latest[r.method_id] = r
    per_method = {m: _timed(r, settings.tokens) for m, r in latest.items() if m != "baseline"}
    overall = statistics.median(per_method.values()) if per_method else 0.0

    def guess(method_id: str) -> float:
        if method_id in per_method:
            return per_method[method_id]
        prefix = method_id.split("-", 1)[0] + "-"
        kin = [s for m, s in per_method.items() if m.startswith(prefix)]
        return statistics.median(kin) if kin else overall

    if baseline_seconds is None:
        base = latest.get("baseline")
        baseline_seconds = base.eval_seconds * settings.tokens / max(base.windows.max_tokens, 1) if base else 0.0
    methods = tuple((m, guess(m)) for m in method_ids if m != "baseline")
    return RunEstimate(baseline_seconds, methods, basis)


def pareto_front(points: Sequence[tuple[float, float]], *, lower_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both size (x, smaller is better) and quality (y),
    in increasing x. A tie in x keeps only the best y; equal points keep the first.

    ``pareto_front([(4, 0.1), (8, 0.01), (5, 0.2)])`` -> ``[0, 1]`` ((5, 0.2) is bigger and worse than (4, 0.1)).
    """
    sign = 1.0 if lower_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1], i))
    front, best = [], math.inf
    for i in order:
        y = sign * points[i][1]
        if y < best:
            front.append(i)
            best = y
    return front


def results_files(directory: Path = RESULTS_DIR) -> list[Path]:
    """The results files in ``directory``, sorted by name."""
    return sorted(directory.glob("*.json"))


def read_results_files(paths: Iterable[str | Path]) -> tuple[list[Result], list[str]]:
    """(every result of the files that validate, one message per file that does not): a bad file is
    reported, not fatal, so one hand-edited file does not hide the others."""
    results, problems = [], []
    for path in paths:
        try:
            results += load_results(path)
        except ValueError as err:
            problems.append(str(err))
    return results, problems


class BaselineStore:
    """One prepared baseline (model + its logits) per process, shared by every session of a server: the
    expensive part of a run, computed once per key and reused. Holding a newer key frees the older one
    first (a model and its logits can be gigabytes). Thread-safe: sessions run in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._baseline: Any = None
        self.settings: RunSettings | None = None
        """The settings of the baseline held (None: nothing held)."""
        self.compute_seconds: float | None = None
        """How long computing it took (loading the model + the reference pass), measured on this machine."""

    def get(self, key: tuple, compute: Callable[[], Any], settings: RunSettings | None = None) -> Any:
        """The baseline stored under ``key``, computing it (``compute()``) if another key or none is held."""
        with self._lock:
            if self._key != key:
                self._key, self._baseline, self.settings = None, None, None  # free the old model first
                start = time.perf_counter()
                self._baseline = compute()
                self.compute_seconds = time.perf_counter() - start
                self._key, self.settings = key, settings
            return self._baseline

    def holds(self, settings: RunSettings) -> bool:
        """Whether the baseline for ``settings`` is loaded (a run with them skips loading the model)."""
        return self.settings is not None and self.settings == settings


def method_ids_to_run(method_ids: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """The engine's method ids for ``method_ids`` (typed aliases normalised; a typo raises ValueError
    naming it), without those in ``skip`` (already shown)."""
    from evaluation.methods import parse_method

    skip = set(skip)
    return [m for m in dict.fromkeys(parse_method(i).method_id for i in method_ids) if m not in skip]


def run_methods(
    settings: RunSettings,
    method_ids: Sequence[str],
    *,
    store: BaselineStore,
    on_result: Callable[[Result], None],
    progress: Callable[[str, int, int], None] | None = None,
    on_baseline: Callable[[int, int], None] | None = None,
    skip: Iterable[str] = (),
) -> int:
    """Evaluate ``method_ids`` (but not those in ``skip``) with ``settings``; returns how many were newly
    measured. Results already in the engine's cache come back at once; the baseline comes from ``store``
    or is computed once. Callbacks, for a page to draw with:

    - ``on_result(result)`` for each result, cached or new, as soon as it exists;
    - ``progress(method_id, windows_done, windows_total)`` while a method runs;
    - ``on_baseline(done, total)``: (0, 0) before the baseline is loaded or fetched, then per window while
      it is computed, then (n, n) when it is ready. Never called when every method is cached.

    The model is resolved as a shared link's (``evaluation.access``): a preset, a Hub id, or a local path
    under ``$QUANTFIT_ALLOWED_PATHS``.
    """
    import torch

    from evaluation.access import allowed_roots
    from evaluation.cli import default_cache_dir
    from evaluation.models import resolve_model_source
    from evaluation.options import EvaluateOptions
    from evaluation.runner import cached_result, evaluate
    from evaluation.scoring import prepare_baseline, resolve

    ids = method_ids_to_run(method_ids, skip)
    options = EvaluateOptions(n_ctx=settings.ctx, max_tokens=settings.tokens, cache_dir=default_cache_dir(),
                              device="cuda" if torch.cuda.is_available() else "cpu", decode_tokens=DECODE_TOKENS)
    # A front end's model may come from a shared link: presets, Hub ids and allow-listed paths only.
    model = resolve_model_source(settings.model, memo_dir=options.cache_dir, allowed_roots=allowed_roots())
    source, corpus = resolve(model, settings.corpus, options)
    todo = []
    for method_id in ids:
        found = cached_result(source, corpus, method_id, options)  # loads no model
        if found is None:
            todo.append(method_id)
            continue
        if progress is not None:
            progress(method_id, found.windows.n_windows, found.windows.n_windows)
        on_result(found)
    if not todo:
        return 0
    report = on_baseline or (lambda done, total: None)
    report(0, 0)

    def compute():
        return prepare_baseline(source, corpus, options, progress=lambda _, done, total: report(done, total))

    key = (source.kind, source.model_id, source.sha256, corpus.sha256, settings.ctx, settings.tokens,
           options.device.type)
    baseline = store.get(key, compute, settings)
    report(baseline.windows.n_windows, baseline.windows.n_windows)
    done = evaluate(None, None, todo, options, baseline=baseline, progress=progress, on_result=on_result)
    return len(done)
