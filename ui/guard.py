"""The page guard: a page's body runs inside ``run_page``, so no traceback ever reaches the browser.

A ``ValueError`` is a user mistake by the project's convention (its message names the value and the fix),
so it is shown as is; anything else is a bug, shown as one line and logged with its traceback and the link
values that reached it (no input should: every one is checked on the way in, and this is the last net).
Before the body runs, link values no widget can use are dropped with a warning
(``ui.url_state.drop_unusable_url_values``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from ui.url_state import drop_unusable_url_values

LOG = logging.getLogger("quantfit.app")
MAX_LOGGED_CHARS = 2000
"""The link values logged with an internal error, cut to this length."""


def run_page(main: Callable[[], None]) -> None:
    """Run a page body; errors become messages, never tracebacks (st.stop / reruns pass through)."""
    try:
        drop_unusable_url_values()
        main()
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - the page must not show a traceback; the log keeps it
        link = {key: st.query_params.get_all(key) for key in st.query_params}
        LOG.exception("page failed; link values: %s", repr(link)[:MAX_LOGGED_CHARS])
        st.error(
            f"quantfit hit an internal error ({type(err).__name__}: {err}). Change an input or reload; "
            "if it persists, please report it with the link from “Copy link”.",
            icon=":material/bug_report:",
        )


def clear_caches() -> None:
    """Empty every ``st.cache_data`` and ``st.cache_resource`` of the app (tests and bench start clean)."""
    st.cache_data.clear()
    st.cache_resource.clear()
