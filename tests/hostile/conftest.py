"""The hostile-input suite (issue 14): every case runs under a per-case timeout, so an input that hangs
fails as a timeout instead of stalling the run. CLI cases run in-process through ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import pytest

CASE_TIMEOUT_S = 30
"""Generous on a busy 2-core machine; a hostile input that is not bounded takes minutes or never ends."""
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CASE_TIMEOUT_S))


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
