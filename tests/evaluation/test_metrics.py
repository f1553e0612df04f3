"""Metrics against hand computations and llama.cpp's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.metrics import (
    TokenStats,
    log_probs,
    mean_and_uncertainty,
    percentile,
    perplexity,
    sqnr_db,
    summarize,
    token_stats,
)


def _random_logits(tokens=300, vocab=50, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, vocab, generator=g) * scale, torch.randint(0, vocab, (tokens,), generator=g)


def test_identical_model_has_zero_kld_and_full_agreement():
    logits, targets = _random_logits()
    m = summarize(token_stats(logits, log_probs(logits), targets))
    assert m.kld_mean == 0 and m.kld_max == 0 and all(v == 0 for v in m.kld_percentiles.values())
    assert m.top1_agreement == 1 and m.rms_dp == 0
    assert m.delta_ppl_pct == 0 and m.ln_ppl_ratio == 0 and m.ln_ppl_ratio_err == 0
    assert m.ppl == m.baseline_ppl


def test_uniform_model_perplexity_is_the_vocabulary_size():
    vocab = 997
    logits = torch.zeros(40, vocab, dtype=torch.bfloat16)
    _, targets = _random_logits(40, vocab)
    ppl, err = perplexity(token_stats(logits, log_probs(logits), targets).nll)
    assert ppl == pytest.approx(vocab, rel=1e-6) and err == 0  # fp32 log-softmax


def test_against_a_naive_numpy_reference():
    q, targets = _random_logits(seed=1)
    b = q + 0.3 * torch.randn(q.shape, generator=torch.Generator().manual_seed(2))
    m = summarize(token_stats(q, log_probs(b), targets))
    qn, bn, t = q.double().numpy(), b.double().numpy(), targets.numpy()

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lq, lb = log_softmax(qn), log_softmax(bn)
    rows = np.arange(len(t))
    nll, nll_b = -lq[rows, t], -lb[rows, t]
    kld = (np.exp(lb) * (lb - lq)).sum(-1)
    dp = np.exp(-nll) - np.exp(-nll_b)
    n = len(t)
    assert m.ppl == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert m.ppl_err == pytest.approx(math.exp(nll.mean()) * nll.std() / math.sqrt(n - 1), rel=1e-4)
    assert m.kld_mean == pytest.approx(kld.mean(), rel=1e-4)
    assert m.kld_percentiles["99"] == pytest.approx(
        np.percentile(kld, 99), rel=1e-4
    )  # numpy's default is linear
    assert m.kld_percentiles["median"] == pytest.approx(np.median(kld), rel=1e-4)
    assert m.top1_agreement == pytest.approx((lq.argmax(-1) == lb.argmax(-1)).mean())
    assert m.rms_dp == pytest.approx(math.sqrt((dp**2).mean()), rel=1e-4)
    assert m.ln_ppl_ratio == pytest.approx(nll.mean() - nll_b.mean(), rel=1e-5)
    cov = ((nll * nll_b).mean() - nll.mean() * nll_b.mean()) / (n - 1)
    var = nll.var() / (n - 1) + nll_b.var() / (n - 1) - 2 * cov
    assert m.ln_ppl_ratio_err == pytest.approx(math.sqrt(var), rel=1e-4)
    assert m.delta_ppl_pct == pytest.approx(100 * (math.exp(nll.mean() - nll_b.mean()) - 1), rel=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0.01, 2.0))
def test_kld_is_non_negative_and_grows_with_noise(seed, noise):
    q, targets = _random_logits(64, 32, seed)
    g = torch.Generator().manual_seed(seed + 1)
    direction = torch.randn(q.shape, generator=g)
    small = token_stats(q + noise * direction, log_probs(q), targets).kld
    large = token_stats(q + 2 * noise * direction, log_probs(q), targets).kld
    assert torch.all(small >= 0)
    assert large.mean() > small.mean()


def test_percentile_is_llama_cpp_linear_interpolation():
    values = torch.arange(101, dtype=torch.float64)
    assert percentile(values, 0.999) == pytest.approx(99.9)
    assert percentile(values, 0.9) == pytest.approx(90.0)
    assert percentile(values, 0.0) == 0 and percentile(values, 1.0) == 100


def test_mean_and_uncertainty_follows_llama_cpp():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    mean, err = mean_and_uncertainty(x)
    assert mean == 6.0 and err == pytest.approx(
        math.sqrt((x.double() ** 2).mean().item() - 36.0) / math.sqrt(10)
    )
    assert mean_and_uncertainty(x[:10])[1] == 0.0  # llama.cpp reports no uncertainty for <= 10 values


def test_token_stats_rejects_mismatched_shapes():
    logits, targets = _random_logits(10, 8)
    with pytest.raises(ValueError, match="must agree"):
        token_stats(logits, log_probs(logits[:, :7]), targets)
    with pytest.raises(ValueError, match="at least 2"):
        summarize(TokenStats.cat([token_stats(logits[:1], log_probs(logits[:1]), targets[:1])]))


def test_chunking_does_not_change_results():
    q, targets = _random_logits(300, 40, seed=3)
    b = q.flip(-1)
    a, c = token_stats(q, log_probs(b), targets, chunk_tokens=7), token_stats(q, log_probs(b), targets)
    assert torch.allclose(a.kld, c.kld) and torch.equal(a.same_top, c.same_top)


def test_sqnr():
    x = torch.ones(100)
    assert sqnr_db(x, x) == math.inf
    assert sqnr_db(x, x * 1.1) == pytest.approx(20.0)
