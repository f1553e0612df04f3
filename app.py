"""quantfit web app: navigation and the shared sidebar. No math here (the numbers live in calculator/).

Run it with ``streamlit run app.py`` (or ``make run``). Each page is one file in ``app_pages/``; to add
one, write the file and add one ``st.Page`` line to ``PAGES``. Shared UI (pickers, URL state, sharing,
downloads, charts, the units footer, the phone layout fixes) is the ``ui`` package; a page never imports
another page.

The Memory page is the default, served at the root URL. ``/memory`` (old links, typed addresses) is a
hidden alias that switches to the root with the same query, so both addresses open Memory without
Streamlit's "Page not found" dialog.
"""

import streamlit as st

from ui.footer import units_footer
from ui.style import apply_style

st.set_page_config(page_title="quantfit: will this LLM fit?", page_icon=":material/memory:", layout="wide")

MEMORY = st.Page("app_pages/memory.py", title="Memory", icon=":material/memory:", url_path="home", default=True)


def memory_alias() -> None:
    """``/memory?...`` -> ``/?...``: the default page lives at the root (its own path is not served)."""
    st.switch_page(MEMORY, query_params={k: st.query_params.get_all(k) for k in st.query_params})  # lists kept


PAGES = [
    MEMORY,
    st.Page("app_pages/fit.py", title="Will it fit?", icon=":material/check_circle:", url_path="fit"),
    st.Page("app_pages/can_run.py", title="What can I run?", icon=":material/travel_explore:",
            url_path="can_run"),
    st.Page("app_pages/formats.py", title="Formats", icon=":material/table_chart:", url_path="formats"),
    st.Page("app_pages/quality.py", title="Quality", icon=":material/insights:", url_path="quality"),
    st.Page("app_pages/reference.py", title="Reference results", icon=":material/menu_book:", url_path="reference"),
    st.Page("app_pages/compare.py", title="Compare & share", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(memory_alias, title="Memory", url_path="memory", visibility="hidden"),
]

page = st.navigation(PAGES)
apply_style()
units_footer()
page.run()
