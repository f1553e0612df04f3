"""The data the quality pages (Quality, Reference results, Compare & share) share, cached for Streamlit:
the bundled results files, this session's results, the published reference tables, and the one prepared
baseline a server keeps between runs. The reading itself is ``evaluation.plan`` / ``evaluation.reference``.

A GGUF result is scored two ways (``evaluation.runtime``): its weights dequantized into transformers
(``Result.quality``: the weight error alone) and, where llama-cpp-python was installed, its file run by
llama.cpp on the same token ids (``Result.runtime``: what llama.cpp's users get, activations quantized to
Q8 in the dot products too). ``quality_rows`` makes one row of each, labelled, and ``runtime_floor_note``
states llama.cpp's own floor (the baseline's weights through llama.cpp against transformers).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from evaluation.plan import RESULTS_DIR, BaselineStore, RunSettings, read_results_files, results_files
from evaluation.reference import load_reference
from evaluation.results import Result, load_results
from ui.labels import method_family_label
from ui.rows import result_row

SESSION_RESULTS = "quality_results"
"""``st.session_state`` key of this session's results ({result key: Result})."""

REFERENCE_TITLES = {
    "llamacpp_llama3_8b_scoreboard": "Llama 3 8B KLD scoreboard (llama.cpp perplexity README)",
    "llamacpp_llama2_70b_scoreboard": "Llama 2 70B scoreboard (llama.cpp perplexity README)",
    "llamacpp_llama2_7b_vs_llama3": "Llama 2 7B vs Llama 3 (llama.cpp perplexity README)",
    "llamacpp_llama1_kquants": "LLaMA 7B/13B k-quants (llama.cpp PR #1684)",
    "llamacpp_llama1_legacy": "LLaMA 7B/13B Q4_0…Q8_0 (llama.cpp README, 2023)",
    "llamacpp_llama2_bpw": "Llama 2 bits per weight (llama.cpp quantize README; sizes only)",
    "gptq_for_llama": "LLaMA 7B/13B RTN vs GPTQ (GPTQ-for-LLaMa README)",
}
"""Short titles of the bundled published tables; the stems are the URL values. A table missing here shows
its stem."""


WEIGHTS_ONLY = "weights only"
"""Label of a GGUF result's own scores: its weights dequantized into transformers."""


def runtime_label(engine: str) -> str:
    """Label of the scores of a method's file run by ``engine`` ("llama.cpp runtime")."""
    return f"{engine} runtime"


def _family_name(family: str) -> str:
    return method_family_label(family).split(" (")[0]  # "GGUF (llama.cpp)" -> "GGUF": the label says the rest


def quality_rows(result: Result, origin: str) -> list[dict]:
    """The chart and table rows of one result: ``ui.rows.result_row``; a GGUF result's row is labelled
    "weights only" (its series "GGUF · weights only"), and one with engine scores (``Result.runtime``) gets a
    second row with those, "gguf-Q4_0 · llama.cpp runtime" in the series "GGUF · llama.cpp runtime": same
    bytes, the engine's PPL, KLD, top-1 and RMS delta-p, and its evaluation time."""
    row = result_row(result, origin)
    if result.family != "gguf" and result.runtime is None:
        return [row]
    name = _family_name(result.family)
    row["family"] = f"{name} · {WEIGHTS_ONLY}"
    rt = result.runtime
    if rt is None:
        return [row]
    label = runtime_label(rt.engine)
    shown = replace(result, method_id=f"{result.method_id} · {label}", quality=rt.quality,
                    eval_seconds=rt.eval_seconds)  # fmt: skip
    engine_row = result_row(shown, origin)
    engine_row["id"] = f"{row['id']}|{rt.engine}"
    engine_row["family"] = f"{name} · {label}"
    return [row, engine_row]


def runtime_floor_note(results: list[Result]) -> str | None:
    """One sentence per engine floor among ``results`` (llama.cpp on the baseline's own weights against the
    baseline in transformers); a sentence that it was not measured where results have engine scores but no
    floor; None where no result has engine scores."""
    engines = [r.runtime for r in results if r.runtime is not None]
    if not engines:
        return None
    floors = {(rt.engine, rt.engine_version, rt.floor_file): rt.floor for rt in engines if rt.floor is not None}
    if not floors:
        return (f"{engines[0].engine}'s own floor (the baseline's weights through it) was not measured for these "
                "results, so its runtime rows include an unknown share of the engine's own error.")  # fmt: skip
    lines = []
    for (engine, version, floor_file), q in floors.items():
        lines.append(
            f"{engine}'s own floor ({version}): {floor_file} run by {engine} against the same weights in "
            f"transformers gives KLD {q.kld_mean:.6f}, top-1 agreement {100 * q.top1_agreement:.2f}%, PPL "
            f"{q.ppl:.3f} vs {q.baseline_ppl:.3f}. Every “{runtime_label(engine)}” point includes it; the "
            f"“{WEIGHTS_ONLY}” points measure the weights alone."
        )
    return " ".join(lines)


def reference_title(stem: str) -> str:
    return REFERENCE_TITLES.get(stem, stem)


def bundled_results(directory: Path = RESULTS_DIR) -> tuple[list[Result], list[str]]:
    """Every results file in ``directory`` ((results, problems)); a bad file is reported, not fatal.
    Cached by the files' names, sizes and modification times, so a rewritten file is read again."""
    files = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in results_files(directory))
    return _read_bundled(files)


@st.cache_data(max_entries=16, show_spinner=False)
def _read_bundled(files: tuple[tuple[str, int, int], ...]) -> tuple[list[Result], list[str]]:
    return read_results_files(path for path, _, _ in files)


def bundled_files(directory: Path = RESULTS_DIR) -> list[str]:
    """The bundled results files' stems (the Compare page's URL values)."""
    return [p.stem for p in results_files(directory)]


def bundled_file(stem: str, directory: Path = RESULTS_DIR) -> list[Result]:
    """One bundled file, validated; cached until the file changes (ValueError if it does not validate)."""
    path = directory / f"{stem}.json"
    return _read_file(str(path), path.stat().st_mtime_ns)


@st.cache_data(max_entries=32, show_spinner=False)
def _read_file(path: str, mtime_ns: int) -> list[Result]:
    return load_results(path)


def session_results() -> list[Result]:
    """The results run on the Quality page in this browser session, in the order they finished."""
    return list(st.session_state.get(SESSION_RESULTS, {}).values())


def keep_result(result: Result) -> None:
    """Add a result to this session's (a later one with the same key replaces it), and its timings to the
    server's (``machine_timings``)."""
    st.session_state.setdefault(SESSION_RESULTS, {})[result.key] = result
    machine_timings()[result.key] = result


@st.cache_resource(show_spinner=False)
def machine_timings() -> dict[str, Result]:
    """Every result run by this server, in any session ({result key: Result}): their quantize and evaluate
    times are this machine's, so they make the best estimate of the next run."""
    return {}


def matching_results(settings: RunSettings) -> list[tuple[str, Result]]:
    """(origin, result) measured with ``settings``: the bundled files' first, then this session's; one per
    method id (the first found), so a point is never drawn twice."""
    bundled, _ = bundled_results()
    found: dict[str, tuple[str, Result]] = {}
    for origin, results in (("bundled", bundled), ("this session", session_results())):
        for r in results:
            if r.method_id not in found and settings.matches(r):
                found[r.method_id] = (origin, r)
    return list(found.values())


@st.cache_resource(show_spinner=False)
def baseline_store() -> BaselineStore:
    """The server's one baseline store: a designed-to-mutate object (with a lock), so it is a cached
    resource rather than a cached return value."""
    return BaselineStore()


@st.cache_data(max_entries=4, show_spinner=False)
def reference_frame():
    """Every bundled published table (``evaluation.reference.load_reference``), one row per number."""
    return load_reference()
