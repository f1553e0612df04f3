"""Reference results page: published size/quality tables for models too big to run here (llama.cpp's
Llama-3-8B KLD scoreboard, its k-quants and legacy tables for LLaMA / Llama 2, GPTQ-for-LLaMa's RTN-vs-GPTQ
rows), on the axes of the results measured here (ΔPPL % or KLD against bits per weight), every point citing
its source. Data and derivations: ``evaluation.reference`` and ``assets/reference/README.md``.

It answers "which file type?" on one screen: one scoreboard by default, each series a line (one colour per
model, one symbol per method), a Pareto toggle, a ranked table and a one-line recommendation citing its row.
"""

from __future__ import annotations

import math

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
from ui.style import RESULTS_FIRST
from ui.url_state import warn_unknown_url_value, warn_unknown_url_values

Y_CHOICES = ("delta PPL %", "mean KLD", "PPL")
CORPORA = ("wikitext-2", "ptb", "c4")
# One scoreboard by default: the biggest, newest table, with KLD as well as ΔPPL. (Comments, not docstrings:
# Streamlit's magic would print a bare string in a page script.)
DEFAULT_TABLES = ("llamacpp_llama3_8b_scoreboard",)
# The recommendation: the smallest file type whose perplexity is within this many percent of the unquantized
# model's (Q4_K_M's +2.4 to +2.8 % on Llama-3-8B is the usual "good enough" line).
RECOMMEND_MAX_DPPL_PCT = 3.0
MINE = "SmolLM2-135M, measured here"


def _rows(frame, corpus: str) -> list[dict]:
    """The published rows on ``corpus`` (or on none: size-only tables), each linked to its model's preset."""
    shown = frame[frame["corpus"].isin([corpus, ""])]
    rows = reference_rows(shown)
    for r, model in zip(rows, shown["model"], strict=True):
        r["series"] = r["origin"]
        r["method_kind"] = r["origin"].split(" · ", 1)[1] if " · " in r["origin"] else r["origin"]
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
        row["method_kind"] = row["family"]
        row["model"] = "SmolLM2-135M (here)"
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


def ranked(rows: list[dict]) -> list[dict]:
    """The published rows that have bits per weight, best quality first within each model (KLD where the
    table has it, else ΔPPL), with their rank."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        part = [r for r in rows if r["model"] == model and r["bits_per_weight"] is not None
                and (r["kld_mean"] is not None or r["delta_ppl_pct"] is not None) and not r["flag"]]
        part.sort(key=lambda r: (r["kld_mean"] if r["kld_mean"] is not None else math.inf,
                                 r["delta_ppl_pct"] if r["delta_ppl_pct"] is not None else math.inf))
        out += [{"rank": i, "model": model, "file_type": r["method"], "bits_per_weight": r["bits_per_weight"],
                 "delta_ppl_pct": r["delta_ppl_pct"], "kld": r["kld_mean"], "source_url": r["source_url"],
                 "source": r["source"]} for i, r in enumerate(part, 1)]
    return out


def recommendation(table: list[dict]) -> str | None:
    """One plain sentence: for the first model, the smallest file type within ``RECOMMEND_MAX_DPPL_PCT`` of
    the unquantized perplexity, citing its source row; None when no row qualifies."""
    if not table:
        return None
    model = table[0]["model"]
    good = [r for r in table if r["model"] == model and r["delta_ppl_pct"] is not None
            and 0 < r["bits_per_weight"] < 16 and r["delta_ppl_pct"] <= RECOMMEND_MAX_DPPL_PCT]
    if not good:
        return None
    r = min(good, key=lambda r: (r["bits_per_weight"], r["delta_ppl_pct"]))
    kld = f", KLD {r['kld']:.4f}" if r["kld"] is not None else ""
    return (f"**Recommendation for {model}: {r['file_type']}**: {r['bits_per_weight']:.2f} bits per weight, "
            f"ΔPPL {r['delta_ppl_pct']:+.2f} %{kld}: the smallest file type within "
            f"{RECOMMEND_MAX_DPPL_PCT:g} % of the unquantized perplexity. Source row: “{r['file_type']}” in "
            f"{r['source']}.")


RANKED_COLUMNS = {  # the answer first: on a phone only the first columns are on screen
    "rank": st.column_config.NumberColumn("#", format="%d", width="small"),
    "file_type": st.column_config.TextColumn("File type", width="medium"),
    "bits_per_weight": st.column_config.NumberColumn("Bits/weight", format="%.2f"),
    "delta_ppl_pct": st.column_config.NumberColumn("ΔPPL %", format="%+.2f"),
    "kld": st.column_config.NumberColumn("KLD", format="%.4f"),
    "model": st.column_config.TextColumn("Model"),
    "source_url": st.column_config.LinkColumn("Source", display_text="source ↗"),
}


def main() -> None:
    page_title("Published results for big models")
    st.caption("Size and quality numbers that llama.cpp and GPTQ-for-LLaMa published for models you cannot "
               "run on a laptop, plotted like the results measured here: ΔPPL against the same table's "
               "unquantized model, over bits per weight. Hover a point for its source; the table links it.")
    frame = reference_frame()
    stems = reference_tables()
    c = st.columns([4, 1.4, 1.5, 1.2], vertical_alignment="bottom")
    warn_unknown_url_values("rtables", stems, "table(s)", "the bundled tables")
    tables = c[0].multiselect("Published tables", stems, default=[s for s in DEFAULT_TABLES if s in stems],
                              key="rtables", bind="query-params",
                              help="; ".join(f"{s}: {reference_title(s)}" for s in stems))
    warn_unknown_url_value("rcorpus", CORPORA, "evaluation text")
    corpus = c[1].selectbox("Text", CORPORA, key="rcorpus", bind="query-params",
                            help="The GPTQ tables also report PTB and C4")
    y = c[2].selectbox("y axis", Y_CHOICES, key="ry", bind="query-params")
    y_scale = c[3].selectbox("y scale", SCALES, key="ryscale", bind="query-params")
    t = st.container(horizontal=True, gap="medium")
    mine = t.toggle("Overlay SmolLM2 (measured here)", False, key="rmine", bind="query-params")
    front = t.toggle("Pareto frontier", True, key="rfront", bind="query-params",
                     help="The points no other point beats on both bits per weight and quality")
    st.caption(" · ".join(f"**{s}**: {reference_title(s)}" for s in tables))

    chosen = frame[frame["table"].isin(tables)]
    rows = _rows(chosen, corpus)
    if mine:
        rows += _mine()
    x_axis, y_axis = X_AXES["bits per weight"], Y_AXES[y]
    title = f"Published {y} against bits per weight ({corpus})"
    fig = size_quality_figure(rows, x_axis, y_axis, y_scale=y_scale, series_key="series", color_key="model",
                              symbol_key="method_kind", frontier=front, lines="all")
    reference_only = [r for r in rows if r["id"].startswith("ref|")]
    table = ranked(reference_only)
    advice = recommendation(table)
    with st.container(key=f"{RESULTS_FIRST}_reference"):
        if advice:
            st.success(advice, icon=":material/recommend:")
        st.markdown(f"**{title}**")
        st.plotly_chart(fig, key="reference_chart", config={"displaylogo": False})
    st.caption("One colour per model, one symbol per method; lines join a series in order of size. × = a row "
               "its source got wrong (kept as published, with the reason in the table). x: bits per weight as "
               "each source states it or as its file size over the official parameter count gives it; the "
               "SmolLM2 points count the re-stored matrices only. Perplexities differ between tables (text, "
               "context, model): compare ΔPPL, not PPL.")
    unplotted = [r for r in reference_only if r["bits_per_weight"] is None or r[y_axis.column] is None]
    if unplotted:
        st.caption(f"{len(unplotted)} row(s) lack bits per weight or {y} in their source and are in the "
                   "table only.")
    for r in reference_only:
        if r["flag"]:
            st.warning(f"**{r['model']} {r['method']}** ({r['origin']}) is flagged: {r['flag']}",
                       icon=":material/flag:")
    st.markdown("**Ranked** (lowest KLD first, else lowest ΔPPL; flagged rows left out)")
    st.dataframe(table, hide_index=True, key="reference_ranked", column_config=RANKED_COLUMNS,
                 column_order=list(RANKED_COLUMNS))
    full = [{k: r.get(k) for k in _COLUMNS} for r in reference_only]
    with st.expander(f"Every published row with its source ({len(full)})"):
        st.dataframe(pd.DataFrame(full, columns=list(_COLUMNS)), column_config=_COLUMNS, hide_index=True,
                     key="reference_table")
    stem = f"quantfit-reference-{corpus}"
    with download_bar():
        table_downloads(full, stem=stem, key="reference_table_dl",
                        meta={"tables": tables, "corpus": corpus, "y": y})
        figure_downloads(fig, stem=stem, key="reference_chart_dl", title=plain_title(advice) or title,
                         source="; ".join(reference_title(s) for s in tables))


def plain_title(advice: str | None) -> str:
    return advice.split(": the smallest")[0].replace("**", "") if advice else ""


run_page(main)
