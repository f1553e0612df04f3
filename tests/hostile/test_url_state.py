"""URL state: a link's values that a widget cannot use (out of range, unparseable, unknown, too long, infinite)
are never silently replaced: the page warns, naming the value and what it shows instead, and never reaches
the internal-error banner (Streamlit's own number parsing crashed on ``ctx=inf``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile.conftest import quoted as shown
from tests.hostile.conftest import shown_text

# (raw link text, low, high, (value used, problem))
NUMBERS = [
    ("8192", 1, 10**7, (8192, None)),
    (" 4096 ", 1, 10**7, (4096, None)),
    ("1_000", 1, 10**7, (1000, None)),
    ("1e3", 1, 10**7, (1000, None)),
    ("4096.5", 1, 10**7, (4096, "is not a whole number")),
    ("-5", 1, 10**7, (None, "is below 1")),
    ("0", 1, 64, (None, "is below 1")),
    ("1e12", 1, 10**7, (None, "is above 10,000,000")),
    ("65", 1, 64, (None, "is above 64")),
    ("nan", 1, 64, (None, "is not a finite number")),
    ("inf", 1, 64, (None, "is not a finite number")),
    ("-infinity", 1, 64, (None, "is not a finite number")),
    ("abc", 1, 64, (None, "is not a number")),
    ("", 1, 64, (None, "is not a number")),
    ("0x10", 1, 64, (None, "is not a number")),
    ("9" * 5000, 1, 64, (None, "is 5,000 characters long, not a number")),
]


@pytest.mark.parametrize(("raw", "low", "high", "expected"), NUMBERS, ids=[n[0][:16] or "empty" for n in NUMBERS])
def test_url_number(raw, low, high, expected):
    from ui.url_state import url_number

    assert url_number(raw, low, high) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.integers(-10**30, 10**30).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr)),
       st.integers(0, 100), st.integers(0, 10**9))
def test_url_number_bounded(raw, low, span):
    """Whatever the text, the value used is in range (or the default), and a problem is named iff Streamlit
    would not keep the text as it is."""
    from ui.url_state import MAX_URL_NUMBER_CHARS, url_number

    high = low + span
    value, problem = url_number(raw, low, high)
    if value is not None:
        assert low <= value <= high
    try:
        exact = len(raw) <= MAX_URL_NUMBER_CHARS and float(raw) == int(float(raw)) and low <= float(raw) <= high
    except (ValueError, OverflowError):
        exact = False
    assert (problem is None) == exact


def _link_value(key: str, value: str, why: str) -> str:
    return f"The link's {key} value {shown(value)} is unusable ({why}); the default is shown instead."


def _asks(what: str, value: str, why: str, instead: str) -> str:
    return f"The link asks for {what} {shown(value)}, which {why}; showing {instead} instead."


def _unknown(what: str, value: str) -> str:
    return (f"The link asks for {what} {shown(value)}, which is not in the list; showing the default instead. Pick "
            "one from the list.")


LONG = "9" * 5000
# (id, page, link, the warnings it must show, in order)
LINKS = [
    ("fit-context-negative", "fit", {"ctx": "-5"}, [_asks("context (tokens)", "-5", "is below 1", "8,192")]),
    ("fit-context-1e12", "fit", {"ctx": "1e12"}, [_asks("context (tokens)", "1e12", "is above 10,000,000", "8,192")]),
    ("fit-context-nan", "fit", {"ctx": "nan"}, [_link_value("ctx", "nan", "not a finite number")]),
    ("fit-context-fraction", "fit", {"ctx": "4096.5"},
     [_asks("context (tokens)", "4096.5", "is not a whole number", "4,096")]),
    ("fit-context-5000-digits", "fit", {"ctx": LONG},
     [_link_value("ctx", LONG, "5,000 characters, over the 1,000 a link of this app holds")]),
    ("fit-gpus-billion", "fit", {"n_gpus": "1000000000"}, [_asks("GPU count", "1000000000", "is above 64", "1")]),
    ("fit-kv-unknown", "fit", {"kv": "q3_z"}, [_unknown("KV cache type", "q3_z")]),
    ("fit-mode-unknown", "fit", {"mode": "Pretraining"}, [_unknown("mode", "Pretraining")]),
    ("fit-ubatch-zero", "fit", {"ubatch": "0"}, [_asks("prompt tokens per step", "0", "is below 1", "512")]),
    ("fit-cpu-ram-negative", "fit", {"cpu_ram_gb": "-1"}, [_asks("CPU RAM (GB)", "-1", "is below 0", "0")]),
    ("fit-lora-rank-zero", "fit", {"mode": "LoRA", "lora_rank": "0"}, [_asks("LoRA rank", "0", "is below 1", "16")]),
    ("fit-everything-at-once", "fit", {"ctx": "-5", "n_gpus": "0", "batch": "0", "kv": "zz"},
     [_asks("GPU count", "0", "is below 1", "1"), _asks("context (tokens)", "-5", "is below 1", "8,192"),
      _asks("batch", "0", "is below 1", "1"), _unknown("KV cache type", "zz")]),
    ("memory-params-1e400", "memory", {"src": "Parameters", "params": "1e400"},
     [_link_value("params", "1e400", "not a finite number")]),
    ("memory-unknown-gpu", "memory", {"gpus": ["RTX 4090", "Quantum 9000"]},
     ["The link asks for GPU 'Quantum 9000', not in the catalogue; left out."]),
    ("quality-token-budget", "quality", {"qtokens": "7"}, [_unknown("token budget", "7")]),
    ("quality-context", "quality", {"qctx": "-1"}, [_unknown("context", "-1")]),
    ("quality-bits", "quality", {"qbits": ["4",
     "99"]}, ["The link asks for bit width '99', not in the list; left out."]),
    ("quality-group", "quality", {"qgroup": "7"}, [_unknown("group size", "7")]),
]


@pytest.mark.parametrize(("page", "query", "warnings"), [c[1:] for c in LINKS], ids=[c[0] for c in LINKS])
def test_link_values_are_named(app, page, query, warnings):
    at, _ = app(page, **query)
    shown_warnings, _ = shown_text(at)
    assert [w for w in shown_warnings if w.startswith("The link")] == warnings


def test_memory_params_error_names_the_value(app):
    """A parameter count the page can read but not accept: one clear error naming it, no traceback."""
    at, _ = app("memory", src="Parameters", params="2000T")
    _, errors = shown_text(at)
    assert errors == ["parameter count '2000T' is above 1e+15 (1,000T), beyond any model; give e.g. 70e9, 70B, "
                      "1.5T or 135M"]


def test_too_many_added_formats(app):
    from calculator.gguf_recipes import FILE_TYPES

    at, _ = app("memory", add=sorted(FILE_TYPES)[:20])
    warnings, _ = shown_text(at)
    assert "The link lists 20 added formats; only the first 8 are shown." in warnings


@settings(max_examples=5, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "ctx": st.one_of(st.integers(-10**20, 10**20).map(str), st.sampled_from(["nan", "inf", "-inf", "1e400", "x", ""])),
    "n_gpus": st.integers(-5, 10**12).map(str), "batch": st.integers(-5, 10**9).map(str),
    "kv": st.text(max_size=6), "mode": st.sampled_from(["Inference", "LoRA", "QLoRA", "Full fine-tune", "?"]),
}))
def test_any_fit_link_shows_a_page(query):
    """Hypothesis over URL states: whatever the link holds, the Fit page answers with warnings, never the
    internal-error banner."""
    from streamlit.testing.v1 import AppTest

    from tests.hostile.conftest import APP

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("app_pages/fit.py")
    for key, value in query.items():
        at.query_params[key] = value
    shown_text(at.run())
