"""Quality page, GGUF scored two ways (issue 15 item 4): with the "llama.cpp runtime" toggle, every GGUF
method of the bundled sweep shows as "weights only" (dequantized into transformers) and as "llama.cpp runtime"
(its file run by llama.cpp), each with its own numbers, and the page states llama.cpp's own floor; off, the
page draws as before and says the runtime scores are there. ``ui.quality_data.quality_rows`` on its own too."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evaluation.plan import RESULTS_DIR
from evaluation.results import load_results
from tests.app.conftest import no_exception, texts
from ui.quality_data import WEIGHTS_ONLY, quality_rows, runtime_floor_note

BUNDLED = RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json"
WEIGHTS, RUNTIME = "GGUF · weights only", "GGUF · llama.cpp runtime"


@pytest.fixture
def page(run_app, monkeypatch, tmp_path):
    """``page(**query)`` -> the app run on the Quality page (``run_app``), the engine's cache in tmp_path."""
    monkeypatch.setenv("QUANTFIT_CACHE", str(tmp_path / "cache"))
    return lambda **query: run_app("quality", **query)


def traces(at: AppTest) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}


def hover_methods(trace: dict) -> list[str]:
    return [re.search(r"<b>(.+?)</b>", h)[1] for h in trace["text"]]


@pytest.fixture(scope="module")
def gguf() -> dict:
    """The bundled sweep's GGUF results by method id; every one carries llama.cpp's scores."""
    found = {r.method_id: r for r in load_results(BUNDLED) if r.family == "gguf"}
    assert len(found) == 7 and all(r.runtime is not None for r in found.values())
    return found


def test_both_scores_are_drawn_labelled(page, gguf):
    at = page(qruntime="true", qy="mean KLD")
    no_exception(at)
    assert not texts(at.error)
    shown = traces(at)
    assert "GGUF (llama.cpp)" not in shown
    weights, runtime = shown[WEIGHTS], shown[RUNTIME]
    assert weights["y"] == [gguf[m].quality.kld_mean for m in hover_methods(weights)]
    assert sorted(hover_methods(weights)) == sorted(gguf)
    ids = [m.removesuffix(" · llama.cpp runtime") for m in hover_methods(runtime)]
    assert sorted(ids) == sorted(gguf) and all(m.endswith(" · llama.cpp runtime") for m in hover_methods(runtime))
    assert runtime["y"] == [gguf[m].runtime.quality.kld_mean for m in ids]
    # same bytes, other quality: llama.cpp's kernels add their own error to the weights'
    assert runtime["x"] == [gguf[m].bits_per_weight for m in ids]
    assert all(gguf[m].runtime.quality.kld_mean != gguf[m].quality.kld_mean for m in ids)


def test_the_floor_is_stated(page, gguf):
    at = page(qruntime="true")
    no_exception(at)
    floor = next(iter(gguf.values())).runtime
    caption = next(c for c in texts(at.caption) if "own floor" in c)
    assert f"llama.cpp's own floor ({floor.engine_version}): {floor.floor_file} run by llama.cpp" in caption
    assert f"KLD {floor.floor.kld_mean:.6f}, top-1 agreement {100 * floor.floor.top1_agreement:.2f}%" in caption
    assert f"PPL {floor.floor.ppl:.3f} vs {floor.floor.baseline_ppl:.3f}" in caption


def test_table_holds_both_rows(page, gguf):
    at = page(qruntime="true", qfam=["GGUF"], qbits=["4"])
    no_exception(at)
    table = next(d.value for d in at.dataframe if "delta_ppl_pct" in d.value.columns)
    rows = {m: r for m, r in zip(table["method"], table.to_dict("records"), strict=True)}
    assert sorted(rows) == ["baseline", "gguf-Q4_0", "gguf-Q4_0 · llama.cpp runtime", "gguf-Q4_K_M",
                            "gguf-Q4_K_M · llama.cpp runtime"]  # fmt: skip
    for m in ("gguf-Q4_0", "gguf-Q4_K_M"):
        assert rows[m]["ppl"] == gguf[m].quality.ppl and rows[m]["family"] == WEIGHTS
        engine = rows[f"{m} · llama.cpp runtime"]
        assert engine["ppl"] == gguf[m].runtime.quality.ppl and engine["family"] == RUNTIME
        assert engine["measured_bytes"] == rows[m]["measured_bytes"] == gguf[m].measured_bytes


def test_off_draws_as_before_and_says_the_scores_are_there(page):
    at = page()
    no_exception(at)
    shown = traces(at)
    assert "GGUF (llama.cpp)" in shown and WEIGHTS not in shown and RUNTIME not in shown
    assert "7 GGUF methods here were also run through llama.cpp: switch on “llama.cpp runtime” to see both scores." \
        in texts(at.caption)  # fmt: skip


def test_rows_of_one_result():
    rows = load_results(Path(__file__).parents[1] / "evaluation" / "data" / "results-v1.json")
    plain = next(r for r in rows if r.family != "gguf")
    assert [r["family"] for r in quality_rows(plain, "x")] == [quality_rows(plain, "x")[0]["family"]]
    weights_only = replace(plain, family="gguf")
    [row] = quality_rows(weights_only, "x")  # no engine scores: one row, labelled
    assert row["family"] == f"GGUF · {WEIGHTS_ONLY}"
    assert runtime_floor_note([weights_only]) is None
