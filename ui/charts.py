"""Shared Plotly drawing: the size-vs-quality scatter that the Quality, Reference and Compare pages draw,
its axes, and reading a clicked point back. Rows are dicts on common columns (``ui.rows``).

Figures carry an explicit ``plotly_white`` template: Streamlit's default one has placeholder colours
(``#000001``...) that only its frontend replaces, so a PNG/SVG/HTML export would come out black.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from evaluation.plan import pareto_front


@dataclass(frozen=True)
class Axis:
    """One choice of axis: the row column it reads and how it is best drawn."""

    label: str
    column: str
    log: bool = False
    """Log scale under "auto" when the values span more than 20x (sizes, ΔPPL, KLD)."""
    lower_is_better: bool = True


# Keys are the URL values (bound widgets write the option text into the link).
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
LOG_SPAN = 20
"""Under "auto", a log-friendly axis goes log when its positive values span more than this factor."""


def axis_values(rows: list[dict], x: Axis, y: Axis) -> list[dict]:
    """The rows that have both coordinates (published tables give no measured bytes, for instance)."""
    return [r for r in rows if r.get(x.column) is not None and r.get(y.column) is not None]


def _use_log(scale: str, axis: Axis, values: list[float]) -> bool:
    if scale == "log":
        return True
    if scale == "linear":
        return False
    positive = [v for v in values if v > 0]
    return axis.log and len(positive) >= 2 and max(positive) / min(positive) > LOG_SPAN


def _floor(positive: list[float]) -> float | None:
    return min(positive) / 3 if positive else None


def _clip(value: float, floor: float | None) -> float:
    return value if floor is None or value > 0 else floor


def _is_sweep(part: list[dict]) -> bool:
    """A curve worth joining: one layout (group size) at three or more distinct sizes (RTN 8..2 bits, GGUF
    file types); int8 next to int4-g32/g64 or NF4 beside FP4 stay separate markers."""
    return (len(part) >= 3 and len({r["bits_per_weight"] for r in part}) == len(part)
            and len({r["group_size"] for r in part}) == 1)


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
    the axis floor with an open marker; their hover text keeps the true value. Flagged rows are crosses.
    """
    pts = axis_values(rows, x, y)
    xs, ys = [r[x.column] for r in pts], [r[y.column] for r in pts]
    log_x, log_y = _use_log(x_scale, x, xs), _use_log(y_scale, y, ys)
    floor_y = _floor([v for v in ys if v > 0]) if log_y else None
    floor_x = _floor([v for v in xs if v > 0]) if log_x else None
    fig = go.Figure()
    for series in dict.fromkeys(r[series_key] for r in pts):
        part = sorted((r for r in pts if r[series_key] == series), key=lambda r: r[x.column])
        clipped = [(floor_y is not None and r[y.column] <= 0) or (floor_x is not None and r[x.column] <= 0)
                   for r in part]
        symbols = ["x" if r["flag"] else ("circle-open" if c else "circle")
                   for r, c in zip(part, clipped, strict=True)]
        fig.add_scatter(
            x=[_clip(r[x.column], floor_x) for r in part], y=[_clip(r[y.column], floor_y) for r in part],
            name=str(series), text=[r["hover"] for r in part], customdata=[r["id"] for r in part],
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
        template="plotly_white",
        title=title or None, height=560, margin={"t": 50 if title else 20, "b": 10, "l": 10, "r": 10},
        xaxis_title=x.label, yaxis_title=y.label, hovermode="closest",
        legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0, "title": None},
    )
    # On a log axis, label decades only (plotly's default also labels 2 and 5 of every decade).
    fig.update_xaxes(type="log" if log_x else "linear", automargin=True, **({"dtick": 1} if log_x else {}))
    fig.update_yaxes(type="log" if log_y else "linear", automargin=True, **({"dtick": 1} if log_y else {}))
    return fig


def selected_row(event, rows: list[dict]) -> dict | None:
    """The row of the point clicked on a ``size_quality_figure`` (the selection carries the row id as
    customdata); None when nothing is selected."""
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
