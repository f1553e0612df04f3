"""Reference results page (AppTest): published tables plotted on the quality axes with their sources, the
flagged row kept and shown, filters and the SmolLM2 overlay driven by widget keys and the URL."""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import dataframe_with, no_exception, texts
from ui.charts import Y_AXES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "app_pages" / "reference.py"
REFERENCE = ROOT / "assets" / "reference"


@pytest.fixture
def page(run_page_file):
    return functools.partial(run_page_file, PAGE)


def clean(at: AppTest) -> None:
    """No exception, no internal error and no error message at all."""
    no_exception(at)
    assert not texts(at.error), texts(at.error)


def figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


PLOTTED = [p.stem for p in sorted(REFERENCE.glob("*.csv")) if p.stem != "llamacpp_llama2_bpw"]


def test_default_is_one_scoreboard_ranked_with_a_recommendation(page):
    """Issue 13 item 8: one scoreboard, each series a line, one colour per model and one symbol per method, a
    Pareto frontier, a ranked table and a recommendation that cites its source row."""
    at = page()
    clean(at)
    assert at.multiselect(key="rtables").value == ["llamacpp_llama3_8b_scoreboard"]
    spec = figure(at)
    series = {t["name"]: t for t in spec["data"]}
    assert set(series) == {"Meta-Llama-3-8B · llama.cpp", "Meta-Llama-3-8B · llama.cpp imatrix", "Pareto frontier"}
    plain, imatrix = series["Meta-Llama-3-8B · llama.cpp"], series["Meta-Llama-3-8B · llama.cpp imatrix"]
    assert plain["mode"] == imatrix["mode"] == "lines+markers"
    assert plain["marker"]["color"] == imatrix["marker"]["color"]  # one model, one colour
    assert set(plain["marker"]["symbol"]) != set(imatrix["marker"]["symbol"])  # two methods, two symbols
    ranked = dataframe_with(at, "rank")
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert list(ranked["kld"]) == sorted(ranked["kld"])
    advice = " ".join(texts(at.success))
    # The smallest file type within 3 % of F16's perplexity in the scoreboard CSV: Q4_K_S with an imatrix.
    rows = list(csv.DictReader((REFERENCE / "llamacpp_llama3_8b_scoreboard.csv").read_text().splitlines()))
    assert "Recommendation for Meta-Llama-3-8B" in advice and "Q4_K_S" in advice
    assert "Source row" in advice and rows[0]["source"][:40] in advice
    at.toggle(key="rfront").set_value(False).run()
    assert "Pareto frontier" not in {t["name"] for t in figure(at)["data"]}


def test_renders_every_plotted_table_with_sources(page):
    at = page(rtables=PLOTTED, rmine="true")
    clean(at)
    # Counted from the CSV files themselves: every wikitext-2 row of every plotted table.
    wiki = [row for path in sorted(REFERENCE.glob("*.csv")) if path.stem != "llamacpp_llama2_bpw"
            for row in csv.DictReader(path.read_text().splitlines()) if row["dataset"].lower().startswith("wikitext")]
    table = dataframe_with(at, "bits_basis")
    assert len(table) == len(wiki)
    assert Counter(table["model"]) == Counter(row["model"] for row in wiki)
    assert table["source_url"].str.startswith("https://github.com/").all()
    names = {t["name"] for t in figure(at)["data"]}
    assert {"Meta-Llama-3-8B · llama.cpp", "Meta-Llama-3-8B · llama.cpp imatrix", "Llama-2-70B · llama.cpp",
            "LLaMA-v1-7B · GPTQ", "LLaMA-v1-7B · RTN"} <= names
    assert any(name.startswith("SmolLM2-135M, measured here") for name in names)
    hover = " ".join(h.replace("<br>", " ") for t in figure(at)["data"] for h in t.get("text") or [])  # wrapped
    assert "source: ggerganov/llama.cpp examples/perplexity/README.md" in hover


def test_flagged_row_is_shown_with_its_reason(page):
    at = page(rtables=PLOTTED)
    warnings = [w for w in texts(at.warning) if "flagged" in w]
    assert len(warnings) == 1 and "Llama-2-7B Q2_K" in warnings[0] and "SOURCE ANOMALY" in warnings[0]
    table = dataframe_with(at, "bits_basis")
    flagged = table[table["flag"] != ""]
    assert list(flagged["method"]) == ["Q2_K"] and flagged["ppl"].iloc[0] == 5.794552
    trace = next(t for t in figure(at)["data"] if t["name"] == "Llama-2-7B · llama.cpp")
    assert "x" in trace["marker"]["symbol"]  # drawn as a cross


def test_filters_and_axes_follow_the_url(page):
    at = page(rtables=["gptq_for_llama"], rcorpus="c4", ry="PPL", rmine="false")
    clean(at)
    table = dataframe_with(at, "bits_basis")
    assert set(table["corpus"]) == {"c4"} and len(table) == 15
    spec = figure(at)
    assert spec["layout"]["yaxis"]["title"]["text"] == Y_AXES["PPL"].label
    assert not any(t["name"].startswith("SmolLM2") for t in spec["data"])
    at.selectbox(key="ry").set_value("mean KLD").run()
    names = {t["name"] for t in figure(at)["data"]}
    assert names == set()  # GPTQ-for-LLaMa publishes no KLD
    assert any("lack bits per weight or mean KLD" in c for c in texts(at.caption))


def test_unknown_table_in_a_link_is_a_warning(page):
    at = page(rtables=["llamacpp_llama3_8b_scoreboard", "no_such_table"])
    clean(at)
    assert any("no_such_table" in w for w in texts(at.warning))
    assert at.multiselect(key="rtables").value == ["llamacpp_llama3_8b_scoreboard"]


def test_rows_link_to_will_it_fit_with_their_model_and_format(page):
    at = page(rtables=["llamacpp_llama3_8b_scoreboard"], rmine="false")
    table = dataframe_with(at, "bits_basis")
    row = table[(table["method"] == "Q4_K_M")].iloc[0]
    assert row["fit_link"] == "./fit?src=Preset&model=llama-3-8b&fmt=Q4_K_M"
    assert table["fit_link"].notna().sum() >= 40  # IQ and K types are all llama.cpp file types
