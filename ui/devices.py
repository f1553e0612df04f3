"""A fit per device, as the engine's own start-up log prints it: one row per GPU and one for the host (MiB, as
llama.cpp logs: "CUDA0 model buffer", "KV buffer", "compute buffer", "output buffer"; the CUDA context it does
not log), and one bar per card against what that card may use. The numbers are ``FitResult.devices`` and
``FitResult.host`` (``calculator.engines``)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from calculator import units
from calculator.fit import FitResult

PARTS = (("weights_bytes", "weights", "#4C78A8"), ("kv_cache_bytes", "KV cache", "#F58518"),
         ("compute_bytes", "compute buffer", "#B7B7B7"), ("output_bytes", "output buffer", "#EECA3B"),
         ("context_bytes", "CUDA context", "#9D755D"), ("extra_bytes", "reserve", "#D3D3D3"))


def rows(r: FitResult) -> list[dict]:
    """One dict per GPU and the host: every part in MiB, the total, what may be used, the blocks held."""
    out = []
    for d in (*r.devices, *((r.host,) if r.host is not None else ())):
        row = {"device": f"{d.name} ({d.device})" if d.name != "host" else "host (CPU RAM)"}
        row |= {label: d.__getattribute__(key) / units.MiB for key, label, _ in PARTS}
        row |= {"total": d.total_bytes / units.MiB,
                "usable": None if d.usable_bytes is None else d.usable_bytes / units.MiB,
                "layers": f"{d.layers}{' + output' if d.holds_output else ''}"}
        out.append(row)
    return out


def chart(r: FitResult) -> go.Figure:
    """Stacked bar per GPU (GB), a tick at its usable memory."""
    names = [f"{d.name} {d.device}" for d in r.devices]
    fig = go.Figure()
    for key, label, color in PARTS:
        values = [getattr(d, key) for d in r.devices]
        if any(values):
            fig.add_bar(y=names, x=[units.to_gb(v) for v in values], name=label, orientation="h",
                        marker_color=color, hovertemplate=f"<b>{label}</b><br>%{{x:,.2f}} GB<extra></extra>")
    fig.add_scatter(y=names, x=[units.to_gb(d.usable_bytes) for d in r.devices], mode="markers", name="usable",
                    marker={"symbol": "line-ns-open", "size": 26, "line": {"width": 3, "color": "#333"}},
                    hovertemplate="usable %{x:,.2f} GB<extra></extra>")
    fig.update_layout(template="plotly_white", barmode="stack", height=90 + 40 * len(names),
                      margin={"t": 10, "b": 10, "l": 10, "r": 10}, xaxis_title="memory (GB = 10⁹ bytes)",
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"})
    return fig


def draw(r: FitResult) -> None:
    """The per-device table and bars (nothing for a run without devices)."""
    if not r.devices:
        return
    st.markdown(f"**Per device, as {r.engine} logs it** (MiB)")
    fmt = st.column_config.NumberColumn(format="%.2f")
    st.dataframe(rows(r), hide_index=True, key="fit_devices",
                 column_config={"device": "Device", **{label: fmt for _, label, _ in PARTS}, "total": fmt,
                                "usable": fmt, "layers": "Blocks"})
    if len(r.devices) > 1 or r.host is not None and r.host.layers:
        st.plotly_chart(chart(r), key="fit_device_chart", config={"displaylogo": False})
    if r.engine_notes:
        st.caption(" · ".join(r.engine_notes))
