"""The ui package: the config-in-a-link codec, table and figure exports (without touching os.environ), links
that reopen a page, the share link, a page guard that turns errors into messages."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile

import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.app.conftest import no_exception, texts
from ui.export import chromium_path, csv_bytes, figure_bytes, json_bytes, standalone_figure
from ui.url_state import decode_config, encode_config

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=30)


@given(config=st.dictionaries(st.text(max_size=12), _json, max_size=8))
def test_config_link_round_trip(config):
    data = json.dumps(config, indent=2).encode()
    text = encode_config(data)
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe
    assert json.loads(decode_config(text)) == config


def test_real_config_fits_in_a_link():
    from calculator.models import preset_record

    data = json.dumps(preset_record("llama-3.1-405b")["config"], indent=2).encode()
    assert len(encode_config(data)) < len(data) < 6000


@pytest.mark.parametrize("text", ["!!!", "AAAA", encode_config(b'{"a": 1}')[:-4],
                                  encode_config(b"{}") + "###"])
def test_damaged_config_link(text):
    with pytest.raises(ValueError, match="damaged"):
        decode_config(text)


def test_csv_and_json_keep_exact_bytes():
    rows = [{"format": "fp16", "weight_bytes": 140_000_000_000, "weight_gb": 140.0},
            {"format": "int4", "weight_bytes": 35_000_000_000, "weight_gb": 35.0}]
    parsed = list(csv.DictReader(io.StringIO(csv_bytes(rows).decode())))
    assert parsed[1] == {"format": "int4", "weight_bytes": "35000000000", "weight_gb": "35.0"}
    doc = json.loads(json_bytes(rows, {"model": "70B"}))
    assert doc["model"] == "70B" and doc["rows"] == rows and doc["units"]["gib"] == "2^30 bytes"


def test_html_export_is_a_small_page_beside_plotly_js():
    """Issue 13 item 9: no 4.8 MB inline plotly.js and no CDN (the app runs offline): a zip of the page and the
    plotly.min.js it loads from beside it."""
    data = figure_bytes(go.Figure(go.Bar(x=["fp16"], y=[140.0])), "html", title="Weights", stem="chart")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = sorted(z.namelist())
        html = z.read("chart/chart.html").decode()
        plotly_js = z.read("chart/plotly.min.js")
    assert names == ["chart/chart.html", "chart/plotly.min.js"]
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in html and "cdn.plot.ly" not in html
    assert len(html) < 50_000 and len(plotly_js) > 3_000_000
    assert len(data) < 2_000_000  # deflated; docs/app.md states the size
    with pytest.raises(ValueError, match="figure format 'gif' is not one of png, svg, html"):
        figure_bytes(go.Figure(), "gif")


def test_a_downloaded_chart_carries_its_headline_and_source():
    fig = go.Figure(go.Bar(x=["fp16"], y=[140.0]))
    out = standalone_figure(fig, title="Fits on RTX 4090: 6.79 GB of 24.00 GB usable", source="calculator.fit")
    assert out.layout.title.text == "Fits on RTX 4090: 6.79 GB of 24.00 GB usable"
    assert out.layout.title.subtitle.text == "quantfit · calculator.fit"
    assert out.layout.template.layout.paper_bgcolor == "white"  # not Streamlit's placeholder colours
    assert fig.layout.title.text is None  # the on-screen figure is left as it was


def test_chromium_path_reads_the_environment_never_writes_it(monkeypatch, tmp_path):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    before = dict(os.environ)
    found = chromium_path()
    assert found is None or os.path.exists(found)
    assert dict(os.environ) == before
    browser = tmp_path / "my-chromium"
    browser.write_text("")
    monkeypatch.setenv("BROWSER_PATH", str(browser))
    assert chromium_path() == str(browser)
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing"))
    assert chromium_path() is None
    with pytest.raises(ValueError, match="PNG/SVG export needs Chromium"):
        figure_bytes(go.Figure(), "png")


@pytest.mark.browser
def test_png_and_svg_export_with_system_chromium():
    import kaleido

    fig = go.Figure(go.Bar(x=["fp16", "int4"], y=[140.0, 35.0]))
    before = dict(os.environ)
    try:
        png, svg = figure_bytes(fig, "png"), figure_bytes(fig, "svg")
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[16:24] == (2400).to_bytes(4, "big") + (1200).to_bytes(4, "big")  # IHDR: 1200 x 600 at scale 2
    assert b"<svg" in svg[:500]
    titled = figure_bytes(fig, "svg", title="Weights of Llama 3.1 70B", source="calculator.memory")
    assert b"Weights of Llama 3.1 70B" in titled and b"calculator.memory" in titled
    assert dict(os.environ) == before  # the browser path went to kaleido as an argument


def test_a_link_reopens_the_same_state(run_app):
    """The link is the address bar (bound widgets; "Copy link" copies it in the browser, tests/app/
    test_browser.py): a query with every kind of widget reopens the same page."""
    query = {"model": "qwen2.5-7b", "gpu": "L40S", "ctx": "65536", "kv": "q8_0", "fa": "false"}
    at = run_app("fit", **query)
    no_exception(at)
    assert at.selectbox(key="model").value == "qwen2.5-7b"
    assert at.selectbox(key="gpu").value == "L40S"
    assert at.number_input(key="ctx").value == 65536
    assert at.selectbox(key="kv").value == "q8_0"
    assert at.checkbox(key="fa").value is False
    again = run_app("fit", **query)
    assert texts(again.success) == texts(at.success) or texts(again.warning) == texts(at.warning)


def _guarded_page(error: str) -> None:
    """A page body that fails the way the test asks (AppTest runs this function's source as a script)."""
    from ui.guard import run_page

    def main() -> None:
        raise (ValueError if error == "value" else RuntimeError)("context 0 must be at least 1 token")

    run_page(main)


def test_run_page_turns_errors_into_messages():
    from streamlit.testing.v1 import AppTest

    for kind, expected in [("value", "context 0 must be at least 1 token"),
                           ("bug", "quantfit hit an internal error (RuntimeError: context 0 must be")]:
        at = AppTest.from_function(_guarded_page, args=(kind,)).run()
        assert not at.exception
        assert len(at.error) == 1 and texts(at.error)[0].startswith(expected), texts(at.error)
