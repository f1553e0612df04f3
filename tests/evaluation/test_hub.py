"""Results on a Hub dataset repo, against the suite's local fake Hub (``tests/hub_server.py``): push a file
and its plot, read it back equal, a card that states model, corpus, methods and schema version, several
files in one repo, ``evaluation show --repo``, and the errors a user can meet (no token, unknown repo, a
file quantfit cannot read)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from evaluation.hub import dataset_card, push_results, repo_results
from evaluation.results import RuntimeQuality, load_results, save_results

V1 = Path(__file__).parent / "data" / "results-v1.json"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@pytest.fixture
def hub(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    return fake_hub


@pytest.fixture
def results_file(tmp_path) -> Path:
    rows = load_results(V1)
    rows[1] = replace(rows[1], runtime=RuntimeQuality("llama.cpp", "llama-cpp-python 0.3.36", rows[1].quality, 3.5,
                                                      rows[0].quality, "x.gguf"))  # fmt: skip
    path = tmp_path / "smollm2-sweep.json"
    save_results(path, rows)
    (tmp_path / "smollm2-sweep.png").write_bytes(PNG)  # same stem: pushed with it
    return path


def test_push_then_load_back_equal(hub, results_file, tmp_path):
    chart = tmp_path / "chart.html"
    chart.write_text("<html></html>")
    report = push_results(results_file, "acme/quant-evals", plots=[chart])
    repo = hub.datasets["acme/quant-evals"]
    assert set(repo) == {"results/smollm2-sweep.json", "plots/smollm2-sweep.png", "plots/chart.html", "README.md"}
    assert repo["results/smollm2-sweep.json"] == results_file.read_bytes() and repo["plots/smollm2-sweep.png"] == PNG
    assert report.repo_url.endswith("/datasets/acme/quant-evals") and report.paths[-1] == "README.md"
    n = len(load_results(V1))
    assert hub.commits["acme/quant-evals"] == [f"quantfit results: smollm2-sweep.json ({n} results)"]
    loaded = repo_results("acme/quant-evals")
    assert loaded.files == [("results/smollm2-sweep.json", load_results(results_file))] and not loaded.problems

    card = repo["README.md"].decode()
    rows = load_results(results_file)
    assert card.startswith("---\ntags:\n- quantfit")
    assert "- model: HuggingFaceTB/SmolLM2-135M-Instruct (bf16 baseline)" in card
    assert "- corpus: shakespeare" in card
    assert f"- methods ({len(rows)}): " + ", ".join(r.method_id for r in rows) in card
    assert "- schema: `quantfit.evaluation.results` version 3" in card  # a result has llama.cpp scores
    assert f"| `{rows[1].method_id}` |" in card and "python -m evaluation show --repo acme/quant-evals" in card


def test_a_second_file_joins_the_card_and_push_updates_in_place(hub, results_file, tmp_path):
    push_results(results_file, "acme/evals")
    other = tmp_path / "other.json"
    save_results(other, load_results(V1)[:1])
    push_results(other, "acme/evals", message="baseline only")
    card = hub.datasets["acme/evals"]["README.md"].decode()
    assert "## `results/other.json`" in card and "## `results/smollm2-sweep.json`" in card
    assert "version 2" in card and "version 3" in card
    push_results(other, "acme/evals")  # the same file again: one more commit, still two files
    assert len(hub.commits["acme/evals"]) == 3
    assert [p for p, _ in repo_results("acme/evals").files] == ["results/other.json", "results/smollm2-sweep.json"]
    assert len(repo_results("acme/evals", filename="other.json").results) == 1


def test_show_reads_a_repo(hub, results_file):
    push_results(results_file, "acme/evals")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint}
    proc = subprocess.run([sys.executable, "-m", "evaluation", "show", "--repo", "acme/evals"], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"acme/evals/results/smollm2-sweep.json: {len(load_results(V1))} results" in proc.stderr
    assert all(r.method_id in proc.stdout for r in load_results(results_file))


def test_errors_are_one_clear_line(hub, results_file, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="is not a Hub repo id: write OWNER/NAME"):
        push_results(results_file, "not a repo")
    with pytest.raises(ValueError, match="dataset repo acme/nothing was not found"):
        repo_results("acme/nothing")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "quantfit.evaluation.results", "schema_version": 2, "results": [{}]}')
    before = len(hub.requests)
    with pytest.raises(ValueError, match="required field 'key' is missing"):
        push_results(broken, "acme/evals")
    assert len(hub.requests) == before  # refused before anything was sent
    with pytest.raises(ValueError, match="plot .*chart.txt is not a .png, .svg, .html file"):
        push_results(results_file, "acme/evals", plots=[tmp_path / "chart.txt"])
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    with pytest.raises(ValueError, match=r"not allowed to write to dataset repo acme/evals: log in \(`hf auth"):
        push_results(results_file, "acme/evals")


def test_a_bad_file_in_a_repo_is_a_problem_not_a_failure(hub, results_file):
    push_results(results_file, "acme/evals")
    hub.datasets["acme/evals"]["results/hand-edited.json"] = b'{"schema": "other"}'
    loaded = repo_results("acme/evals")
    assert [p for p, _ in loaded.files] == ["results/smollm2-sweep.json"]
    assert loaded.problems == ["acme/evals/results/hand-edited.json: not a quantfit results file (schema 'other', "
                               "expected 'quantfit.evaluation.results')"]  # fmt: skip


def test_card_of_an_empty_repo():
    assert "no results yet" in dataset_card("acme/evals", {})


def test_a_repo_without_results_is_named_so(hub):
    hub.datasets["acme/notes"] = {"README.md": b"# notes"}
    with pytest.raises(ValueError, match=r"dataset repo acme/notes is not a quantfit results repo: it has no "
                                         r"results/\*\.json \(push one with `python -m evaluation push"):  # fmt: skip
        repo_results("acme/notes")
    assert repo_results("acme/notes", missing_ok=True).files == []


def test_a_hub_that_never_answers_times_out_once(monkeypatch):
    from tests.calculator.gguf_fixtures import hung_endpoint

    monkeypatch.setenv("QUANTFIT_HUB_TIMEOUT", "1")
    start = time.monotonic()
    with hung_endpoint() as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        expected = (rf"^the Hub \({endpoint}\) timed out after 1 s on dataset repo acme/evals: retry, or raise "
                    r"QUANTFIT_HUB_TIMEOUT \(seconds\)$")
        with pytest.raises(ValueError, match=expected):
            repo_results("acme/evals")
    assert time.monotonic() - start < 5  # one timeout, no retries
