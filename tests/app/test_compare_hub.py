"""Compare page reading results from a Hub dataset repo (AppTest against the suite's fake Hub): pushed with
``evaluation.hub.push_results``, loaded back by repo id (typed or from the link) with the same numbers in the
table and the chart; a bad id, an unknown repo, a repo without results, an offline and a hung Hub are each one
error line."""

from __future__ import annotations

import functools
import json
import socket
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evaluation.hub import push_results
from evaluation.plan import RESULTS_DIR
from evaluation.results import load_results, save_results
from tests.app.conftest import dataframe_with, no_exception, texts
from tests.calculator.gguf_fixtures import hung_endpoint

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "app_pages" / "compare.py"
BUNDLED = RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json"
REPO = "acme/quant-evals"


@pytest.fixture
def page(run_page_file):
    return functools.partial(run_page_file, PAGE)


@pytest.fixture
def pushed(fake_hub, monkeypatch, tmp_path) -> list:
    """The first 5 bundled results, pushed to ``REPO`` as results/team-sweep.json."""
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    rows = load_results(BUNDLED)[:5]
    path = tmp_path / "team-sweep.json"
    save_results(path, rows)
    push_results(path, REPO)
    monkeypatch.delenv("HF_TOKEN")  # reading a public repo needs no token
    return rows


def figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_a_pushed_file_loads_with_the_same_numbers(page, pushed):
    at = page(csession="false", crepo=REPO, cy="PPL")
    no_exception(at)
    assert not texts(at.error) and not texts(at.warning)
    source = f"{REPO}/results/team-sweep.json"
    table = dataframe_with(at, "series")
    table = table[table["series"].str.startswith(f"{source} · ")]
    assert list(table["method"]) == [r.method_id for r in pushed]
    assert list(table["ppl"]) == [r.quality.ppl for r in pushed]
    assert list(table["kld_mean"]) == [r.quality.kld_mean for r in pushed]
    assert list(table["measured_bytes"]) == [r.measured_bytes for r in pushed]
    traces = [t for t in figure(at)["data"] if t["name"].startswith(f"{source} · ")]
    assert sorted(y for t in traces for y in t["y"]) == sorted(r.quality.ppl for r in pushed)
    assert sorted(x for t in traces for x in t["x"]) == sorted(r.bits_per_weight for r in pushed)


def test_a_typed_repo_id_joins_the_bundled_files(page, pushed):
    at = page(csession="false")
    shown = len(dataframe_with(at, "series"))  # the bundled files
    at.text_input(key="crepo").set_value(REPO).run()
    no_exception(at)
    assert len(dataframe_with(at, "series")) == shown + len(pushed)


def test_a_bad_repo_id_is_refused_before_any_request(page, pushed, fake_hub):
    before = len(fake_hub.requests)
    at = page(crepo="not a repo")
    no_exception(at)
    assert texts(at.error) == ["Hub repo 'not a repo' is not a Hub repo id: write OWNER/NAME, e.g. acme/quant-evals"]
    assert len(fake_hub.requests) == before


def test_unknown_and_non_results_repos_are_one_line(page, pushed, fake_hub):
    at = page(crepo="acme/nothing")
    no_exception(at)
    [error] = texts(at.error)
    assert error.startswith("Hub repo not loaded: dataset repo acme/nothing was not found on http://127.0.0.1:")
    fake_hub.datasets["acme/notes"] = {"README.md": b"# notes", "data/train.csv": b"a,b\n1,2\n"}
    at = page(crepo="acme/notes")
    assert texts(at.error) == [
        "Hub repo not loaded: dataset repo acme/notes is not a quantfit results repo: it has no results/*.json "
        "(push one with `python -m evaluation push RESULTS --repo OWNER/NAME`)"
    ]


def test_a_bad_file_in_the_repo_is_a_warning_and_the_rest_loads(page, pushed, fake_hub):
    fake_hub.datasets[REPO]["results/hand-edited.json"] = b'{"schema": "other"}'
    at = page(csession="false", crepo=REPO)
    no_exception(at)
    assert not texts(at.error)
    assert texts(at.warning) == [f"Hub file left out: {REPO}/results/hand-edited.json: not a quantfit results file "
                                 "(schema 'other', expected 'quantfit.evaluation.results')"]  # fmt: skip
    table = dataframe_with(at, "series")
    assert table["series"].str.startswith(f"{REPO}/results/team-sweep.json").sum() == len(pushed)


def test_offline_hub_is_one_line(page, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    at = page(crepo=REPO)
    no_exception(at)
    assert texts(at.error) == [f"Hub repo not loaded: the Hugging Face Hub (http://127.0.0.1:{port}) is unreachable: "
                               "go online, or set HF_ENDPOINT"]  # fmt: skip


def test_a_hub_that_never_answers_times_out(page, monkeypatch):
    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", "1")
    start = time.monotonic()
    with hung_endpoint() as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        at = page(crepo=REPO)
    no_exception(at)
    assert texts(at.error) == [f"Hub repo not loaded: the Hub ({endpoint}) timed out after 1 s on dataset repo "
                               f"{REPO}: retry, or raise QUANTFIT_HUB_TIMEOUT (seconds)"]  # fmt: skip
    assert time.monotonic() - start < 20  # one timeout, no retries


def test_an_error_is_not_fetched_again_on_every_rerun(page, pushed, fake_hub):
    at = page(csession="false", crepo="acme/nothing")
    before = len(fake_hub.requests)
    at.selectbox(key="cy").set_value("PPL").run()  # any widget reruns the page
    no_exception(at)
    assert any("acme/nothing was not found" in e for e in texts(at.error))
    assert len(fake_hub.requests) == before
