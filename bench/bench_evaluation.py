"""Speed of the evaluation engine: per method eval tokens/s, batch-1 decode ms/token against the baseline,
peak RSS; and the same windows through a plain transformers forward, so the harness overhead shows.

    .venv/bin/python bench/bench_evaluation.py --model smollm2-135m --tokens 2048 \\
        --methods int8,int8-dyn,int4-g32,nf4

Harness overhead: the baseline scored through ``scoring.score_model`` (forward + log-softmax, KLD and
agreement against the stored baseline logits) against ``model(input_ids)`` alone on the same windows;
the best of ``--repeats`` runs of each, alternated. Goal: harness >= 0.95 x plain. Sizes: MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from evaluation import runner, scoring
from evaluation.methods import parse_methods
from evaluation.options import EvaluateOptions


def plain_forward(baseline: scoring.Baseline) -> None:
    """``model(input_ids=window)`` over every window: nothing else."""
    with torch.inference_mode():
        for i in range(baseline.windows.n_windows):
            baseline.model(input_ids=baseline.windows.tokens[i : i + 1].to(baseline.device), use_cache=False)
    if baseline.device.type == "cuda":
        torch.cuda.synchronize(baseline.device)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``; CPU time is robust to other load on the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--methods", default="int8,int8-dyn,int4-g32,nf4")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    options = EvaluateOptions(
        n_ctx=args.ctx, max_tokens=args.tokens, device=args.device, dtype=args.dtype, decode_tokens=args.decode_tokens
    )
    baseline = scoring.prepare_baseline(args.model, args.corpus, options)
    n_tokens = baseline.windows.n_windows * baseline.windows.n_ctx
    plain, harness = [], []
    for _ in range(args.repeats):
        plain.append(timed(lambda: plain_forward(baseline)))
        harness.append(timed(lambda: scoring.score_model(baseline, baseline.model)))
    plain_tps, harness_tps = n_tokens / min(w for w, _ in plain), n_tokens / min(w for w, _ in harness)
    cpu_ratio = min(c for _, c in plain) / min(c for _, c in harness)

    results = runner.evaluate(None, None, ["baseline", *parse_methods(args.methods)], options, baseline=baseline)
    base_decode = results[0].decode_ms_per_token
    env = results[0].env
    print(
        f"{baseline.source.model_id} {args.dtype} on {env['device']} ({env['device_name']}, {env['threads']} "
        f"threads), torch {env['torch']}; {baseline.windows.n_windows} windows x {args.ctx} tokens"
    )
    print(
        f"{'method':<18} {'eval tok/s':>10} {'decode ms/tok':>13} {'x baseline':>10} {'peak RSS MB':>11} "
        f"{'size MB':>8}"
    )
    for r in results:
        ratio = r.decode_ms_per_token / base_decode if base_decode else float("nan")
        rss = "-" if r.peak_rss_bytes is None else f"{r.peak_rss_bytes / 1e6:.0f}"
        print(
            f"{r.method_id:<18} {r.tokens_per_s:>10.0f} {r.decode_ms_per_token:>13.1f} {ratio:>10.2f} "
            f"{rss:>11} {r.measured_bytes / 1e6:>8.1f}"
        )
    print(
        f"plain transformers forward: {plain_tps:.0f} tok/s; harness (forward + metrics): "
        f"{harness_tps:.0f} tok/s; "
        f"ratio {harness_tps / plain_tps:.3f} wall, {cpu_ratio:.3f} by process CPU time (goal >= 0.95); "
        f"best of {args.repeats}"
    )
    print(f"peak RSS scope: {results[0].peak_rss_scope} (includes the baseline model and its stored logits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
