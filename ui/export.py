"""Downloads: tables as CSV and JSON (sizes stay exact int bytes), figures as PNG, SVG and standalone HTML.

PNG and SVG are rendered by kaleido in the system's Chromium (Debian package ``chromium``; never a
downloaded browser). The browser path travels as an argument, ``kaleido.start_sync_server(path=...)``
(kaleido hands it to choreographer's ``Browser``), so nothing here writes ``os.environ``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import warnings
from fractions import Fraction

import streamlit as st

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium, which kaleido renders PNG/SVG with (``BROWSER_PATH`` in the environment overrides it)."""
IMAGE_SIZE = {"width": 1200, "height": 600, "scale": 2}
"""PNG/SVG layout size in CSS pixels; ``scale`` 2 gives a 2400 x 1200 PNG, sharp on high-DPI screens."""
_MIME = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html"}


def _plain(value):
    return float(value) if isinstance(value, Fraction) else value


def csv_bytes(rows: list[dict]) -> bytes:
    """Rows -> CSV (header from the first row's keys; sizes stay int bytes)."""
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
    return out.getvalue().encode()


def json_bytes(rows: list[dict], meta: dict | None = None) -> bytes:
    """``{"units": ..., **meta, "rows": rows}`` as indented JSON."""
    doc = {"units": {"bytes": "exact bytes", "gb": "10^9 bytes", "gib": "2^30 bytes"}, **(meta or {}),
           "rows": rows}
    return json.dumps(doc, indent=2, default=_plain).encode()


def chromium_path() -> str | None:
    """The Chromium kaleido should drive: ``BROWSER_PATH`` if set (read, never written), else Debian's
    ``/usr/bin/chromium``, else ``chromium`` on the PATH; None when there is none (PNG/SVG unavailable)."""
    wanted = os.environ.get("BROWSER_PATH")
    if wanted:
        return wanted if os.path.exists(wanted) else None
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


def figure_bytes(fig, fmt: str) -> bytes:
    """A Plotly figure as PNG or SVG (kaleido + system Chromium) or standalone interactive HTML.

    Exported on a copy with the ``plotly_white`` template: Streamlit's default Plotly template holds
    placeholder colours (``#000001``...) that only Streamlit's browser side replaces, so a file exported
    with it comes out black.
    """
    import plotly.graph_objects as go

    fig = go.Figure(fig).update_layout(template="plotly_white")
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode()
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format {fmt!r} is not one of png, svg, html")
    browser = chromium_path()
    if browser is None:
        raise ValueError(f"PNG/SVG export needs Chromium ({CHROMIUM}, Debian package chromium); "
                         "download the HTML chart instead")
    import kaleido

    # One Chromium stays up for later exports (first image ~2 s, then ~0.2 s); kaleido closes it at exit.
    # A second call while it runs is a no-op (the running server keeps the browser it started with).
    kaleido.start_sync_server(path=browser, silence_warnings=True)
    with warnings.catch_warnings():
        # plotly passes its per-call browser options, which the running server already has.
        warnings.filterwarnings("ignore", "The kopts argument is ignored if using a server")
        return fig.to_image(format=fmt, **IMAGE_SIZE)


def download_bar():
    """The row under a page's results: ``with download_bar(): table_downloads(...); figure_downloads(..)``."""
    return st.container(horizontal=True, vertical_alignment="center", gap="large")


def table_downloads(rows: list[dict], *, stem: str, key: str, meta: dict | None = None, label: str = "Table"
                    ) -> None:
    """CSV and JSON download buttons for a table (no rerun on click), after a small ``label``.
    Widget keys ``<key>_csv`` and ``<key>_json``; ``meta`` goes at the top of the JSON."""
    row = st.container(horizontal=True, width="content", vertical_alignment="center")
    row.caption(label)
    row.download_button("CSV", csv_bytes(rows), f"{stem}.csv", "text/csv", key=f"{key}_csv",
                        icon=":material/download:", on_click="ignore")
    row.download_button("JSON", json_bytes(rows, meta), f"{stem}.json", "application/json", key=f"{key}_json",
                        icon=":material/download:", on_click="ignore")


def figure_downloads(fig, *, stem: str, key: str, label: str = "Chart") -> None:
    """PNG, SVG and HTML download buttons (keys ``<key>_png`` ...); each file is rendered only when its
    button is clicked. Without Chromium, PNG and SVG are disabled buttons that say why."""
    row = st.container(horizontal=True, width="content", vertical_alignment="center")
    row.caption(label)
    can_render = chromium_path() is not None
    for fmt in ("png", "svg", "html"):
        html = fmt == "html"
        if not html and not can_render:
            row.button(fmt.upper(), key=f"{key}_{fmt}", disabled=True, icon=":material/image:",
                       help=f"Needs Chromium at {CHROMIUM} (Debian package chromium) for kaleido")
            continue
        row.download_button(fmt.upper(), lambda f=fmt: figure_bytes(fig, f), f"{stem}.{fmt}", _MIME[fmt],
                            key=f"{key}_{fmt}", icon=":material/code:" if html else ":material/image:",
                            on_click="ignore",
                            help="Standalone interactive chart (plotly.js included)" if html else None)
