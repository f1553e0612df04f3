"""Compare & share page: overlay several result files (bundled, run on the Quality page this session, read
from a Hugging Face Hub dataset repo that ``python -m evaluation push`` wrote, or uploaded JSON in the
engine's schema) and published tables, then export the chart (PNG, SVG, standalone HTML) and the data (CSV,
JSON; the merged results in the engine's schema). Everything but an uploaded file lives in the URL (the Hub
repo id included: ``?crepo=OWNER/NAME``), so "Copy link" reopens the same view.

Uploads are validated by ``evaluation.results.loads_results`` (schema name and version, every field and
its type, no NaN) and capped at its ``MAX_RESULTS_FILE_BYTES``; a bad file is one error line, never a
traceback. A Hub repo id is checked against the repo-id pattern before any request; then
``evaluation.hub.repo_results`` reads every ``results/*.json`` with the same validation, and offline, not
found, timed out or not a results repo is one error line.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from calculator.hub import is_repo_id
from evaluation.hub import repo_results
from evaluation.plan import RESULTS_DIR
from evaluation.reference import reference_tables
from evaluation.results import MAX_RESULTS_FILE_BYTES, Result, loads_results, results_document
from ui.charts import SCALES, X_AXES, Y_AXES, size_quality_figure
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.quality_data import bundled_file, bundled_files, reference_frame, reference_title, session_results
from ui.rows import RESULT_COLUMNS, reference_rows, result_row
from ui.share import page_title
from ui.style import RESULTS_FIRST
from ui.url_state import warn_unknown_url_values

SESSION = "this session"
# file_uploader counts megabytes of 2^20 bytes: the engine's own cap.
MAX_UPLOAD_MB = MAX_RESULTS_FILE_BYTES // 2**20
# Comments, not docstrings: Streamlit's magic prints a bare string in a page script.
MAX_UPLOADS = 20  # files read from one upload (a comparison of more is unreadable anyway)
# Bytes read from all uploads together: validation costs CPU per byte, so the rest is refused unread.
MAX_UPLOAD_TOTAL_BYTES = 2 * MAX_RESULTS_FILE_BYTES
HUB_TTL_S = 120  # a repo (or its error) is read again after 2 minutes: a new push shows, a Hub back up too


def parse_uploads(files) -> tuple[list[tuple[str, list[Result]]], list[str]]:
    """[(file name, results)] for the files that validate, and one message per file that does not. At most
    ``MAX_UPLOADS`` files and ``MAX_UPLOAD_TOTAL_BYTES`` in all are read; each is validated (schema, types,
    ranges, nesting: ``evaluation.results.loads_results``) before any frame is built."""
    good, errors, total = [], [], 0
    files = list(files or [])
    if len(files) > MAX_UPLOADS:
        errors.append(f"{len(files)} files uploaded; only the first {MAX_UPLOADS} are read")
    for f in files[:MAX_UPLOADS]:
        raw = f.getvalue()
        total += len(raw)
        if total > MAX_UPLOAD_TOTAL_BYTES:
            errors.append(f"{f.name[:80]}: left out, the uploads together pass {MAX_UPLOAD_TOTAL_BYTES:,} bytes")
            continue
        try:
            results = loads_results(raw, where=f.name)
        except ValueError as err:
            errors.append(str(err))
            continue
        if not results:
            errors.append(f"{f.name}: holds no results")
            continue
        good.append((f.name, results))
    return good, errors


@st.cache_data(ttl=HUB_TTL_S, max_entries=16, show_spinner=False)
def _repo_files(repo_id: str) -> tuple[list[tuple[str, list[Result]]], list[str], str | None]:
    """([(OWNER/NAME/results/FILE.json, results)], one line per file left out, the error or None) of a Hub
    dataset repo. An error is cached too: every rerun of the page (any widget) would otherwise wait out a
    hung Hub's timeout again."""
    try:
        loaded = repo_results(repo_id)
    except ValueError as err:  # offline, not found, timed out, not a quantfit results repo
        return [], [], str(err)
    return [(f"{repo_id}/{path}", rows) for path, rows in loaded.files], loaded.problems, None


def _hub_sources(text: str | None) -> list[tuple[str, list[Result]]]:
    """The results files of the Hub dataset repo ``text`` names (none when empty); every problem one line."""
    repo_id = (text or "").strip()
    if not repo_id:
        return []
    if not is_repo_id(repo_id):
        st.error(f"Hub repo {repo_id[:100]!r} is not a Hub repo id: write OWNER/NAME, e.g. acme/quant-evals",
                 icon=":material/error:")
        return []
    with st.spinner(f"Reading {repo_id} from the Hub"):
        files, problems, error = _repo_files(repo_id)
    if error is not None:
        st.error(f"Hub repo not loaded: {error}", icon=":material/error:")
    for message in problems:
        st.warning(f"Hub file left out: {message}", icon=":material/warning:")
    return files


def _sources() -> tuple[list[tuple[str, list[Result]]], bool]:
    c = st.columns([3, 1.4, 3], vertical_alignment="top")
    stems = bundled_files()
    warn_unknown_url_values("cfiles", stems, "result file(s)", "the bundled results")
    files = c[0].multiselect("Bundled results", stems, default=stems, key="cfiles", bind="query-params",
                             help=f"assets/results/*.json ({RESULTS_DIR})")
    with c[1]:
        session = st.toggle("This session's runs", True, key="csession", bind="query-params",
                            help="Results run on the Quality page in this browser session")
    uploads = c[2].file_uploader(
        "Upload results JSON", type=["json"], accept_multiple_files=True, key="cupload",
        max_upload_size=MAX_UPLOAD_MB,
        help=f"Files written by `python -m evaluation run --out` (schema in assets/results/SCHEMA.md), at "
             "most "
             f"{MAX_RESULTS_FILE_BYTES:,} bytes. Uploads are not part of the link.")
    repo = st.text_input("Hub dataset repo", key="crepo", bind="query-params", max_chars=200,
                         placeholder="OWNER/NAME, e.g. acme/quant-evals",
                         help="A Hugging Face Hub dataset repo written by `python -m evaluation push`: every "
                              "results/*.json in it is overlaid. Part of the link.")
    sources = []
    for stem in files:
        try:
            sources.append((f"{stem}.json", bundled_file(stem)))
        except ValueError as err:
            st.error(f"Bundled file left out: {err}", icon=":material/error:")
    if session and session_results():
        sources.append((SESSION, session_results()))
    sources += _hub_sources(repo)
    good, errors = parse_uploads(uploads)
    for message in errors:
        st.error(f"Upload rejected: {message}", icon=":material/error:")
    return sources + good, bool(uploads)


def main() -> None:
    page_title("Compare & share")
    st.caption("Overlay result files and published tables on one chart, then download the chart or the "
               "data. The address bar holds the whole view (files, tables, axes), so a copied link reopens "
               "it; uploaded files are the exception (they stay in this browser session).")
    sources, uploaded = _sources()
    stems = reference_tables()
    refs = st.multiselect("Published tables", stems, key="cref", bind="query-params",
                          help="; ".join(f"{s}: {reference_title(s)}" for s in stems),
                          placeholder="optional: overlay llama.cpp / GPTQ tables (bits per weight axes)")
    c = st.columns([3, 2.4, 1.2, 1.2, 1.6], vertical_alignment="bottom")
    x = c[0].selectbox("x axis", list(X_AXES), key="cx", bind="query-params")
    y = c[1].selectbox("y axis", list(Y_AXES), key="cy", bind="query-params")
    x_scale = c[2].selectbox("x scale", SCALES, key="cxscale", bind="query-params")
    y_scale = c[3].selectbox("y scale", SCALES, key="cyscale", bind="query-params")
    front = c[4].toggle("Pareto frontier", False, key="cfront", bind="query-params",
                        help="Over every point shown (one model's results make the most sense)")

    rows = []
    for name, results in sources:
        for r in results:
            row = result_row(r, name)
            row["series"] = f"{name} · {row['family']}"
            rows.append(row)
    families = sorted({r["family"] for r in rows})
    if families:
        chosen = st.pills("Families", families, selection_mode="multi", default=families, key="cfam",
                          bind="query-params")
        rows = [r for r in rows if r["family"] in set(chosen or [])]
    if refs:
        frame = reference_frame()
        for r in reference_rows(frame[frame["table"].isin(refs)]):
            r["series"] = r["origin"]
            rows.append(r)
    if not rows:
        st.info("Nothing to show: pick a bundled file, run methods on the Quality page, name a Hub dataset "
                "repo, upload a results JSON or pick a published table.", icon=":material/info:")
        return
    x_axis, y_axis = X_AXES[x], Y_AXES[y]
    title = f"{y} against {x}"
    fig = size_quality_figure(rows, x_axis, y_axis, x_scale=x_scale, y_scale=y_scale, series_key="series",
                              frontier=front)
    with st.container(key=f"{RESULTS_FIRST}_compare"):
        st.markdown(f"**{title}**")
        st.plotly_chart(fig, key="compare_chart", config={"displaylogo": False})
    missing = [r for r in rows if r.get(x_axis.column) is None or r.get(y_axis.column) is None]
    if missing:
        st.caption(f"{len(missing)} point(s) have no {x} or {y} (published tables give bits per weight, "
                   "PPL and sometimes KLD only) and are in the table only.")

    # One set of columns for every row (published rows carry source columns, measured ones do not).
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("hover", "id")))
    table = [{k: r.get(k) for k in keys} for r in rows]
    columns = {"series": st.column_config.TextColumn("Series", pinned=True),
               **{k: v for k, v in RESULT_COLUMNS.items()
                  if k not in ("family", "fit_link", "memory_link", "origin")},
               "model": st.column_config.TextColumn("Model"), "corpus": st.column_config.TextColumn("Text"),
               "tokens": st.column_config.TextColumn("Windows"), "flag": st.column_config.TextColumn("Flag")}
    st.dataframe(pd.DataFrame(table), hide_index=True, key="compare_table", column_config=columns,
                 column_order=list(columns))
    merged = {r.key: r for _, results in sources for r in results}
    stem = "quantfit-compare"
    with download_bar():
        table_downloads(table, stem=stem, key="compare_table_dl",
                        meta={"sources": [n for n, _ in sources], "published": refs, "x": x, "y": y})
        figure_downloads(fig, stem=stem, key="compare_chart_dl", title=title,
                         source="; ".join([n for n, _ in sources] + [reference_title(r) for r in refs]))
        st.download_button("Results (engine JSON)", json.dumps(results_document(list(merged.values())),
                                                               indent=1).encode(),
                           f"{stem}-results.json", "application/json", key="compare_results_json",
                           icon=":material/download:", on_click="ignore",
                           help="Every result shown, merged, in the engine's schema")
    if uploaded:
        st.caption("The link does not carry uploaded files: share the merged JSON with it.")


run_page(main)
