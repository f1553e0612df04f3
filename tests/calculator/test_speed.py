"""Decode and prefill rooflines: the arithmetic on real presets, MoE reads, offload at CPU bandwidth, and the
llama.cpp speed model against published llama-bench rows (test_engine_speed.py)."""

from __future__ import annotations

import pytest

from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, get_gpu
from calculator.memory import weight_facts
from calculator.models import load_preset
from calculator.runtime import kv_cache
from calculator.speed import LLAMA_CPP_CUDA, decode_tokens_per_s, matmul_params, prefill_seconds


@pytest.fixture(scope="module")
def llama8b():
    return load_preset("llama-3.1-8b")


def test_decode_roofline_arithmetic(llama8b):
    r = fit(llama8b, "Q4_K_M", "custom:24GB:1000GB/s:100TFLOPS", context=8192)
    # A step reads every weight but the untied token embedding (one row per token): Q4_K_M stores it as
    # Q4_K, 128,256 x 4,096 values at 144 bytes per 256 = 295,501,824 bytes; plus the whole KV cache.
    # llama.cpp on CUDA: bytes / (bandwidth x 0.927) + 32 blocks x 83.7 us (calculator.speed.LLAMA_CPP_CUDA).
    read = r.weight_bytes - 128_256 * 4_096 * 144 // 256 + r.kv_cache_bytes
    m = LLAMA_CPP_CUDA
    step = read / (1000e9 * m.bandwidth_efficiency) + 32 * m.per_layer_seconds
    assert r.decode_tokens_per_s == pytest.approx(1 / step)
    # prefill: Kaplan forward FLOPs per token and block = 2 x its matrix parameters + 2 x n_ctx x d_attn
    n = 8_030_261_248 - 128_256 * 4_096
    assert matmul_params(llama8b) == n
    blocks = n - 128_256 * 4_096 - (2 * 32 + 1) * 4_096  # block matrices: not the output (one token), not norms
    flops = 8192 * (2 * blocks + 2 * 32 * 8192 * 4096)
    assert r.prefill_seconds == pytest.approx(flops / (100e12 * m.prefill_efficiency))


def test_efficiencies_come_from_fit_options(llama8b):
    base = fit(llama8b, "Q4_K_M", "RTX 4090", 4096)
    half = fit(llama8b, "Q4_K_M", "RTX 4090", 4096,
               options=FitOptions(decode_efficiency=0.3, prefill_efficiency=0.25))
    m = LLAMA_CPP_CUDA
    fixed = 32 * m.per_layer_seconds
    read_time = (1 / base.decode_tokens_per_s - fixed) * m.bandwidth_efficiency  # seconds at full bandwidth
    assert half.decode_tokens_per_s == pytest.approx(1 / (read_time / 0.3 + fixed))
    assert half.prefill_seconds == pytest.approx(base.prefill_seconds * m.prefill_efficiency / 0.25)


def test_moe_decode_reads_only_active_experts():
    spec = load_preset("mixtral-8x7b")
    r = fit(spec, "Q4_K_M", "H100 SXM", context=1024)
    m = LLAMA_CPP_CUDA
    dense_step = r.weight_bytes / (get_gpu("H100 SXM").bandwidth_gb_per_s * 1e9 * m.bandwidth_efficiency)
    dense_equivalent = 1 / (dense_step + 32 * m.per_layer_seconds)
    assert r.decode_tokens_per_s > 1.8 * dense_equivalent  # 2 of 8 experts per token


def test_offloaded_blocks_are_read_at_cpu_bandwidth(llama8b):
    wf = weight_facts(llama8b, "Q8_0")
    kv = kv_cache(llama8b, 4096)
    setup = GpuSetup(get_gpu("RTX 4090"), cpu_bandwidth_gb_per_s=50.0)
    all_gpu = decode_tokens_per_s(wf, kv, setup, 1, 1.0)
    assert all_gpu == pytest.approx(1 / ((sum(wf.layer_read_bytes) + wf.nonrepeating_read_bytes
                                         + kv.total_bytes) / 1008e9))
    half = decode_tokens_per_s(wf, kv, setup, 1, 1.0, gpu_layers=16)
    gpu = sum(wf.layer_read_bytes[16:]) + sum(kv.layer_bytes[16:])
    cpu = sum(wf.layer_read_bytes[:16]) + sum(kv.layer_bytes[:16]) + wf.nonrepeating_read_bytes
    assert half == pytest.approx(1 / (gpu / 1008e9 + cpu / 50e9))


def test_unknown_bandwidth_or_tflops_gives_no_estimate(llama8b):
    setup = GpuSetup(get_gpu("custom:24GiB"))
    assert decode_tokens_per_s(weight_facts(llama8b, "Q4_K_M"), kv_cache(llama8b, 512), setup, 1) is None
    assert prefill_seconds(llama8b, setup, 512, 1) is None


def test_batch_raises_throughput(llama8b):
    # llama.cpp: -c is the total the slots share, so 8 slots of 2,048 tokens are -c 16384 -np 8
    one = fit(llama8b, "Q4_K_M", "RTX 4090", context=2048, batch=1)
    eight = fit(llama8b, "Q4_K_M", "RTX 4090", context=8 * 2048, batch=8)
    assert eight.decode_tokens_per_s > 5 * one.decode_tokens_per_s
    assert eight.kv_cache_bytes == 8 * one.kv_cache_bytes


def test_custom_gpu_without_bandwidth_has_no_speed(llama8b):
    r = fit(llama8b, "Q4_K_M", "custom:24GiB")
    assert r.fits and r.decode_tokens_per_s is None and r.prefill_seconds is None
    assert any("no memory bandwidth" in w for w in r.warnings)


def test_offload_is_slower_than_full_gpu():
    spec = load_preset("llama-3.1-70b")
    offload = fit(spec, "Q4_K_M", "RTX 4090")
    full = fit(spec, "Q4_K_M", GpuSetup(get_gpu("RTX 4090"), 2))
    assert full.fits and offload.decode_tokens_per_s < full.decode_tokens_per_s / 5
