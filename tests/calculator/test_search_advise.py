"""``calculator.search.advise`` as the Fit page uses it (more GPUs, training changes, the best file type, the
engine's own KV setting), and the searches' one-placement probes checked against ``fit`` itself, per engine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calculator.fit import FitOptions, fit
from calculator.hardware import GpuSetup, catalogue, get_gpu
from calculator.models import load_preset
from calculator.search import AdviceKind, advise, best_format, gpus_that_fit
from calculator.training import TrainingMode


@pytest.fixture(scope="module")
def llama8b():
    return load_preset("llama-3.1-8b")


@pytest.fixture(scope="module")
def llama70b():
    return load_preset("llama-3.1-70b")


def _kinds(rows) -> dict:
    return {a.kind: a for a in rows}


def _fewest_gpus(spec, fmt, gpu, context, batch, o, up_to=8) -> int | None:
    """Brute force: the fewest identical GPUs above one that fit, skipping counts the engine refuses."""
    for n in range(2, up_to + 1):
        try:
            if fit(spec, fmt, GpuSetup(get_gpu(gpu), n), context, batch, options=o, with_max_context=False).fits:
                return n
        except ValueError:
            continue
    return None


@pytest.mark.parametrize("engine, fmt", [("llama.cpp", "Q4_K_M"), ("ollama", "Q4_K_M"), ("vllm", "fp16")])
def test_more_gpus_is_the_fewest_that_fit(llama70b, engine, fmt):
    o = FitOptions(engine=engine)
    rows = _kinds(advise(llama70b, fmt, "RTX 4090", 8192, 1, options=o, max_gpus=8))
    expected = _fewest_gpus(llama70b, fmt, "RTX 4090", 8192, 1, o)
    more = rows[AdviceKind.MORE_GPUS]
    assert (more.value, more.change, more.setting) == (expected, f"--gpus {expected}", "gpu_count")
    assert more.result.fits and more.result.gpu_count == expected
    assert AdviceKind.MORE_GPUS not in _kinds(advise(llama70b, fmt, "RTX 4090", 8192, 1, options=o))


def test_vllm_gpu_counts_it_refuses_are_skipped(llama70b):
    """64 heads over 3, 5, 6 or 7 GPUs is refused by vLLM; 140 GB of fp16 weights need 8 RTX 4090s."""
    o = FitOptions(engine="vllm")
    with pytest.raises(ValueError, match="divisible by tensor parallel size"):
        fit(llama70b, "fp16", GpuSetup(get_gpu("RTX 4090"), 3), 8192, options=o)
    more = _kinds(advise(llama70b, "fp16", "RTX 4090", 8192, 1, options=o, max_gpus=8))[AdviceKind.MORE_GPUS]
    assert more.value == _fewest_gpus(llama70b, "fp16", "RTX 4090", 8192, 1, o) == 8


@pytest.mark.parametrize("engine, kv_value, change", [
    ("llama.cpp", "q8_0", "--kv-type q8_0 --flash-attention on"),
    ("ollama", "q8_0", "OLLAMA_KV_CACHE_TYPE=q8_0"),
    ("vllm", "fp8", "--kv-cache-dtype fp8"),
])
def test_kv_advice_names_the_type_the_engine_caches_in(llama8b, engine, kv_value, change):
    o = FitOptions(engine=engine)
    here = fit(llama8b, "Q8_0", "RTX 4090", 131072, 1, options=o)
    kv = _kinds(advise(llama8b, "Q8_0", "RTX 4090", 131072, 1, options=o, result=here))[AdviceKind.KV_CACHE_TYPE]
    assert (kv.value, kv.change) == (kv_value, change)
    assert kv.result.fits and kv.result.kv.cache_type.value == kv_value


@pytest.mark.parametrize("engine", ["llama.cpp", "ollama", "vllm"])
def test_file_type_advice_is_the_best_format(llama8b, engine):
    o = FitOptions(engine=engine)
    rows = advise(llama8b, "Q8_0", "RTX 4090", 131072, 1, options=o)
    best = best_format(llama8b, "RTX 4090", 131072, 1, options=o)
    smaller = _kinds(rows)[AdviceKind.SMALLER_FORMAT]
    assert (smaller.value, smaller.result) == (best.format, best)
    without = advise(llama8b, "Q8_0", "RTX 4090", 131072, 1, options=o, with_best_format=False)
    assert without == tuple(a for a in rows if a.kind is not AdviceKind.SMALLER_FORMAT)


@pytest.mark.parametrize("engine", ["llama.cpp", "ollama", "vllm"])
def test_a_computed_result_changes_nothing(llama8b, engine):
    o = FitOptions(engine=engine)
    here = fit(llama8b, "Q8_0", "RTX 4090", 65536, 2, options=o)

    def rows(**kw):  # "fewer GPU layers" hands back the run itself, with the max context it was given
        return [replace(a, result=replace(a.result, max_context=None))
                for a in advise(llama8b, "Q8_0", "RTX 4090", 65536, 2, options=o, max_gpus=4, **kw)]

    assert rows(result=here) == rows()


def test_training_advice(llama8b):
    """Training an 8B model on H100s: full fine-tuning (bf16 weights, fp32 Adam: 168 GB) fits as QLoRA or on 3
    GPUs; LoRA at batch 8 (196 GB of activations) with checkpointing, 2 sequences or a shorter context."""
    full = FitOptions(mode=TrainingMode.FULL)
    rows = advise(llama8b, "bf16", "H100 SXM", 4096, 1, options=full, max_gpus=8)
    assert [(a.kind, a.change, a.setting, a.value) for a in rows] == [
        (AdviceKind.QLORA, "--mode qlora", "mode", "qlora"), (AdviceKind.MORE_GPUS, "--gpus 3", "gpu_count", 3)]
    assert rows[0].result == fit(llama8b, "bf16", "H100 SXM", 4096, 1, options=FitOptions(mode=TrainingMode.QLORA),
                                 with_max_context=False)
    assert _fewest_gpus(llama8b, "bf16", "H100 SXM", 4096, 1, full) == 3
    lora = FitOptions(mode=TrainingMode.LORA)
    assert not fit(llama8b, "bf16", "H100 SXM", 4096, 8, options=lora).fits
    rows = _kinds(advise(llama8b, "bf16", "H100 SXM", 4096, 8, options=lora))
    assert list(rows) == [AdviceKind.GRADIENT_CHECKPOINTING, AdviceKind.FEWER_SLOTS, AdviceKind.SHORTER_CONTEXT]
    assert rows[AdviceKind.GRADIENT_CHECKPOINTING].change == "--gradient-checkpointing"
    assert all(a.result.fits for a in rows.values())
    n, ctx = rows[AdviceKind.FEWER_SLOTS].value, rows[AdviceKind.SHORTER_CONTEXT].value
    assert (rows[AdviceKind.FEWER_SLOTS].change, rows[AdviceKind.FEWER_SLOTS].result.context) == (f"--batch {n}", 4096)
    assert not fit(llama8b, "bf16", "H100 SXM", 4096, n + 1, options=lora, with_max_context=False).fits
    assert not fit(llama8b, "bf16", "H100 SXM", ctx + 1, 8, options=lora, with_max_context=False).fits


@pytest.mark.parametrize("engine", ["llama.cpp", "ollama", "vllm"])
@pytest.mark.parametrize("count", [1, 2])
def test_gpus_that_fit_equal_brute_force(llama8b, engine, count):
    """The one-placement probe says "fits" exactly where ``fit`` does, on every catalogue GPU."""
    o = FitOptions(engine=engine)
    found = [r.gpu for r in gpus_that_fit(llama8b, "Q8_0", 32768, 2, options=o, count=count)]
    brute, refused = [], []
    for g in catalogue():
        try:
            if fit(llama8b, "Q8_0", GpuSetup(g, count), 32768, 2, options=o, with_max_context=False).fits:
                brute.append(g.name)
        except ValueError:
            refused.append(g.name)  # vLLM on Apple silicon: not a GPU it fits on
    assert sorted(found) == sorted(brute) and found
    assert bool(refused) == (engine == "vllm")


def test_gpus_that_fit_raises_when_the_engine_refuses_every_device(llama8b):
    apple = [g for g in catalogue() if g.vendor == "Apple"]
    with pytest.raises(ValueError, match="^vLLM needs a CUDA or ROCm GPU; Apple"):
        gpus_that_fit(llama8b, "Q8_0", options=FitOptions(engine="vllm"), gpus=apple)


def test_max_gpus_is_validated(llama8b):
    with pytest.raises(ValueError, match="max_gpus"):
        advise(llama8b, "Q8_0", "RTX 4090", 4096, options=FitOptions(), max_gpus=0)


@pytest.mark.parametrize(("context", "batch", "options"), [(0, 1, FitOptions()), (10**30, 1, FitOptions()),
                                                           (4096, 0, FitOptions()), (4096, 1, {"kv_type": "q8_0"})])
def test_searches_check_inputs_as_fit_does(llama8b, context, batch, options):
    """The probes skip ``fit``, not its checks: the same one-line errors, before anything is cached."""
    with pytest.raises(ValueError) as expected:
        fit(llama8b, "Q4_K_M", "RTX 4090", context, batch, options=options)
    for search in (lambda: best_format(llama8b, "RTX 4090", context, batch, options=options),
                   lambda: gpus_that_fit(llama8b, "Q4_K_M", context, batch, options=options),
                   lambda: advise(llama8b, "Q4_K_M", "RTX 4090", context, batch, options=options)):
        with pytest.raises(ValueError) as err:
            search()
        assert str(err.value) == str(expected.value)
