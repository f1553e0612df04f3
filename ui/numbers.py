"""Headline numbers that paint with the page text, not with its charts.

``st.metric`` is one of Streamlit's lazily loaded JavaScript chunks. The browser resolves a rerun's lazy
chunks together before it shows that rerun's new elements, and on a page with a chart that includes
plotly.js (4.7 MB, about 2 s to evaluate on the 2-core development machine). So the Memory page's four
metrics painted with its chart, 4.5-5.5 s after navigation, while an ``st.success`` verdict drawn by the
same rerun painted at 1.2-1.9 s (measured in headless Chromium, fresh browser contexts). Markdown is in
Streamlit's main bundle: a number drawn as Markdown paints with the page title.

``number_row`` draws what ``st.metric`` drew (label, value, a grey second line, a help tooltip) as one
bordered Markdown box per number; ``NUMBER_CLASS`` marks each value for the browser suite and for tests
(``tests.app.conftest.number``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import streamlit as st

from ui.style import HEADLINE

NUMBER_CLASS = "qf-number"
"""CSS class of a number's value (``.qf-number``): what the browser suite waits for."""


@dataclass(frozen=True)
class Number:
    """One headline number: ``label`` above, ``value`` large, ``detail`` (e.g. the GiB form) grey below."""

    label: str
    value: str
    detail: str | None = None
    help: str | None = None


def number_markdown(n: Number) -> str:
    """The HTML of one number box (every text escaped; ``help`` as the box's tooltip). Styles are inline: the
    page CSS may arrive later than the number."""
    title = f' title="{html.escape(n.help)}"' if n.help else ""
    parts = [f'<div style="font-size:0.875rem">{html.escape(n.label)}</div>',
             f'<div class="{NUMBER_CLASS}" style="font-size:2rem;line-height:1.3">{html.escape(n.value)}</div>']
    if n.detail:
        parts.append(f'<div style="font-size:0.875rem;opacity:0.65">{html.escape(n.detail)}</div>')
    return (f'<div{title} style="flex:1 1 10rem;border:1px solid rgba(128,128,128,0.3);border-radius:0.5rem;'
            f'padding:0.5rem 1rem">{"".join(parts)}</div>')


def number_row(numbers: list[Number], key: str = HEADLINE) -> None:
    """A row of bordered numbers, one Markdown element (a flex row that wraps two by two on a phone) in
    ``st.container(key=key)``. One element, not ``st.columns`` of boxes: nested layout blocks painted with the
    page's lazy widgets and chart in Chromium, a top-level Markdown element with the page text."""
    with st.container(key=key):
        st.markdown('<div style="display:flex;flex-wrap:wrap;gap:0.75rem">'
                    + "".join(number_markdown(n) for n in numbers) + "</div>", unsafe_allow_html=True)
