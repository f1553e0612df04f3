"""Real-model checks on SmolLM2-135M-Instruct (the offline GGUF preset) and the Shakespeare corpus.

``test_smollm2_quality_ladder`` is marked ``slow`` and ``ci``: CI runs it (about 1.5 minutes on 2 cores:
2 windows of 512 tokens, four methods). The other slow tests run with ``-m slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluation import runner, scoring
from evaluation.metrics import summarize
from evaluation.options import EvaluateOptions

GPL3 = Path("/usr/share/common-licenses/GPL-3")


@pytest.fixture(scope="module")
def smollm2_baseline():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return scoring.prepare_baseline("smollm2-135m", "shakespeare", EvaluateOptions(n_ctx=512, max_tokens=1024))


@pytest.mark.slow
@pytest.mark.ci
def test_smollm2_quality_ladder(smollm2_baseline):
    results = runner.evaluate(
        None,
        None,
        ["int8", "int4-g64", "rtn-3b-g64-asym", "int4-g32"],
        EvaluateOptions(n_ctx=512, max_tokens=1024, decode_tokens=2),
        baseline=smollm2_baseline,
    )
    by_id = {r.method_id: r for r in results}
    int8, int4, int3, int4_g32 = (by_id[m] for m in ("int8", "int4-g64", "rtn-3b-g64-asym", "int4-g32"))
    assert int8.windows.scored_tokens == int8.quality.tokens == 2 * 511
    assert 0 <= abs(int8.quality.delta_ppl_pct) < 1.0
    assert int3.quality.kld_mean > int4.quality.kld_mean > int8.quality.kld_mean > 0
    for r in results:
        assert r.predicted_bytes is not None and abs(r.predicted_error_pct) < 2.0, r.method_id
        assert any("Q4_1" in note and "artifact of this model" in note for note in r.notes)
        assert not r.fallbacks  # 576 and 1536 are multiples of 64
    # The Q4_1 artifact itself: asymmetric int4 on the same 32-weight groups is nearly lossless.
    assert int4_g32.quality.kld_mean < 0.1 * int4.quality.kld_mean


# bf16 GPL-3 PPL per ATen CPU kernel set (``torch.backends.cpu.get_cpu_capability()``), same code, same
# torch 2.13.0 / transformers 5.24.0: bf16 elementwise ops and reductions round differently per vector
# width. AVX2: measured 2026-12-02 (this AMD EPYC VM has no AVX-512); DEFAULT: the same VM with
# ATEN_CPU_CAPABILITY=default; AVX512: pinned on 2026-11-27 (commit ea28f18) on a host whose code, on this
# VM, gives 23.764: by elimination that host ran the AVX-512 kernels. fp32 is 23.762 on all of them.
BF16_GPL3_PPL = {"AVX2": 23.764, "DEFAULT": 23.840, "AVX512": 23.793}


@pytest.mark.slow
@pytest.mark.skipif(not GPL3.is_file(), reason="needs /usr/share/common-licenses/GPL-3 (Debian base-files)")
@pytest.mark.parametrize(("dtype", "ppl"), [("bf16", BF16_GPL3_PPL), ("fp32", 23.762)])
def test_smollm2_gpl3_perplexity(dtype, ppl):
    """First 2048 tokens of GPL-3 in 512-token windows, as the issue measured (fp32 23.762 reproduced).

    The issue's bf16 figure, 23.736, comes from ``model.to(torch.bfloat16)``, which also rounds RoPE's
    ``inv_freq`` buffer to bf16; loading with ``dtype=bfloat16`` keeps that buffer in fp32 (transformers'
    intent). The bf16 figure then depends on the CPU's ATen kernels (``BF16_GPL3_PPL``), not on this
    code: ea28f18's harness gives 23.764 on an AVX2 CPU as today's does, with bit-identical weights,
    buffers and logits.
    """
    if isinstance(ppl, dict):
        kernels = torch.backends.cpu.get_cpu_capability()
        if kernels not in ppl:
            pytest.skip(f"no bf16 figure pinned for ATen CPU kernels {kernels}")
        ppl = ppl[kernels]
    options = EvaluateOptions(n_ctx=512, max_tokens=2048, dtype=dtype)
    baseline = scoring.prepare_baseline("smollm2-135m", str(GPL3), options)
    assert summarize(baseline.stats).ppl == pytest.approx(ppl, abs=0.002)
    assert baseline.model.model.rotary_emb.inv_freq.dtype == torch.float32


@pytest.mark.slow
def test_smollm2_int4_group_128_falls_back_per_tensor(smollm2_baseline):
    options = EvaluateOptions(n_ctx=512, max_tokens=1024, decode_tokens=0)
    (r,) = runner.evaluate(None, None, ["int4-g128"], options, baseline=smollm2_baseline)
    # Hidden size 576 = 4.5 x 128: q/k/v/o/gate/up of all 30 layers use group 64, down_proj (1536) keeps 128.
    assert r.fallbacks == [
        {
            "reason": "in_features 576 is not a multiple of 128: int4 group 64",
            "count": 180,
            "modules": r.fallbacks[0]["modules"],
        }
    ]
