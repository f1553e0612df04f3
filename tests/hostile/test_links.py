"""A shared link can do no harm: it reads no server path the operator did not allow (and cannot tell a missing
path from a forbidden one), uploaded text arrives in charts as text, uploads are bounded before any frame is
built, the guard logs what reached it, and the worst link costs under 1 s of server CPU per page view."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from evaluation.results import load_results, results_document
from tests.hostile.conftest import shown_text
from tests.hostile.test_files import BUNDLED
from ui.url_state import encode_config

ALLOWED_PATHS_ENV = "QUANTFIT_ALLOWED_PATHS"
"""Where the server's operator allow-lists local model folders for links (``evaluation.access``)."""


def _refusal(text: str) -> str:
    return (f"model {text[:80]!r} is not available here: use smollm2-135m or a Hugging Face Hub id (owner/name); "
            f"local folders and .gguf files only from the folders the server's operator lists in {ALLOWED_PATHS_ENV}")


@pytest.fixture
def allowed(tmp_path):
    """An allow-listed folder with a model folder and a .gguf file in it, and a folder outside it."""
    root = tmp_path / "allowed"
    (root / "tiny").mkdir(parents=True)
    (root / "m.gguf").write_bytes(b"GGUF")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.gguf").write_bytes(b"GGUF")
    (root / "escape").symlink_to(outside)
    return root, outside


# (id, the link's model text (root/outside substituted), the reference run, or None for the one refusal)
REFS = [
    ("preset", "smollm2-135m", "smollm2-135m"),
    ("preset-alias", "SmolLM2", "smollm2-135m"),
    ("hub-id", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"),
    ("allowed-folder", "{root}/tiny", "{root}/tiny"),
    ("allowed-gguf", "{root}/m.gguf", "{root}/m.gguf"),
    ("allowed-with-dots", "{root}/tiny/../m.gguf", "{root}/m.gguf"),
    ("outside-existing", "{outside}/secret.gguf", None),
    ("outside-missing", "{outside}/nothing.gguf", None),
    ("symlink-out-of-root", "{root}/escape/secret.gguf", None),
    ("dots-out-of-root", "{root}/../outside/secret.gguf", None),
    ("system-file", "/etc/passwd", None),
    ("system-folder", "/etc", None),
    ("home", "~", None),
    ("nul-byte", "a\x00b", None),
    ("5000-chars", "a" * 5000, None),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in REFS], ids=[r[0] for r in REFS])
def test_shared_model_ref(allowed, text, expected):
    from evaluation.access import shared_model_ref

    root, outside = allowed
    text = text.format(root=root, outside=outside)
    if expected is None:
        with pytest.raises(ValueError) as err:
            shared_model_ref(text, (root.resolve(),))
        assert str(err.value) == _refusal(text)  # the same words for missing and not allowed
    else:
        assert shared_model_ref(text, (root.resolve(),)) == expected.format(root=root.resolve())


def test_no_allowed_folders_by_default(allowed, monkeypatch):
    from evaluation.access import shared_model_ref

    root, _ = allowed
    monkeypatch.delenv(ALLOWED_PATHS_ENV, raising=False)
    with pytest.raises(ValueError, match="^model .* is not available here"):
        shared_model_ref(str(root / "m.gguf"))
    monkeypatch.setenv(ALLOWED_PATHS_ENV, str(root))
    assert shared_model_ref(str(root / "m.gguf")) == str((root / "m.gguf").resolve())


def test_one_allow_list_the_old_name_an_alias(allowed, monkeypatch, caplog):
    """QUANTFIT_GGUF_DIRS (the file picker's variable before) still allows its folders, with a one-line warning;
    the file picker takes .gguf files only, the Quality page folders too."""
    from calculator import paths
    from evaluation.access import shared_model_ref

    root, outside = allowed
    monkeypatch.delenv(ALLOWED_PATHS_ENV, raising=False)
    monkeypatch.setenv("QUANTFIT_GGUF_DIRS", str(root))
    paths._warn_deprecated.cache_clear()
    with caplog.at_level(logging.WARNING, logger="quantfit"):
        assert shared_model_ref(str(root / "m.gguf")) == str((root / "m.gguf").resolve())
        assert paths.allowed_path(str(root / "m.gguf"), folders=False) == (root / "m.gguf").resolve()
    assert [r.getMessage() for r in caplog.records if r.name == "quantfit"] == [
        "QUANTFIT_GGUF_DIRS is deprecated: put its folders in QUANTFIT_ALLOWED_PATHS (read as part of it for now)"]
    assert paths.allowed_path(str(root / "tiny"), folders=False) is None
    assert paths.allowed_path(str(root / "tiny")) == (root / "tiny").resolve()
    assert paths.allowed_path(str(outside / "secret.gguf")) is None
    monkeypatch.setenv(ALLOWED_PATHS_ENV, str(outside))
    assert paths.allowed_roots() == (outside.resolve(), root.resolve())


def test_hub_id_never_reads_a_local_folder_of_the_same_name(tmp_path, monkeypatch):
    """A link's ``owner/name`` goes to the Hub even if the server has a folder ``owner/name`` in its working
    directory; the command line (no allowed_roots) keeps reading local folders first."""
    import evaluation.models as models

    (tmp_path / "acme" / "secret").mkdir(parents=True)
    (tmp_path / "acme" / "secret" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)

    def hub(*args, **kwargs):
        raise ValueError("the Hub was asked")

    monkeypatch.setattr(models, "_hub_snapshot", hub)
    with pytest.raises(ValueError, match="^the Hub was asked$"):
        models.resolve_model_source("acme/secret", allowed_roots=())
    with pytest.raises(ValueError, match="^folder acme/secret has no .safetensors weights$"):
        models.resolve_model_source("acme/secret")


def test_quality_page_refuses_a_server_path(app, monkeypatch):
    monkeypatch.delenv(ALLOWED_PATHS_ENV, raising=False)
    at, _ = app("quality", qmodel="/etc/passwd")
    _, errors = shown_text(at)
    assert errors == [_refusal("/etc/passwd")]


def test_quality_page_allows_an_operator_folder(app, allowed, monkeypatch):
    root, _ = allowed
    monkeypatch.setenv(ALLOWED_PATHS_ENV, str(root))
    at, _ = app("quality", qmodel=str(root / "m.gguf"))
    _, errors = shown_text(at)
    assert not [e for e in errors if "not available here" in e]


HOSTILE_TEXT = ['<img src=x onerror=alert(1)>', '<a href="javascript:alert(1)">click</a>', "javascript:alert(1)",
                '"><script>alert(1)</script>']


@pytest.fixture(scope="module")
def hostile_result():
    result = load_results(BUNDLED[0])[0]
    return replace(result, method_id=HOSTILE_TEXT[0], family=HOSTILE_TEXT[1])


@pytest.mark.parametrize("origin", HOSTILE_TEXT)
def test_hover_and_legend_escape_uploaded_text(hostile_result, origin):
    """Plotly renders tags in hover text and legend names: uploaded ids and file names arrive as text."""
    import html

    from ui.charts import X_AXES, Y_AXES, size_quality_figure
    from ui.rows import result_row

    row = result_row(hostile_result, origin)
    row["series"] = f"{origin} · {row['family']}"
    fig = size_quality_figure([row, {**row, "id": "2", "bits_per_weight": 2.0}], X_AXES["bits per weight"],
                              Y_AXES["PPL"], series_key="series")
    labels = [t.name for t in fig.data] + [text for t in fig.data for text in (t.text or ())]
    rendered = "".join(str(label) for label in labels)
    for raw in (hostile_result.method_id, origin):
        if "<" in raw or '"' in raw:
            assert raw not in rendered
        assert html.escape(raw) in rendered
    assert "<script" not in rendered and "<img" not in rendered and "<a href" not in rendered


def _document(**changes) -> bytes:
    doc = results_document(load_results(BUNDLED[0])[:1])
    doc["results"][0].update(changes)
    return json.dumps(doc).encode()


def _uploaded(app, *files: tuple[str, bytes]):
    """The Compare page after uploading ``files``: (its "Upload rejected" errors, its charts' JSON)."""
    at, _ = app("compare")
    at.file_uploader(key="cupload").set_value([(name, data, "application/json") for name, data in files]).run()
    _, errors = shown_text(at)
    labels = [label for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]
              for label in [trace.get("name", ""), *(trace.get("text") or [])]]
    return [e.removeprefix("Upload rejected: ") for e in errors if e.startswith("Upload rejected: ")], labels


def test_uploaded_html_arrives_as_text(app):
    data = _document(method_id=HOSTILE_TEXT[1])
    rejected, labels = _uploaded(app, ("<img src=x onerror=alert(1)>.json", data))
    assert rejected == []
    text = "\n".join(labels)
    assert "&lt;img src=x onerror=alert(1)&gt;.json" in text  # the file name, in legend and hover
    assert "href=&quot;javascript:alert(1)&quot;&gt;click&lt;/a&gt;" in text  # the method id (hover wraps it)
    assert "<img" not in text and "<a href" not in text


UPLOADS = [
    ("deep-nesting", ("deep.json", b"[" * 100_000), "deep.json: nested too deeply to be a results file"),
    ("infinity", ("inf.json", _document().replace(b'"ppl": ', b'"ppl": Infinity, "x": ', 1)),
     "inf.json: result 0: field 'quality.ppl' is inf: NaN and infinity are not numbers here"),
    ("negative-ppl", ("neg.json", _document().replace(b'"ppl": ', b'"ppl": -1.0, "y": ', 1)),
     "neg.json: result 0: field 'quality.ppl' is -1.0; it must be positive"),
    ("negative-bits", ("bits.json", _document(bits=-4)),
     "bits.json: result 0: field 'bits' is -4; it must be from 1 to 64"),
    ("empty", ("none.json", b'{"schema": "quantfit.evaluation.results", "schema_version": 2, "results": []}'),
     "none.json: holds no results"),
]


@pytest.fixture(scope="module")
def rejected_uploads():
    """The Compare page's "Upload rejected" lines for all ``UPLOADS`` uploaded together (one page run)."""
    from streamlit.testing.v1 import AppTest

    from tests.hostile.conftest import APP

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("app_pages/compare.py")
    at.run()
    at.file_uploader(key="cupload").set_value([(*u[1], "application/json") for u in UPLOADS]).run()
    _, errors = shown_text(at)
    return [e.removeprefix("Upload rejected: ") for e in errors if e.startswith("Upload rejected: ")]


@pytest.mark.parametrize("error", [u[2] for u in UPLOADS], ids=[u[0] for u in UPLOADS])
def test_uploads_validated_before_frames(rejected_uploads, error):
    assert error in rejected_uploads
    assert len(rejected_uploads) == len(UPLOADS)


def test_upload_count_is_bounded(app):
    files = [(f"{i}.json", _document(method_id=f"m{i}")) for i in range(25)]
    rejected, _ = _uploaded(app, *files)
    assert rejected == ["25 files uploaded; only the first 20 are read"]


def test_guard_logs_the_link_that_reached_it(caplog):
    from streamlit.testing.v1 import AppTest

    def page():
        from ui.guard import run_page

        def main():
            raise RuntimeError("a bug")

        run_page(main)

    at = AppTest.from_function(page)
    at.query_params["ctx"] = "4096"
    with caplog.at_level(logging.ERROR, logger="quantfit.app"):
        at.run()
    assert [e.value for e in at.error][0].startswith("quantfit hit an internal error (RuntimeError: a bug)")
    assert any("link values: {'ctx': ['4096']}" in r.getMessage() for r in caplog.records)


# What can I run?: the Hub ids a link adds are bounded in number and shape before any Hub call.
VALID_IDS = [f"acme/model-{i}" for i in range(12)]
HUB_IDS = [
    ("one", "Qwen/Qwen2.5-7B", ["Qwen/Qwen2.5-7B"], []),
    ("spaces-and-repeats", " Qwen/Qwen2.5-7B , Qwen/Qwen2.5-7B,,", ["Qwen/Qwen2.5-7B"], []),
    ("twelve", ",".join(VALID_IDS), VALID_IDS[:8],
     ["12 Hub models listed; the first 8 are ranked, 'acme/model-8', 'acme/model-9', 'acme/model-10', "
      "'acme/model-11' left out."]),
    ("bad-shapes", "a/b/c,../etc/passwd,/etc/passwd,owner/na me,<img src=x>/y,acme/,acme/ok",
     ["acme/ok"],
     ["Not a Hub model id (owner/name: letters, digits, _ . -, at most 96 characters each): 'a/b/c', "
      "'../etc/passwd', '/etc/passwd', 'owner/na me', '<img src=x>/y' and 1 more; left out."]),
    ("too-long", "a/" + "b" * 97 + ",a/" + "b" * 96, ["a/" + "b" * 96],
     ["Not a Hub model id (owner/name: letters, digits, _ . -, at most 96 characters each): "
      "'a/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb...; left out."]),
    ("hub-rules", "acme/a--b,acme/a..b,acme/a.,acme/-a,acme/a.git,acme/a_b.c-d", ["acme/a_b.c-d"],
     ["Not a Hub model id (owner/name: letters, digits, _ . -, at most 96 characters each): 'acme/a--b', "
      "'acme/a..b', 'acme/a.', 'acme/-a', 'acme/a.git'; left out."]),
]


@pytest.fixture
def hub_asked(monkeypatch):
    """The Hub ids the page asked the Hub for (each answered "offline")."""
    import ui.pickers

    asked = []

    def load_hub(repo_id, *args, **kwargs):
        asked.append(repo_id)
        raise ValueError("offline")

    monkeypatch.setattr(ui.pickers, "load_hub", load_hub)
    return asked


@pytest.mark.parametrize(("text", "ids", "warnings"), [h[1:] for h in HUB_IDS], ids=[h[0] for h in HUB_IDS])
def test_can_run_hub_ids_bounded(cpu_view, hub_asked, text, ids, warnings):
    at, _ = cpu_view("can_run", {"hub_add": text}, views=1, cold=False)  # the presets' sizings shared
    shown, errors = shown_text(at)
    assert hub_asked == ids and shown == warnings
    assert errors == [f"Hub model left out: {repo}: offline" for repo in ids]


def test_can_run_asks_the_hub_only_for_the_ids_it_keeps(cpu_view, hub_asked):
    text = ",".join([*VALID_IDS, "../etc/passwd", "x" * 500])  # a link holds 1,000 characters
    at, _ = cpu_view("can_run", {"hub_add": text}, views=1, cold=False)
    warnings, errors = shown_text(at)
    assert hub_asked == VALID_IDS[:8]
    assert errors == [f"Hub model left out: {repo}: offline" for repo in VALID_IDS[:8]]
    assert warnings == ["Not a Hub model id (owner/name: letters, digits, _ . -, at most 96 characters each): "
                        "'../etc/passwd', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; left out.",
                        "12 Hub models listed; the first 8 are ranked, 'acme/model-8', 'acme/model-9', "
                        "'acme/model-10', 'acme/model-11' left out."]


# Denial of service: the worst links, each under 1 s of this process's CPU per page view.
CPU_BUDGET_S = 1.0
WORST_CONFIG = {"model_type": "llama", "hidden_size": 16384, "num_hidden_layers": 133, "num_attention_heads": 128,
                "num_key_value_heads": 8, "vocab_size": 128256, "intermediate_size": 53248,
                "max_position_embeddings": 2**27, "tie_word_embeddings": False}
"""1,200 tensors, the most a link may carry (``ui.pickers.MAX_LINK_TENSORS``): more than Llama 3.1 405B."""
TOO_BIG = {**WORST_CONFIG, "num_hidden_layers": 512}


def _cfg(config: dict) -> str:
    return encode_config(json.dumps(config).encode())


WORST_LINKS = [
    ("fit-config-over-the-limit", "fit", {"src": "config.json", "cfg": _cfg(TOO_BIG)}),
    ("fit-hostile-numbers", "fit", {"ctx": "9" * 999, "n_gpus": "inf", "batch": "1e400", "ubatch": "nan"}),
    ("memory-largest-config-and-formats", "memory", {"src": "config.json", "cfg": _cfg(WORST_CONFIG),
                                                     "add": ["Q2_K", "Q3_K_L", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K",
                                                             "IQ1_M", "IQ2_M", "IQ2_XXS", "IQ3_M", "IQ3_XXS", "IQ4_NL",
                                                             "Q4_1", "Q5_1", "Q8_0"]}),
    ("memory-params-1e99999999", "memory", {"src": "Parameters", "params": "1e99999999"}),
    ("memory-every-gpu", "memory", {"gpus": ["RTX 4090", "H100 SXM"] * 200}),
    ("quality-long-model-and-methods", "quality", {"qmodel": "a/" + "b" * 900, "qextra": ",".join(["Q4_K_M"] * 150)}),
    ("compare-everything", "compare", {"cref": ["llamacpp_llama3_8b_scoreboard", "gptq_for_llama"] * 50}),
]


@pytest.fixture(scope="module")
def warm_pages():
    """One view of each page first: the budget is per view, not for importing the app's modules."""
    from streamlit.testing.v1 import AppTest

    from tests.hostile.conftest import APP

    for page in ("fit", "memory"):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.switch_page(f"app_pages/{page}.py")
        at.run()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("page", "query"), [w[1:] for w in WORST_LINKS], ids=[w[0] for w in WORST_LINKS])
def test_worst_links_cost_under_a_second(cpu_view, warm_pages, page, query):
    at, cpu_s = cpu_view(page, query)
    shown_text(at)
    assert cpu_s < CPU_BUDGET_S, f"{cpu_s:.2f} s of CPU for one view of {page} (best of 3)"


EVERYTHING_MAXED = {"n_gpus": "64", "batch": "4096", "ctx": "10000000", "kv": "q4_0"}
LARGEST_MODEL_LINKS = [
    ("fit-largest-config-everything-maxed", {"src": "config.json", "cfg": _cfg(WORST_CONFIG), **EVERYTHING_MAXED}),
    ("fit-largest-config-every-format", {"src": "config.json", "cfg": _cfg(WORST_CONFIG), **EVERYTHING_MAXED,
                                         "view": "Every format"}),
    ("fit-largest-config-vllm", {"src": "config.json", "cfg": _cfg(WORST_CONFIG), **EVERYTHING_MAXED,
                                 "engine": "vllm"}),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("query", [w[1] for w in LARGEST_MODEL_LINKS], ids=[w[0] for w in LARGEST_MODEL_LINKS])
def test_largest_model_links_under_a_second(cpu_view, warm_pages, query):
    """A model from a link with more tensors than ``ui.fit_views.EAGER_SEARCH_TENSORS`` gets the page's
    format-wide and catalogue-wide searches (~30 file types and ~60 GPUs sized) on a click, not from the link."""
    at, cpu_s = cpu_view("fit", query)
    shown_text(at)
    assert cpu_s < CPU_BUDGET_S, f"{cpu_s:.2f} s of CPU for one view of fit (best of 3)"
    assert [m.value for m in at.metric if m.label == "Best format that fits"] == ["not searched"]


@pytest.mark.timeout(240)
def test_largest_preset_everything_maxed_once_sized(cpu_view, warm_pages):
    """Presets search at once: the server sizes a preset's file types once (the calculator's lru caches, shared
    by every view), so a link to the largest preset with any numbers costs under 1 s after the first view."""
    query = {"model": "llama-3.1-405b", **EVERYTHING_MAXED}
    cpu_view("fit", query, views=1)
    at, cpu_s = cpu_view("fit", {**query, "ctx": "9999999"}, cold=False)
    shown_text(at)
    assert cpu_s < CPU_BUDGET_S, f"{cpu_s:.2f} s of CPU for one view of fit (best of 3)"
    assert [m.value for m in at.metric if m.label == "Best format that fits"] == ["none"]


@pytest.mark.timeout(240)
def test_can_run_everything_maxed_once_sized(cpu_view, warm_pages):
    """What can I run? sizes every preset in every ranked file type: once per server (the calculator's lru
    caches), then any link's numbers cost under 1 s; its GPU count stops at 8 (64 GPUs cost 1.6-2 s)."""
    cpu_view("can_run", {}, views=1)
    query = {"n_gpus": "64", "ctx": "9999999", "kv": "q4_0"}
    at, cpu_s = cpu_view("can_run", query, cold=False)
    warnings, _ = shown_text(at)
    assert cpu_s < CPU_BUDGET_S, f"{cpu_s:.2f} s of CPU for one view of can_run (best of 3)"
    assert "The link asks for GPU count '64', which is above 8; showing 1 instead." in warnings
    at, cpu_s = cpu_view("can_run", {**query, "n_gpus": "8", "ctx": "9999998"}, cold=False)
    assert cpu_s < CPU_BUDGET_S, f"{cpu_s:.2f} s of CPU for one view of can_run on 8 GPUs (best of 3)"


def test_can_run_link_values_it_cannot_use_say_so(cpu_view):
    at, _ = cpu_view("can_run", {"n_gpus": "1000", "kv": "bogus"}, views=1, cold=False)
    warnings, _ = shown_text(at)
    assert warnings == ["The link asks for GPU count '1000', which is above 8; showing 1 instead.",
                        "The link asks for KV cache type 'bogus', which is not in the list; showing the default "
                        "instead. Pick one from the list."]


def test_config_over_the_limit_is_refused_by_name(app):
    at, _ = app("fit", src="config.json", cfg=_cfg(TOO_BIG))
    _, errors = shown_text(at)
    assert errors == ["this config.json describes 4,611 tensors, more than the 1,200 this app sizes (the largest "
                      "presets have ~1,100); size it with the command line (python -m calculator)"]
