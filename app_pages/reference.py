"""Reference results page: published size/quality tables for models too big to run here (llama.cpp's
Llama-3-8B KLD scoreboard, its k-quants and legacy tables for LLaMA / Llama 2, GPTQ-for-LLaMa's RTN-vs-GPTQ
rows), on the axes of the results measured here (ΔPPL % against bits per weight), every point citing
its source. Data and derivations: ``evaluation.reference`` and ``assets/reference/README.md``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from evaluation.plan import BUNDLED_SWEEP
from evaluation.reference import MODEL_PRESETS, reference_tables
from ui.charts import SCALES, X_AXES, Y_AXES, size_quality_figure
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.quality_data import matching_results, reference_frame, reference_title
from ui.rows import reference_rows, result_row
from ui.share import fit_url, known_format, memory_url, page_title
from ui.url_state import warn_unknown_url_value, warn_unknown_url_values

Y_CHOICES = ("delta PPL %", "mean KLD", "PPL")
CORPORA = ("wikitext-2", "ptb", "c4")
PAGE_KEYS = ("rtables", "rcorpus", "ry", "ryscale", "rmine")
MINE = "SmolLM2-135M, measured here"


def _rows(frame, corpus: str) -> list[dict]:
    """The published rows on ``corpus`` (or on none: size-only tables), each linked to its model's preset."""
    shown = frame[frame["corpus"].isin([corpus, ""])]
    rows = reference_rows(shown)
    for r, model in zip(rows, shown["model"], strict=True):
        r["series"] = r["origin"]
        preset = MODEL_PRESETS.get(model)
        fmt = r["format"]
        r["fit_link"] = fit_url(fmt, preset) if preset and known_format(fmt) else None
        r["memory_link"] = memory_url(fmt, preset) if preset and known_format(fmt) else None
    return rows


def _mine() -> list[dict]:
    """SmolLM2 results at the Quality page's default settings (bundled, then this session's), one per method."""
    rows = [result_row(r, origin) for origin, r in matching_results(BUNDLED_SWEEP)]
    for row in rows:
        row["series"] = f"{MINE} · {row['family']}"
    return rows


_COLUMNS = {
    "model": st.column_config.TextColumn("Model", pinned=True),
    "method": st.column_config.TextColumn("Format"),
    "bits_per_weight": st.column_config.NumberColumn("Bits/weight", format="%.3f"),
    "delta_ppl_pct": st.column_config.NumberColumn("ΔPPL %", format="%+.3f"),
    "ppl": st.column_config.NumberColumn("PPL", format="%.4f"),
    "ppl_err": st.column_config.NumberColumn("± PPL", format="%.4f"),
    "kld_mean": st.column_config.NumberColumn("KLD", format="%.6f"),
    "source_url": st.column_config.LinkColumn("Source", display_text="source ↗"),
    "flag": st.column_config.TextColumn("⚠ Flag (the source is wrong here)", width="medium"),
    "corpus": st.column_config.TextColumn("Text"),
    "tokens": st.column_config.TextColumn("Context"),
    "fit_link": st.column_config.LinkColumn("Will it fit?", display_text="fit ↗",
                                            help="This format on this model (its preset), in Will it fit?"),
    "memory_link": st.column_config.LinkColumn("Memory", display_text="memory ↗"),
    "bits_basis": st.column_config.TextColumn("How bits/weight was obtained", width="large"),
    "source": st.column_config.TextColumn("Source (as cited)", width="large"),
}


def main() -> None:
    page_title("Published results for big models", PAGE_KEYS)
    st.caption("Size and quality numbers that llama.cpp and GPTQ-for-LLaMa published for models you cannot "
               "run on a laptop, plotted like the results measured here: ΔPPL against the same table's "
               "unquantized model, over bits per weight. Hover a point for its source; the table links it.")
    frame = reference_frame()
    stems = reference_tables()
    c = st.columns([4, 1.4, 1.5, 1.2, 2], vertical_alignment="bottom")
    plotted = [s for s in stems if s != "llamacpp_llama2_bpw"]
    warn_unknown_url_values("rtables", stems, "table(s)", "the bundled tables")
    tables = c[0].multiselect("Published tables", stems, default=plotted, key="rtables", bind="query-params",
                              help="; ".join(f"{s}: {reference_title(s)}" for s in stems))
    warn_unknown_url_value("rcorpus", CORPORA, "evaluation text")
    corpus = c[1].selectbox("Text", CORPORA, key="rcorpus", bind="query-params",
                            help="The GPTQ tables also report PTB and C4")
    y = c[2].selectbox("y axis", Y_CHOICES, key="ry", bind="query-params")
    y_scale = c[3].selectbox("y scale", SCALES, key="ryscale", bind="query-params")
    mine = c[4].toggle("Overlay SmolLM2 (measured here)", True, key="rmine", bind="query-params")
    st.caption(" · ".join(f"**{s}**: {reference_title(s)}" for s in tables))

    chosen = frame[frame["table"].isin(tables)]
    rows = _rows(chosen, corpus)
    if mine:
        rows += _mine()
    x_axis, y_axis = X_AXES["bits per weight"], Y_AXES[y]
    fig = size_quality_figure(rows, x_axis, y_axis, y_scale=y_scale, series_key="series", frontier=False,
                              lines=False, title=f"Published {y} against bits per weight ({corpus})")
    st.plotly_chart(fig, key="reference_chart", config={"displaylogo": False})
    st.caption("× = a row its source got wrong (kept as published, with the reason in the table). x: bits "
               "per weight as each source states it or as its file size over the official parameter count "
               "gives it (see “How bits/weight was obtained”); the SmolLM2 points count the re-stored "
               "matrices only. Perplexities differ between tables (text, context, model): compare ΔPPL, "
               "not PPL.")
    reference_only = [r for r in rows if r["id"].startswith("ref|")]
    unplotted = [r for r in reference_only
                 if r["bits_per_weight"] is None or r[y_axis.column] is None]
    if unplotted:
        st.caption(f"{len(unplotted)} row(s) lack bits per weight or {y} in their source and are in the "
                   "table only.")
    for r in reference_only:
        if r["flag"]:
            st.warning(f"**{r['model']} {r['method']}** ({r['origin']}) is flagged: {r['flag']}",
                       icon=":material/flag:")

    table = [{k: r.get(k) for k in _COLUMNS} for r in reference_only]
    st.dataframe(pd.DataFrame(table, columns=list(_COLUMNS)), column_config=_COLUMNS, hide_index=True,
                 key="reference_table")
    stem = f"quantfit-reference-{corpus}"
    with download_bar():
        table_downloads(table, stem=stem, key="reference_table_dl",
                        meta={"tables": tables, "corpus": corpus, "y": y})
        figure_downloads(fig, stem=stem, key="reference_chart_dl")


run_page(main)
