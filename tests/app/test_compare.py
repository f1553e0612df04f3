"""Compare & share page (AppTest): bundled files overlay, uploads validated (a malformed or oversized file
is an error line, never an exception), published tables overlay, the URL holds the view, exports exist."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evaluation.plan import RESULTS_DIR
from evaluation.results import MAX_RESULTS_FILE_BYTES, load_results, results_document
from tests.app.conftest import dataframe_with, no_exception, texts
from ui.charts import X_AXES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "app_pages" / "compare.py"
BUNDLED = RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json"
FILES = sorted(RESULTS_DIR.glob("*.json"))


@pytest.fixture
def page(run_page_file):
    return functools.partial(run_page_file, PAGE)


def figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="cupload").set_value([(name, data, "application/json") for name, data in files])
    return at.run()


def test_renders_the_bundled_files(page):
    at = page()
    no_exception(at)
    assert not texts(at.error)
    table = dataframe_with(at, "series")
    assert len(table) == sum(len(load_results(p)) for p in FILES)
    assert {t["name"].split(" · ")[0] for t in figure(at)["data"]} == {p.name for p in FILES}
    assert BUNDLED in FILES
    keys = {b.proto.id.rsplit("-", 1)[-1] for b in at.get("download_button")}
    assert {"compare_table_dl_csv", "compare_table_dl_json", "compare_chart_dl_html",
            "compare_results_json"} <= keys  # PNG and SVG too where Chromium is installed


def test_malformed_upload_is_an_error_not_an_exception(page):
    at = page()
    good = json.dumps(results_document([replace(r, key=f"copy-{r.key}") for r in load_results(BUNDLED)[:3]]))
    at = upload(at, ("broken.json", b'{"schema": "quantfit.evaluation.results", "results": ['),
                ("other.json", b'{"rows": []}'),
                ("nan.json", good.replace('"ppl": ', '"ppl": NaN, "x": ', 1).encode()),
                ("mine.json", good.encode()))
    no_exception(at)
    errors = texts(at.error)
    assert any(e.startswith("Upload rejected: broken.json: not valid JSON") for e in errors)
    assert any("other.json: not a quantfit results file" in e for e in errors)
    assert any(e.startswith("Upload rejected: nan.json") for e in errors)
    assert len(errors) == 3
    names = {t["name"].split(" · ")[0] for t in figure(at)["data"]}
    assert names == {p.name for p in FILES} | {"mine.json"}  # the good upload is overlaid


def test_oversized_upload_is_refused(page):
    at = upload(page(), ("huge.json", b" " * (MAX_RESULTS_FILE_BYTES + 1)))
    no_exception(at)
    assert any("huge.json" in e and "over the" in e and "byte limit" in e for e in texts(at.error))


def test_url_holds_the_view(page):
    query = {"cfiles": [], "cref": ["llamacpp_llama3_8b_scoreboard"], "cx": "bits per weight",
             "cy": "mean KLD", "cyscale": "log", "cfront": "true"}
    at = page(**query)
    no_exception(at)
    assert not texts(at.error)
    assert at.multiselect(key="cref").value == ["llamacpp_llama3_8b_scoreboard"]
    table = dataframe_with(at, "series")
    assert table["source_url"].notna().sum() == 46 and table["measured_bytes"].notna().sum() > 0
    assert at.selectbox(key="cy").value == "mean KLD"
    spec = figure(at)
    assert spec["layout"]["yaxis"]["type"] == "log"
    names = {t["name"] for t in spec["data"]}
    assert {"Meta-Llama-3-8B · llama.cpp", "Pareto frontier"} <= names
    at.selectbox(key="cx").set_value("size GB").run()
    no_exception(at)
    assert not texts(at.error)
    assert figure(at)["layout"]["xaxis"]["title"]["text"] == X_AXES["size GB"].label
    assert any("have no size GB" in c for c in texts(at.caption))  # published rows carry no bytes


def test_unknown_file_in_a_link_is_a_warning(page):
    at = page(cfiles=["nope"])
    no_exception(at)
    assert any("'nope'" in w for w in texts(at.warning))
