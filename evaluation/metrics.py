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
"""

from __future__ import annotations

import math
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
