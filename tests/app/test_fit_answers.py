"""Will-it-fit answers on one screen (AppTest, widgets set by key; issue 13): the verdict's wording, the advice
buttons and the "Use" buttons (they set the widgets), every format at once with its quality cost, context
presets and power-of-two steps, preset search; the What-can-I-run page. Browser versions of the clicks:
tests/app/test_browser.py."""

from __future__ import annotations

import json

import pytest

from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, get_gpu
from calculator.models import load_preset, spec_from_config
from calculator.quality import QUALITY_KLD
from calculator.search import best_format, gpus_that_fit
from tests.app.conftest import dataframe_with, metric, no_exception, texts
from ui.context import next_power_of_two, previous_power_of_two
from ui.fit_views import EAGER_SEARCH_TENSORS, EVERY_FORMAT, MEASURED, PUBLISHED, verdict_message
from ui.pickers import find_preset, preset_key
from ui.url_state import encode_config


def _verdict(at) -> str:
    return " ".join(texts(at.success) + texts(at.warning) + texts(at.error))


def test_offload_wording_agrees_with_the_numbers():
    spec = load_preset("llama-3.1-70b")
    setup = GpuSetup(get_gpu("RTX 4090"))
    all_blocks = fit(spec, "IQ2_XS", setup, 32768, options=FitOptions(kv_type="q4_0"))
    assert all_blocks.gpu_layers == all_blocks.n_layers and all_blocks.cpu_offload_bytes > 0
    kind, text = verdict_message(all_blocks, setup)
    assert kind == "warning" and "Offload 0" not in text and "all 80 blocks" in text and "`-ngl 80`" in text
    one = next(r for ctx in range(8192, 40000, 512)
               if (r := fit(spec, "IQ2_XS", setup, ctx, options=FitOptions(kv_type="q8_0"),
                            with_max_context=False)).n_layers - r.gpu_layers == 1)
    assert "**Offload 1 layer** to the CPU" in verdict_message(one, setup)[1]
    many = fit(spec, "Q4_K_M", setup, 8192)
    assert "**Offload 38 layers**" in verdict_message(many, setup)[1]


def test_advice_buttons_set_the_widgets(run_app):
    at = run_app("fit", model="llama-3.1-70b")
    no_exception(at)
    labels = {b.key: b.label for b in at.button if b.key and b.key.startswith("advice_")}
    assert "2× RTX 4090" in labels.values() and any(label.startswith("File type ") for label in labels.values())
    key = next(k for k, label in labels.items() if label == "2× RTX 4090")
    at.button(key=key).click().run()
    no_exception(at)
    assert at.number_input(key="n_gpus").value == 2
    assert texts(at.success)[0].startswith("**Fits** on 2× RTX 4090")
    assert not [b for b in at.button if b.key and b.key.startswith("advice_")]  # it fits: no advice


def test_shorter_context_advice_and_use_buttons(run_app):
    at = run_app("fit", fmt="Q8_0", ctx="131072")  # 8.5 GB of weights + a 16 GB fp16 KV cache
    assert "**Fits**" not in _verdict(at)
    key = next(b.key for b in at.button if b.key and b.key.startswith("advice_") and b.label.startswith("Context"))
    at.button(key=key).click().run()
    assert at.number_input(key="ctx").value < 131072 and texts(at.success)
    at = run_app("fit", model="llama-3.1-70b")
    best = metric(at, "Best format that fits")
    at.button(key="use_best_fmt").click().run()
    assert at.selectbox(key="fmt").value == best and texts(at.success)
    at = run_app("fit", ctx="4096")
    at.button(key="use_max_ctx").click().run()
    assert at.number_input(key="ctx").value == 131072  # Llama 3.1 8B Q4_K_M on an RTX 4090: the whole window


def test_none_says_why(run_app):
    at = run_app("fit", model="llama-3.1-405b", gpu="RTX 4060")
    no_exception(at)
    assert metric(at, "Best format that fits") == "none" and metric(at, "Max context (tokens)") == "none"
    why = " ".join(texts(at.caption))
    assert "Even IQ1_S (the smallest ranked) takes" in why and "Not even 1 token" in why
    assert "more than the 8.00 GB usable on RTX 4060" in why


def test_every_format_at_once_with_quality(run_app):
    at = run_app("fit", model="llama-3.1-70b", view="Every format")
    no_exception(at)
    table = dataframe_with(at, "quality_source")
    assert list(table["format"]) == list(EVERY_FORMAT)
    spec, setup = load_preset("llama-3.1-70b"), GpuSetup(get_gpu("RTX 4090"))
    q4 = table[table["format"] == "Q4_K_M"].iloc[0]
    assert q4["total_gb"] == pytest.approx(fit(spec, "Q4_K_M", setup, 8192).total_bytes / 1e9)
    assert q4["verdict"] == "offload 38 layers" and q4["kld"] == QUALITY_KLD["Q4_K_M"]
    assert set(table["quality_source"]) == {PUBLISHED}
    best = table[table["best"] != ""]
    assert len(best) == 1 and best["verdict"].iloc[0] == "fits"
    fitting = table[table["verdict"] == "fits"]
    assert best["kld"].iloc[0] == fitting["kld"].min()  # the highest quality that fits
    assert (table[table["verdict"] != "fits"]["free_gb"] < 0).all()  # short, not the offloaded GPU side's room
    assert not at.get("plotly_chart")  # only the open view is computed


def test_smollm2_formats_use_the_quality_measured_here(run_app):
    at = run_app("fit", model="smollm2-135m", view="Every format")
    table = dataframe_with(at, "quality_source").set_index("format")
    assert table.loc["Q4_K_M", "quality_source"] == MEASURED and table.loc["Q4_K_M", "kld"] < 0.1
    assert table.loc["IQ2_XS", "quality_source"] == PUBLISHED  # not measured here


def test_context_presets_and_power_of_two_steps(run_app):
    assert (next_power_of_two(8192), next_power_of_two(10_000)) == (16384, 16384)
    assert (previous_power_of_two(8192), previous_power_of_two(10_000), previous_power_of_two(1)) == (4096, 8192, 1)
    at = run_app("fit")
    assert at.pills(key="ctx_preset").value == "8k"  # the default context is a preset
    at.pills(key="ctx_preset").set_value("32k").run()
    assert at.number_input(key="ctx").value == 32768
    at.pills(key="ctx_preset").set_value("max").run()
    assert at.number_input(key="ctx").value == 131072
    at.number_input(key="ctx").increment().run()  # + is one step of 1, which becomes the next power of two
    assert at.number_input(key="ctx").value == 262144
    at.number_input(key="ctx").decrement().run()
    assert at.number_input(key="ctx").value == 131072
    at.number_input(key="ctx").set_value(10_000).run()  # a typed value stays as typed
    assert at.number_input(key="ctx").value == 10_000 and at.pills(key="ctx_preset").value is None


@pytest.mark.parametrize("typed", ["llama 3.1 70b", "Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"])
def test_preset_search_normalises_names(run_app, typed):
    assert preset_key(typed) == preset_key("llama-3.1-70b") and find_preset(typed) == "llama-3.1-70b"
    at = run_app("fit", model=typed)  # a link with the name as people write it
    no_exception(at)
    assert at.selectbox(key="model").value == "llama-3.1-70b"
    assert "Offload" in _verdict(at)  # typed into the box instead: tests/app/test_browser.py (AppTest cannot)


def test_an_unknown_name_suggests_presets(run_app):
    at = run_app("fit", model="mistral 7b")
    no_exception(at)
    warning = " ".join(texts(at.warning))
    assert "No preset matches 'mistral 7b'" in warning and "mistral-7b-v0.1" in warning


def test_what_can_i_run_ranks_the_presets(run_app):
    at = run_app("can_run")
    no_exception(at)
    table = dataframe_with(at, "best_format")
    fits = table[table["fits"]]
    assert len(fits) >= 20 and list(fits["rank"]) == list(range(1, len(fits) + 1))
    top = fits.iloc[0]
    spec = load_preset(top["preset"])
    check = fit(spec, top["best_format"], "RTX 4090", 8192)
    assert check.fits and top["quality"] == "4-bit class or better"
    # Among the best quality class, the biggest model comes first.
    first_class = fits[fits["tier"] == 0]
    assert list(first_class["params"]) == sorted(first_class["params"], reverse=True)
    assert "models fit" in texts(at.success)[0]
    big = run_app("can_run", gpu="H100 SXM", n_gpus="8", ctx="32768", kv="q8_0")
    assert big.dataframe and len(dataframe_with(big, "best_format").query("fits")) >= len(fits)


LARGE_CONFIG = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 48, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "intermediate_size": 14336,
                "max_position_embeddings": 131072, "tie_word_embeddings": False}
"""435 tensors, more than ``EAGER_SEARCH_TENSORS``: from a link, its searches wait for a click."""


def test_a_large_model_from_a_link_searches_on_a_click(run_app):
    spec = spec_from_config(LARGE_CONFIG)
    assert len(spec.tensors) == 48 * 9 + 3 > EAGER_SEARCH_TENSORS
    at = run_app("fit", src="config.json", cfg=encode_config(json.dumps(LARGE_CONFIG).encode()), fmt="Q8_0",
                 ctx="65536")
    no_exception(at)
    assert metric(at, "Best format that fits") == "not searched"
    assert _advice(at) and not [label for label in _advice(at) if label.startswith("File type ")]  # it waits too
    assert "Not searched yet" in " ".join(texts(at.caption))
    at.button(key="search_best_fmt").click().run()
    no_exception(at)
    best = best_format(spec, "RTX 4090", 65536)
    assert metric(at, "Best format that fits") == best.format
    assert f"File type {best.format}" in _advice(at)
    fitting = {r.gpu for r in gpus_that_fit(spec, "Q8_0", 65536)}
    assert fitting and set(dataframe_with(at, "usable_gb")["gpu"]) == fitting
    at.query_params["view"] = "Every format"  # the click holds for the model, in every view
    at.run()
    assert list(dataframe_with(at, "quality_source")["format"]) == list(EVERY_FORMAT)


def _advice(at) -> list[str]:
    return [b.label for b in at.button if b.key and b.key.startswith("advice_")]


def test_training_advice_buttons(run_app):
    """Full fine-tuning of Llama 3.1 8B needs 190 GB: QLoRA or five H100s (calculator.search.advise)."""
    at = run_app("fit", mode="Full fine-tune", gpu="H100 SXM")
    no_exception(at)
    assert _advice(at) == ["QLoRA (4-bit frozen base)", "5× H100 SXM"]
    at.button(key="advice_0").click().run()
    no_exception(at)
    assert at.segmented_control(key="mode").value == "QLoRA" and texts(at.success)[0].startswith("**Fits**")
