"""The hostile-input suite (issue 14): every case runs under a per-case timeout, so an input that hangs
fails as a timeout instead of stalling the run. CLI cases run in-process through ``main(argv)``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

CASE_TIMEOUT_S = 30
"""Generous on a busy 2-core machine; a hostile input that is not bounded takes minutes or never ends."""
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CASE_TIMEOUT_S))


def quoted(value: object) -> str:
    """How a one-line message quotes a value: its repr, cut at 40 characters; a huge int by its digit count."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"{value.bit_length() * 30103 // 100000 + 1}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def one_line_error(err: str, prefix: str = "error: ") -> str:
    """The single stderr line of a refused command (no traceback), without its prefix."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in err
    return lines[0][len(prefix):]


@pytest.fixture
def calc(capsys):
    """``calc(*argv)`` -> (status, stdout, stderr) of ``python -m calculator`` run in-process."""
    from calculator.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.fixture
def quantfit_eval(capsys):
    """``quantfit_eval(*argv)`` -> (status, stdout, stderr) of ``python -m evaluation`` run in-process."""
    from evaluation.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


APP = HERE.parents[1] / "app.py"


@pytest.fixture
def app():
    """``app(page, **query)`` -> (AppTest after one run of ``app_pages/<page>.py`` opened with the link's
    ``query``, the CPU seconds that run cost this process). Streamlit caches are cleared first."""
    from streamlit.testing.v1 import AppTest

    from ui.guard import clear_caches

    def run(page: str, **query):
        clear_caches()
        clear_calculator_caches()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.switch_page(f"app_pages/{page}.py")
        for key, value in query.items():
            at.query_params[key] = value
        start = time.process_time()
        at.run()
        return at, time.process_time() - start

    yield run

    clear_caches()


@pytest.fixture
def cpu_view():
    """``cpu_view(page, query, views=3, cold=True)`` -> (the last AppTest, the least CPU seconds one view of
    ``page`` with the link's ``query`` cost this process). Process CPU time (every thread, not wall time) and the
    best of ``views`` runs, so a busy machine does not fail the bound; Streamlit's caches are cleared before each
    view, the calculator's too when ``cold`` (a hostile link brings a spec no cache has seen)."""
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.testing.v1 import AppTest

    from ui.guard import clear_caches

    # A new AppTest scans every installed distribution's metadata for custom components on its first run
    # (0.4-1 s of CPU with ~500 distributions): a real server does that once at start-up, not per view.
    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)

    def run(page: str, query: dict, views: int = 3, cold: bool = True):
        best, at = float("inf"), None
        for _ in range(views):
            clear_caches()
            if cold:
                clear_calculator_caches()
            at = AppTest.from_file(str(APP), default_timeout=60)
            at._bidi_component_manager = components  # private: AppTest has no option for it (streamlit 1.67)
            at.switch_page(f"app_pages/{page}.py")
            for key, value in query.items():
                at.query_params[key] = value
            start = time.process_time()
            at.run()
            best = min(best, time.process_time() - start)
        return at, best

    yield run

    clear_caches()


def shown_text(at) -> tuple[list[str], list[str]]:
    """(warnings, errors) an AppTest run shows; fails on an exception or the guard's internal-error banner."""
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert not [e for e in errors if "internal error" in e], errors
    return [w.value for w in at.warning], errors


def clear_calculator_caches() -> None:
    """Empty every ``functools`` cache of the calculator's modules (per-spec layouts, presets, recipe rules),
    so a page view is measured cold: a hostile link brings a spec no cache has seen."""
    import sys

    for name, module in list(sys.modules.items()):
        if name == "calculator" or name.startswith("calculator."):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
