"""Engine rules one by one (the start-up logs are in test_llama_cpp_logs.py): llama.cpp's KV cells, sliding-window
caches, offload and splits; Ollama's words and its own estimate; MLX's cache; the registry; advice."""

from __future__ import annotations

import pytest

from calculator import units
from calculator.engines import EngineName, engine_names, get_engine
from calculator.engines.llama_cpp import LlamaCppOptions
from calculator.engines.llama_cpp_rules import LlamaCppBuild, kv_cells, split_layers
from calculator.engines.mlx import MlxOptions
from calculator.engines.ollama import OllamaOptions, default_num_ctx
from calculator.fit import FitOptions, Verdict, fit
from calculator.hardware import GpuSetup, get_gpu
from calculator.models import load_preset, spec_from_config
from calculator.search import AdviceKind, advise

MiB = units.MiB


def llama(**kw) -> FitOptions:
    fa = kw.pop("fa", True)
    kv = kw.pop("kv", "fp16")
    return FitOptions(flash_attention=fa, kv_type=kv, engine_options=LlamaCppOptions(**kw))


def _gemma3_270m():
    # google/gemma.cpp@0224dcbd3e93fa611bf67e13b34e7c550799c064 gemma/configs.cc ConfigGemma3_270M (the facts of HF
    # google/gemma-3-270m config.json): 640 wide, 18 layers, 4 heads, 1 KV head of 256, FFN 2048, window 512,
    # five local layers to one global, vocab 262144
    return spec_from_config({
        "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 2048, "vocab_size": 262144,
        "max_position_embeddings": 32768, "sliding_window": 512, "sliding_window_pattern": 6,
    }, "gemma-3-270m")


# llama.cpp: KV cells


@pytest.mark.parametrize("parallel, mib", [(1, 27), (2, 42), (4, 72), (8, 72)])
def test_gemma3_sliding_window_cache_matches_unsloths_measurements(parallel, mib):
    # unslothai/unsloth PR #5225 measured llama-server's KV for Gemma-3-270m at ctx 4096: 27 / 42 / 72 / 72 MiB
    # with --parallel 1 / 2 / 4 / 8 (per-slot streams): 3 full layers + 15 sliding layers of
    # pad256(min(n_ctx_seq, 512 + n_ubatch)) cells each, 1 KiB per cell and layer
    r = fit(_gemma3_270m(), "Q8_0", "RTX 4090", 4096, parallel, options=llama(), with_max_context=False)
    assert r.kv_cache_bytes == mib * MiB and r.kv.sliding_layers == 15


@pytest.mark.parametrize("parallel, cells", [(3, 1536), (4, 1024)])
def test_per_slot_streams_are_padded_up(parallel, cells):
    # unslothai/unsloth PR #7530: "ctx 1024 with 3 slots allocates 1536 cells / 27.0 MiB, but 4 slots allocates
    # 1024 cells / 18.0 MiB" (n_ctx_seq = pad256(1024 // slots))
    r = fit(_gemma3_270m(), "Q8_0", "RTX 4090", 1024, parallel, options=llama(), with_max_context=False)
    assert dict(r.engine_settings)["n_ctx"] == cells and r.kv_cache_bytes == cells * 18 * 1024


def test_gemma2_four_unified_slots_fill_the_sliding_cache():
    # issue 10: gemma-2-2b at 8192 tokens, 4 slots, logs 416 MiB + 416 MiB: min(8192, 4096 x 4 + 512) = 8192
    spec = load_preset("gemma-2-2b")
    r = fit(spec, "Q4_K_M", "RTX 4090", 8192, 4, options=llama(kv_unified=True), with_max_context=False)
    assert r.kv.full_attention_bytes == r.kv.sliding_window_bytes == 416 * MiB
    one = fit(spec, "Q4_K_M", "RTX 4090", 8192, 1, options=llama(), with_max_context=False)
    assert one.kv.sliding_window_bytes == 13 * 4608 * 4096  # pad256(4096 + 512) cells
    old = fit(spec, "Q4_K_M", "RTX 4090", 8192, 4, options=llama(build="2024"), with_max_context=False)
    assert old.kv_cache_bytes == 26 * 8192 * 4096  # 2024 builds: no sliding-window cache at all


@pytest.mark.parametrize("preset, context, mib", [("mistral-7b-v0.1", 8192, 1024), ("phi-3-mini-4k", 4096, 1536)])
def test_no_sliding_window_cache_for_mistral_v01_and_phi3(preset, context, mib):
    # issue 10: llama.cpp logs 1024 MiB for Mistral-7B at -c 8192 and 1536 MiB for Phi-3-mini at 4096
    r = fit(load_preset(preset), "Q4_K_M", "RTX 4090", context, options=llama(), with_max_context=False)
    assert r.kv_cache_bytes == mib * MiB and r.kv.sliding_layers == 0
    assert any("no sliding-window cache" in n for n in r.engine_notes)


def test_padding_eras():
    # 2024 builds pad to 32 cells without flash attention (ggml-org/llama.cpp issue #13661 logs n_ctx 30016)
    # and 256 with it; current builds always 256
    def n_ctx(build, fa):
        return kv_cells(build, 30016, 1, unified=False, flash_attention=fa, ubatch=512, n_swa=None).n_ctx

    assert n_ctx(LlamaCppBuild.B2024, False) == 30016 and n_ctx(LlamaCppBuild.B2024, True) == 30208
    assert n_ctx(LlamaCppBuild.CURRENT, False) == 30208
    swa = kv_cells(LlamaCppBuild.B2025, 8192, 1, unified=False, flash_attention=False, ubatch=512, n_swa=4000)
    assert swa.swa_cells == 4512  # min(8192, pad32(4000 + 512)): the pad inside the min in Jun-Nov 2025 builds
    full = kv_cells(LlamaCppBuild.CURRENT, 8192, 1, unified=False, flash_attention=True, ubatch=512, n_swa=4096,
                    swa_full=True)
    assert full.swa_cells == 8192


# llama.cpp: placement


def test_layer_split_counts_the_output_layer():
    # A2 / A3: 33 layers over 2 and 4 equal cards -> 17 / 15 + output and 9 / 8 / 8 / 7 + output
    two, out2 = split_layers(32, 33, (1.0, 1.0))
    four, out4 = split_layers(32, 33, (1.0,) * 4)
    assert [two.count(d) for d in range(2)] == [17, 15] and out2 == 1
    assert [four.count(d) for d in range(4)] == [9, 8, 8, 7] and out4 == 3
    partial, out = split_layers(32, 6, (1.0,))
    assert partial.count(0) == 6 and partial[:26] == (-1,) * 26 and out == -1  # the LAST 6 blocks


def test_mixed_cards_split_by_free_memory():
    spec = load_preset("llama-3.1-8b")
    r = fit(spec, "Q8_0", GpuSetup([get_gpu("RTX 3090"), get_gpu("RTX 3060 12GB")]), 8192, options=llama())
    a, b = r.devices
    assert (a.layers, b.layers) == (22, 10) and b.holds_output  # il / 33 < 2/3 -> blocks 0..21 on the 3090
    assert a.compute_bytes > 0 and b.compute_bytes > 0 and a.context_bytes == b.context_bytes == 512 * MiB


def test_row_split_gives_every_gpu_a_full_compute_buffer():
    spec = load_preset("llama-3.1-8b")
    r = fit(spec, "Q4_K_M", GpuSetup(get_gpu("RTX 4090"), 2), 8192, options=llama(split_mode="row"))
    a, b = r.devices
    # the same buffer on each (ggml-org/llama.cpp issue #13661: 4 x 1958.63 MiB), up to the output ids of the last
    assert abs(a.compute_bytes - b.compute_bytes) <= 512 * 4 and dict(r.engine_settings)["pipeline_copies"] == 1
    assert a.weights_bytes + b.weights_bytes == r.weight_bytes - r.host.weights_bytes
    assert a.kv_cache_bytes == 17 * 8192 * 4096  # KV stays with each layer's device (17 blocks on CUDA0)


def test_cpu_only_and_no_kv_offload():
    spec = load_preset("llama-3.1-8b")
    cpu = fit(spec, "Q4_K_M", "RTX 4090", 4096, options=llama(n_gpu_layers=0))
    assert cpu.verdict is Verdict.OFFLOAD and cpu.gpu_layers == 0 and cpu.devices[0].total_bytes == 0
    assert cpu.host.weights_bytes == cpu.weight_bytes and cpu.prefill_seconds is None
    nkvo = fit(spec, "Q4_K_M", "RTX 4090", 4096, options=llama(kv_offload=False))
    assert nkvo.devices[0].kv_cache_bytes == 0 and nkvo.host.kv_cache_bytes == nkvo.kv_cache_bytes


def test_a_mac_can_leave_blocks_outside_metals_working_set():
    # XiongjieDai's note: "To utilize the whole memory, use -ngl 0": blocks on the CPU are outside the GPU limit
    spec = load_preset("llama-3.1-70b")
    r = fit(spec, "Q6_K", "Apple M2 Max 64GB", 4096)
    assert r.verdict is Verdict.OFFLOAD and r.devices[0].name == "MTL0"
    assert r.per_device_bytes <= get_gpu("Apple M2 Max 64GB").usable_bytes
    assert r.devices[0].total_bytes + r.host.total_bytes <= 64 * units.GiB


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(kv="q8_0", fa=False), "quantized V cache was requested, but this requires Flash Attention"),
        (dict(kv="q8_0", fa=False, build="2025"), "V cache quantization requires flash_attn"),
        (dict(kv="fp8"), "llama.cpp has no fp8 K cache"),
        (dict(tensor_split=(1, 2)), "--tensor-split has 2 values for 1 GPU"),
        (dict(main_gpu=3), "--main-gpu 3 does not exist"),
    ],
)
def test_llama_cpp_refusals(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(load_preset("llama-3.1-8b"), "Q4_K_M", "RTX 4090", 4096, options=llama(**kw))


def test_quantized_k_alone_needs_no_flash_attention():
    o = FitOptions(flash_attention=False, engine_options=LlamaCppOptions(cache_type_k="q8_0"))
    r = fit(load_preset("llama-3.1-8b"), "Q4_K_M", "RTX 4090", 8192, options=o)
    assert r.kv_cache_bytes == 32 * 8192 * (1024 * 34 // 32 + 1024 * 2) and r.kv.to_dict()["cache_type_v"] == "fp16"


# Ollama


def test_ollama_context_parallel_and_kv_type():
    spec = load_preset("llama-3.1-8b")
    r = fit(spec, "Q4_K_M", "RTX 4090", 16384, 4,
            options=FitOptions(engine="ollama", engine_options=OllamaOptions(kv_cache_type="q8_0")))
    s = dict(r.engine_settings)
    assert (s["num_ctx"], s["OLLAMA_NUM_PARALLEL"], s["n_ctx"], s["type_v"]) == (16384, 4, 65536, "q8_0")
    est = dict(r.engine_report)["ollama_estimate"]
    # ollama/ollama issue #8923 logs memory.required.kv="8.0 GiB" for a 32-layer, 8 x 128 KV model at 65536
    # tokens in f16: Ollama's estimate ignores the cache type only without flash attention
    f16 = fit(spec, "Q4_K_M", "RTX 4090", 16384, 4, options=FitOptions(engine="ollama"), with_max_context=False)
    assert dict(f16.engine_report)["ollama_estimate"]["memory_required_kv_bytes"] == 8 * units.GiB
    assert est["memory_required_kv_bytes"] == 4 * units.GiB and est["why_it_differs"]
    off = fit(spec, "Q4_K_M", "RTX 4090", 8192, options=FitOptions(
        engine="ollama", engine_options=OllamaOptions(kv_cache_type="q8_0", flash_attention="off")))
    assert dict(off.engine_settings)["type_k"] == "fp16" and any("uses f16" in n for n in off.engine_notes)


def test_ollama_default_num_ctx_by_vram():
    assert default_num_ctx(GpuSetup(get_gpu("RTX 4060"))) == 4096
    assert default_num_ctx(GpuSetup(get_gpu("RTX 4090"))) == 32768
    assert default_num_ctx(GpuSetup(get_gpu("RTX 4090"), 2)) == 262144


# MLX


def test_mlx_cache_steps_and_rotating_layers():
    spec = load_preset("llama-3.1-8b")
    r = fit(spec, "int4-g64-asym", "M4 Max", 1000, options=FitOptions(engine="mlx"), with_max_context=False)
    assert r.kv_cache_bytes == 32 * 1024 * 2 * 8 * 128 * 2  # KVCache grows 256 tokens at a time
    g2 = fit(load_preset("gemma-2-9b"), "int4-g64-asym", "M4 Max", 8192, options=FitOptions(engine="mlx"))
    assert g2.kv.sliding_layers == 0  # mlx-lm's gemma2.py has no make_cache: full caches
    g3 = fit(_gemma3_270m(), "int4-g64-asym", "M4 Max", 8192, options=FitOptions(engine="mlx"))
    assert g3.kv.sliding_layers == 15 and g3.kv.sliding_layer_bytes == 512 * 1024
    q4 = fit(spec, "int4-g64-asym", "M4 Max", 1024,
             options=FitOptions(engine="mlx", engine_options=MlxOptions(kv_bits=4)))
    assert q4.kv_cache_bytes == 32 * 1024 * 2 * 1024 * 36 // 64


def test_mlx_refusals_are_verdicts_with_the_reason():
    spec = load_preset("llama-3.1-8b")
    for gpu, fmt, why in (("RTX 4090", "int4-g64-asym", "Apple silicon only"),
                          ("M4 Max", "Q4_K_M", "not GGUF file types")):
        r = fit(spec, fmt, gpu, 4096, options=FitOptions(engine="mlx"), with_max_context=False)
        assert r.verdict is Verdict.DOES_NOT_FIT and any(why in w for w in r.warnings)
    with pytest.raises(ValueError, match="MLX-LM has no q8_0 KV cache; use --kv-bits 8"):
        fit(spec, "int4-g64-asym", "M4 Max", 4096, options=FitOptions(engine="mlx", kv_type="q8_0"))


# Registry and options


def test_every_engine_is_registered_with_sources_and_defaults():
    assert engine_names()[:3] == ["llama.cpp", "ollama", "mlx"]  # the serving engines follow (issue 11)
    for name in (EngineName.LLAMA_CPP, EngineName.OLLAMA, EngineName.MLX):
        engine = get_engine(name)
        assert engine.name == name.value and engine.sources and engine.options(None) == engine.options_type()
    with pytest.raises(ValueError, match="engine_options LlamaCppOptions do not go with engine mlx; pass MlxOptions"):
        FitOptions(engine="mlx", engine_options=LlamaCppOptions())


@pytest.mark.parametrize(
    "cls, kw, match",
    [
        (LlamaCppOptions, dict(build="2023"), "llama.cpp build '2023' must be one of 2024, 2025, current"),
        (LlamaCppOptions, dict(split_mode="diagonal"), "--split-mode 'diagonal' must be one of layer, row, none"),
        (LlamaCppOptions, dict(flash_attention="maybe"), "flash attention 'maybe' must be one of on, off, auto"),
        (LlamaCppOptions, dict(tensor_split=(0, 0)), r"--tensor-split \(0, 0\) needs a positive proportion"),
        (LlamaCppOptions, dict(n_gpu_layers=-1), "--n-gpu-layers -1 must be a whole number from 0"),
        (OllamaOptions, dict(kv_cache_type="q5_1"), "OLLAMA_KV_CACHE_TYPE 'q5_1' must be one of f16, q8_0, q4_0"),
        (MlxOptions, dict(kv_bits=3), "--kv-bits 3 must be 4 or 8"),
    ],
)
def test_engine_options_refuse_bad_values(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


# Advice


def test_advice_when_it_does_not_fit():
    spec = load_preset("llama-3.1-8b")
    rows = advise(spec, "Q8_0", "RTX 3060 12GB", 65536, 1)
    kinds = [a.kind for a in rows]
    assert kinds[0] is AdviceKind.KV_CACHE_TYPE and AdviceKind.SHORTER_CONTEXT in kinds
    for a in rows:
        assert a.result.verdict in (Verdict.FITS, Verdict.OFFLOAD) and a.change.startswith("--")
    shorter = next(a for a in rows if a.kind is AdviceKind.SHORTER_CONTEXT)
    assert not fit(spec, "Q8_0", "RTX 3060 12GB", shorter.value + 1, with_max_context=False).fits
    offload = next(a for a in rows if a.kind is AdviceKind.FEWER_GPU_LAYERS)
    assert offload.speed_change_pct < 0  # blocks in CPU RAM cost speed


def test_advice_when_it_fits():
    spec = load_preset("llama-3.1-8b")
    rows = {a.kind: a for a in advise(spec, "Q4_K_M", "RTX 4090", 4096, 1)}
    assert rows[AdviceKind.LONGEST_CONTEXT].value == fit(spec, "Q4_K_M", "RTX 4090", 4096).max_context
    most = rows[AdviceKind.MOST_SLOTS]
    assert most.result.fits and not fit(spec, "Q4_K_M", "RTX 4090", 4096 * (most.value + 1), most.value + 1,
                                        with_max_context=False).fits
