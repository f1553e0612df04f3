"""The page guard: a page's body runs inside ``run_page``, so no traceback ever reaches the browser.

A ``ValueError`` is a user mistake by the project's convention (its message names the value and the fix),
so it is shown as is; anything else is a bug, shown as one line and logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

LOG = logging.getLogger("quantfit.app")


def run_page(main: Callable[[], None]) -> None:
    """Run a page body; errors become messages, never tracebacks (st.stop / reruns pass through)."""
    try:
        main()
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - the page must not show a traceback; the log keeps it
        LOG.exception("page failed")
        st.error(
            f"quantfit hit an internal error ({type(err).__name__}: {err}). Change an input or reload; "
            "if it persists, please report it with the link from “Copy link”.",
            icon=":material/bug_report:",
        )


def clear_caches() -> None:
    """Empty every ``st.cache_data`` and ``st.cache_resource`` of the app (tests and bench start clean)."""
    st.cache_data.clear()
    st.cache_resource.clear()
