"""The Fit page for a serving engine (vLLM, SGLang, transformers): its own settings as widgets bound to the
URL, and the answer it leads with -- "serves N concurrent requests of L tokens" -- with a chart of
concurrency against context length. The numbers come from ``calculator.engines`` (the same pool at every
length: in vLLM and SGLang the KV pool does not depend on ``max_model_len``, only what one request takes)."""

from __future__ import annotations

from dataclasses import replace

import plotly.graph_objects as go
import streamlit as st

from calculator import units
from calculator.engines.sglang import SglangSettings, sglang_startup
from calculator.engines.transformers import TransformersSettings
from calculator.engines.vllm import VllmSettings, vllm_startup
from calculator.fit import FitOptions, FitResult
from calculator.hardware import GpuSetup
from ui.pickers import resolve_subject
from ui.url_state import warn_bad_url_number, warn_unknown_url_value

SERVING_ENGINES = ("vllm", "sglang", "transformers")


def engine_options(engine: str) -> object | None:
    """The engine's own settings from widgets (URL keys ``gmu``, ``max_num_seqs``, ``kv_dtype``, ``eager``,
    ``mfs``, ``new_tokens``, ``tf_cache``, ``attn``); None for the llama.cpp family (its defaults)."""
    if engine not in SERVING_ENGINES:
        return None
    c = st.columns(3)
    if engine == "vllm":
        warn_bad_url_number("gmu", low=0.05, high=1.0, default=0.9, what="GPU memory utilization", whole=False)
        gmu = c[0].number_input("GPU memory utilization", 0.05, 1.0, 0.9, 0.01, key="gmu", bind="query-params",
                                help="vLLM --gpu-memory-utilization: its share of the GPU")
        warn_unknown_url_value("kv_dtype", ["auto", "fp8"], "vLLM KV cache dtype")
        kv = c[1].selectbox("KV cache dtype", ["auto", "fp8"], key="kv_dtype", bind="query-params",
                            help="vLLM --kv-cache-dtype")
        eager = c[2].checkbox("Enforce eager", False, key="eager", bind="query-params",
                              help="vLLM --enforce-eager: no CUDA graphs")
        return VllmSettings(gpu_memory_utilization=float(gmu), kv_cache_dtype=kv, enforce_eager=eager)
    if engine == "sglang":
        warn_bad_url_number("mfs", low=0.0, high=0.99, default=0.0, what="mem fraction static", whole=False)
        mfs = c[0].number_input("Mem fraction static (0 = default)", 0.0, 0.99, 0.0, 0.01, key="mfs",
                                bind="query-params", help="SGLang --mem-fraction-static; 0: its default by GPU size")
        return SglangSettings(mem_fraction_static=float(mfs) or None)
    warn_bad_url_number("new_tokens", low=1, high=1_000_000, default=256, what="new tokens")
    new = c[0].number_input("New tokens", 1, 1_000_000, 256, key="new_tokens", bind="query-params",
                            help="generate(max_new_tokens=...)")
    warn_unknown_url_value("tf_cache", ["dynamic", "static"], "cache")
    cache = c[1].selectbox("Cache", ["dynamic", "static"], key="tf_cache", bind="query-params")
    warn_unknown_url_value("attn", ["sdpa", "eager"], "attention")
    attn = c[2].selectbox("Attention", ["sdpa", "eager"], key="attn", bind="query-params")
    return TransformersSettings(new_tokens=int(new), cache=cache, attention=attn)


@st.cache_data(max_entries=64, show_spinner=False)
def concurrency_curve(ref: tuple[str, str], fmt: str, setup: GpuSetup, context: int, opts: FitOptions
                      ) -> list[dict]:
    """Concurrent requests the engine's pool holds at lengths from 512 tokens to the model's maximum."""
    spec = resolve_subject(ref)
    top = spec.max_context or context
    lengths = sorted({*(2**k for k in range(9, 25) if 2**k <= top), context, top})
    if opts.engine.value == "vllm":
        s = opts.engine_options or VllmSettings()
        at = vllm_startup(spec, fmt, setup.gpu, setup.count, replace(s, max_model_len=top)).concurrency_at
    else:
        s = opts.engine_options or SglangSettings()
        at = sglang_startup(spec, fmt, setup.gpu, setup.count, replace(s, context_length=top)).concurrency_at
    return [{"context": n, "requests": at(n)} for n in lengths]


def draw_headline(r: FitResult, ref: tuple[str, str], fmt: str, setup: GpuSetup, opts: FitOptions) -> None:
    """What a serving engine leads with: its sentence, the pool, and concurrency against context."""
    rep = dict(r.engine_report).get("serving")
    if not rep:
        return
    if rep["engine"] == "transformers":
        st.metric("Peak max_memory_allocated", units.fmt_gib(rep["peak_allocated_bytes"]),
                  help="torch.cuda.max_memory_allocated of one generate() call on the fullest GPU "
                       "(calculator.engines.transformers)")
        return
    with st.container(key="serving_headline"):
        if rep.get("refusal"):
            st.error(f"{rep['engine']} would not start: {rep['refusal']}", icon=":material/block:")
            return
        length = rep.get("max_model_len") or rep.get("context_len")
        st.metric(f"Serves at once ({rep['engine']})", f"{rep['max_concurrency']:,.2f} requests of {length:,} tokens",
                  help=f"{rep['summary']}; KV pool {units.fmt_gib(rep['kv_cache_bytes'])} per GPU")
    try:
        rows = concurrency_curve(ref, fmt, setup, r.context, opts)
    except ValueError:
        return  # a context the engine refuses at the model's maximum: the headline says enough
    fig = go.Figure(go.Scatter(x=[p["context"] for p in rows], y=[p["requests"] for p in rows], mode="lines+markers",
                               hovertemplate="%{x:,} tokens: %{y:,.2f} requests<extra></extra>"))
    fig.add_vline(x=r.context, line_dash="dash", line_color="#333")
    fig.update_layout(template="plotly_white", height=260, margin={"t": 20, "b": 10, "l": 10, "r": 10},
                      xaxis={"type": "log", "title": "tokens per request (max_model_len)"},
                      yaxis={"type": "log", "title": "concurrent requests"})
    st.plotly_chart(fig, key="serving_concurrency_chart", config={"displaylogo": False})
