"""GPU catalogue (assets/gpus.csv), name lookup, custom devices and setups."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import units
from calculator.hardware import (
    CATALOGUE_PATH,
    Category,
    GpuSetup,
    GpuSpec,
    catalogue,
    get_gpu,
    parse_custom_gpu,
    with_usable_fraction,
    with_wired_limit,
)

# The list of devices that must be in the catalogue.
REQUIRED = [
    "RTX 3060 12GB",
    "RTX 3090",
    "RTX 4060 Ti 16GB",
    "RTX 4070",
    "RTX 4080",
    "RTX 4090",
    "RTX 5060 Ti 16GB",
    "RTX 5080",
    "RTX 5090",
    "A10",
    "L4",
    "L40S",
    "A100 40GB",
    "A100 80GB SXM",
    "H100 PCIe",
    "H100 SXM",
    "H200",
    "B200",
    "RX 7900 XTX",
    "Instinct MI250",
    "Instinct MI300X",
    "Arc A770 16GB",
    "Apple M2 Max 96GB",
    "Apple M2 Ultra 192GB",
    "Apple M4 Max 128GB",
]


def test_catalogue_has_at_least_40_sourced_devices():
    gpus = catalogue()
    assert len(gpus) >= 40
    assert all(g.source for g in gpus)
    names = {g.name for g in gpus}
    assert set(REQUIRED) <= names
    assert {g.vendor for g in gpus} == {"NVIDIA", "AMD", "Intel", "Apple"}
    assert {g.category for g in gpus} == {
        Category.CONSUMER,
        Category.WORKSTATION,
        Category.DATACENTER,
        Category.APPLE,
    }


def test_every_row_has_bandwidth_and_tflops_and_a_source_column():
    with CATALOGUE_PATH.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(row["source"].strip() for row in rows)
    for g in catalogue():
        assert g.bandwidth_gb_per_s and g.bandwidth_gb_per_s > 0, g.name
        assert g.fp16_tflops and g.fp16_tflops > 0, g.name


def test_memory_is_decimal_as_sold():
    assert get_gpu("RTX 4090").memory_bytes == 24 * units.GB == 24_000_000_000
    assert get_gpu("H100 SXM").memory_bytes == 80_000_000_000
    assert get_gpu("H200").memory_bytes == 141_000_000_000


def test_published_figures():
    h100 = get_gpu("H100 SXM")
    assert (h100.bandwidth_gb_per_s, h100.fp16_tflops) == (3350, 989)  # dense, not the 1979 sparse figure
    assert get_gpu("RTX 4090").bandwidth_gb_per_s == 1008
    assert get_gpu("MI300X").memory_bytes == 192 * units.GB


def test_unified_memory_has_a_usable_fraction():
    mac = get_gpu("M2 Ultra")
    assert mac.unified_memory and mac.category is Category.APPLE
    # Apple's "192GB" is 192 GiB; Metal logs "recommendedMaxWorkingSetSize = 154618.82 MB" on it
    # (XiongjieDai/GPU-Benchmarks-on-LLM-Inference@aa72e0ec 'LLaMA 3/Mac/M2ultra_192GB.ipynb')
    assert mac.memory_bytes == 192 * units.GiB and mac.usable_fraction == 0.75
    assert f"{mac.usable_bytes / 1e6:.2f}" == "154618.82"
    assert all(g.usable_fraction == 1 for g in catalogue() if not g.unified_memory)
    assert 0 <= with_usable_fraction(mac, 0.9).usable_bytes - 0.9 * 192 * units.GiB < 16384  # a 16 KiB page


@pytest.mark.parametrize(
    "name, logged",
    [
        # recommendedMaxWorkingSetSize as llama.cpp's Metal backend logs it (MB = 10^6 bytes; 2023 builds
        # printed MiB and called them MB): 2/3 of RAM up to 32 GB, 3/4 from 64 GB, rounded up to 16 KiB
        ("Apple M1 8GB", "5726.63 MB"),  # XiongjieDai ... 'LLaMA 3/Mac/M1_8GB.ipynb'
        ("Apple M1 Max 32GB", "21845.34 MiB"),  # ggml-org/llama.cpp PR #2011
        ("Apple M2 Max 32GB", "21845.34 MiB"),  # ollama/ollama issue #434
        ("Apple M1 Max 64GB", "51539.61 MB"),  # XiongjieDai ... 'LLaMA 3/Mac/M1max_64GB.ipynb'
        ("Apple M3 Max 64GB", "51539.61 MB"),  # XiongjieDai ... 'LLaMA 3/Mac/M3max_64GB.ipynb'
        ("Apple M2 Max 96GB", "73728.00 MiB"),  # ggml-org/llama.cpp issue #3213 ("73728,00 MB")
    ],
)
def test_metal_working_set_matches_the_logs(name, logged):
    value, unit = logged.split()
    usable = get_gpu(name).usable_bytes
    assert f"{usable / (1e6 if unit == 'MB' else units.MiB):.2f}" == value


def test_wired_limit_override():
    # antirez/ds4 PR #893: iogpu.wired_limit_mb=114688 -> "recommendedMaxWorkingSetSize: 112.00 GiB"
    mac = with_wired_limit(get_gpu("M4 Max"), 114688)
    assert mac.usable_bytes == 112 * units.GiB and "wired limit" in mac.name
    with pytest.raises(ValueError, match="iogpu.wired_limit_mb is a macOS setting; RTX 4090 is not"):
        with_wired_limit(get_gpu("RTX 4090"), 1000)
    with pytest.raises(ValueError, match="iogpu.wired_limit_mb 999999 must be a whole number from 1 to 131072"):
        with_wired_limit(get_gpu("M4 Max"), 999_999)


def test_mixed_setups():
    a, b = get_gpu("RTX 3090"), get_gpu("RTX 3060 12GB")
    mixed = GpuSetup([a, b, b])
    assert mixed.count == 3 and mixed.gpu is a and not mixed.homogeneous
    assert mixed.label == "RTX 3090 + 2x RTX 3060 12GB" and mixed.usable_bytes == 48 * units.GB
    assert GpuSetup(a, 2) == GpuSetup([a, a]) and GpuSetup(a, 2).homogeneous
    assert {get_gpu("RTX 4090").backend.value, get_gpu("M2 Ultra").backend.value} == {"CUDA", "Metal"}
    with pytest.raises(ValueError, match="GPU count 2 goes with one device"):
        GpuSetup([a, b], 2)
    with pytest.raises(ValueError, match="expected a GpuSpec or a list of them, got 'RTX 3090'"):
        GpuSetup("RTX 3090")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("RTX 4090", "RTX 4090"),
        ("rtx 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("rtx-4090", "RTX 4090"),
        ("4090", "RTX 4090"),
        ("a10", "A10"),
        ("l4", "L4"),
        ("MI300X", "Instinct MI300X"),
        ("AMD Radeon RX 7900 XTX", "RX 7900 XTX"),
        ("h100 sxm5", "H100 SXM"),
        ("M4 Max", "Apple M4 Max 128GB"),
    ],
)
def test_lookup_is_forgiving(text, expected):
    assert get_gpu(text).name == expected


def test_typo_gets_did_you_mean():
    with pytest.raises(ValueError, match=r"unknown GPU 'RTX 4900'; did you mean RTX 4090"):
        get_gpu("RTX 4900")


@pytest.mark.parametrize("text, listed", [("H100", "H100 PCIe, H100 SXM"), ("A100", "A100 40GB")])
def test_ambiguous_names_list_the_candidates(text, listed):
    with pytest.raises(ValueError, match=f"matches several devices: .*{listed}"):
        get_gpu(text)


def test_empty_name():
    with pytest.raises(ValueError, match="no GPU given"):
        get_gpu("  ")


def test_custom_devices():
    g = get_gpu("custom:24GiB")
    assert g.memory_bytes == 24 * units.GiB and g.bandwidth_gb_per_s is None and g.fp16_tflops is None
    g = parse_custom_gpu("custom:24GiB:1000GB/s")
    assert g.bandwidth_gb_per_s == 1000
    g = get_gpu("custom:80GB:3.35TB/s:989TFLOPS")
    assert (g.memory_bytes, g.bandwidth_gb_per_s, g.fp16_tflops) == (80 * units.GB, 3350, 989)
    assert g.category is Category.CUSTOM


@pytest.mark.parametrize(
    "text, match",
    [
        ("custom:", "not understood"),
        ("custom:24 potatoes", "memory size"),
        ("custom:24GiB:fast", "neither a bandwidth"),
        ("custom:0GB", "must be positive"),
    ],
)
def test_bad_custom_devices(text, match):
    with pytest.raises(ValueError, match=match):
        get_gpu(text)


def test_setup_validation():
    gpu = get_gpu("RTX 4090")
    assert GpuSetup(gpu, 2).usable_bytes == 48 * units.GB
    assert GpuSetup(gpu, 2).label == "2x RTX 4090"
    with pytest.raises(ValueError, match="GPU count 0"):
        GpuSetup(gpu, 0)
    with pytest.raises(ValueError, match="usable fraction"):
        GpuSpec("x", "y", 10, usable_fraction=1.5)
    with pytest.raises(ValueError, match="memory"):
        GpuSpec("x", "y", 0)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([g.name for g in catalogue()] + [a for g in catalogue() for a in g.aliases]))
def test_every_name_and_alias_resolves_to_its_device(label):
    g = get_gpu(label)
    assert label == g.name or label in g.aliases
