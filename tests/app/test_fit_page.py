"""Will-it-fit page through AppTest: verdicts, byte breakdown, GPU table, training, bad inputs, URL state."""

from __future__ import annotations

from tests.app.conftest import dataframe_with, metric, no_exception, texts


def _breakdown(at) -> dict[str, int]:
    df = dataframe_with(at, "part")
    return dict(zip(df["part"], df["bytes"], strict=True))


def _verdict(at) -> str:
    return " ".join(texts(at.success) + texts(at.warning) + texts(at.error))


def test_default_llama_8b_q4km_rtx4090_8k_fits(run_app):
    at = run_app("fit")
    no_exception(at)
    assert at.selectbox(key="model").value == "llama-3.1-8b"
    assert at.selectbox(key="fmt").value == "Q4_K_M"
    assert at.selectbox(key="gpu").value == "RTX 4090"
    assert at.number_input(key="ctx").value == 8192
    assert texts(at.success) and texts(at.success)[0].startswith("**Fits** on RTX 4090")
    parts = _breakdown(at)
    assert parts["weights"] == 4_912_898_048  # the real Q4_K_M file's tensor data
    assert parts["KV cache"] == 1_073_741_824  # 2 x 32 layers x 8 heads x 128 x 8192 x 2 bytes
    assert parts["total"] == parts["weights"] + parts["KV cache"] + parts["runtime overhead"]
    assert 0 < parts["runtime overhead"] < 2 * 10**9  # CUDA context + compute buffers: hundreds of MB
    assert metric(at, "Max context (tokens)") == "131,072"
    # Decode reads every weight once per token: at most 1,008 GB/s (RTX 4090) / 4.91 GB = 205 tokens/s.
    decode = float(metric(at, "Decode (tokens/s)").lstrip("~").replace(",", ""))
    assert 0.3 * 205 < decode < 205
    gpus = dataframe_with(at, "per_device_gb")
    assert "RTX 4090" in set(gpus["gpu"]) and "RTX 4060" in set(gpus["gpu"])


def test_widgets_drive_the_verdict(run_app):
    at = run_app("fit")
    at.selectbox(key="model").select("llama-3.1-70b").run()
    no_exception(at)
    assert "**Offload" in _verdict(at) and "-ngl" in _verdict(at)
    at.number_input(key="n_gpus").set_value(4).run()
    assert texts(at.success)[0].startswith("**Fits** on 4× RTX 4090")
    at.number_input(key="n_gpus").set_value(1).run()
    at.selectbox(key="gpu").select("Apple M2 Ultra 192GB").run()  # unified memory: no offload
    at.selectbox(key="fmt").select("fp32").run()
    no_exception(at)
    assert "**Does not fit**" in _verdict(at)
    at.selectbox(key="kv").select("q8_0").run()
    no_exception(at)


def test_kv_cache_type_and_context_change_the_bytes(run_app):
    at = run_app("fit", ctx="32768")
    assert _breakdown(at)["KV cache"] == 4 * 1_073_741_824
    at.selectbox(key="kv").select("q8_0").run()
    assert _breakdown(at)["KV cache"] == 4 * 1_073_741_824 * 34 // 64  # Q8_0: 34 bytes per 32 values


def test_training_modes(run_app):
    at = run_app("fit", model="llama-3.2-1b")
    at.segmented_control(key="mode").set_value("QLoRA").run()
    no_exception(at)
    parts = _breakdown(at)
    assert {"weights", "gradients", "optimizer states", "activations", "logits"} <= set(parts)
    assert metric(at, "Decode (tokens/s)") == "n/a"
    at.segmented_control(key="mode").set_value("Full fine-tune").run()
    n = 1_235_814_400  # Llama-3.2-1B's safetensors
    assert _breakdown(at)["weights"] == 6 * n  # fp32 master + 16-bit copy


def test_bad_inputs_are_messages(run_app):
    at = run_app("fit", model="deepseek-v3", mode="LoRA")
    no_exception(at)
    assert any("match no weight" in e for e in texts(at.error))  # q_proj/v_proj do not exist in MLA
    at = run_app("fit", gpu="Custom…", gpu_custom="custom:lots")
    no_exception(at)
    assert any("Custom GPU 'custom:lots'" in e and "not understood" in e for e in texts(at.error))
    at = run_app("fit", gpu="Custom…", gpu_custom="custom:1e20GB")
    assert any("beyond any" in e for e in texts(at.error))  # the calculator or the picker refuses it
    at = run_app("fit", gpu="Custom…", gpu_custom="custom:12GiB:500GB/s")
    no_exception(at)
    assert "custom 12.00 GiB" in _verdict(at)
    at = run_app("fit", fmt="Q4_K_XL", gpu="RTX 9090")
    no_exception(at)
    assert any("Q4_K_XL" in w for w in texts(at.warning)) and any("RTX 9090" in w for w in texts(at.warning))


def test_context_above_the_model_maximum_warns(run_app):
    at = run_app("fit", ctx="1000000")
    no_exception(at)
    assert any("above" in w and "maximum" in w for w in texts(at.warning))


def test_query_params_restore_state(run_app):
    at = run_app("fit", model="qwen2.5-14b", fmt="Q8_0", gpu="H100 SXM", n_gpus="2", ctx="32768", batch="4",
                 kv="q8_0", mode="Inference")
    no_exception(at)
    assert at.selectbox(key="model").value == "qwen2.5-14b"
    assert (at.selectbox(key="fmt").value, at.selectbox(key="gpu").value) == ("Q8_0", "H100 SXM")
    assert (at.number_input(key="n_gpus").value, at.number_input(key="ctx").value,
            at.number_input(key="batch").value) == (2, 32768, 4)
    assert texts(at.success)[0].startswith("**Fits** on 2× H100 SXM")
    assert "32,768 tokens × batch 4" in " ".join(texts(at.caption))


def test_parameter_count_from_memory_page_falls_back_to_a_preset(run_app):
    at = run_app("memory")
    at.text_input(key="params").set_value("8B").run()
    at.switch_page("app_pages/fit.py").run()
    no_exception(at)
    assert at.segmented_control(key="src").value == "Preset"
    assert texts(at.success)


def test_hub_model_fits(run_app, fake_hub):
    at = run_app("fit", src="Hub id", hub="acme/tiny-llama")
    no_exception(at)
    assert texts(at.success)[0].startswith("**Fits** on RTX 4090")
    assert "acme/tiny-llama" in " ".join(texts(at.caption))
