"""Small layout fixes Streamlit has no option for, mostly for phones (390 px wide), applied once by app.py.

Each rule says what it fixes. Selectors use Streamlit's stable hooks (``data-testid`` attributes and the
``st-key-<key>`` class a keyed element or container gets), never its generated ``st-emotion-cache`` names.
Checked with real Chromium at 390 x 844 and 1400 x 1000 (``scripts/screenshots.py``).
"""

from __future__ import annotations

import streamlit as st

PHONE_MAX_PX = 640
"""Streamlit stacks columns below this width; the phone rules use the same breakpoint."""

RESULTS_FIRST = "results_first"
"""Key prefix of a container whose content (a chart, the headline numbers) comes before the inputs on a phone:
``st.container(key=f"{RESULTS_FIRST}_quality")``."""

HEADLINE = f"{RESULTS_FIRST}_headline"
"""Key of a row of headline metrics: first on a phone, and two by two there instead of one per screen."""

_CSS = f"""
<style>
/* Pills (st.pills) scroll sideways by default, so on a phone the last ones are cut off: wrap them. */
[data-testid="stButtonGroup"] div:has(> button) {{ flex-wrap: wrap; row-gap: 0.35rem; }}

@media (max-width: {PHONE_MAX_PX}px) {{
  /* Results before inputs: a keyed results container moves up, just under the page title. */
  [data-testid="stLayoutWrapper"]:has(> [class*="st-key-{RESULTS_FIRST}"]) {{ order: -1; }}
  [data-testid="stLayoutWrapper"]:has(> .st-key-page_title) {{ order: -2; }}
  /* A 2.75rem page title takes a third of the first screen. */
  h1 {{ font-size: 1.7rem !important; padding-top: 0 !important; }}
  /* Headline metrics two by two instead of one per screen-wide box. */
  .st-key-{HEADLINE} [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; gap: 0.5rem; }}
  .st-key-{HEADLINE} [data-testid="stColumn"] {{ min-width: calc(50% - 0.25rem) !important;
    max-width: calc(50% - 0.25rem); flex: 1 1 calc(50% - 0.25rem) !important; }}
  .st-key-{HEADLINE} [data-testid="stMetricValue"], .st-key-{HEADLINE} .qf-number {{ font-size: 1.4rem !important; }}
  .st-key-{HEADLINE} [data-testid="stMetric"] {{ padding: 0.3rem 0.5rem; }}
}}
</style>
"""

# On a phone the sidebar covers the page; Streamlit leaves it open after a page link is clicked, so the new
# page is hidden behind it. Close it after such a click (the collapse button is Streamlit's own).
_JS = f"""
<script>
if (!window.quantfitSidebarCloser) {{
  window.quantfitSidebarCloser = true;
  document.addEventListener("click", (event) => {{
    if (window.innerWidth > {PHONE_MAX_PX} || !event.target.closest('[data-testid="stSidebarNav"] a')) return;
    setTimeout(() => {{
      const close = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
      if (close) close.click();
    }}, 100);
  }}, true);
}}
</script>
"""


def apply_style() -> None:
    """Inject the CSS (takes no space: a style-only ``st.html`` goes to Streamlit's event container) and the
    sidebar closer (in the sidebar, so the main page gets no empty element)."""
    st.html(_CSS)
    with st.sidebar:
        st.html(_JS, unsafe_allow_javascript=True)
