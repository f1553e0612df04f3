"""Will it fit? page: model + format + GPU(s) + context + batch + KV cache type -> a verdict, where the
bytes go, the longest context and best format that fit, a decode-speed estimate and the catalogue GPUs
that fit. Every number comes from ``calculator.fit`` (and the modules it cites); this page only reads
widgets, calls it once per distinct input (cached) and lays the answer out.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from calculator import units
from calculator.fit import FitOptions, FitResult, Verdict, as_setup, fit
from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from calculator.hardware import GpuSetup, GpuSpec
from calculator.runtime import DEFAULT_UBATCH, CacheType
from calculator.search import best_format, gpus_that_fit
from calculator.speed import DECODE_BANDWIDTH_EFFICIENCY, PREFILL_COMPUTE_EFFICIENCY
from calculator.training import PEFT_DEFAULT_TARGETS, Optimizer, Precision, TrainingMode
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.pickers import (
    CONFIG,
    HUB,
    MODEL_KEYS,
    PRESET,
    ModelChoice,
    gpu_names,
    gpu_select,
    model_picker,
    resolve_subject,
)
from ui.share import page_title
from ui.url_state import warn_unknown_url_value

# The formats people pick most, first; then every GGUF file type and every other weight format.
_COMMON_FORMATS = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q3_K_M", "Q2_K", "IQ4_XS", "IQ2_XS", "fp16", "bf16",
                   "fp8_e4m3", "int8", "int4", "gptq-4b-g128", "awq-4b-g128", "nf4", "nf4-dq", "mxfp4",
                   "exl2-4.0")
FORMAT_OPTIONS = list(dict.fromkeys((*_COMMON_FORMATS, *FILE_TYPES, *FORMATS)))

MODES = {"Inference": TrainingMode.INFERENCE, "Full fine-tune": TrainingMode.FULL, "LoRA": TrainingMode.LORA,
         "QLoRA": TrainingMode.QLORA}
KV_TYPES = [c.value for c in CacheType]
OPTIMIZERS = [o.value for o in Optimizer]
PRECISIONS = [p.value for p in Precision]
MAX_CONTEXT_TOKENS = 10_000_000
MAX_BATCH = 4096
MAX_GPUS = 64
PAGE_KEYS = (*MODEL_KEYS, "fmt", "gpu", "gpu_custom", "n_gpus", "ctx", "batch", "kv", "mode", "fa",
             "ubatch", "cpu_ram_gb", "lora_rank", "lora_targets", "optim", "precision", "ckpt")


def _setup_and_spec(ref, gpu, n_gpus, cpu_ram_bytes):
    spec = resolve_subject(ref)
    if isinstance(spec, int):
        raise ValueError("a fit needs the architecture (layers, KV heads): pick a preset, a Hub id or a "
                         "config.json")
    return spec, GpuSetup(gpu, n_gpus, cpu_ram_bytes)


@st.cache_data(max_entries=256, show_spinner=False)
def evaluate(ref: tuple[str, str], fmt: str, gpu: GpuSpec, n_gpus: int, context: int, batch: int,
             cpu_ram_bytes: int | None, options: tuple[tuple[str, object], ...]
             ) -> tuple[FitResult, tuple[FitResult, ...]]:
    """(fit, gpus_that_fit) for one set of inputs (``options``: FitOptions fields as pairs). A plain tuple of
    calculator dataclasses: st.cache_data pickles it, and a class defined in a page script (run as
    ``__main__``) would not unpickle."""
    spec, setup = _setup_and_spec(ref, gpu, n_gpus, cpu_ram_bytes)
    opts = FitOptions(**dict(options))
    result = fit(spec, fmt, setup, context, batch, options=opts)
    fitting = gpus_that_fit(spec, fmt, context, batch, options=opts, count=n_gpus, cpu_ram_bytes=cpu_ram_bytes)
    return result, tuple(fitting)


@st.cache_data(max_entries=256, show_spinner=False)
def evaluate_best(ref: tuple[str, str], fmt: str, gpu: GpuSpec, n_gpus: int, context: int, batch: int,
                  cpu_ram_bytes: int | None, options: tuple[tuple[str, object], ...]) -> FitResult | None:
    """best_format for the same inputs. Separate because it sizes ~30 formats (a GGUF recipe replay
    each, ~0.5 s for a 405B model the first time): the page draws everything else first."""
    spec, setup = _setup_and_spec(ref, gpu, n_gpus, cpu_ram_bytes)
    return best_format(spec, setup, context, batch, options=FitOptions(**dict(options)))


def _verdict(r: FitResult, setup: GpuSetup) -> None:
    where = f"{r.gpu_count}× {r.gpu}" if r.gpu_count > 1 else r.gpu
    use = (f"{units.fmt_gb(r.per_device_bytes)} of {units.fmt_gb(r.usable_bytes)} usable per GPU "
           f"({units.fmt_gib(r.per_device_bytes)} of {units.fmt_gib(r.usable_bytes)})")
    if r.verdict is Verdict.FITS:
        st.success(f"**Fits** on {where}: {use}, {units.fmt_gb(r.headroom_bytes)} free.",
                   icon=":material/check_circle:")
    elif r.verdict is Verdict.OFFLOAD:
        offloaded = r.n_layers - r.gpu_layers
        cpu = units.fmt_gb(r.cpu_offload_bytes)
        st.warning(f"**Offload {offloaded} layers** to the CPU: {r.gpu_layers} of {r.n_layers} blocks on "
                   f"{where} (llama.cpp `-ngl {r.gpu_layers}`), {cpu} in CPU RAM. GPU side: {use}.",
                   icon=":material/swap_horiz:")
    else:
        st.error(f"**Does not fit** on {where}: needs {units.fmt_gb(r.per_device_bytes)} per GPU, "
                 f"{units.fmt_gb(r.usable_bytes)} usable ({units.fmt_gb(-r.headroom_bytes)} short). "
                 "Try a smaller format, a shorter context, a quantized KV cache or more GPUs.",
                 icon=":material/block:")


def _segments(r: FitResult) -> list[tuple[str, int]]:
    """(label, bytes) stacked in the bar, straight from the FitResult breakdown."""
    if r.training is not None:
        t = r.training
        return [("weights", t.weight_bytes), ("gradients", t.gradient_bytes),
                ("optimizer states", t.optimizer_bytes), ("activations", t.activation_bytes),
                ("logits", t.logits_bytes), ("runtime overhead", r.overhead_bytes)]
    return [("weights", r.weight_bytes), ("KV cache", r.kv_cache_bytes),
            ("runtime overhead", r.overhead_bytes)]


_COLORS = {"weights": "#4C78A8", "KV cache": "#F58518", "runtime overhead": "#B7B7B7", "gradients": "#E45756",
           "optimizer states": "#72B7B2", "activations": "#54A24B", "logits": "#EECA3B"}


def _chart(r: FitResult, setup: GpuSetup, title: str) -> go.Figure:
    fig = go.Figure()
    for label, n_bytes in _segments(r):
        fig.add_bar(y=["this run"], x=[units.to_gb(n_bytes)], name=label, orientation="h",
                    marker_color=_COLORS[label], customdata=[[units.to_gib(n_bytes), n_bytes]],
                    text=[f"{label}<br>{units.to_gb(n_bytes):,.2f} GB"], textposition="inside",
                    insidetextanchor="middle", textangle=0,
                    hovertemplate=f"<b>{label}</b><br>%{{x:,.2f}} GB (%{{customdata[0]:,.2f}} GiB)<br>"
                                  "%{customdata[1]:,} bytes<extra></extra>")
    fig.add_vline(x=units.to_gb(setup.usable_bytes), line_dash="dash", line_color="#333", line_width=2,
                  annotation_text=f"{setup.label}: {units.fmt_gb(setup.usable_bytes)} usable",
                  annotation_position="top")
    fig.update_layout(title=title, barmode="stack", height=240, margin={"t": 70, "b": 40, "l": 10, "r": 10},
                      xaxis_title="memory (GB = 10⁹ bytes)", yaxis={"visible": False},
                      legend={"orientation": "h", "y": -0.45, "traceorder": "normal"},
                      uniformtext={"minsize": 9, "mode": "hide"})
    return fig


def _gpu_rows(fitting: tuple[FitResult, ...]) -> list[dict]:
    rows = []
    for g in fitting:
        rows.append({"gpu": g.gpu, "count": g.gpu_count, "usable_bytes": g.usable_bytes,
                     "usable_gb": units.to_gb(g.usable_bytes), "per_device_bytes": g.per_device_bytes,
                     "per_device_gb": units.to_gb(g.per_device_bytes), "headroom_pct": g.headroom_pct,
                     "decode_tokens_per_s": g.decode_tokens_per_s})
    return rows


def _inputs() -> tuple[ModelChoice | None, dict]:
    choice = model_picker(default_source=PRESET, sources=(PRESET, HUB, CONFIG))
    c = st.columns([2, 2, 1, 1.3, 1, 1.2])
    warn_unknown_url_value("fmt", FORMAT_OPTIONS, "format")
    fmt = c[0].selectbox("Format", FORMAT_OPTIONS, index=0, key="fmt", bind="query-params",
                         help="A GGUF file type (Q4_K_M...) or any weight format. Type to search.")
    with c[1]:
        gpu = gpu_select()
    n_gpus = c[2].number_input("GPUs", 1, MAX_GPUS, 1, key="n_gpus", bind="query-params",
                               help="Identical GPUs, tensor-parallel split")
    context = c[3].number_input("Context (tokens)", 1, MAX_CONTEXT_TOKENS, 8192, step=1024, key="ctx",
                                bind="query-params")
    batch = c[4].number_input("Batch", 1, MAX_BATCH, 1, key="batch", bind="query-params",
                              help="Sequences decoded together")
    kv = c[5].selectbox("KV cache", KV_TYPES, index=KV_TYPES.index("fp16"), key="kv", bind="query-params",
                        help="llama.cpp --cache-type-k/-v; q8_0 halves the cache")
    m1, m2 = st.columns(2, vertical_alignment="bottom")
    mode = m1.segmented_control("Mode", list(MODES), default="Inference", key="mode", bind="query-params",
                                required=True,
                                help="Training adds gradients, optimizer states and activations")
    with m2.expander("Runtime and training options"):
        o = st.columns(4)
        flash = o[0].checkbox("Flash attention", True, key="fa", bind="query-params")
        ubatch = o[1].number_input("Prompt tokens per step", 1, 65536, DEFAULT_UBATCH, key="ubatch",
                                   bind="query-params",
                                   help="llama.cpp -ub (micro-batch); sets the compute buffer")
        cpu_ram_gb = o[2].number_input("CPU RAM (GB)", 0, 100_000, 0, key="cpu_ram_gb", bind="query-params",
                                       help="For the offload verdict; 0 = not checked")
        ckpt = o[3].checkbox("Gradient checkpointing", False, key="ckpt", bind="query-params")
        t = st.columns(4)
        lora_rank = t[0].number_input("LoRA rank", 1, 4096, 16, key="lora_rank", bind="query-params")
        targets = t[1].text_input("LoRA targets", ",".join(PEFT_DEFAULT_TARGETS), key="lora_targets",
                                  bind="query-params", help="Module names, comma-separated, or all-linear")
        optim = t[2].selectbox("Optimizer", OPTIMIZERS, key="optim", bind="query-params")
        precision = t[3].selectbox("Precision", PRECISIONS, key="precision", bind="query-params",
                                   help="Full fine-tune: how weights and gradients are held")
    options = (("mode", MODES[mode].value), ("kv_type", kv), ("flash_attention", flash),
               ("ubatch", int(ubatch)), ("gradient_checkpointing", ckpt), ("lora_rank", int(lora_rank)),
               ("lora_targets", tuple(x.strip() for x in targets.split(",") if x.strip())),
               ("optimizer", optim), ("precision", precision))
    cpu_ram_bytes = int(cpu_ram_gb) * units.GB if cpu_ram_gb else None
    return choice, {"fmt": fmt, "gpu": gpu, "n_gpus": int(n_gpus), "context": int(context),
                    "batch": int(batch), "cpu_ram_bytes": cpu_ram_bytes, "options": options}


def main() -> None:
    page_title("Will it fit?", PAGE_KEYS)
    verdict_box = st.container()
    choice, inputs = _inputs()
    if choice is None or inputs["gpu"] is None:
        return
    setup = as_setup(inputs["gpu"], inputs["n_gpus"], inputs["cpu_ram_bytes"])
    r, fitting = evaluate(choice.ref, **inputs)
    with verdict_box:
        st.caption(f"{choice.label} · {r.format} · {setup.label} · {r.context:,} tokens × batch "
                   f"{r.batch} · {r.mode.value} · model from {choice.short_source}", help=choice.source)
        _verdict(r, setup)
        for w in r.warnings:
            st.warning(w, icon=":material/warning:")

    m = st.columns(4)
    if r.max_context is None:
        m[0].metric("Max context (tokens)", "n/a", border=True,
                    help="The model config gives no maximum context")
    else:
        m[0].metric("Max context (tokens)", f"{r.max_context:,}" if r.max_context else "none", border=True,
                    help="Longest context (up to the model's maximum) that fits entirely on the GPU(s) at "
                         "this batch and KV cache type; none: not even one token")
    best_box = m[1].empty()  # filled last (see evaluate_best); "…" until then
    best_box.metric("Best format that fits", "…", border=True)
    if r.decode_tokens_per_s is not None:
        m[2].metric("Decode (tokens/s)", f"~{r.decode_tokens_per_s:,.1f}", border=True,
                    help=f"Memory-bandwidth roofline × {DECODE_BANDWIDTH_EFFICIENCY} efficiency "
                         "(calculator.speed cites the llama.cpp measurements)")
    else:
        m[2].metric("Decode (tokens/s)", "n/a", border=True,
                    help="Not estimated: training mode, no bandwidth for this GPU, or it does not fit")
    m[3].metric("Prefill (s)", f"~{r.prefill_seconds:,.2f}" if r.prefill_seconds is not None else "n/a",
                border=True, help=f"Whole context: compute roofline × {PREFILL_COMPUTE_EFFICIENCY} "
                                  "efficiency (FLOPs per token from Kaplan et al. 2020)")

    fig = _chart(r, setup, f"{choice.label} · {r.format} · {r.context:,} tokens on {setup.label}")
    st.plotly_chart(fig, key="fit_chart", config={"displaylogo": False})
    breakdown = [{"part": label, "bytes": n, "gb": units.to_gb(n), "gib": units.to_gib(n)}
                 for label, n in _segments(r)]
    breakdown.append({"part": "total", "bytes": r.total_bytes, "gb": units.to_gb(r.total_bytes),
                      "gib": units.to_gib(r.total_bytes)})
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Where the bytes go**")
        st.dataframe(breakdown, hide_index=True, key="fit_breakdown", column_config={
            "part": "Part", "bytes": st.column_config.NumberColumn("Bytes", format="localized"),
            "gb": st.column_config.NumberColumn("GB (10⁹ B)", format="%.2f"),
            "gib": st.column_config.NumberColumn("GiB (2³⁰ B)", format="%.2f")})
        st.caption("Sources: weights calculator.memory; KV cache and overhead calculator.runtime (llama.cpp "
                   "llama-kv-cache.cpp, CUDA context measurements); training calculator.training.")
    gpu_rows = _gpu_rows(fitting)
    with right:
        st.markdown(f"**Catalogue GPUs that fit** ({len(gpu_rows)} of {len(gpu_names())}, "
                    f"{inputs['n_gpus']} each)")
        st.dataframe(gpu_rows, hide_index=True, key="fit_gpus", height=280, column_config={
            "gpu": "GPU", "count": None, "usable_bytes": None, "per_device_bytes": None,
            "usable_gb": st.column_config.NumberColumn("Usable GB", format="%.1f"),
            "per_device_gb": st.column_config.NumberColumn("Used GB / GPU", format="%.2f"),
            "headroom_pct": st.column_config.ProgressColumn("Free", format="%.0f%%", min_value=0,
                                                            max_value=100),
            "decode_tokens_per_s": st.column_config.NumberColumn("Decode tokens/s", format="%.0f")})

    best = evaluate_best(choice.ref, **inputs)
    best_box.metric("Best format that fits", best.format if best else "none", border=True,
                    help="Highest quality (lowest KL divergence on llama.cpp's Llama-3-8B scoreboard) that "
                         "fits entirely on the GPU(s)")

    stem = f"quantfit-fit-{choice.label}-{r.format}-{r.gpu}".replace(" ", "_").replace("/", "_")
    meta = {"fit": r.to_dict(), "best_format": best.format if best else None, "model_source": choice.source}
    with download_bar():
        table_downloads(breakdown, stem=stem, key="fit_breakdown_dl", meta=meta, label="Breakdown")
        table_downloads(gpu_rows, stem=f"{stem}-gpus", key="fit_gpus_dl", meta=meta, label="GPUs that fit")
        figure_downloads(fig, stem=stem, key="fit_chart_dl")


run_page(main)
