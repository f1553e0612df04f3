"""The evaluation engine on a GPU: a 3-method sweep through local Ray with ``num_gpus=1`` tasks, checked
against the same sweep in this process, and the harness ratio on CUDA.

    .venv/bin/python -m bench.bench_evaluation_gpu                       # SmolLM2, 2 x 512 tokens, 3 methods
    .venv/bin/python -m bench.bench_evaluation_gpu --model Qwen/Qwen2.5-0.5B --methods nf4,rtn-4b-g128-asym,int4-g128

Run it as a module from the repository root (``bench`` is a namespace package: the harness measurement is
``bench.bench_evaluation.harness_ratio``, shared with the CPU bench).

Prints the harness ratio (``model(input_ids)`` alone vs forward + metrics, best of 3 alternated, CUDA
synchronised), the Ray sweep's table and dashboard link, and the largest difference of any quality
figure between the Ray and the in-process results (expected: 0, or GPU round-off ~1e-6 when the two
processes pick different kernels). Exits 2 when torch sees no CUDA device.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_evaluation import harness_ratio
from evaluation import scoring
from evaluation.cli import format_table
from evaluation.options import EvaluateOptions
from evaluation.sweep import SweepRecorder, make_plan, run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default="int4-g128,rtn-4b-g64-asym,nf4")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--dtype", default="bf16")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: this check needs a GPU", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")

    options = EvaluateOptions(n_ctx=args.ctx, max_tokens=args.tokens, device="cuda", dtype=args.dtype, decode_tokens=0)
    baseline = scoring.prepare_baseline(args.model, "shakespeare", options)
    plain, harness, ratio, _ = harness_ratio(baseline, 3)
    print(f"harness on CUDA: plain forward {plain:.0f} tok/s, forward + metrics {harness:.0f} tok/s, ratio {ratio:.3f} "
          "(goal >= 0.95)")  # fmt: skip
    baseline.close()
    del baseline
    torch.cuda.empty_cache()

    settings = {"models": args.model, "methods": args.methods, "tokens": args.tokens, "ctx": args.ctx,
                "dtype": args.dtype, "device": "cuda", "decode_tokens": 0}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="quantfit-gpu-") as tmp:
        plan = make_plan({**settings, "cache_dir": Path(tmp) / "in-process"}, None, default_cache=None)
        local = SweepRecorder(plan)
        start = time.perf_counter()
        run_sweep(plan, local)
        print(f"in process: {len(local.results)} cells in {time.perf_counter() - start:.1f} s")

        import ray

        ray.init(num_cpus=2, num_gpus=1, log_to_driver=False)
        try:
            ray_plan = make_plan({**settings, "cache_dir": Path(tmp) / "ray"}, {"address": "auto", "task_gpus": 1},
                                 default_cache=None)  # fmt: skip
            remote = SweepRecorder(ray_plan, Path(tmp) / "ray.json")
            start = time.perf_counter()
            run_sweep(ray_plan, remote)
            print(f"Ray, num_gpus=1 tasks: {len(remote.results)} cells in {time.perf_counter() - start:.1f} s")
        finally:
            ray.shutdown()
    results, failures = remote.ordered()
    print(format_table(results))
    for f in failures:
        print(f"failed: {f.method_id}: {f.error} ({f.attempts} attempts)")
    expected = {r.method_id: r for r in local.ordered()[0]}
    worst = 0.0
    for r in results:
        q, p = r.quality, expected[r.method_id].quality
        for f in dataclasses.fields(q):
            a, b = getattr(q, f.name), getattr(p, f.name)
            if isinstance(a, float):
                worst = max(worst, abs(a - b) / max(1.0, abs(b)))
    print(f"largest difference Ray vs in-process, any quality figure: {worst:.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
