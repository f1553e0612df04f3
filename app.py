"""quantfit web app: navigation and the shared sidebar. No math here (the numbers live in calculator/).

Run it with ``streamlit run app.py`` (or ``make run``). Each page is one file in ``app_pages/``; to add
one, write the file and add one ``st.Page`` line to ``PAGES``. Shared UI (pickers, URL state, sharing,
downloads, charts, the units footer) is the ``ui`` package; a page never imports another page.
"""

import streamlit as st

from ui.footer import units_footer

st.set_page_config(page_title="quantfit: will this LLM fit?", page_icon=":material/memory:", layout="wide")

PAGES = [
    st.Page("app_pages/memory.py", title="Memory", icon=":material/memory:", url_path="memory", default=True),
    st.Page("app_pages/fit.py", title="Will it fit?", icon=":material/check_circle:", url_path="fit"),
    st.Page("app_pages/formats.py", title="Formats", icon=":material/table_chart:", url_path="formats"),
    st.Page("app_pages/quality.py", title="Quality", icon=":material/insights:", url_path="quality"),
    st.Page("app_pages/reference.py", title="Reference results", icon=":material/menu_book:", url_path="reference"),
    st.Page("app_pages/compare.py", title="Compare & share", icon=":material/compare_arrows:", url_path="compare"),
]

page = st.navigation(PAGES)
units_footer()
page.run()
