"""Golden tests: real llama.cpp / Ollama start-up logs, buffer by buffer, against the llama.cpp engine.

Each log is cited (repository@commit path, or issue URL), with the settings it ran with and the MiB it printed
(llama.cpp prints two decimals of MiB; "exact" means the same two decimals). Each runs in the rules of its
build era (``LlamaCppBuild``): the XiongjieDai logs are May 2024 builds 2795-2833; the issue logs from 2024 to
Feb 2025 all predate llama.cpp's sliding-window cache and per-sequence streams (``2024``). Where a log's model
is not a preset, its spec is built from the config facts the log and the model's config.json give.

Known differences are listed in ``OFF`` with the relative error this engine makes and why; everything else is
exact. Counting the buffers below: 71 exact, 10 within the stated errors (see ``test_exact_and_off_counts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from calculator import units
from calculator.engines.llama_cpp import LlamaCppOptions
from calculator.engines.ollama import OllamaOptions
from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, get_gpu
from calculator.models import load_preset, preset_record, spec_from_config

XD = "https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference/blob/aa72e0ec86c356c41f8281c9733e9a13c3675800/"


def _gemma_2b():
    # google/gemma-2b config.json (the model of ollama/ollama issue #2835): hidden 2048, 18 layers, 8 heads,
    # 1 KV head of 256, FFN 16384, vocab 256000, tied embeddings
    return spec_from_config({"model_type": "gemma", "hidden_size": 2048, "num_hidden_layers": 18,
                             "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256,
                             "intermediate_size": 16384, "vocab_size": 256000, "max_position_embeddings": 8192},
                            "gemma-2b")


def _command_r_dims():
    # CohereForAI/c4ai-command-r-v01 config.json dimensions (hidden 8192, 40 layers, 64 heads and 64 KV heads,
    # FFN 22528, vocab 256000, tied) in a llama-shaped spec: its weights differ from Cohere's, but KV cache
    # and compute buffer depend only on these dimensions
    return spec_from_config({"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 40,
                             "num_attention_heads": 64, "num_key_value_heads": 64, "intermediate_size": 22528,
                             "vocab_size": 256000, "max_position_embeddings": 131072, "tie_word_embeddings": True},
                            "command-r-35b-dimensions")


def _phi3_medium_128k():
    # microsoft/Phi-3-medium-128k-instruct: the 4k model's shapes (preset phi-3-medium-4k) with
    # max_position_embeddings 131072 and sliding_window 131072 (the log prints n_swa = 131072)
    config = dict(preset_record("phi-3-medium-4k")["config"])
    config.update(max_position_embeddings=131072, sliding_window=131072)
    return spec_from_config(config, "phi-3-medium-128k")


def _opts(*, fa: bool = False, kv: str = "fp16", ubatch: int = 512, **llama) -> FitOptions:
    llama.setdefault("build", "2024")
    llama.setdefault("server", False)
    return FitOptions(flash_attention=fa, kv_type=kv, ubatch=ubatch, engine_options=LlamaCppOptions(**llama))


def _gpus(*names: str) -> GpuSetup:
    return GpuSetup([get_gpu(n) for n in names])


@dataclass(frozen=True)
class Log:
    name: str
    source: str
    spec: object
    fmt: str
    setup: GpuSetup
    context: int
    batch: int
    options: FitOptions
    logged: dict[str, str]
    """``"CUDA0.weights": "4403.49"`` ... (MiB as printed); keys: device or host . weights / kv / compute /
    output / mapped (the CPU_Mapped span)."""
    note: str = ""
    off: dict[str, float] = field(default_factory=dict)
    """Buffers this engine misses, with the relative error it makes (checked to be at most that)."""


LOGS = [
    Log("A1 Llama-3-8B Q4_K_M, RTX 4090, n_ctx 8192", XD + "LLaMA%203/Gaming%20GPUs/4090_v3.ipynb",
        load_preset("llama-3-8b"), "Q4_K_M", _gpus("RTX 4090"), 8192, 1, _opts(),
        {"CUDA0.weights": "4403.49", "host.weights": "281.81", "CUDA0.kv": "1024.00", "CUDA0.compute": "560.00",
         "host.compute": "24.01", "host.output": "0.49"}),
    Log("A2 same, 2x RTX 4090 layer split (pipeline parallel)", XD + "LLaMA%203/Gaming%20GPUs/4090_2_v3.ipynb",
        load_preset("llama-3-8b"), "Q4_K_M", _gpus("RTX 4090", "RTX 4090"), 8192, 1, _opts(),
        {"CUDA0.weights": "2113.28", "CUDA1.weights": "2290.21", "host.weights": "281.81", "CUDA0.kv": "544.00",
         "CUDA1.kv": "480.00", "CUDA0.compute": "640.01", "CUDA1.compute": "640.02", "host.compute": "72.02",
         "host.output": "0.49"}),
    Log("A3 same, 4x RTX 3090", XD + "LLaMA%203/Gaming%20GPUs/3090_4_v3.ipynb",
        load_preset("llama-3-8b"), "Q4_K_M", _gpus(*["RTX 3090"] * 4), 8192, 1, _opts(),
        {"CUDA0.weights": "1130.62", "CUDA1.weights": "982.66", "CUDA2.weights": "982.66",
         "CUDA3.weights": "1307.55", "CUDA0.kv": "288.00", "CUDA1.kv": "256.00", "CUDA2.kv": "256.00",
         "CUDA3.kv": "224.00", "CUDA0.compute": "640.01", "CUDA3.compute": "640.02", "host.compute": "72.02"}),
    Log("A4 same, Apple M1 8GB (Metal), n_ctx 512", XD + "LLaMA%203/Mac/M1_8GB.ipynb",
        load_preset("llama-3-8b"), "Q4_K_M", _gpus("Apple M1 8GB"), 512, 1, _opts(),
        {"Metal.weights": "4403.50", "host.weights": "281.81", "Metal.kv": "64.00", "Metal.compute": "258.50",
         "host.compute": "9.01", "host.output": "0.49"}),
    Log("A5 same, Apple M2 Ultra 192GB, n_ctx 8192", XD + "LLaMA%203/Mac/M2ultra_192GB.ipynb",
        load_preset("llama-3-8b"), "Q4_K_M", _gpus("M2 Ultra"), 8192, 1, _opts(),
        {"Metal.weights": "4403.50", "Metal.kv": "1024.00", "Metal.compute": "560.00", "host.compute": "24.01"}),
    Log("B1 llava 1.6 on Mistral-7B-v0.2 (Q4_0), Ollama 2024, partial offload -ngl 6, n_ctx 2048",
        "https://github.com/ollama/ollama/issues/2706", load_preset("mistral-7b-v0.1"), "Q4_0",
        _gpus("RTX 4090"), 2048, 1, _opts(n_gpu_layers=6),
        {"CUDA0.weights": "702.19", "host.kv": "208.00", "CUDA0.kv": "48.00", "CUDA0.compute": "164.01",
         "host.compute": "168.00"},
        note="Mistral-7B-v0.2 has v0.1's block shapes; the file type (Q4_0, Ollama's default tag then) is read "
             "from the 6 offloaded blocks' 702.19 MiB. 256 MiB of KV for 32 layers x 2048 cells: full cache.",
        off={"CUDA0.compute": 0.0001, "host.compute": 0.048}),
    Log("B2 gemma-2b Q4_0 (Gemma 1, tied embeddings), Ollama 2024, n_ctx 2048",
        "https://github.com/ollama/ollama/issues/2835", _gemma_2b(), "Q4_0", _gpus("RTX 4090"), 2048, 1,
        _opts(), {"CUDA0.weights": "1594.93", "host.weights": "531.52", "CUDA0.kv": "36.00",
                  "CUDA0.compute": "504.25"},
        note="that file stores token_embd in q8_0 (531.52 MiB on the host, duplicated as the output on CUDA0); "
             "today's llama-quantize recipe (calculator.gguf_recipes) picks Q6_K, 121.36 MiB less on each side",
        off={"CUDA0.weights": 0.077, "host.weights": 0.23, "CUDA0.compute": 0.0005}),
    Log("B3 Command-R 35B, RTX 4070 Ti + RTX 3090 Ti, layer split, n_ctx 4096",
        "https://github.com/ggml-org/llama.cpp/pull/6122", _command_r_dims(), "Q4_K_M",
        _gpus("RTX 4070 Ti", "RTX 3090 Ti"), 4096, 1, _opts(tensor_split=(12, 29)),
        {"CUDA0.kv": "1536.00", "CUDA1.kv": "3584.00", "CUDA0.compute": "672.01"},
        note="the log does not print free memory; the 12 / 28 + output split is read from its KV lines"),
    Log("B4 Phi-3-medium-128k, Ollama Sep 2024, 2 GPUs, flash attention, n_ctx 131072",
        "https://github.com/ollama/ollama/issues/7047", _phi3_medium_128k(), "Q4_0", _gpus("H100 SXM", "H100 SXM"),
        131072, 1, _opts(fa=True, tensor_split=(20, 21), pipeline_parallel=False, embeddings=True),
        {"CUDA0.kv": "12800.00", "CUDA1.kv": "12800.00", "host.output": "0.14", "host.compute": "266.01",
         "CUDA0.compute": "429.00", "CUDA1.compute": "298.00"},
        note="Phi-3 gets no sliding-window cache: 40 x 1280 x 2 x 2 B x 131072 = 25600 MiB; Ollama's runner then: "
             "embeddings on, no pipeline parallelism (no such line in the log)",
        off={"CUDA0.compute": 0.012, "CUDA1.compute": 0.43}),
    Log("B5 Llama-3-70B-class Q8_0, Ollama Mar 2025, 3 GPUs, n_ctx 128000, no flash attention",
        "https://github.com/ollama/ollama/issues/9858", load_preset("llama-3.1-70b"), "Q8_0",
        _gpus(*["H100 SXM"] * 3), 128000, 1,
        _opts(tensor_split=(26, 27, 28), pipeline_parallel=False, embeddings=True),
        {"CUDA0.kv": "13000.00", "CUDA1.kv": "13500.00", "CUDA2.kv": "13500.00", "CUDA0.compute": "16314.00",
         "CUDA1.compute": "16314.00", "CUDA2.compute": "16314.00", "host.compute": "266.01", "host.output": "0.52"},
        note="Ollama passes its layer counts as --tensor-split; every GPU holds the full KQ scores: "
             "512 x 64 heads x 128000 x 4 B"),
    Log("B6 gemma2 9B Q4_0, Ollama Feb 2025, OLLAMA_NUM_PARALLEL 4 x num_ctx 2048, flash attention",
        "https://github.com/ollama/ollama/issues/9415", load_preset("gemma-2-9b"), "Q4_0", _gpus("RTX 4090"),
        8192, 4, _opts(fa=True), {"CUDA0.weights": "5185.21", "host.mapped": "717.77"},
        note="token_embd q6_K stays on the CPU (CPU_Mapped) and is duplicated as the tied output on CUDA0"),
    Log("B11 Mixtral-8x7B-Instruct Q8_0 (MoE), llama.cpp Jan 2024, partial offload, n_ctx 512",
        "https://github.com/ggml-org/llama.cpp/pull/4957", load_preset("mixtral-8x7b"), "Q8_0",
        _gpus("RTX 4090"), 512, 1, _opts(n_gpu_layers=15), {"host.kv": "34.00", "CUDA0.kv": "30.00"},
        note="15 blocks on CUDA0 (2 MiB of KV each), 17 blocks' KV in pinned host memory"),
    Log("B12 Llama-3.x-70B Q8_0, Ollama 0.11 Aug 2025, 2 GPUs, full offload",
        "https://github.com/ollama/ollama/issues/11986", load_preset("llama-3.1-70b"), "Q8_0",
        _gpus("H100 SXM", "H100 SXM"), 4096, 1, _opts(tensor_split=(28, 53)),
        {"CUDA0.weights": "24277.75", "CUDA1.weights": "46151.91", "host.mapped": "1064.62"},
        note="the log's CUDA0 and CUDA2; the 28 / 52 + output split is read from its buffer sizes"),
    Log("B13 Qwen2.5-14B-class Q4_K_M, Ollama Feb 2025, partial offload 37/49, n_ctx 2048",
        "https://github.com/ollama/ollama/issues/8995", load_preset("qwen2.5-14b"), "Q4_K_M", _gpus("RTX 4090"),
        2048, 1, _opts(n_gpu_layers=37), {"CUDA0.weights": "5766.09", "host.mapped": "8566.04"},
        note="CUDA0 is the sum of its two model buffers; with the output left on the CPU the mapped span is the "
             "whole file (exact), so the file's total matches and only its split between blocks differs",
        off={"CUDA0.weights": 0.0031}),
    Log("B15 Qwen2.5-32B Q8_0 with q8_0 KV, llama-server Jan 2025, 2 GPUs, n_ctx 32768",
        "https://github.com/ggml-org/llama.cpp/issues/11200", load_preset("qwen2.5-32b"), "Q8_0",
        _gpus("custom:48GB", "RTX 3090 Ti"), 32768, 1,
        _opts(fa=True, kv="q8_0", ubatch=256, tensor_split=(41, 24), n_gpu_layers=65),
        {"CUDA0.kv": "2788.00", "CUDA1.kv": "1564.00", "host.output": "0.58", "host.compute": "133.01",
         "CUDA0.compute": "233.00", "CUDA1.compute": "237.51"},
        note="quantized V: flash attention was on; the 41 / 23 + output split from the KV lines; n_ubatch 256 "
             "(the host buffer is 4 copies of a 256 x 32768 f32 mask + 256 embedding rows) -- the GPU buffers "
             "of that build are smaller than this model's",
        off={"CUDA0.compute": 0.22, "CUDA1.compute": 0.27}),
    Log("B16 Qwen2.5-3B, LLamaSharp / llama.cpp b4701 Feb 2025, RTX 4080 SUPER, n_ctx 4096",
        "https://github.com/SciSharp/LLamaSharp/issues/1099", load_preset("qwen2.5-3b"), "Q4_K_M",
        _gpus("RTX 4080 SUPER"), 4096, 1, _opts(),
        {"CUDA0.kv": "144.00", "host.output": "0.58", "CUDA0.compute": "300.75", "host.compute": "12.01"},
        note="the logits of one 512-token micro-batch (512 x 151936 x 4 B) set the compute buffer"),
]


def _value(result, key: str) -> int:
    where, what = key.split(".")
    device = result.host if where == "host" else next(d for d in result.devices if d.name == where)
    attr = {"weights": "weights_bytes", "kv": "kv_cache_bytes", "compute": "compute_bytes",
            "output": "output_bytes", "mapped": "mapped_bytes"}[what]
    return getattr(device, attr)


@pytest.fixture(scope="module")
def results():
    return {log.name: fit(log.spec, log.fmt, log.setup, log.context, log.batch, options=log.options,
                          with_max_context=False) for log in LOGS}


@pytest.mark.parametrize("log", LOGS, ids=[log.name.split()[0] for log in LOGS])
def test_start_up_log(results, log):
    r = results[log.name]
    for key, printed in log.logged.items():
        mib = _value(r, key) / units.MiB
        if key in log.off:
            assert abs(mib / float(printed) - 1) <= log.off[key], (key, f"{mib:.2f}", printed)
            assert f"{mib:.2f}" != printed, f"{key} is exact now: take it out of OFF"
        else:
            assert f"{mib:.2f}" == printed, (key, f"{mib:.2f}", printed)


def test_exact_and_off_counts():
    exact = sum(len(log.logged) - len(log.off) for log in LOGS)
    off = sum(len(log.off) for log in LOGS)
    assert len(LOGS) >= 12 and (exact, off) == (71, 10)


def test_the_ollama_engine_reproduces_b6s_context():
    # Ollama runs -c num_ctx x OLLAMA_NUM_PARALLEL -np OLLAMA_NUM_PARALLEL: B6 logs n_ctx 8192, n_ctx_per_seq 2048
    r = fit(load_preset("gemma-2-9b"), "Q4_0", "RTX 4090", 2048, 4,
            options=FitOptions(engine="ollama", engine_options=OllamaOptions(num_parallel=4)), with_max_context=False)
    s = dict(r.engine_settings)
    assert (s["n_ctx"], s["n_ctx_seq"], s["n_seq_max"]) == (8192, 2048, 4)
    assert f"{r.devices[0].weights_bytes / units.MiB:.2f}" == "5185.21"


def test_metal_working_set_of_the_a4_log():
    # "recommendedMaxWorkingSetSize = 5726.63 MB" in the A4 log
    assert f"{get_gpu('Apple M1 8GB').usable_bytes / 1e6:.2f}" == "5726.63"
