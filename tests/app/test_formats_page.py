"""Formats page through AppTest: every format and file type listed, the recipe replayed on a model."""

from __future__ import annotations

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from tests.app.conftest import dataframe_with, metric, no_exception, texts


def test_default_lists_everything(run_app):
    at = run_app("formats")
    no_exception(at)
    formats = dataframe_with(at, "holds")
    assert list(formats["format"]) == list(FORMATS)
    nf4 = formats[formats["format"] == "nf4"].iloc[0]
    assert nf4["bits_per_weight_exact"] == "9/2" and "absmax" in nf4["holds"]
    assert "2305.14314" in nf4["source"]
    assert not at.metric  # only the open tab runs: the recipe replay waits for its tab


def test_each_tab_opens_from_its_link(run_app):
    at = run_app("formats", tab="GGUF file types")
    no_exception(at)
    file_types = dataframe_with(at, "recipe")
    assert list(file_types["file_type"]) == list(FILE_TYPES)
    # The recipe tab: Llama-3.1-8B at Q4_K_M by default, replayed tensor by tensor.
    at = run_app("formats", tab="Recipe on a model")
    no_exception(at)
    assert metric(at, "Tensor data") == "4.91 GB"  # 4,912,898,048 bytes (the real file's tensor data)
    assert metric(at, "Bits per weight") == "4.8944"
    roles = dataframe_with(at, "layers")
    attn_v = roles[(roles["tensor"] == "attn_v.weight") & (roles["type"] == "Q6_K")].iloc[0]
    assert attn_v["tensors"] == 16 and attn_v["layers"].startswith("0–3")


def test_family_filter_and_file_type_from_link(run_app):
    at = run_app("formats", fam=["GPTQ", "AWQ"])
    no_exception(at)
    assert set(dataframe_with(at, "holds")["family"]) == {"GPTQ", "AWQ"}
    at = run_app("formats", tab="Recipe on a model", model="qwen2.5-0.5b", ft="IQ2_XS")
    assert at.selectbox(key="ft").value == "IQ2_XS"
    assert any("importance matrix" in i for i in texts(at.info))
    by_type = dataframe_with(at, "type")
    # Qwen2.5-0.5B in GGUF: 24 blocks x 12 tensors (q/k/v with biases) + token_embd + output_norm (tied).
    assert sum(by_type["tensors"]) == 24 * 12 + 2
    assert metric(at, "Parameters") == "494,032,768"  # its safetensors hold 494,032,768 parameters
    tensors = dataframe_with(at, "shape")
    assert sum(by_type["bytes"]) == sum(tensors["bytes"])  # both tables on the page add up the same file


def test_recipe_rejects_nothing_silently(run_app):
    at = run_app("formats", tab="Recipe on a model", src="Hub id", hub="no-slash")
    no_exception(at)
    assert any("not a Hub model id" in e for e in texts(at.error))
