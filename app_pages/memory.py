"""Memory page: the weight memory of one model in every format family, as a table and a chart.

Numbers come from ``calculator.memory.weight_memory`` (exact tensor bytes for a model with shapes,
nominal bits x params / 8 for a bare count); this page only picks inputs and lays results out.
The default (70B parameters) is the seed's example: fp16 140 GB -> 4-bit 35 GB, on the first screen.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from calculator import units
from calculator.formats import FORMATS, get_format
from calculator.gguf_recipes import FILE_TYPES, get_file_type
from calculator.memory import WeightMemory, weight_memory
from ui.export import download_bar, figure_downloads, table_downloads
from ui.guard import run_page
from ui.labels import FORMAT_FAMILY_LABELS, GB_NOTE
from ui.numbers import Number, number_row
from ui.pickers import PARAMS, gpu_multiselect, model_picker, resolve_subject
from ui.share import page_title
from ui.style import RESULTS_FIRST
from ui.url_state import warn_too_many_url_values

# One or two representatives per family, high to low bits. A model with shapes gets llama.cpp file
# types (Q4_K_M...); a bare count gets their main tensor types, as file types need tensor names.
_FAMILY_HEAD = ("fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4", "int8-ch", "int4-g128", "gptq-4b-g128",
                "awq-4b-g128", "nf4", "nf4-dq", "mxfp4", "nvfp4", "exl2-4.0")
SPEC_FORMATS = _FAMILY_HEAD + ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "Q2_K",
                              "IQ2_XS")
PARAMS_FORMATS = _FAMILY_HEAD + ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "IQ4_XS", "Q3_K", "Q2_K", "IQ2_XS")

FILE_TYPE_LABEL = "GGUF file type"
# Formats a link may add to the table (each GGUF file type replays its recipe over every tensor). A comment,
# not a docstring: Streamlit's magic would print a bare string on the page.
MAX_ADDED_FORMATS = 8


def _row(mem: WeightMemory, is_file_type: bool) -> dict:
    """One table row of raw values (sizes in int bytes); display formatting happens in the dataframe."""
    if is_file_type:
        family, holds = FILE_TYPE_LABEL, get_file_type(mem.format).summary
    else:
        fmt = get_format(mem.format)
        family, holds = FORMAT_FAMILY_LABELS[fmt.family], fmt.holds
    counts = mem.type_counts
    stored = ", ".join(f"{t} ×{n}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return {
        "format": mem.format,
        "family": family,
        "bits_per_weight": float(mem.bits_per_weight),
        "bits_per_weight_exact": str(mem.bits_per_weight),
        "weight_bytes": mem.total_bytes,
        "weight_gb": units.to_gb(mem.total_bytes),
        "weight_gib": units.to_gib(mem.total_bytes),
        "tensor_types": stored,
        "holds": holds,
        "source": mem.source,
    }


@st.cache_data(max_entries=64, show_spinner=False)
def weight_table(ref: tuple[str, str], formats: tuple[str, ...]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows, [(format, why it cannot store this model)]) for the model ``ref`` over ``formats``."""
    subject = resolve_subject(ref)
    rows, skipped = [], []
    for name in formats:
        # A model with shapes reads upper-case GGUF names as file types (Q8_0 the recipe, not the bare
        # tensor type); our lower-case names are always the tensor formats (nvfp4, not the NVFP4 file).
        fmt = name if name in FILE_TYPES and not isinstance(subject, int) else get_format(name)
        try:
            rows.append(_row(weight_memory(subject, fmt), isinstance(fmt, str)))
        except ValueError as err:
            skipped.append((name, str(err)))
    return rows, skipped


def _chart(rows: list[dict], gpus) -> go.Figure:
    fig = go.Figure()
    for family in dict.fromkeys(r["family"] for r in rows):
        part = [r for r in rows if r["family"] == family]
        fig.add_bar(
            x=[r["format"] for r in part], y=[r["weight_gb"] for r in part], name=family,
            text=[f"{r['weight_gb']:,.1f}" for r in part], textposition="outside",
            customdata=[[r["weight_gib"], r["bits_per_weight"], r["weight_bytes"]] for r in part],
            hovertemplate="<b>%{x}</b><br>%{y:,.2f} GB (%{customdata[0]:,.2f} GiB)<br>"
                          "%{customdata[1]:.4f} bits per weight<br>%{customdata[2]:,} bytes<extra></extra>",
        )
    for gpu in gpus:
        # Line across the bars, its label in the right margin so it never covers a bar.
        fig.add_hline(y=units.to_gb(gpu.memory_bytes), line_dash="dash", line_color="#555", line_width=1.5)
        fig.add_annotation(x=1, xref="paper", xanchor="left", y=units.to_gb(gpu.memory_bytes),
                           showarrow=False, text=f" {gpu.name}<br> {units.fmt_gb(gpu.memory_bytes, 0)}",
                           align="left",
                           font={"size": 11})
    fig.update_layout(
        barmode="group", bargap=0.15, height=560,
        margin={"t": 30, "b": 10, "l": 10, "r": 90}, yaxis_title="weight memory (GB = 10⁹ bytes)",
        xaxis_title=None,
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "title": None},
        xaxis={"categoryorder": "array", "categoryarray": [r["format"] for r in rows], "tickangle": -45},
    )
    return fig


_COLUMNS = {  # the sizes first: on a phone only the first columns are on screen
    "format": st.column_config.TextColumn("Format", pinned=True),
    "weight_gb": st.column_config.NumberColumn("GB (10⁹ B)", format="%.2f"),
    "weight_gib": st.column_config.NumberColumn("GiB (2³⁰ B)", format="%.2f"),
    "bits_per_weight": st.column_config.NumberColumn("Bits / weight", format="%.4f",
                                                     help="Effective: all stored bits / parameters"),
    "family": st.column_config.TextColumn("Family"),
    "weight_bytes": st.column_config.NumberColumn("Exact bytes", format="localized"),
    "tensor_types": st.column_config.TextColumn("Tensors stored as", width="medium"),
    "holds": st.column_config.TextColumn("What the bytes hold", width="large"),
    "source": st.column_config.TextColumn("Source", width="medium"),
}


def _headline(choice, by_name: dict[str, dict]) -> None:
    """Parameters and the fp16 / int8 / int4 sizes: the rule of thumb, on the first screen (drawn as Markdown,
    which paints before the chart: ``ui.numbers``)."""
    numbers = [Number("Parameters", units.fmt_count(choice.total_params), f"{choice.total_params:,}",
                      help=choice.source)]
    for name in ("fp16", "int8", "int4"):
        r = by_name[name]
        numbers.append(Number(f"{name} weights", units.fmt_gb(r["weight_bytes"]), units.fmt_gib(r["weight_bytes"]),
                              help=f"{r['bits_per_weight_exact']} bits per weight; {r['source']}"))
    number_row(numbers)


def main() -> None:
    page_title("How big are the weights?")
    answer = st.container(key=f"{RESULTS_FIRST}_sizes")
    choice = model_picker(default_source=PARAMS)
    if choice is None:
        return
    spec = choice.spec
    options = sorted(FORMATS) + (sorted(FILE_TYPES) if spec else [])
    base = SPEC_FORMATS if spec else PARAMS_FORMATS
    c1, c2 = st.columns(2)
    warn_too_many_url_values("add", MAX_ADDED_FORMATS, "added formats")
    extra = c1.multiselect("Add formats", [o for o in options if o not in base], key="add",
                           max_selections=MAX_ADDED_FORMATS,
                           bind="query-params",
                           placeholder="any format or GGUF file type, e.g. gptq-3b-g128, Q5_K_S")
    gpus = gpu_multiselect()

    with c2:
        if spec:
            st.markdown(f"**{choice.label}** · {spec.total_params:,} parameters · {spec.arch}, "
                        f"{spec.n_layers} layers, hidden {spec.hidden_size:,}, vocab {spec.vocab_size:,}")
        else:
            st.markdown(f"**{choice.label}** ({choice.total_params:,}) · no shapes, so sizes use each "
                        "format's nominal bits per weight")
        st.caption(f"Source: {choice.short_source}", help=choice.source)
        if choice.hub_checkpoint_params:
            st.caption(f"Checkpoint safetensors headers count {choice.hub_checkpoint_params:,} parameters; "
                       f"the config gives {choice.total_params:,}.")

    formats = base + tuple(extra)
    rows, skipped = weight_table(choice.ref, formats)
    by_name = {r["format"]: r for r in rows}
    with answer:
        st.caption("Weight memory of one model in every format family: exact bytes, scales and zeros "
                   f"included. {GB_NOTE}.")
        _headline(choice, by_name)
    for name, why in skipped:
        st.warning(f"{name} is left out: {why}", icon=":material/info:")

    title = f"Weight memory of {choice.label} by format"
    st.markdown(f"**{title}**")
    fig = _chart(rows, gpus)
    st.plotly_chart(fig, key="memory_chart", config={"displaylogo": False})
    st.caption("Bars: exact weight bytes (KV cache and runtime overhead are not included: see “Will it "
               "fit?”). Dashed lines: GPU memory as sold. Hover a bar for GiB and bits per weight.")
    columns = [k for k in _COLUMNS if spec or k != "tensor_types"]  # a bare count has one "tensor"
    st.dataframe(rows, column_config=_COLUMNS, hide_index=True, key="memory_table", column_order=columns,
                 row_height=35, height=35 * (len(rows) + 1) + 3)  # every row visible, header included

    stem = f"quantfit-memory-{choice.label}".replace(" ", "_").replace("/", "_")
    fp16, int4 = by_name["fp16"]["weight_bytes"], by_name["int4"]["weight_bytes"]
    headline = (f"{title}: fp16 {units.fmt_gb(fp16)}, int4 {units.fmt_gb(int4)} "
                f"({units.fmt_count(choice.total_params)} parameters)")
    with download_bar():
        table_downloads(rows, stem=stem, key="memory_table_dl",
                        meta={"model": choice.label, "params": choice.total_params, "source": choice.source})
        figure_downloads(fig, stem=stem, key="memory_chart_dl", title=headline,
                         source=f"model: {choice.short_source}; exact tensor bytes, calculator.memory (gguf "
                                "GGML_QUANT_SIZES, llama.cpp llama-quant.cpp)")


run_page(main)
