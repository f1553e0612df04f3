"""Sharing: the page title with its "Copy link" button, and links that open another page in a given state (a
quality point's format priced on a big model in Memory or Will it fit?).

The link is the address bar's: every widget is bound to a query parameter (``bind="query-params"``), and
Streamlit leaves a widget at its default value out of the URL, so the address already holds only what
differs from the defaults. Widgets that belong to another mode are not drawn (the Fit page's LoRA
settings in inference mode), so their values are not in it either. "Copy link" copies that address in the
browser on one click (``navigator.clipboard``, with the ``execCommand`` fallback for plain-http servers)
and says "Copied"; nothing goes back to the server.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from ui.pickers import PRESET

COPIED_LABEL = "Copied ✓"
# The icon is Material's "link" path inline (an emoji needs a font the server's browser may lack).
_LINK_ICON = ("M3.9 12a3.1 3.1 0 0 1 3.1-3.1h4V7H7a5 5 0 0 0 0 10h4v-1.9H7A3.1 3.1 0 0 1 3.9 12M8 13h8v-2H8zm9-6h-4"
              "v1.9h4a3.1 3.1 0 0 1 0 6.2h-4V17h4a5 5 0 0 0 0-10")
_COPY_HTML = f"""<button type="button" class="copy" title="Copy this page's link: it reopens the same view">
<svg class="icon" aria-hidden="true" viewBox="0 0 24 24" width="18" height="18"><path fill="currentColor"
d="{_LINK_ICON}"/></svg><span class="label" aria-live="polite">Copy link</span></button>"""
_COPY_CSS = """
.copy { display: inline-flex; align-items: center; justify-content: center; gap: 0.4rem; width: 100%;
  min-height: 2.5rem; padding: 0.25rem 0.75rem; border-radius: 0.5rem; cursor: pointer; font: inherit;
  font-family: var(--st-font, inherit); color: var(--st-text-color, inherit);
  background: var(--st-background-color, transparent); border: 1px solid var(--st-border-color, #d5d5d9); }
.copy:hover { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
.copy.done { border-color: #21c354; color: #158237; }
"""
_COPY_JS = f"""
export default function (component) {{
  const root = component.parentElement;
  const button = root.querySelector("button.copy");
  const label = root.querySelector(".label");
  const legacyCopy = (text) => {{
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {{ ok = document.execCommand("copy"); }} catch (err) {{ ok = false; }}
    area.remove();
    return ok;
  }};
  button.onclick = async () => {{
    const link = window.location.href;
    let ok = false;
    try {{ await navigator.clipboard.writeText(link); ok = true; }} catch (err) {{ ok = legacyCopy(link); }}
    if (!ok) {{ window.prompt("Copy this link:", link); return; }}
    label.textContent = "{COPIED_LABEL}";
    button.classList.add("done");
    button.title = link;
    clearTimeout(button.resetTimer);
    button.resetTimer = setTimeout(() => {{ label.textContent = "Copy link"; button.classList.remove("done"); }},
                                   3000);
  }};
}}
"""
_copy_button = st.components.v2.component("quantfit_copy_link", html=_COPY_HTML, css=_COPY_CSS, js=_COPY_JS)


def page_title(title: str) -> None:
    """The page title with the "Copy link" button at its right (on a phone: under it)."""
    with st.container(key="page_title"):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.title(title)
        with right:
            copy_link_button()


def copy_link_button(*, key: str = "share") -> None:
    """One click copies the address bar's link (see the module docstring) and the button says "Copied ✓"."""
    _copy_button(key=key, height=44)


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
    """Link to Memory (the default page, at the root) with the preset ``model`` and ``fmt`` added to its table:
    ``memory_url("Q4_K_M", "llama-3.1-70b")`` -> ``./?src=Preset&model=llama-3.1-70b&add=Q4_K_M``."""
    return f"./?{urlencode({'src': PRESET, 'model': model, 'add': fmt})}"
