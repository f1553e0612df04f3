"""The evaluation loop's fast comparison (``metrics.compare``) against the definition (``metrics.token_stats``),
and the baseline logits stores (memory, file): same figures to 1e-6, zero for an identical model, argmax
semantics on exact ties, and stores that give back exactly what they were given."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from evaluation import runner, scoring
from evaluation.logits_store import FileLogits, LogitsStorage, MemoryLogits, make_store
from evaluation.metrics import compare, log_probs, reference, summarize, token_stats
from evaluation.options import EvaluateOptions

FIELDS = ("nll", "nll_base", "kld", "same_top", "dp")


def _logits(tokens, vocab, seed, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(tokens, vocab, generator=g) * scale
    method = base + 0.3 * torch.randn(tokens, vocab, generator=g)
    return method.to(dtype), base.to(dtype), torch.randint(0, vocab, (tokens,), generator=g)


def _fast(q, b, targets, chunk=None):
    return compare(q, lambda s, e: b[s:e], reference(b, targets, chunk), targets, chunk)


def assert_same_metrics(a, b, tol=1e-6):
    """Every summarized figure equal to ``tol``: relative for perplexities, absolute for nats and fractions
    (a percentage to 100 x tol)."""
    ma, mb = summarize(a), summarize(b)
    for f in dataclasses.fields(ma):
        x, y = getattr(ma, f.name), getattr(mb, f.name)
        if isinstance(x, dict):
            assert x == pytest.approx(y, abs=tol), f.name
        elif f.name.startswith(("ppl", "baseline_ppl")):
            assert x == pytest.approx(y, rel=tol), f.name
        elif f.name.endswith("_pct"):
            assert x == pytest.approx(y, abs=100 * tol), f.name
        else:
            assert x == pytest.approx(y, abs=tol), f.name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("tokens", "vocab"), [(300, 50), (64, 4096)])
def test_compare_equals_the_definition(dtype, tokens, vocab):
    q, b, targets = _logits(tokens, vocab, seed=vocab, dtype=dtype)
    slow, fast = token_stats(q, log_probs(b), targets), _fast(q, b, targets)
    assert torch.equal(slow.same_top, fast.same_top)
    assert torch.allclose(slow.kld.double(), fast.kld.double(), atol=1e-5)
    assert_same_metrics(slow, fast)


def test_compare_is_closer_to_exact_arithmetic_than_the_definition():
    q, b, targets = _logits(200, 8192, seed=5, dtype=torch.bfloat16)
    lq, lb = torch.log_softmax(q.double(), -1), torch.log_softmax(b.double(), -1)
    exact = (lb.exp() * (lb - lq)).sum(-1)
    slow, fast = token_stats(q, log_probs(b), targets), _fast(q, b, targets)
    assert (fast.kld - exact).abs().mean() <= (slow.kld.double() - exact).abs().mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identical_logits_give_exactly_zero(dtype):
    _, b, targets = _logits(100, 512, seed=1, dtype=dtype)
    m = summarize(_fast(b, b, targets))
    assert m.kld_mean == 0 and m.kld_max == 0 and m.top1_agreement == 1 and m.rms_dp == 0
    assert m.ppl == m.baseline_ppl and m.delta_ppl_pct == 0


def test_top1_follows_argmax_on_exact_ties():
    """torch.argmax takes the first maximum: a baseline top that ties with an earlier entry is not 'same'."""
    b = torch.zeros(4, 8)
    b[:, 5] = 2.0  # baseline top: 5
    q = torch.zeros(4, 8)
    q[0, 5] = 3.0  # clear winner 5: same
    q[1, [2, 5]] = 3.0  # tie, first maximum 2: not same
    q[2, [5, 7]] = 3.0  # tie, first maximum 5: same
    q[3, 1] = 3.0  # another winner: not same
    targets = torch.zeros(4, dtype=torch.long)
    fast = _fast(q, b, targets)
    assert fast.same_top.tolist() == [True, False, True, False]
    assert torch.equal(fast.same_top, token_stats(q, log_probs(b), targets).same_top)
    assert torch.equal(q, q.clone())  # compare restored its working copy, never the input


def test_chunking_does_not_change_a_bit():
    q, b, targets = _logits(97, 300, seed=3)
    one, many = _fast(q, b, targets, chunk=97), _fast(q, b, targets, chunk=7)
    assert all(torch.equal(getattr(one, f), getattr(many, f)) for f in FIELDS)


def test_compare_names_mismatched_shapes():
    q, b, targets = _logits(10, 16, seed=0)
    with pytest.raises(ValueError, match="must agree"):
        compare(q, lambda s, e: b[s:e], reference(b, targets), targets[:9])
    with pytest.raises(ValueError, match="do not match logits rows"):
        compare(q, lambda s, e: b[s:e, :8], reference(b, targets), targets)


# ---------------------------------------------------------------------------------------------- stores


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_file_store_gives_back_what_it_was_given(tmp_path, dtype):
    windows = [torch.randn(5, 11).to(dtype) for _ in range(3)]
    store = FileLogits(3, 5, 11, dtype, directory=tmp_path)
    for i, w in enumerate(windows):
        store.put(i, w)
    assert store.nbytes == os.path.getsize(store.path) == 3 * 5 * 11 * dtype.itemsize
    assert torch.equal(store.rows(1, 2, 4), windows[1][2:4]) and torch.equal(store.rows(2, 0, 5), windows[2])
    back = MemoryLogits.from_numpy(store.to_numpy(), dtype)
    assert all(torch.equal(back.rows(i, 0, 5), w) for i, w in enumerate(windows))
    path = store.path
    store.close()
    assert not os.path.exists(path)


def test_store_checks_windows_and_shapes(tmp_path):
    store = make_store("memory", 2, 4, 8, torch.float32, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="outside 0..1"):
        store.put(2, torch.zeros(4, 8))
    with pytest.raises(ValueError, match=r"do not match the store's \(4, 8\)"):
        store.put(0, torch.zeros(4, 9))
    with pytest.raises(ValueError, match="never stored"):
        store.rows(1, 0, 4)
    big = make_store("auto", 1024, 1024, 1024, torch.float32, device=torch.device("cpu"), directory=tmp_path)
    assert isinstance(big, FileLogits)  # 4 GiB: over AUTO_FILE_BYTES, and the file is sparse until written
    big.close()
    with pytest.raises(ValueError, match="auto, memory, file"):
        EvaluateOptions(logits_storage="disk")


def test_read_only_arrays_are_used_without_a_copy():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    array.flags.writeable = False  # what Ray's object store hands a task
    store = MemoryLogits.from_numpy(array, torch.float32)
    assert store.rows(1, 0, 3).data_ptr() == array[1].ctypes.data


def test_file_and_memory_baselines_score_identically(tiny_llama_dir, tmp_path):
    torch.set_num_threads(1)
    base = EvaluateOptions(n_ctx=64, max_tokens=192, decode_tokens=0)
    results = {}
    for storage in LogitsStorage:
        options = dataclasses.replace(base, logits_storage=storage, cache_dir=tmp_path / storage.value)
        baseline = scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", options)
        assert isinstance(baseline.logits, FileLogits if storage is LogitsStorage.FILE else MemoryLogits)
        results[storage] = runner.evaluate(None, None, ["int8", "rtn-3b-g32"], baseline=baseline)
        baseline.close()
    assert not list((tmp_path / "file" / "scratch").iterdir())  # the file went with the baseline
    first = results[LogitsStorage.AUTO]
    for rows in results.values():
        assert [r.quality for r in rows] == [r.quality for r in first]


def test_runner_scores_as_the_definition_on_a_real_model(tiny_llama_dir):
    """A quantized tiny Llama against its baseline: the loop's figures equal ``token_stats``'s to 1e-6."""
    torch.set_num_threads(1)
    options = EvaluateOptions(n_ctx=64, max_tokens=256, decode_tokens=0, dtype="fp32")
    baseline = scoring.prepare_baseline(str(tiny_llama_dir), "shakespeare", options)
    model = baseline.method_model()
    runner.quantize_(model, runner.parse_method("rtn-4b-g32"))
    fast, _ = scoring.score_model(baseline, model)
    parts = []
    with torch.inference_mode():
        for i in range(baseline.windows.n_windows):
            ids = baseline.windows.tokens[i : i + 1]
            q = scoring.window_logits(model, ids, 0)
            b = scoring.window_logits(baseline.model, ids, 0)
            parts.append(token_stats(q, log_probs(b), ids[0, 1:]))
    slow = type(fast).cat(parts)
    assert torch.equal(fast.same_top, slow.same_top)
    assert_same_metrics(slow, fast)
