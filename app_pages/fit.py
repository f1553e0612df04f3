"""Will it fit? page: model + format + GPU(s) + context + batch + KV cache type -> a verdict first, the
changes that make it fit (buttons that set the widgets), the longest context and best format that fit, a
decode-speed estimate, then two views: where this run's bytes go (chart, breakdown, the catalogue GPUs that
fit) and every common format at once with its quality cost (``ui.fit_views``).

Every number comes from ``calculator.fit`` / ``calculator.search``; this page reads widgets, calls them once
per distinct input (cached) and lays the answer out. Layout, for what comes next: the device row (format,
GPU, count) has room for one more selector, and the "This format" view for a per-device table under the
breakdown.
"""

from __future__ import annotations

from dataclasses import replace

import plotly.graph_objects as go
import streamlit as st

from calculator import units
from calculator.engines import engine_names
from calculator.fit import FitOptions, FitResult, Verdict, as_setup, fit
from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from calculator.hardware import GpuSetup
from calculator.quality import QUALITY_ORDER
from calculator.runtime import DEFAULT_UBATCH, CacheType
from calculator.search import best_format, gpus_that_fit
from calculator.training import PEFT_DEFAULT_TARGETS, Optimizer, Precision, TrainingMode
from ui import devices as device_views
from ui import fit_views
from ui import serving as serving_views
from ui.context import context_input
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.pickers import (
    CONFIG,
    FILE,
    HUB,
    PRESET,
    ModelChoice,
    gpu_names,
    gpu_select,
    model_picker,
    resolve_subject,
)
from ui.share import page_title
from ui.style import HEADLINE, RESULTS_FIRST
from ui.url_state import warn_bad_url_number, warn_unknown_url_value

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
VIEWS = ("This format", "Every format")  # the views under the numbers (URL key view); only the open one runs


@st.cache_data(max_entries=256, show_spinner=False)
def evaluate(ref: tuple[str, str], fmt: str, setup: GpuSetup, context: int, batch: int, opts: FitOptions
             ) -> FitResult:
    """``fit`` for one set of inputs (cached: a rerun with the same inputs costs nothing)."""
    spec = resolve_subject(ref)
    if isinstance(spec, int):
        raise ValueError("a fit needs the architecture (layers, KV heads): pick a preset, a Hub id or a "
                         "config.json")
    return fit(spec, fmt, setup, context, batch, options=opts)


@st.cache_data(max_entries=256, show_spinner=False)
def evaluate_gpus(ref: tuple[str, str], fmt: str, setup: GpuSetup, context: int, batch: int, opts: FitOptions
                  ) -> tuple[FitResult, ...]:
    """Every catalogue GPU on which ``setup.count`` copies fit (a plain tuple: st.cache_data pickles it)."""
    return tuple(gpus_that_fit(resolve_subject(ref), fmt, context, batch, options=opts, count=setup.count,
                               cpu_ram_bytes=setup.cpu_ram_bytes))


@st.cache_data(max_entries=256, show_spinner=False)
def evaluate_best(ref: tuple[str, str], setup: GpuSetup, context: int, batch: int, opts: FitOptions
                  ) -> tuple[FitResult | None, FitResult]:
    """(best_format, the last-ranked format's fit): the second says why when nothing fits. Sizes ~30
    formats (a GGUF recipe replay each, ~0.5 s for a 405B model the first time)."""
    spec = resolve_subject(ref)
    smallest = fit(spec, QUALITY_ORDER[-1], setup, context, batch, options=opts, with_max_context=False)
    return best_format(spec, setup, context, batch, options=opts), smallest


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


def _chart(r: FitResult, setup: GpuSetup) -> go.Figure:
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
                  annotation_position="top left", annotation_yshift=4)
    fig.update_layout(template="plotly_white", barmode="stack", height=230,
                      margin={"t": 36, "b": 10, "l": 10, "r": 10}, xaxis_title="memory (GB = 10⁹ bytes)",
                      yaxis={"visible": False}, uniformtext={"minsize": 9, "mode": "hide"},
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom",
                              "traceorder": "normal"})
    return fig


def _gpu_rows(fitting: tuple[FitResult, ...]) -> list[dict]:
    return [{"gpu": g.gpu, "count": g.gpu_count, "usable_bytes": g.usable_bytes,
             "usable_gb": units.to_gb(g.usable_bytes), "per_device_bytes": g.per_device_bytes,
             "per_device_gb": units.to_gb(g.per_device_bytes), "headroom_pct": g.headroom_pct,
             "decode_tokens_per_s": g.decode_tokens_per_s} for g in fitting]


def _options(mode: str, kv: str | None) -> tuple[FitOptions, int | None]:
    """(FitOptions, CPU RAM bytes or None). A mode's own settings are drawn only in that mode, so the link
    carries no LoRA settings in inference mode (the others keep FitOptions' defaults)."""
    training, lora = mode != "Inference", mode in ("LoRA", "QLoRA")
    with st.expander("Training options" if training else "Runtime options"):
        o = st.columns(3)
        flash = o[0].checkbox("Flash attention", True, key="fa", bind="query-params")
        if not training:
            warn_bad_url_number("ubatch", low=1, high=65536, default=DEFAULT_UBATCH, what="prompt tokens per step")
            ubatch = o[1].number_input("Prompt tokens per step", 1, 65536, DEFAULT_UBATCH, key="ubatch",
                                       bind="query-params",
                                       help="llama.cpp -ub (micro-batch); sets the compute buffer")
            warn_bad_url_number("cpu_ram_gb", low=0, high=100_000, default=0, what="CPU RAM (GB)")
            cpu_ram_gb = o[2].number_input("CPU RAM (GB)", 0, 100_000, 0, key="cpu_ram_gb", bind="query-params",
                                           help="For the offload verdict; 0 = not checked")
            opts = FitOptions(kv_type=kv, flash_attention=flash, ubatch=int(ubatch))
            return opts, int(cpu_ram_gb) * units.GB if cpu_ram_gb else None
        ckpt = o[1].checkbox("Gradient checkpointing", False, key="ckpt", bind="query-params")
        warn_unknown_url_value("optim", OPTIMIZERS, "optimizer")
        optim = o[2].selectbox("Optimizer", OPTIMIZERS, key="optim", bind="query-params")
        t = st.columns(3)
        settings = {}
        if lora:
            warn_bad_url_number("lora_rank", low=1, high=4096, default=16, what="LoRA rank")
            settings["lora_rank"] = int(t[0].number_input("LoRA rank", 1, 4096, 16, key="lora_rank",
                                                          bind="query-params"))
            targets = t[1].text_input("LoRA targets", ",".join(PEFT_DEFAULT_TARGETS), key="lora_targets",
                                      bind="query-params", help="Module names, comma-separated, or all-linear")
            settings["lora_targets"] = tuple(x.strip() for x in targets.split(",") if x.strip())
        else:
            warn_unknown_url_value("precision", PRECISIONS, "precision")
            settings["precision"] = t[0].selectbox("Precision", PRECISIONS, key="precision",
                                                   bind="query-params", help="How weights and gradients are held")
    return FitOptions(mode=MODES[mode], flash_attention=flash, gradient_checkpointing=ckpt, optimizer=optim,
                      **settings), None


def _inputs() -> tuple[ModelChoice | None, dict]:
    choice = model_picker(default_source=PRESET, sources=(PRESET, HUB, CONFIG, FILE))
    devices = st.columns([2, 2, 1, 1.2])
    warn_unknown_url_value("fmt", FORMAT_OPTIONS, "format")
    fmt = devices[0].selectbox("Format", FORMAT_OPTIONS, index=0, key="fmt", bind="query-params",
                               help="A GGUF file type (Q4_K_M...) or any weight format. Type to search.")
    with devices[1]:
        gpu = gpu_select()
    warn_bad_url_number("n_gpus", low=1, high=MAX_GPUS, default=1, what="GPU count")
    n_gpus = devices[2].number_input("GPUs", 1, MAX_GPUS, 1, key="n_gpus", bind="query-params",
                                     help="Identical GPUs (llama.cpp splits the layers over them)")
    warn_unknown_url_value("engine", engine_names(), "engine")
    engine = devices[3].selectbox("Engine", engine_names(), key="engine", bind="query-params",
                                  help="Whose allocation rules place the run (calculator.engines)")
    run = st.columns([1.3, 2, 0.9, 1.1], vertical_alignment="bottom")  # filled after the mode is known
    m1, m2 = st.columns([3, 2], vertical_alignment="bottom")
    warn_unknown_url_value("mode", list(MODES), "mode")
    mode = m1.segmented_control("Mode", list(MODES), default="Inference", key="mode", bind="query-params",
                                required=True, help="Training adds gradients, optimizer states and activations")
    max_context = choice.spec.max_context if choice and choice.spec else None
    context = context_input(run[0], run[1], max_context=max_context, max_value=MAX_CONTEXT_TOKENS)
    warn_bad_url_number("batch", low=1, high=MAX_BATCH, default=1, what="batch")
    batch = run[2].number_input("Batch", 1, MAX_BATCH, 1, key="batch", bind="query-params",
                                help="Sequences decoded together (llama.cpp --parallel slots)")
    kv = None
    if mode == "Inference":  # the KV cache is an inference setting
        warn_unknown_url_value("kv", KV_TYPES, "KV cache type")
        kv = run[3].selectbox("KV cache", KV_TYPES, index=KV_TYPES.index("fp16"), key="kv", bind="query-params",
                              help="llama.cpp --cache-type-k/-v; q8_0 halves the cache")
    with m2:
        opts, cpu_ram_bytes = _options(mode, kv)
    if mode == "Inference":
        engine_options = None
        if engine in serving_views.SERVING_ENGINES:
            with m2, st.expander(f"{engine} settings"):
                engine_options = serving_views.engine_options(engine)
        opts = replace(opts, engine=engine, engine_options=engine_options)
    setup = as_setup(gpu, int(n_gpus), cpu_ram_bytes) if gpu else None
    return choice, {"fmt": fmt, "setup": setup, "context": context, "batch": int(batch), "opts": opts}


def _headline(r: FitResult, best: FitResult | None, smallest: FitResult | None, choice: ModelChoice,
              inputs: dict) -> None:
    """Max context, best format (each with a button that applies it, or why there is none; no search yet:
    ``smallest`` is None), decode, prefill."""
    with st.container(key=HEADLINE):
        m = st.columns(4)
    with m[0].container(border=True):
        if r.max_context is None:
            st.metric("Max context (tokens)", "n/a", help="The model config gives no maximum context")
        elif r.max_context:
            st.metric("Max context (tokens)", f"{r.max_context:,}",
                      help="Longest context (up to the model's maximum) that fits entirely on the GPU(s) at "
                           "this batch and KV cache type")
            if r.max_context != inputs["context"]:
                st.button(f"Use {r.max_context:,}", key="use_max_ctx", on_click=fit_views.apply_changes,
                          args=((("ctx", r.max_context),),), type="tertiary", icon=":material/north_east:")
        else:
            one = evaluate(choice.ref, inputs["fmt"], inputs["setup"], 1, inputs["batch"], inputs["opts"])
            st.metric("Max context (tokens)", "none")
            # total_bytes, not per_device_bytes: after an offload the latter is only the GPU's share.
            st.caption(f"Not even 1 token: the weights and buffers alone take {units.fmt_gb(one.total_bytes)}, "
                       f"more than the {units.fmt_gb(inputs['setup'].usable_bytes)} usable on "
                       f"{inputs['setup'].label}.")
    with m[1].container(border=True):
        st.metric("Best format that fits", best.format if best else "none" if smallest else "not searched",
                  help="Highest quality (lowest KL divergence on llama.cpp's Llama-3-8B scoreboard) that fits "
                       "entirely on the GPU(s)")
        if smallest is None:
            fit_views.search_button(choice, key="search_best_fmt")
        elif best is None and r.mode is TrainingMode.INFERENCE:
            st.caption(f"Even {smallest.format} (the smallest ranked) takes {units.fmt_gb(smallest.total_bytes)}, "
                       f"more than the {units.fmt_gb(inputs['setup'].usable_bytes)} usable on "
                       f"{inputs['setup'].label}.")
        elif best is not None and best.format != inputs["fmt"]:
            st.button(f"Use {best.format}", key="use_best_fmt", on_click=fit_views.apply_changes,
                      args=((("fmt", best.format),),), type="tertiary", icon=":material/north_east:")
    with m[2].container(border=True):
        st.metric("Decode (tokens/s)", f"~{r.decode_tokens_per_s:,.1f}" if r.decode_tokens_per_s else "n/a",
                  help=f"{r.engine}'s speed model: bytes read per device / (bandwidth × efficiency) + a cost "
                       "per block, devices one after another under a layer split (calculator.speed, fitted on "
                       "llama-bench rows); n/a: training mode, no bandwidth for this GPU, or it does not fit")
    with m[3].container(border=True):
        st.metric("Prefill (s)", f"~{r.prefill_seconds:,.2f}" if r.prefill_seconds is not None else "n/a",
                  help="Whole context: FP16 compute × the engine's efficiency (FLOPs per token from Kaplan et "
                       "al. 2020)")


def _this_format(r: FitResult, choice: ModelChoice, inputs: dict, headline: str, searched: bool) -> None:
    setup = inputs["setup"]
    title = f"{choice.label} · {r.format} · {r.context:,} tokens on {setup.label}"
    st.markdown(f"**{title}**")
    fig = _chart(r, setup)
    st.plotly_chart(fig, key="fit_chart", config={"displaylogo": False})
    device_views.draw(r)
    breakdown = [{"part": label, "bytes": n, "gb": units.to_gb(n), "gib": units.to_gib(n)}
                 for label, n in _segments(r)]
    breakdown.append({"part": "total", "bytes": r.total_bytes, "gb": units.to_gb(r.total_bytes),
                      "gib": units.to_gib(r.total_bytes)})
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Where the bytes go**")
        st.dataframe(breakdown, hide_index=True, key="fit_breakdown", column_config={
            "part": "Part", "gb": st.column_config.NumberColumn("GB (10⁹ B)", format="%.2f"),
            "gib": st.column_config.NumberColumn("GiB (2³⁰ B)", format="%.2f"),
            "bytes": st.column_config.NumberColumn("Bytes", format="localized")},
            column_order=("part", "gb", "gib", "bytes"))
        st.caption("Sources: weights calculator.memory; KV cache and overhead calculator.runtime (llama.cpp "
                   "llama-kv-cache.cpp, CUDA context measurements); training calculator.training.")
    gpu_rows = _gpu_rows(evaluate_gpus(choice.ref, **inputs)) if searched else None
    with right:
        if gpu_rows is None:
            st.markdown("**Catalogue GPUs that fit**")
            st.caption("Not searched yet for a model this large from a link: *Search file types and GPUs* under "
                       "Best format that fits.")
        else:
            _gpu_table(gpu_rows, setup)
    stem = f"quantfit-fit-{choice.label}-{r.format}-{r.gpu}".replace(" ", "_").replace("/", "_")
    meta = {"fit": r.to_dict(), "model_source": choice.source}
    source = (f"{title} × batch {r.batch}, {r.mode.value}; model: {choice.short_source}; calculator.fit "
              "(llama.cpp KV cache and offload rules)")
    with download_bar():
        table_downloads(breakdown, stem=stem, key="fit_breakdown_dl", meta=meta, label="Breakdown")
        if gpu_rows is not None:
            table_downloads(gpu_rows, stem=f"{stem}-gpus", key="fit_gpus_dl", meta=meta, label="GPUs that fit")
        figure_downloads(fig, stem=stem, key="fit_chart_dl", title=headline, source=source)


def _gpu_table(gpu_rows: list[dict], setup: GpuSetup) -> None:
    st.markdown(f"**Catalogue GPUs that fit** ({len(gpu_rows)} of {len(gpu_names())}, {setup.count} each)")
    st.dataframe(gpu_rows, hide_index=True, key="fit_gpus", height=280, column_config={
        "gpu": "GPU", "count": None, "usable_bytes": None, "per_device_bytes": None,
        "usable_gb": st.column_config.NumberColumn("Usable GB", format="%.1f"),
        "per_device_gb": st.column_config.NumberColumn("Used GB / GPU", format="%.2f"),
        "headroom_pct": st.column_config.ProgressColumn("Free", format="%.0f%%", min_value=0, max_value=100),
        "decode_tokens_per_s": st.column_config.NumberColumn("Decode tokens/s", format="%.0f")})


def _every_format(choice: ModelChoice, inputs: dict) -> None:
    setup = inputs["setup"]
    rows = fit_views.every_format(choice.ref, setup, inputs["context"], inputs["batch"], inputs["opts"])
    st.markdown(f"**Every common file type of {choice.label} on {setup.label} at {inputs['context']:,} tokens**")
    st.dataframe(fit_views.styled_every_format(rows), hide_index=True, key="fit_every_format",
                 column_config=fit_views.EVERY_FORMAT_COLUMNS, column_order=list(fit_views.EVERY_FORMAT_COLUMNS),
                 row_height=35, height=35 * (len(rows) + 1) + 3)  # every row on screen, the best one included
    best = next((r for r in rows if r["best"]), None)
    st.caption(("★ best: the lowest KLD that fits entirely on the GPU(s). " if best else
                "None of these fits entirely on the GPU(s). ") +
               f"KLD: {rows[0]['quality_source'] or 'none published'} unless the row says otherwise; the KLD of "
               "one model is a guide to the ranking, not the value for another.")
    stem = f"quantfit-formats-{choice.label}-{setup.label}".replace(" ", "_").replace("/", "_")
    with download_bar():
        table_downloads(rows, stem=stem, key="fit_every_format_dl", label="Every format",
                        meta={"model": choice.label, "gpus": setup.label, "context": inputs["context"]})


def main() -> None:
    page_title("Will it fit?")
    answer = st.container(key=f"{RESULTS_FIRST}_verdict")
    choice, inputs = _inputs()
    if choice is None or inputs["setup"] is None:
        return
    r = evaluate(choice.ref, **inputs)
    searched = fit_views.searches_run(choice)
    with answer:
        st.caption(f"{choice.label} · {r.format} · {inputs['setup'].label} · {r.context:,} tokens × batch "
                   f"{r.batch} · {r.mode.value} · model from {choice.short_source}", help=choice.source)
        serving_views.draw_headline(r, choice.ref, inputs["fmt"], inputs["setup"], inputs["opts"])
        headline = fit_views.draw_verdict(r, inputs["setup"])
        if r.verdict is not Verdict.FITS:
            items = fit_views.advice(choice.ref, inputs["fmt"], inputs["setup"], inputs["context"],
                                     inputs["batch"], inputs["opts"], searched, r)
            fit_views.draw_advice(items, r, inputs["setup"])
        for w in r.warnings:
            st.warning(w, icon=":material/warning:")
    best, smallest = (evaluate_best(choice.ref, inputs["setup"], inputs["context"], inputs["batch"],
                                    inputs["opts"]) if searched else (None, None))
    _headline(r, best, smallest, choice, inputs)
    tabs = st.tabs(VIEWS, key="view", bind="query-params", on_change="rerun")
    if tabs[0].open:
        with tabs[0]:
            _this_format(r, choice, inputs, headline, searched)
    if tabs[1].open:
        with tabs[1]:
            if searched:
                _every_format(choice, inputs)
            else:
                fit_views.search_button(choice, key="search_every_format")


run_page(main)
