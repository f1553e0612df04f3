"""``python -m evaluation``: run methods on a model and corpus, sweep models x corpora x methods (in-process
or on Ray), list methods, show a results file (local or from a Hub dataset repo), push one to the Hub.

    python -m evaluation run --model smollm2-135m --corpus shakespeare --methods int8,int4-g32 \\
        --tokens 4096 --out results.json
    python -m evaluation sweep --plan plan.toml --ray auto --out sweep.json     # evaluation.sweep
    python -m evaluation methods
    python -m evaluation show results.json           # or: show --repo acme/quant-evals
    python -m evaluation push sweep.json --repo acme/quant-evals                # evaluation.hub

Bad input ends with one line on stderr and exit status 1 (no traceback); results finished before the
error or an interrupt (Ctrl-C, status 130) stay in ``--out`` and in the cache, so the same command
resumes where it stopped. Cheap checks come first: ``--out`` (never a directory, an unwritable place, or
an existing file that is not a quantfit results file unless ``--force``) and the numbers are refused
before torch or a model is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from evaluation import hub, sweep

DEFAULT_METHODS = "int8,int8-dyn,int4-g32,int4-g64,rtn-4b-g64-asym,rtn-3b-g64-asym,nf4"


def default_cache_dir() -> Path:
    """``$QUANTFIT_CACHE``, else ``$XDG_CACHE_HOME/quantfit`` (``~/.cache/quantfit``), + ``/evaluation``."""
    root = (
        os.environ.get("QUANTFIT_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantfit"
    )
    return Path(root) / "evaluation"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def format_table(results) -> str:
    """A fixed-width table of results; sizes in MB (10^6 bytes), fractions shown as percent."""
    head = (
        f"{'method':<18} {'bits/w':>6} {'MB meas':>8} {'MB pred':>8} {'off%':>6} {'PPL':>9} {'±':>6} "
        f"{'ΔPPL%':>7} {'KLD':>8} {'KLD99':>7} {'top1%':>6} {'RMSΔp%':>7} {'tok/s':>7} {'ms/tok':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        q = r.quality
        off = r.predicted_error_pct
        decode = "-" if r.decode_ms_per_token is None else f"{r.decode_ms_per_token:.1f}"
        bpw = "-" if r.bits_per_weight is None else f"{r.bits_per_weight:.2f}"
        lines.append(
            f"{r.method_id:<18} {bpw:>6} {_mb(r.measured_bytes):>8} {_mb(r.predicted_bytes):>8} "
            f"{'-' if off is None else f'{off:+.2f}':>6} {q.ppl:>9.3f} {q.ppl_err:>6.3f} "
            f"{q.delta_ppl_pct:>+7.2f} {q.kld_mean:>8.5f} {q.kld_percentiles.get('99', float('nan')):>7.4f} "
            f"{100 * q.top1_agreement:>6.2f} "
            f"{100 * q.rms_dp:>7.3f} {r.tokens_per_s:>7.0f} {decode:>7}"
        )
    return "\n".join(lines)


def format_context(results) -> str:
    """What the numbers were measured on, and every distinct note, once."""
    if not results:
        return ""
    r = results[0]
    w, env = r.windows, r.env
    lines = [
        f"model {r.model.id} ({r.model.kind}, {r.model.dtype}), corpus {r.corpus['name']} "
        f"sha256 {r.corpus['sha256'][:12]}, {w.n_windows} windows x {w.n_ctx} tokens, scoring "
        f"{w.scoring} ({w.scored_tokens} tokens scored); {env['device']} {env.get('device_name', '')}, "
        f"{env.get('threads')} threads, torch {env['torch']}, transformers {env['transformers']}",
        "bits/w: measured bytes of the re-stored matrices x 8 / their weights; MB = 10^6 bytes; off%: "
        "measured "
        "vs the calculator's prediction; KLD in nats (llama.cpp definitions); tok/s: evaluation tokens per "
        "second incl. scoring; ms/tok: batch-1 decode.",
    ]
    seen: list[str] = []
    for res in results:
        seen += [n for n in res.notes if n not in seen]
    lines += [f"note: {n}" for n in seen]
    return "\n".join(lines)


class _Bars:
    """One tqdm bar per method, driven by the runner's progress(method_id, done, total) callback."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def __call__(self, method_id: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(method_id)
        if bar is None:
            bar = self.bars[method_id] = tqdm(
                total=total,
                desc=f"{method_id:<18}",
                unit="window",
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _cmd_run(args: argparse.Namespace) -> int:
    # Cheap checks first: the output path and the numbers fail here, before torch or a model is loaded.
    from calculator.units import check_int
    from evaluation.results import check_results_output

    out = check_results_output(args.out, force=args.force) if args.out else None
    check_int("--threads", args.threads, low=0, high=4096, example="4, or 0 for torch's choice")
    if args.calibration_samples is not None and args.calibration_samples < 1:
        raise ValueError(f"--calibration-samples {args.calibration_samples} must be at least 1 (e.g. 4)")

    import torch

    from evaluation.methods import BaselineConfig, parse_methods
    from evaluation.options import DEFAULT_CALIBRATION_SAMPLES, EvaluateOptions
    from evaluation.results import save_results
    from evaluation.runner import evaluate

    options = EvaluateOptions(
        n_ctx=args.ctx,
        max_tokens=args.tokens,
        scoring=args.scoring,
        device=args.device,
        dtype=args.dtype,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        decode_tokens=args.decode_tokens,
        calibration_samples=args.calibration_samples or DEFAULT_CALIBRATION_SAMPLES,
        device_map=args.device_map,
        max_memory=args.max_memory,
        logits_storage=args.logits_storage,
    )
    configs = parse_methods(args.methods)
    if not any(isinstance(c, BaselineConfig) for c in configs):
        configs.insert(0, BaselineConfig())  # the reference row: costs no extra pass over the windows
    if args.threads:
        torch.set_num_threads(args.threads)
    done = []

    def keep(result) -> None:
        done.append(result)
        if out is not None:
            save_results(out, done)
        if not args.quiet:
            print(
                f"{result.method_id}: PPL {result.quality.ppl:.3f} ({result.quality.delta_ppl_pct:+.2f}%), "
                f"KLD {result.quality.kld_mean:.5f}, "
                f"{_mb(result.measured_bytes)} MB",
                file=sys.stderr,
            )

    bars = _Bars(not args.quiet)
    try:
        evaluate(args.model, args.corpus, configs, options, progress=bars, on_result=keep)
    except KeyboardInterrupt:
        bars.close()
        where = f" in {out}" if out and done else ""
        print(
            f"interrupted: {len(done)} result(s) kept{where}; run the same command to resume", file=sys.stderr
        )
        return 130
    finally:
        bars.close()
    if args.json:
        from evaluation.results import results_document

        print(json.dumps(results_document(done), indent=1))
    else:
        print(format_table(done))
        print(format_context(done))
        if out is not None:
            print(f"results: {out}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from evaluation.methods import available_methods, nominal_bits

    rows = []
    for config in available_methods():
        fmt = config.calculator_format
        bits = nominal_bits(config)
        rows.append(
            {
                "method": config.method_id,
                "family": str(config.family),
                "calculator_format": fmt,
                "nominal_bits_per_weight": bits,
                "needs_calibration": config.needs_calibration,
                "description": config.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'method':<24} {'family':<14} {'format':<18} {'bits/w':>6}  description")
    for row in rows:
        bits = "-" if row["nominal_bits_per_weight"] is None else f"{row['nominal_bits_per_weight']:.3f}"
        print(
            f"{row['method']:<24} {row['family']:<14} {row['calculator_format'] or '(dtype)':<18} {bits:>6}  "
            f"{row['description']}"
        )
    print(
        "\nAny rtn-{2..8}b-{ch|g<size>}[-asym][-a<bits>] and int4-g{32,64,128,256} are accepted; "
        "bits/w is the "
        "format's nominal figure (per-channel: codes only)."
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from evaluation.results import load_results

    if args.repo:
        loaded = hub.repo_results(args.repo, filename=args.path, revision=args.revision)
        print(hub.describe(loaded), file=sys.stderr)
        results = loaded.results
    elif args.path is None:
        raise ValueError("show needs a results file, or --repo OWNER/NAME for a Hub dataset repo")
    else:
        results = load_results(args.path)
    print(format_table(results))
    print(format_context(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description="Quantize real models and measure the quality drift."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate methods on a model and corpus")
    run.add_argument(
        "--model",
        default="smollm2-135m",
        help="preset (smollm2-135m), model folder, .gguf file or Hub id (default: %(default)s)",
    )
    run.add_argument(
        "--corpus", default="shakespeare", help="shakespeare, wikitext2 or a text file (default: %(default)s)"
    )
    run.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated method ids; see `python -m evaluation methods` (default: %(default)s)",
    )
    run.add_argument(
        "--tokens",
        type=int,
        default=4096,
        help="token budget: windows = tokens // ctx (default: %(default)s)",
    )
    run.add_argument("--ctx", type=int, default=512, help="tokens per window (default: %(default)s)")
    run.add_argument(
        "--scoring",
        choices=["whole", "second-half"],
        default="whole",
        help="score every prediction, or the second half as llama-perplexity (default: %(default)s)",
    )
    run.add_argument(
        "--dtype", default="bf16", help="baseline dtype: bf16, fp32 or fp16 (default: %(default)s)"
    )
    run.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    run.add_argument("--device-map", help="spread the model with accelerate: auto, balanced, balanced_low_0 or "
                     "sequential (GPUs, then CPU, then disk); each method then loads its own copy")
    run.add_argument("--max-memory", help="bytes per device for --device-map, e.g. 0=70GiB,1=70GiB,cpu=200GiB")
    run.add_argument("--logits-storage", choices=["auto", "memory", "file"], default="auto",
                     help="where the baseline logits wait: memory, a file read back in chunks, or auto "
                     "(a file above 512 MiB; default)")
    run.add_argument("--decode-tokens", type=int, default=16, help="decode steps timed per method; 0 skips")
    run.add_argument(
        "--calibration-samples", type=int, default=None,
        help="GPTQ/AWQ calibration sequences of 512 tokens, disjoint from the evaluation text "
        "(default: the runner's 32; AWQ on a CPU takes minutes per sample: try 4)",
    )
    run.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--out", help="write results JSON here (after every method, atomically); an existing file "
                     "must be a quantfit results file")
    run.add_argument("--force", action="store_true",
                     help="let --out replace an existing file that is not a quantfit results file")
    run.add_argument("--cache-dir", type=Path, help=f"result cache (default: {default_cache_dir()})")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    run.add_argument("--json", action="store_true", help="print the results document instead of a table")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)
    methods = sub.add_parser("methods", help="list methods and the calculator format of each")
    methods.add_argument("--json", action="store_true")
    methods.set_defaults(func=_cmd_methods)
    show = sub.add_parser("show", help="print a results file (or a Hub dataset repo's) as a table")
    show.add_argument("path", help="a results JSON file, or with --repo the file's name in the repo (optional)",
                      nargs="?")
    show.add_argument("--repo", help="read from this Hub dataset repo (OWNER/NAME) instead of a local file")
    show.add_argument("--revision", help="branch, tag or commit of --repo (default: main)")
    show.set_defaults(func=_cmd_show)
    sweep.register(sub)
    hub.register(sub)
    return parser


def _quiet_library_logs() -> None:
    """torchao and bitsandbytes log missing optional CUDA/kernel extensions at import: not actionable."""
    import logging

    for name in ("torchao", "bitsandbytes", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_library_logs()
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
