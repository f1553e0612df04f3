"""Models bigger than one device: ``device_map`` (accelerate) within ``max_memory``. On this CPU-only
machine "bigger" is made small: the tiny Llama with 150 kB of CPU memory spills its layers to disk, and
the baseline computed that way equals the one computed in memory, bit for bit."""

from __future__ import annotations

import pytest
import torch

from evaluation import runner, scoring
from evaluation.metrics import summarize
from evaluation.options import DeviceMap, EvaluateOptions, parse_max_memory

PLAIN = EvaluateOptions(n_ctx=64, max_tokens=128, decode_tokens=0)


def _options(max_memory: str) -> EvaluateOptions:
    return EvaluateOptions(n_ctx=64, max_tokens=128, decode_tokens=0, device_map="auto", max_memory=max_memory)


@pytest.fixture(scope="module")
def plain(tiny_llama_dir):
    torch.set_num_threads(1)
    return scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", PLAIN)


def test_max_memory_parses_devices_and_sizes():
    assert parse_max_memory("0=70GiB, 1=70GiB,cpu=200GB") == (("0", 70 * 2**30), ("1", 70 * 2**30), ("cpu", 2 * 10**11))
    assert parse_max_memory({0: "1GiB", "disk": 10**12}) == (("0", 2**30), ("disk", 10**12))
    options = _options("0=1GiB,cpu=2GiB")
    assert options.device_map is DeviceMap.AUTO
    assert options.transformers_placement() == {"device_map": "auto", "max_memory": {0: 2**30, "cpu": 2 * 2**30}}
    assert options.placement == {"device_map": "auto", "max_memory": {"0": 2**30, "cpu": 2 * 2**30}}
    assert PLAIN.placement is None and PLAIN.transformers_placement() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device_map": "everywhere"}, "device_map 'everywhere': use auto, balanced, balanced_low_0, sequential"),
        ({"device_map": "auto", "max_memory": "gpu0=1GiB"}, "max memory device 'gpu0': use a GPU index"),
        ({"device_map": "auto", "max_memory": "cpu"}, "max memory entry 'cpu': write DEVICE=SIZE"),
        ({"device_map": "auto", "max_memory": "cpu=lots"}, "memory size 'lots' is not understood"),
        ({"max_memory": "cpu=1GiB"}, "max_memory limits a device_map: add --device-map auto"),
    ],
)
def test_bad_placements_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvaluateOptions(**kwargs)


def test_a_device_map_that_fits_gives_the_same_results(tiny_llama_dir, plain):
    options = _options("cpu=1GiB")
    baseline = scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", options)
    spread = runner.evaluate(None, None, ["baseline", "int8", "rtn-4b-g32"], options, baseline=baseline)
    assert baseline.model is None  # released for the first method: each method loads its own copy
    expected = runner.evaluate(None, None, ["baseline", "int8", "rtn-4b-g32"], PLAIN, baseline=plain)
    assert [r.quality for r in spread] == [r.quality for r in expected]
    assert [r.measured_bytes for r in spread] == [r.measured_bytes for r in expected]
    assert spread[1].key != expected[1].key  # the placement is part of the cache key


def test_a_baseline_spilled_to_disk_equals_the_one_in_memory(tiny_llama_dir, plain):
    options = _options("cpu=150KB")
    baseline = scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", options)
    assert "disk" in baseline.model.hf_device_map.values()
    assert summarize(baseline.stats) == summarize(plain.stats)
    assert all(torch.equal(baseline.logits.rows(i, 0, 63), plain.logits.rows(i, 0, 63)) for i in range(2))
    (row,) = runner.evaluate(None, None, ["baseline"], options, baseline=baseline)
    assert row.measured_bytes == runner.evaluate(None, None, ["baseline"], PLAIN, baseline=plain)[0].measured_bytes
    with pytest.raises(ValueError, match=r"int8 quantizes every weight in memory, but \d+ of 21 parameters are "
                                         "offloaded"):  # fmt: skip
        runner.evaluate(None, None, ["int8"], options, baseline=baseline)
