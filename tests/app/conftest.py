"""AppTest fixtures: run the real app.py (navigation, sidebar and all) on a chosen page, caches cleared."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.guard import clear_caches

APP = Path(__file__).resolve().parents[2] / "app.py"
PAGES = {name: f"app_pages/{name}.py"
         for name in ("memory", "fit", "can_run", "formats", "quality", "reference", "compare")}


@pytest.fixture
def run_app():
    """``run_app(page, **query)`` -> an AppTest that has run ``page`` with the URL query ``query``."""
    clear_caches()

    def run(page: str = "memory", **query) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        if page != "memory":  # the default page, at the root: /memory is only an alias that switches there
            at.switch_page(PAGES[page])
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    yield run
    clear_caches()


@pytest.fixture
def run_page_file():
    """``run_page_file(path, **query)`` -> an AppTest that has run one page file alone, caches cleared."""
    clear_caches()

    def run(path: str | Path, **query) -> AppTest:
        at = AppTest.from_file(str(path), default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    yield run
    clear_caches()


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def numbers(at: AppTest) -> dict[str, str]:
    """The headline numbers ``ui.numbers.number_row`` drew, label -> value (as the page shows them)."""
    found = {}
    for m in at.markdown:
        for hit in re.finditer(r'<div[^>]*>([^<]*)</div><div class="qf-number"[^>]*>([^<]*)</div>', m.value):
            found[html.unescape(hit.group(1))] = html.unescape(hit.group(2))
    return found


def number(at: AppTest, label: str) -> str:
    return numbers(at)[label]


def no_exception(at: AppTest) -> None:
    """No uncaught exception, and no internal error turned into a message by run_page either."""
    assert not at.exception, at.exception
    assert not [e for e in texts(at.error) if "internal error" in e], texts(at.error)


def dataframe_with(at: AppTest, column: str):
    """The first st.dataframe whose columns include ``column`` (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)
