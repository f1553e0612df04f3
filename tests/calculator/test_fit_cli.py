"""``python -m calculator fit`` and ``gpus``: JSON keys, verdict examples, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calculator.cli import main


def _json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_json_has_the_promised_keys(capsys):
    data = _json(
        capsys,
        "fit",
        "--model",
        "llama-3.1-8b",
        "--format",
        "Q4_K_M",
        "--gpu",
        "RTX 4090",
        "--context",
        "8192",
        "--batch",
        "1",
    )
    for key in (
        "fits",
        "total_bytes",
        "weight_bytes",
        "kv_cache_bytes",
        "overhead_bytes",
        "max_context",
        "decode_tokens_per_s",
        "prefill_seconds",
        "headroom_bytes",
        "headroom_pct",
        "gpu_layers",
        "verdict",
        "warnings",
        "best_format",
    ):
        assert key in data, key
    assert data["fits"] is True and data["verdict"] == "fits"
    assert data["kv_cache_bytes"] == 1_073_741_824
    assert data["total_bytes"] == data["weight_bytes"] + data["kv_cache_bytes"] + data["overhead_bytes"]
    assert data["overhead"]["cuda_context_bytes"] == 512 * 2**20
    assert isinstance(data["max_context"], int) and data["decode_tokens_per_s"] > 0


def test_fit_verdict_examples(capsys):
    one = _json(
        capsys, "fit", "--model", "llama-2-70b", "--format", "fp16", "--gpu", "H100 SXM", "--cpu-ram", "16GB"
    )
    two = _json(
        capsys, "fit", "--model", "llama-2-70b", "--format", "fp16", "--gpu", "h100 sxm", "--gpus", "2"
    )
    offload = _json(
        capsys, "fit", "--model", "llama-3.1-70b", "--format", "Q4_K_M", "--gpu", "custom:24GB:1000GB/s"
    )
    assert one["fits"] is False and one["verdict"] == "does_not_fit"
    assert two["fits"] is True and two["gpu_count"] == 2
    assert offload["verdict"] == "fits_with_cpu_offload" and 0 < offload["gpu_layers"] < 80


def test_fit_options_reach_the_breakdown(capsys):
    base = _json(capsys, "fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "RTX 4090")
    more = _json(
        capsys,
        "fit",
        "--model",
        "llama-3.1-8b",
        "--format",
        "Q4_K_M",
        "--gpu",
        "RTX 4090",
        "--overhead-gib",
        "2",
        "--kv-type",
        "q8_0",
        "--cuda-context-mib",
        "300",
    )
    assert more["overhead"]["extra_overhead_bytes"] == 2 * 2**30
    assert more["overhead"]["cuda_context_bytes"] == 300 * 2**20
    assert more["kv_cache_bytes"] == base["kv_cache_bytes"] * 34 // 64
    qlora = _json(
        capsys,
        "fit",
        "--model",
        "llama-3.1-8b",
        "--format",
        "nf4",
        "--gpu",
        "RTX 4090",
        "--mode",
        "qlora",
        "--gradient-checkpointing",
        "--context",
        "2048",
        "--lora-targets",
        "all-linear",
    )
    assert qlora["mode"] == "qlora" and qlora["training"]["trainable_params"] == 41_943_040
    assert qlora["best_format"] is None


def test_fit_text_output(capsys):
    assert main(["fit", "--model", "llama-3.1-70b", "--format", "Q4_K_M", "--gpu", "RTX 4090"]) == 0
    out = capsys.readouterr().out
    assert "FITS ONLY WITH CPU OFFLOAD" in out and "-ngl" in out and "GiB" in out and "GB" in out


def test_gpus_lists_the_catalogue(capsys):
    data = _json(capsys, "gpus")
    assert len(data["gpus"]) >= 40
    assert all(g["source"] and g["memory_bytes"] > 0 for g in data["gpus"])
    apple = _json(capsys, "gpus", "--vendor", "apple")
    assert {g["vendor"] for g in apple["gpus"]} == {"Apple"}
    assert main(["gpus"]) == 0
    assert "RTX 4090" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gpu", "RTX 4900"], "did you mean RTX 4090"),
        (["--gpu", "H100"], "matches several devices"),
        (["--gpu", "RTX 4090", "--context", "0"], "context 0 must be"),
        (["--gpu", "RTX 4090", "--gpus", "0"], "GPU count 0"),
        (["--gpu", "RTX 4090", "--kv-type", "q9"], "KV cache type 'q9'"),
        (["--gpu", "RTX 4090", "--overhead-gib", "-1"], "--overhead-gib -1.0 must be a number from 0"),
        # what llama.cpp itself refuses, in its own words
        (["--gpu", "RTX 4090", "--kv-type", "q8_0", "--flash-attention", "off"],
         'llama.cpp refuses: "quantized V cache was requested, but this requires Flash Attention"'),
        (["--gpu", "RTX 4090", "--cache-type-v", "q4_0", "--flash-attention", "off", "--llama-cpp-build", "2024"],
         'llama.cpp refuses: "V cache quantization requires flash_attn"'),
        (["--gpu", "RTX 3090", "--gpu", "RTX 3060", "--tensor-split", "1,1,1"],
         "--tensor-split has 3 values for 2 GPU(s); give one proportion per GPU, e.g. 1,1"),
        (["--gpu", "RTX 4090", "--engine", "mlx"], "MLX runs on Apple silicon only; RTX 4090 is not a Mac"),
        (["--gpu", "RTX 4090", "--engine", "ollama", "--ollama-kv-cache-type", "q5_1"],
         "OLLAMA_KV_CACHE_TYPE 'q5_1' must be one of f16, q8_0, q4_0"),
        (["--gpu", "RTX 4090", "--gpu", "RTX 3090", "--gpus", "2"], "--gpus 2 goes with one --gpu"),
        (["--gpu", "RTX 4090", "--parallel", "4", "--batch", "2"], "batch 2 and --parallel 4 disagree"),
        (["--gpu", "RTX 4090", "--cpu-ram", "lots"], "memory size 'lots'"),
        (["--gpu", "custom:24GiB:fast"], "neither a bandwidth"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, argv, message):
    assert main(["fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err


def test_context_above_maximum_warns(capsys):
    data = _json(
        capsys, "fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "H200", "--context", "200000"
    )
    assert any("maximum of 131,072" in w for w in data["warnings"])


def test_module_entry_point():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "calculator",
            "fit",
            "--model",
            "llama-3.1-8b",
            "--format",
            "Q4_K_M",
            "--gpu",
            "RTX 4090",
            "--context",
            "8192",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fits"] is True


def _fit(capsys, *argv: str) -> dict:
    return _json(capsys, "fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", *argv)


def test_engine_devices_host_and_advice_keys(capsys):
    data = _fit(capsys, "--gpu", "RTX 4090", "--context", "8192", "--engine", "llama.cpp")
    assert data["engine"] == "llama.cpp" and data["engine_settings"]["n_ctx"] == 8192
    for d in (*data["devices"], data["host"]):
        for key in ("name", "weights_bytes", "kv_cache_bytes", "compute_bytes", "output_bytes", "context_bytes",
                    "total_bytes", "usable_bytes", "layers"):
            assert key in d, key
    gpu, host = data["devices"][0], data["host"]
    assert gpu["name"] == "CUDA0" and host["weights_bytes"] == 128_256 * 4_096 * 144 // 256  # token_embd
    assert data["per_device_bytes"] == gpu["total_bytes"]
    assert data["total_bytes"] == gpu["total_bytes"] + host["total_bytes"]
    assert {a["kind"] for a in data["advice"]} == {"longest_context", "most_slots"}


def test_cpu_only_puts_everything_in_host(capsys):
    data = _fit(capsys, "--gpu", "RTX 4090", "--n-gpu-layers", "0")
    assert data["verdict"] == "fits_with_cpu_offload" and data["gpu_layers"] == 0
    assert data["devices"][0]["total_bytes"] == 0
    assert data["host"]["weights_bytes"] == data["weight_bytes"]
    assert data["host"]["kv_cache_bytes"] == data["kv_cache_bytes"]


def test_mixed_cards_and_llama_cpp_flags(capsys):
    data = _json(capsys, "fit", "--model", "llama-3.1-70b", "--format", "Q4_K_M", "--gpu", "RTX 3090",
                 "--gpu", "RTX 3060 12GB", "--context", "4096", "--cpu-ram", "64GB")
    a, b = data["devices"]
    assert (a["device"], b["device"]) == ("RTX 3090", "RTX 3060 12GB") and data["gpu_count"] == 2
    assert a["layers"] > b["layers"] > 0  # split by free memory, 24 GB : 12 GB
    assert data["verdict"] == "fits_with_cpu_offload"
    assert data["advice"][0]["kind"] in ("kv_cache_type", "shorter_context", "fewer_gpu_layers", "smaller_format")
    row = _json(capsys, "fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "RTX 4090", "--gpus", "2",
                "--split-mode", "row")
    assert row["engine_settings"]["split_mode"] == "row" and row["engine_settings"]["pipeline_copies"] == 1
    note = _fit(capsys, "--gpu", "RTX 4090", "--n-gpu-layers", "99")
    assert any("llama.cpp offloads all of them" in n for n in note["engine_notes"])


def test_ollama_words(capsys):
    data = _fit(capsys, "--gpu", "RTX 4090", "--engine", "ollama", "--num-ctx", "8192", "--OLLAMA_NUM_PARALLEL", "4",
                "--OLLAMA_KV_CACHE_TYPE", "q8_0")
    s = data["engine_settings"]
    assert (s["num_ctx"], s["OLLAMA_NUM_PARALLEL"], s["n_ctx"], s["n_seq_max"]) == (8192, 4, 32768, 4)
    assert s["type_k"] == s["type_v"] == "q8_0" and data["engine_report"]["ollama_estimate"]["estimated"]
    default = _fit(capsys, "--gpu", "RTX 4090", "--engine", "ollama")
    assert default["context"] == 32768  # Ollama's default num_ctx for 23-47 GiB of VRAM


def test_mlx_on_a_mac(capsys):
    data = _json(capsys, "fit", "--model", "llama-3.1-8b", "--format", "int4-g64-asym", "--gpu", "M4 Max",
                 "--engine", "mlx", "--context", "8192", "--kv-bits", "8")
    assert data["engine"] == "mlx" and data["fits"] and data["kv_cache"]["cache_type"] == "mlx_q8"
    assert data["kv_cache_bytes"] == 32 * 8192 * 2 * 8 * 128 * 68 // 64
