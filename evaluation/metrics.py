"""Quality metrics of a quantized model against its baseline, as llama.cpp's llama-perplexity defines them.

Source: ggml-org/llama.cpp@050fc7f32de16858ac667d775b43a51ed8976e6f ``tools/perplexity/perplexity.cpp``:
``perplexity()`` (PPL = exp(mean NLL), its error ``ppl * sqrt(var(NLL) / (N - 1))``) and
``kl_divergence()`` (``mean_and_uncertainty``, ``covariance``, ln(PPL(Q)/PPL(base)) with its
correlated error, mean KLD and its percentiles, RMS delta-p, "same top p"). One difference, on purpose:
llama.cpp stores the baseline log-probs as uint16 and drops KLD terms with p_base < e^-16; we keep them
in fp32 and sum KLD over the whole vocabulary.

Per scored token t (logits at position t predict token t+1):
    nll_q[t]  = -log p_q(x[t+1]),  nll_b[t] = -log p_b(x[t+1])
    kld[t]    = sum_v p_b(v) (log p_b(v) - log p_q(v))
    same[t]   = argmax p_q == argmax p_b
    dp[t]     = p_q(x[t+1]) - p_b(x[t+1])
``TokenStats`` collects these for every scored token; ``summarize`` turns them into ``QualityMetrics``
(defined with the results schema in ``evaluation.results``, which the app reads without torch).

``token_stats`` is the definition, written as the formulas read. The evaluation loop uses ``compare``,
the same figures in fewer passes over the [tokens, vocabulary] logits (profiled on SmolLM2, 511 x 49,152
logits per window, 2 CPU threads: 235 ms per window for ``token_stats``, about 50 ms for ``compare``,
against a 1.2 s forward pass):

- the baseline's side is computed once per window (``reference``): its log-sum-exp, argmax and NLL, and
  it keeps its raw logits (2 bytes each in bf16) rather than fp32 log-probs;
- KLD is rewritten with d = x_q - x_b (the two models' logits) and p_b = exp(x_b - lse_b):
      kld = sum_v p_b (lse_q - lse_b - d) = (lse_q - lse_b) * sum_v p_b - sum_v p_b d,
  so its terms stay as small as the difference between the models (an identical model gives exactly 0,
  as in ``token_stats``) and no fp32 log-softmax is written;
- the top-1 check is two max reductions (the baseline's argmax is known), not an argmax;
- the work runs a few rows at a time (``CPU_CHUNK_VALUES``) so that every pass stays in the CPU cache.
``tests/evaluation/test_metrics.py`` checks ``compare`` against ``token_stats`` on real and random logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from evaluation.results import QualityMetrics

# The KLD percentiles llama.cpp prints (kl_divergence(): 99.9%, 99.0%, 95.0%, 90.0%, median).
KLD_PERCENTILES: tuple[tuple[str, float], ...] = (
    ("99.9", 0.999),
    ("99", 0.99),
    ("95", 0.95),
    ("90", 0.90),
    ("median", 0.5),
)


@dataclass
class TokenStats:
    """Per-token statistics of one model against the baseline, for every scored token (1-D tensors)."""

    nll: torch.Tensor
    nll_base: torch.Tensor
    kld: torch.Tensor
    same_top: torch.Tensor
    dp: torch.Tensor

    @classmethod
    def cat(cls, parts: list[TokenStats]) -> TokenStats:
        fields = ("nll", "nll_base", "kld", "same_top", "dp")
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))

    def cpu(self) -> TokenStats:
        """On the CPU, in float64 (bool for agreement): what ``summarize`` sums."""
        return TokenStats(
            self.nll.double().cpu(),
            self.nll_base.double().cpu(),
            self.kld.double().cpu(),
            self.same_top.cpu(),
            self.dp.double().cpu(),
        )

    @property
    def count(self) -> int:
        return self.nll.numel()


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """fp32 log-softmax over the vocabulary: what the baseline keeps for every scored token."""
    return torch.log_softmax(logits, dim=-1, dtype=torch.float32)


def token_stats(
    logits: torch.Tensor, base_log_probs: torch.Tensor, targets: torch.Tensor, chunk_tokens: int | None = None
) -> TokenStats:
    """Compare logits [T, V] with the baseline's log-probs [T, V] (``log_probs``) for next tokens [T].

    Computed in fp32, ``chunk_tokens`` rows at a time (default: 2^25 values per chunk, so a 256k
    vocabulary stays within memory while a 50k one is one chunk per window). Stays on the logits' device.
    """
    if logits.shape != base_log_probs.shape or logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)}, baseline {tuple(base_log_probs.shape)} and targets "
            f"{tuple(targets.shape)} must agree in tokens and vocabulary"
        )
    rows = chunk_tokens or max(1, (1 << 25) // max(1, logits.shape[-1]))
    parts = []
    for start in range(0, targets.shape[0], rows):
        sl = slice(start, start + rows)
        lq, lb = log_probs(logits[sl]), base_log_probs[sl]
        tgt = targets[sl].unsqueeze(-1)
        nll = -lq.gather(-1, tgt).squeeze(-1)
        nll_base = -lb.gather(-1, tgt).squeeze(-1)
        terms = torch.sub(lb, lq)  # p_b (lb - lq), in place: a third fewer [T, V] temporaries
        kld = terms.mul_(lb.exp()).sum(-1).clamp(min=0)  # >= 0 mathematically; clamp fp32 round-off
        same = lq.argmax(-1) == lb.argmax(-1)
        dp = torch.exp(-nll) - torch.exp(-nll_base)
        parts.append(TokenStats(nll, nll_base, kld, same, dp))
    return TokenStats.cat(parts)


# Values per chunk of ``compare``: 2^19 fp32 values (2 MiB) fit a core's L2 cache here (Xeon, 2 MiB per
# core); on a 49,152 vocabulary that is 10 rows, and the whole comparison ran 2x faster than on whole
# windows. On CUDA a window at a time (2^25 values) keeps the kernel count low.
CPU_CHUNK_VALUES = 1 << 19
CUDA_CHUNK_VALUES = 1 << 25


def chunk_rows(vocab_size: int, device: torch.device) -> int:
    """Rows of [rows, vocab] that ``compare`` handles at once on ``device``."""
    values = CUDA_CHUNK_VALUES if device.type == "cuda" else CPU_CHUNK_VALUES
    return max(1, values // max(1, vocab_size))


@dataclass(frozen=True)
class Reference:
    """The baseline's side of every comparison on one window, per scored token (1-D, on the logits' device).

    ``lse``: log-sum-exp of the baseline logits (fp64: the fp32 maximum plus the fp32 log of the shifted
    sum, so no rounding to the lse's own magnitude); ``mass``: sum_v p_b(v) as computed in fp32 (1 up to
    round-off, kept so that KLD uses the same p_b it sums); ``top``: argmax; ``nll``: -log p_b(next token)
    (fp64).
    """

    lse: torch.Tensor
    mass: torch.Tensor
    top: torch.Tensor
    nll: torch.Tensor

    @classmethod
    def cat(cls, parts: list[Reference]) -> Reference:
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("lse", "mass", "top", "nll")))

    def rows(self, start: int, stop: int) -> Reference:
        return Reference(self.lse[start:stop], self.mass[start:stop], self.top[start:stop], self.nll[start:stop])


def _lse(a: torch.Tensor, m: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """log sum_v exp(a) per row in fp64, given the fp32 row maxima m [R, 1]; ``scratch`` is overwritten."""
    torch.sub(a, m, out=scratch).exp_()
    return scratch.sum(-1).log_().double().add_(m.squeeze(-1))


def _base_probs(base: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """p_b = exp(x_b - lse_b) in fp32 into ``out``: the same values for the reference and every comparison.
    (lse rounded to fp32 scales a row's p_b by one factor, which ``mass`` carries into KLD exactly.)"""
    return torch.sub(base, lse.float().unsqueeze(-1), out=out).exp_()


def _first_max_is(a: torch.Tensor, m: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """argmax(a, -1) == top per row (the first maximum, as torch.argmax), by two max reductions.

    ``top`` holds a maximum when a[top] == max; it is the *first* one unless another entry equals the
    maximum too, which a second max with a[top] masked out finds (exact ties at the top are rare; those
    rows are settled by argmax). ``a`` is restored before returning.
    """
    index = top.unsqueeze(-1)
    at_top = a.gather(-1, index)
    same = at_top == m
    a.scatter_(-1, index, float("-inf"))
    tie = same & (a.amax(-1, keepdim=True) == m)
    a.scatter_(-1, index, at_top)
    same, tie = same.squeeze(-1), tie.squeeze(-1)
    for row in tie.nonzero().flatten().tolist():
        same[row] = bool(a[row].argmax() == top[row])
    return same


def reference(base_logits: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> Reference:
    """The ``Reference`` of baseline logits [T, V] (any float dtype) for next tokens [T]."""
    rows = chunk or chunk_rows(base_logits.shape[-1], base_logits.device)
    n, vocab = base_logits.shape
    a = torch.empty(min(rows, n), vocab, dtype=torch.float32, device=base_logits.device)
    scratch = torch.empty_like(a)
    parts = []
    for start in range(0, n, rows):
        x = base_logits[start : start + rows]
        ra, rs = a[: x.shape[0]], scratch[: x.shape[0]]
        ra.copy_(x)
        lse = _lse(ra, ra.amax(-1, keepdim=True), rs)
        mass = _base_probs(x, lse, rs).sum(-1, dtype=torch.float64)
        nll = lse - ra.gather(-1, targets[start : start + rows].unsqueeze(-1)).squeeze(-1).double()
        parts.append(Reference(lse, mass, ra.argmax(-1), nll))
    return Reference.cat(parts)


def self_stats(ref: Reference) -> TokenStats:
    """The baseline against itself: what ``compare(base_logits, base_logits, ...)`` returns, without the pass."""
    zeros = torch.zeros_like(ref.nll)
    return TokenStats(ref.nll, ref.nll, zeros.double(), torch.ones_like(ref.top, dtype=torch.bool), zeros)


def compare(
    logits: torch.Tensor,
    base_rows: Callable[[int, int], torch.Tensor],
    ref: Reference,
    targets: torch.Tensor,
    chunk: int | None = None,
) -> TokenStats:
    """``token_stats`` of logits [T, V] against the baseline, from its ``Reference`` and its logits, which
    ``base_rows(start, stop)`` returns [stop - start, V] (a stored tensor's rows, or read from a file).

    Same definitions as ``token_stats`` (see the module docstring for the rewritten KLD); values agree to
    float round-off (tested to 1e-6). Runs ``chunk`` rows at a time (default ``chunk_rows``).
    """
    n, vocab = logits.shape
    if targets.shape[0] != n or ref.lse.shape[0] != n:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and the baseline's "
            f"{ref.lse.shape[0]} tokens must agree"
        )
    rows = chunk or chunk_rows(vocab, logits.device)
    a = torch.empty(min(rows, n), vocab, dtype=torch.float32, device=logits.device)
    scratch = torch.empty_like(a)
    parts = []
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        ra, rs, r = a[: stop - start], scratch[: stop - start], ref.rows(start, stop)
        base = base_rows(start, stop)
        if base.shape != ra.shape:
            raise ValueError(f"baseline rows {tuple(base.shape)} do not match logits rows {tuple(ra.shape)}")
        ra.copy_(logits[start:stop])  # x_q in fp32
        m = ra.amax(-1, keepdim=True)
        same = _first_max_is(ra, m, r.top)
        lse = _lse(ra, m, rs)
        nll = lse - ra.gather(-1, targets[start:stop].unsqueeze(-1)).squeeze(-1).double()
        d_dot_p = torch.linalg.vecdot(_base_probs(base, r.lse, rs), ra.sub_(base))  # sum_v p_b (x_q - x_b)
        kld = ((lse - r.lse) * r.mass - d_dot_p.double()).clamp_(min=0)
        dp = torch.exp(-nll) - torch.exp(-r.nll)
        parts.append(TokenStats(nll, r.nll, kld, same, dp))
    return TokenStats.cat(parts)


def mean_and_uncertainty(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error, sqrt((E[x^2] - E[x]^2) / (n - 1)) (llama.cpp ``mean_and_uncertainty``;
    0 error for 10 values or fewer, as there)."""
    n = values.numel()
    if n == 0:
        return 0.0, 0.0
    mean = values.double().mean().item()
    var = (values.double() ** 2).mean().item() - mean * mean
    return mean, math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0


def _covariance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Covariance of the two means (llama.cpp ``covariance``): (E[ab] - E[a]E[b]) / (n - 1)."""
    n = a.numel()
    if n < 10:
        return 0.0
    return ((a * b).mean().item() - a.mean().item() * b.mean().item()) / (n - 1)


def percentile(sorted_values: torch.Tensor, fraction: float) -> float:
    """llama.cpp's ``percentile``: linear interpolation at fraction * (n - 1) of the sorted values."""
    n = sorted_values.numel()
    if fraction <= 0:
        return sorted_values[0].item()
    if fraction >= 1:
        return sorted_values[-1].item()
    p = fraction * (n - 1)
    i = int(p)
    p -= i
    return (1 - p) * sorted_values[i].item() + p * sorted_values[min(i + 1, n - 1)].item()


def _median(sorted_values: torch.Tensor) -> float:
    n = sorted_values.numel()
    mid = n // 2
    return (
        sorted_values[mid].item()
        if n % 2
        else 0.5 * (sorted_values[mid].item() + sorted_values[mid - 1].item())
    )


def summarize(stats: TokenStats) -> QualityMetrics:
    """llama.cpp ``kl_divergence()``'s final statistics over all scored tokens."""
    stats = stats.cpu()
    if stats.count < 2:
        raise ValueError(f"{stats.count} scored token(s): need at least 2 for perplexity statistics")
    log_ppl, log_ppl_err = mean_and_uncertainty(stats.nll)
    log_base, log_base_err = mean_and_uncertainty(stats.nll_base)
    cov = _covariance(stats.nll, stats.nll_base)
    ratio_var = log_ppl_err**2 + log_base_err**2 - 2 * cov
    ppl, base_ppl = math.exp(log_ppl), math.exp(log_base)
    kld_mean, kld_err = mean_and_uncertainty(stats.kld)
    sorted_kld = torch.sort(stats.kld).values
    mse, mse_err = mean_and_uncertainty(stats.dp**2)
    rms = math.sqrt(mse)
    top = stats.same_top.double().mean().item()
    percentiles = {
        name: (_median(sorted_kld) if name == "median" else percentile(sorted_kld, f))
        for name, f in KLD_PERCENTILES
    }
    return QualityMetrics(
        tokens=stats.count,
        ppl=ppl,
        ppl_err=ppl * log_ppl_err,
        baseline_ppl=base_ppl,
        baseline_ppl_err=base_ppl * log_base_err,
        delta_ppl_pct=100.0 * (ppl / base_ppl - 1.0),
        ln_ppl_ratio=log_ppl - log_base,
        ln_ppl_ratio_err=math.sqrt(max(ratio_var, 0.0)),
        kld_mean=kld_mean,
        kld_err=kld_err,
        kld_max=sorted_kld[-1].item(),
        kld_percentiles=percentiles,
        top1_agreement=top,
        top1_agreement_err=math.sqrt(top * (1 - top) / (stats.count - 1)),
        rms_dp=rms,
        rms_dp_err=0.5 / rms * mse_err if rms > 0 else 0.0,
    )


def perplexity(nll: torch.Tensor) -> tuple[float, float]:
    """PPL and its error from per-token NLLs (llama.cpp ``perplexity()``: ppl * sqrt(var / (n - 1)))."""
    mean, err = mean_and_uncertainty(nll)
    return math.exp(mean), math.exp(mean) * err


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(|ref|^2 / |ref - approx|^2); inf when equal."""
    noise = (reference.double() - approx.double()).pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
