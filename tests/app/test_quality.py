"""Quality page (AppTest, widgets set by key): the bundled results render, switching axes changes the
figure, a tiny-model run from the page completes and adds points, the share link round-trips the state,
and a point's links open Memory / Will it fit? with its format. Run planning itself: tests/app/test_plan.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from evaluation.plan import RESULTS_DIR
from evaluation.results import load_results
from tests.app.conftest import dataframe_with, no_exception, texts
from tests.evaluation.conftest import make_tiny_llama
from ui.charts import X_AXES, Y_AXES
from ui.guard import clear_caches
from ui.share import fit_url, memory_url

ROOT = Path(__file__).resolve().parents[2]
PAGE = "app_pages/quality.py"
# The sweep at the page's default settings (1,024 tokens, windows of 512); other bundled files differ.
BUNDLED = RESULTS_DIR / "smollm2-135m-shakespeare-sweep.json"


@pytest.fixture
def page(monkeypatch, tmp_path):
    """``page(**query)`` -> an AppTest that has run the Quality page; the engine's cache in tmp_path."""
    monkeypatch.setenv("QUANTFIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QUANTFIT_ALLOWED_PATHS", str(tmp_path.parent))  # this session's test folders
    clear_caches()

    def run(path: str = PAGE, **query) -> AppTest:
        at = AppTest.from_file(str(ROOT / path), default_timeout=90)
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    yield run
    clear_caches()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def clean(at: AppTest) -> None:
    """No exception, no internal error and no error message at all."""
    no_exception(at)
    assert not texts(at.error), texts(at.error)


def figure(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def traces(spec: dict) -> dict[str, dict]:
    return {t["name"]: t for t in spec["data"]}


def test_renders_bundled_results(page):
    at = page()
    clean(at)
    # Every bundled file at the default settings (1,024 tokens in windows of 512), one point per method id.
    by_id = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        for r in load_results(path):
            if r.windows.max_tokens == 1024 and r.windows.n_ctx == 512:
                by_id.setdefault(r.method_id, r)
    bundled = list(by_id.values())
    assert len(load_results(BUNDLED)) >= 20 and len(bundled) >= 28
    table = dataframe_with(at, "delta_ppl_pct")
    assert sorted(table["method"]) == sorted(r.method_id for r in bundled)
    shown = traces(figure(at))
    assert {"baseline (bf16)", "RTN (simulated)", "GGUF (llama.cpp)", "Pareto frontier"} <= set(shown)
    points = sum(len(t["x"]) for name, t in shown.items() if name != "Pareto frontier")
    assert points == len(bundled)
    assert any("already 4-bit" in text and "Q4_1" in text for text in texts(at.info))
    links = table["fit_link"].dropna()
    assert len(links) >= len(bundled) - 4  # gptq/awq at 5-6 bits are not calculator formats
    assert all(link.startswith("./fit?src=Preset&model=llama-3.1-70b&fmt=") for link in links)


def test_switching_axes_changes_the_figure(page):
    at = page()
    before = figure(at)
    assert before["layout"]["yaxis"]["title"]["text"] == Y_AXES["delta PPL %"].label
    at.selectbox(key="qy").set_value("mean KLD").run()
    clean(at)
    after = figure(at)
    assert after["layout"]["yaxis"]["title"]["text"] == Y_AXES["mean KLD"].label
    assert after["layout"]["yaxis"]["type"] == "log"
    kld = {r.method_id: r.quality.kld_mean for r in load_results(BUNDLED)}
    gguf = traces(after)["GGUF (llama.cpp)"]
    methods = [re.search(r"<b>(.+?)</b>", h)[1] for h in gguf["text"]]
    assert gguf["y"] == [kld[m] for m in methods]

    at.selectbox(key="qx").set_value("measured bytes").run()
    at.selectbox(key="qyscale").set_value("linear").run()
    spec = figure(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == X_AXES["measured bytes"].label
    assert spec["layout"]["yaxis"]["type"] == "linear"
    sizes = {r.method_id: r.measured_bytes for r in load_results(BUNDLED)}
    gguf = traces(spec)["GGUF (llama.cpp)"]
    methods = [re.search(r"<b>(.+?)</b>", h)[1] for h in gguf["text"]]
    assert gguf["x"] == [sizes[m] for m in methods]
    assert spec != after != before


def test_tiny_model_run_from_the_page_adds_points(page, tiny_model):
    import torch

    torch.set_num_threads(1)
    query = {"qmodel": str(tiny_model), "qtokens": "256", "qctx": "128", "qfam": ["RTN"], "qbits": ["8", "3"],
             "qgroup": "32"}
    at = page(**query)
    clean(at)
    assert not at.get("plotly_chart")
    assert any(text.startswith("No results yet") for text in texts(at.info))
    assert at.button(key="qrun").label == "Run 3 methods"

    at.button(key="qrun").click().run(timeout=120)
    clean(at)
    table = dataframe_with(at, "delta_ppl_pct").set_index("method")
    assert sorted(table.index) == ["baseline", "rtn-3b-g32-asym", "rtn-8b-g32-asym"]
    assert table.kld_mean["baseline"] == 0
    assert 0 < table.kld_mean["rtn-8b-g32-asym"] < table.kld_mean["rtn-3b-g32-asym"]
    assert table.bits_per_weight["rtn-3b-g32-asym"] == 4.0  # 3 bits + fp16 scale and min per 32
    assert set(table.origin) == {"this session"}
    shown = traces(figure(at))
    assert sum(len(t["x"]) for name, t in shown.items() if name != "Pareto frontier") == 3
    assert texts(at.success) == ["Done: 3 methods (3 newly measured). The model stays loaded for the next run."]
    assert at.button(key="qrun").disabled  # every chosen method is on the chart now

    again = page(**query)  # a new session: nothing shown yet, all three come from the engine's cache
    assert again.button(key="qrun").label == "Run 3 methods"
    # Issue 13 item 11: beside Run, the time it should take (from the run just made) and the model kept loaded.
    beside = " ".join(texts(again.caption))
    assert "on this machine (runs on this machine" in beside
    assert "the model is loaded (kept from the last run)" in beside
    again.button(key="qrun").click().run(timeout=60)
    clean(again)
    assert texts(again.success) == ["Done: 3 methods (0 newly measured). The model stays loaded for the next "
                                    "run."]
    assert dataframe_with(again, "delta_ppl_pct").equals(dataframe_with(at, "delta_ppl_pct"))


def test_a_bad_model_is_an_error_message(page, tmp_path):
    at = page(qmodel=str(tmp_path / "no-such-model"), qtokens="256", qctx="128", qfam=["RTN"], qbits=["8"])
    no_exception(at)  # refused before anything runs (evaluation.access)
    assert any("no-such-model" in e and ("unknown model" in e or "not available here" in e) for e in texts(at.error))
    at = page(qtokens="256", qctx="512")
    no_exception(at)
    assert any("less than one 512-token window" in e for e in texts(at.error))


def test_url_state_round_trips(page):
    query = {"qx": "size GiB", "qy": "top-1 agreement %", "qyscale": "linear", "qfam": ["GPTQ", "AWQ"],
             "qbits": ["4", "2"], "qgroup": "64", "qextra": "nf4-dq", "qfor": "llama-3-8b", "qfront": "false"}
    at = page(**query)
    clean(at)
    assert at.selectbox(key="qx").value == "size GiB"
    assert at.selectbox(key="qy").value == "top-1 agreement %"
    assert at.toggle(key="qfront").value is False
    # gptq/awq x 4/2 bits; the baseline and nf4-dq are on the chart already (bundled)
    assert at.button(key="qrun").label == "Run 4 methods"
    # The link is the address bar's: the same query reopens the same page (tests/app/test_browser.py copies it).
    again = page(**query)
    clean(again)
    assert figure(again) == figure(at)
    assert {k: again.session_state[k] for k in query} == {k: at.session_state[k] for k in query}


def test_point_links_open_memory_and_fit_with_the_format(page):
    url = fit_url("Q4_K_M", "llama-3.1-70b", "RTX 4090")
    assert url == "./fit?src=Preset&model=llama-3.1-70b&fmt=Q4_K_M&gpu=RTX+4090"
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    at = page("app_pages/fit.py", **query)
    clean(at)
    assert at.selectbox(key="fmt").value == "Q4_K_M"
    assert at.selectbox(key="model").value == "llama-3.1-70b"
    query = {k: v[0] for k, v in parse_qs(urlsplit(memory_url("gptq-3b-g128", "llama-3.1-70b")).query).items()}
    at = page("app_pages/memory.py", **query)
    clean(at)
    assert at.multiselect(key="add").value == ["gptq-3b-g128"]
    assert "gptq-3b-g128" in set(dataframe_with(at, "weight_bytes")["format"])


def test_pages_run_under_the_app_navigation(run_app, tmp_path, monkeypatch):
    """The three quality pages as app.py lists them (navigation and sidebar included)."""
    monkeypatch.setenv("QUANTFIT_CACHE", str(tmp_path / "cache"))
    for name in ("quality", "reference", "compare"):
        at = run_app(name)
        clean(at)
        assert at.get("plotly_chart"), name


def test_run_steps_say_elapsed_time_and_eta():
    from ui.quality_run import duration

    assert [duration(s) for s in (0.4, 59.6, 185, 3725)] == ["0 s", "1 min 0 s", "3 min 5 s", "1 h 02 min"]


def test_method_and_bit_pills_filter_the_chart(page):
    """Issue 13 item 3: deselecting GGUF and RTN removes their points (the pills filter, and choose what runs)."""
    everything = page()
    clean(everything)
    assert {"GGUF (llama.cpp)", "RTN (simulated)"} <= set(traces(figure(everything)))
    assert everything.button(key="qrun").label.startswith("Run ")
    at = page(qfam=["int kernels", "bitsandbytes", "GPTQ", "AWQ"])
    clean(at)
    shown = traces(figure(at))
    assert not {"GGUF (llama.cpp)", "RTN (simulated)"} & set(shown)
    assert "baseline (bf16)" in shown  # the reference point stays
    table = dataframe_with(at, "delta_ppl_pct")
    assert not [m for m in table["method"] if m.startswith(("gguf-", "rtn-"))]
    only4 = page(qfam=["GGUF"], qbits=["4"])
    assert sorted(dataframe_with(only4, "delta_ppl_pct")["method"]) == ["baseline", "gguf-Q4_0", "gguf-Q4_K_M"]
    assert only4.button(key="qrun").label == "Run 0 methods" and only4.button(key="qrun").disabled
    one = page(qfam=["GGUF"], qbits=["4"], qextra="gguf-Q4_1")
    assert one.button(key="qrun").label == "Run 1 method"  # singular


def test_collapsed_points_are_clipped_and_listed(page):
    """Issue 13 item 8: the 2-bit collapses (ΔPPL ~10⁶ %) do not set the y range; they sit at the top edge as ▲
    and are named under the chart."""
    at = page()
    spec = figure(at)
    ys = [y for t in spec["data"] if t["name"] != "Pareto frontier" for y in t["y"]]
    collapsed = {r.method_id: r.quality.delta_ppl_pct for r in load_results(BUNDLED)
                 if r.quality.delta_ppl_pct > 100_000}
    assert collapsed and max(ys) < min(collapsed.values()) / 100
    symbols = [s for t in spec["data"] if t["name"] != "Pareto frontier" for s in t["marker"]["symbol"]]
    assert symbols.count("triangle-up") >= len(collapsed)
    listed = " ".join(texts(at.caption))
    assert "top edge" in listed and all(m in listed for m in collapsed)


def test_q4_1_grid_points_are_hollow_and_off_the_frontier(page):
    """Issue 13 item 8: on SmolLM2 (weights already Q4_1), int4-g32 re-quantizes that grid losslessly: drawn
    hollow with the reason on hover, and never on the Pareto frontier."""
    spec = figure(page())
    kernels = traces(spec)["int kernels (PyTorch)"]
    i = next(i for i, h in enumerate(kernels["text"]) if "<b>int4-g32</b>" in h)
    assert kernels["marker"]["symbol"][i].endswith("-open")
    assert "not a fair point" in kernels["text"][i] and "Q4_1" in kernels["text"][i]
    frontier = traces(spec)["Pareto frontier"]
    assert (kernels["x"][i], kernels["y"][i]) not in set(zip(frontier["x"], frontier["y"], strict=True))
