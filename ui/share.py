"""Sharing: the page title with its "Copy link" button, the link itself, and links that open another page
in a given state (a quality point's format priced on a big model in Memory or Will it fit?).

Links are built from widget values, not from ``st.query_params``: bound widgets update the browser's URL
from the frontend, so ``st.query_params`` lags one run behind them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

import streamlit as st

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from ui.pickers import CONFIG, PRESET
from ui.url_state import CFG_PARAM


def share_url(keys: Iterable[str], *, base: str | None = None) -> str:
    """The current page's URL carrying the values of ``keys`` (widget keys) and an uploaded config."""
    params: list[tuple[str, str]] = []
    for key in keys:
        value = st.session_state.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            params += [(key, str(v)) for v in value]
        else:
            params.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    if st.session_state.get("src") == CONFIG and CFG_PARAM in st.query_params:
        params.append((CFG_PARAM, st.query_params[CFG_PARAM]))
    if base is None:
        base = st.context.url or ""
    query = urlencode(params)
    return f"{base}?{query}" if query else base


def page_title(title: str, share_keys: Iterable[str]) -> None:
    """The page title with the "Copy link" button at its right; ``share_keys``: the page's URL keys."""
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.title(title)
    with right:
        share_link(share_keys)


def share_link(keys: Iterable[str], *, key: str = "share") -> None:
    """A "Copy link" popover: the URL in a code box (its copy icon puts it on the clipboard)."""
    # Lazy: the link is built and shown only while the popover is open, so a page load does not fetch the
    # code-highlighter bundle (1.5 MB of JavaScript) for a closed popover.
    with st.popover("Copy link", icon=":material/link:", key=key, on_change="rerun",
                    width="stretch") as popover:
        if popover.open:
            st.caption("This link reopens the page with the same model and settings:")
            st.code(share_url(keys), language=None, wrap_lines=True)


def known_format(fmt: str | None) -> bool:
    """A format the Memory and Will-it-fit pages list (a calculator format or a GGUF file type)."""
    return bool(fmt) and (fmt in FORMATS or fmt in FILE_TYPES)


def fit_url(fmt: str, model: str, gpu: str | None = None) -> str:
    """Link to Will it fit? with ``fmt`` on the preset ``model`` (relative, so it works behind any base
    path): ``fit_url("Q4_K_M", "llama-3.1-70b")`` -> ``./fit?src=Preset&model=llama-3.1-70b&fmt=Q4_K_M``."""
    query = {"src": PRESET, "model": model, "fmt": fmt}
    if gpu:
        query["gpu"] = gpu
    return f"./fit?{urlencode(query)}"


def memory_url(fmt: str, model: str) -> str:
    """Link to Memory with the preset ``model`` and ``fmt`` added to its table (a listed format stays)."""
    return f"./memory?{urlencode({'src': PRESET, 'model': model, 'add': fmt})}"
