"""Reference results page: published size/quality tables for models too big to run here (llama.cpp's
Llama-3-8B KLD scoreboard, its k-quants and legacy tables for LLaMA / Llama 2, GPTQ-for-LLaMa's RTN-vs-GPTQ
rows), on the axes of the results measured here (ΔPPL % against bits per weight), every point citing
its source. Data and derivations: ``evaluation.reference`` and ``assets/reference/README.md``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import common
from app_pages.quality import (
    DEFAULT_CTX,
    DEFAULT_MODEL,
    DEFAULT_TOKENS,
    SCALES,
    X_AXES,
    Y_AXES,
    RunSettings,
    bundled_results,
    fit_url,
    known_format,
    memory_url,
    reference_rows,
    result_row,
    session_results,
    size_quality_figure,
)
from evaluation.reference import MODEL_PRESETS, load_reference, reference_tables

# Short titles; the stems are the URL values. A table missing here shows its stem.
TABLE_TITLES = {
    "llamacpp_llama3_8b_scoreboard": "Llama 3 8B KLD scoreboard (llama.cpp perplexity README)",
    "llamacpp_llama2_70b_scoreboard": "Llama 2 70B scoreboard (llama.cpp perplexity README)",
    "llamacpp_llama2_7b_vs_llama3": "Llama 2 7B vs Llama 3 (llama.cpp perplexity README)",
    "llamacpp_llama1_kquants": "LLaMA 7B/13B k-quants (llama.cpp PR #1684)",
    "llamacpp_llama1_legacy": "LLaMA 7B/13B Q4_0…Q8_0 (llama.cpp README, 2023)",
    "llamacpp_llama2_bpw": "Llama 2 bits per weight (llama.cpp quantize README; sizes only)",
    "gptq_for_llama": "LLaMA 7B/13B RTN vs GPTQ (GPTQ-for-LLaMa README)",
}
Y_CHOICES = ("delta PPL %", "mean KLD", "PPL")
CORPORA = ("wikitext-2", "ptb", "c4")
PAGE_KEYS = ("rtables", "rcorpus", "ry", "ryscale", "rmine")
MINE = "SmolLM2-135M, measured here"


@st.cache_data(max_entries=4, show_spinner=False)
def reference_frame():
    return load_reference()


def _rows(frame, corpus: str) -> list[dict]:
    rows = reference_rows(frame[frame["corpus"].isin([corpus, ""])])
    for r, (_, ref) in zip(rows, frame[frame["corpus"].isin([corpus, ""])].iterrows(), strict=True):
        r["series"] = r["origin"]
        preset = MODEL_PRESETS.get(ref["model"])
        fmt = r["format"]
        r["fit_link"] = fit_url(fmt, preset) if preset and known_format(fmt) else None
        r["memory_link"] = memory_url(fmt, preset) if preset and known_format(fmt) else None
    return rows


def _mine() -> list[dict]:
    """SmolLM2 results at the Quality page's default settings (bundled, then this session's), one per method."""
    bundled, _ = bundled_results()
    defaults = RunSettings(DEFAULT_MODEL, "shakespeare", DEFAULT_TOKENS, DEFAULT_CTX)
    seen, rows = set(), []
    for origin, results in (("bundled", bundled), ("this session", session_results())):
        for r in results:
            if r.method_id in seen or not defaults.matches(r):
                continue
            seen.add(r.method_id)
            row = result_row(r, origin)
            row["series"] = f"{MINE} · {row['family']}"
            rows.append(row)
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
    common.page_title("Published results for big models", PAGE_KEYS)
    st.caption("Size and quality numbers that llama.cpp and GPTQ-for-LLaMa published for models you cannot "
               "run on a laptop, plotted like the results measured here: ΔPPL against the same table's "
               "unquantized model, over bits per weight. Hover a point for its source; the table links it.")
    frame = reference_frame()
    stems = reference_tables()
    c = st.columns([4, 1.4, 1.5, 1.2, 2], vertical_alignment="bottom")
    plotted = [s for s in stems if s != "llamacpp_llama2_bpw"]
    unknown = [t for t in st.query_params.get_all("rtables") if t not in stems]
    if unknown:
        st.warning(f"The link asks for table(s) {', '.join(map(repr, unknown))}, which are not bundled; left "
                   "out.", icon=":material/link_off:")
    tables = c[0].multiselect("Published tables", stems, default=plotted, key="rtables", bind="query-params",
                              help="; ".join(f"{s}: {TABLE_TITLES.get(s, s)}" for s in stems))
    common.warn_unknown_url_value("rcorpus", CORPORA, "evaluation text")
    corpus = c[1].selectbox("Text", CORPORA, key="rcorpus", bind="query-params",
                            help="The GPTQ tables also report PTB and C4")
    y = c[2].selectbox("y axis", Y_CHOICES, key="ry", bind="query-params")
    y_scale = c[3].selectbox("y scale", SCALES, key="ryscale", bind="query-params")
    mine = c[4].toggle("Overlay SmolLM2 (measured here)", True, key="rmine", bind="query-params")
    st.caption(" · ".join(f"**{s}**: {TABLE_TITLES.get(s, s)}" for s in tables))

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
    with common.download_bar():
        common.table_downloads(table, stem=stem, key="reference_table_dl",
                               meta={"tables": tables, "corpus": corpus, "y": y})
        common.figure_downloads(fig, stem=stem, key="reference_chart_dl")


if __name__ == "__main__":
    common.run_page(main)
