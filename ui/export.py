"""Downloads: tables as CSV and JSON (sizes stay exact int bytes), figures as PNG, SVG and interactive HTML.

A downloaded figure stands alone when pasted into a chat: it carries its headline (the verdict, or what the
chart shows) as its title and a source line at the bottom, which the on-screen chart leaves to the page.

PNG and SVG are rendered by kaleido in the system's Chromium (Debian package ``chromium``; never a
downloaded browser). The browser path travels as an argument, ``kaleido.start_sync_server(path=...)``
(kaleido hands it to choreographer's ``Browser``), so nothing here writes ``os.environ``.

The interactive chart is a zip of a small HTML file and the ``plotly.min.js`` it loads from beside it
(plotly's ``include_plotlyjs="directory"``): the app runs offline, so no CDN, and the 4.8 MB bundle is
deflated to ~1.5 MB instead of being inlined in every HTML file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import textwrap
import warnings
import zipfile
from fractions import Fraction

import streamlit as st

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium, which kaleido renders PNG/SVG with (``BROWSER_PATH`` in the environment overrides it)."""
IMAGE_SIZE = {"width": 1200, "height": 600, "scale": 2}
"""PNG/SVG layout size in CSS pixels; ``scale`` 2 gives a 2400 x 1200 PNG, sharp on high-DPI screens."""
FIGURE_FORMATS = ("png", "svg", "html")
"""What ``figure_bytes`` writes; "html" is the zip of an HTML file and plotly.min.js."""
_MIME = {"png": "image/png", "svg": "image/svg+xml", "html": "application/zip"}
_SUFFIX = {"png": "png", "svg": "svg", "html": "html.zip"}
TITLE_CHARS = 95
"""A downloaded chart's title wraps at this many characters (the 1200-pixel-wide image fits ~100)."""
APP_CREDIT = "quantfit"


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


def _wrap(text: str, width: int = TITLE_CHARS) -> str:
    return "<br>".join(textwrap.wrap(text, width)) if text else ""


def standalone_figure(fig, *, title: str = "", source: str = ""):
    """A copy of ``fig`` that carries ``title`` (wrapped) and, under it, ``source`` as a small subtitle, on the
    ``plotly_white`` template: Streamlit's default Plotly template holds placeholder colours (``#000001``...)
    that only Streamlit's browser side replaces, so a file exported with it would come out black."""
    import plotly.graph_objects as go

    fig = go.Figure(fig).update_layout(template="plotly_white")
    if not (title or source):
        return fig
    head = _wrap(title)
    sub = _wrap(f"{APP_CREDIT} · {source}" if source else APP_CREDIT, int(TITLE_CHARS * 1.3))
    lines = (head.count("<br>") + 1 if head else 0) + sub.count("<br>") + 1
    fig.update_layout(title={"text": head, "x": 0.01, "xanchor": "left", "font": {"size": 16},
                             "subtitle": {"text": sub, "font": {"size": 11, "color": "#555"}}},
                      margin={"t": 36 + 20 * lines})
    return fig


def figure_bytes(fig, fmt: str, *, title: str = "", source: str = "", stem: str = "chart") -> bytes:
    """A Plotly figure as PNG or SVG (kaleido + system Chromium), or as "html": a zip holding
    ``<stem>.html`` and the ``plotly.min.js`` it loads (see the module docstring). ``title`` and ``source``
    go into the file (``standalone_figure``)."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format {fmt!r} is not one of {', '.join(FIGURE_FORMATS)}")
    fig = standalone_figure(fig, title=title, source=source)
    if fmt == "html":
        from plotly.offline import get_plotlyjs

        page = fig.to_html(include_plotlyjs="directory", full_html=True)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{stem}/{stem}.html", page)
            z.writestr(f"{stem}/plotly.min.js", get_plotlyjs())
        return out.getvalue()
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


def figure_downloads(fig, *, stem: str, key: str, title: str = "", source: str = "", label: str = "Chart"
                     ) -> None:
    """PNG, SVG and HTML (zip) download buttons (keys ``<key>_png`` ...); each file is rendered only when its
    button is clicked, with ``title`` and ``source`` written into it. Without Chromium, PNG and SVG are
    disabled buttons that say why."""
    row = st.container(horizontal=True, width="content", vertical_alignment="center")
    row.caption(label)
    can_render = chromium_path() is not None
    for fmt in FIGURE_FORMATS:
        html = fmt == "html"
        if not html and not can_render:
            row.button(fmt.upper(), key=f"{key}_{fmt}", disabled=True, icon=":material/image:",
                       help=f"Needs Chromium at {CHROMIUM} (Debian package chromium) for kaleido")
            continue
        row.download_button(
            fmt.upper(), lambda f=fmt: figure_bytes(fig, f, title=title, source=source, stem=stem),
            f"{stem}.{_SUFFIX[fmt]}", _MIME[fmt], key=f"{key}_{fmt}",
            icon=":material/code:" if html else ":material/image:", on_click="ignore",
            help="Interactive chart, offline: a zip of the HTML file and plotly.min.js (~1.5 MB); unzip and "
                 "open the HTML" if html else "The chart with its headline and source, ready to paste")
