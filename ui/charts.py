"""Shared Plotly drawing: the size-vs-quality scatter that the Quality, Reference and Compare pages draw,
its axes, and reading a clicked point back. Rows are dicts on common columns (``ui.rows``).

Figures carry an explicit ``plotly_white`` template: Streamlit's default one has placeholder colours
(``#000001``...) that only its frontend replaces, so a PNG/SVG/HTML export would come out black.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go

from evaluation.plan import pareto_front
from ui.rows import hover_text


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


COLLAPSE_GAP = 100.0
"""A cluster of y values this many times above the next lower value (two empty decades) is "collapsed":
drawn at the top edge, so it does not squash every other point into the bottom of the chart."""
MAX_COLLAPSED_SHARE = 1 / 3
"""...as long as it holds at most this share of the points (otherwise it is the data, not an outlier)."""
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6",
           "#BAB0AC", "#1F77B4", "#2CA02C")
"""Colours, one per series (or per model on the Reference page), in order (Vega's "tableau10" and more)."""
SYMBOLS = ("circle", "square", "diamond", "star", "hexagon", "pentagon", "hourglass", "bowtie", "star-square",
           "cross")
"""Marker shapes, one per method when a chart colours by model ("x" and the triangles are taken: flagged rows,
points at the floor or the top edge)."""


def collapsed_ceiling(values: list[float], axis: Axis) -> float | None:
    """The y value above which points are "collapsed" (see ``COLLAPSE_GAP``), or None when there is no such
    cluster. Only for lower-is-better axes (a collapsed model's ΔPPL, KLD or perplexity explodes upwards).

    ``collapsed_ceiling([0.1, 2, 1300, 1.7e6, 3e6], ΔPPL)`` -> 1300 × 3 (the 2-bit pair sits 1,300× above).
    """
    positive = sorted(v for v in values if v > 0)
    if not axis.lower_is_better or len(positive) < 3:
        return None
    for i in range(len(positive) - 1, 0, -1):
        if positive[i] / positive[i - 1] > COLLAPSE_GAP:
            if len(positive) - i <= MAX_COLLAPSED_SHARE * len(positive):
                return positive[i - 1] * 3
            return None
    return None


def collapsed_rows(rows: list[dict], x: Axis, y: Axis) -> list[dict]:
    """The rows ``size_quality_figure`` draws at the top edge (to list them under the chart)."""
    pts = axis_values(rows, x, y)
    ceiling = collapsed_ceiling([r[y.column] for r in pts], y)
    return [] if ceiling is None else [r for r in pts if r[y.column] > ceiling]


def _is_sweep(part: list[dict]) -> bool:
    """A curve worth joining: one layout (group size) at three or more distinct sizes (RTN 8..2 bits, GGUF
    file types); int8 next to int4-g32/g64 or NF4 beside FP4 stay separate markers."""
    return (len(part) >= 3 and len({r["bits_per_weight"] for r in part}) == len(part)
            and len({r["group_size"] for r in part}) == 1)


def _symbol(r: dict, base: str, floor: bool, ceiling: bool) -> str:
    if r["flag"]:
        return "x"
    if r.get("excluded"):
        return f"{base}-open"
    if ceiling:
        return "triangle-up"
    if floor:
        return "triangle-down-open"
    return base


def size_quality_figure(
    rows: list[dict],
    x: Axis,
    y: Axis,
    *,
    x_scale: str = "auto",
    y_scale: str = "auto",
    series_key: str = "family",
    color_key: str | None = None,
    symbol_key: str | None = None,
    frontier: bool = True,
    lines: bool | str = True,
    height: int = 560,
) -> go.Figure:
    """Scatter of ``rows`` on (x, y), one trace per ``series_key`` value; dashed Pareto frontier.

    - ``lines``: True joins a series that is a sweep (``_is_sweep``); "all" joins every series in x order.
    - ``color_key`` / ``symbol_key``: colour by one column (a model) and shape by another (a method), so
      a legend of "model · method" series reads both ways; by default each series has its own colour.
    - On a log axis, values <= 0 (the baseline's ΔPPL and KLD, methods within noise of it) are drawn on
      the axis floor as ▽; a collapsed cluster (``collapsed_ceiling``) at the top edge as ▲. Their hover
      text keeps the true value. Flagged rows are crosses.
    - A row with ``excluded`` (a reason) is drawn hollow, left out of the frontier, the reason on hover.

    No title: the page writes it above the chart (it wraps on a phone; a Plotly title is cut off), and
    ``ui.export`` writes it into downloaded files. The legend sits under the plot, in the figure's own
    bottom margin (container-referenced), so it never covers the x-axis title.
    """
    pts = axis_values(rows, x, y)
    xs, ys = [r[x.column] for r in pts], [r[y.column] for r in pts]
    log_x, log_y = _use_log(x_scale, x, xs), _use_log(y_scale, y, ys)
    floor_y = _floor([v for v in ys if v > 0]) if log_y else None
    floor_x = _floor([v for v in xs if v > 0]) if log_x else None
    ceiling = collapsed_ceiling(ys, y)

    def shown_y(v: float) -> float:
        return ceiling if ceiling is not None and v > ceiling else _clip(v, floor_y)

    colors = {v: PALETTE[i % len(PALETTE)]
              for i, v in enumerate(dict.fromkeys(r[color_key or series_key] for r in pts))}
    shapes = ({v: SYMBOLS[i % len(SYMBOLS)] for i, v in enumerate(dict.fromkeys(r[symbol_key] for r in pts))}
              if symbol_key else {})
    fig = go.Figure()
    for series in dict.fromkeys(r[series_key] for r in pts):
        part = sorted((r for r in pts if r[series_key] == series), key=lambda r: (r[x.column], r[y.column]))
        base = shapes.get(part[0][symbol_key], "circle") if symbol_key else "circle"
        symbols = [_symbol(r, base, (floor_y is not None and r[y.column] <= 0)
                           or (floor_x is not None and r[x.column] <= 0),
                           ceiling is not None and r[y.column] > ceiling) for r in part]
        hover = [r["hover"] + ("<br>" + hover_text([html.escape(r["excluded"])]) if r.get("excluded") else "")
                 for r in part]
        joined = lines == "all" and len(part) >= 2 or lines is True and _is_sweep(part)
        fig.add_scatter(
            x=[_clip(r[x.column], floor_x) for r in part], y=[shown_y(r[y.column]) for r in part],
            name=html.escape(str(series)), text=hover, customdata=[r["id"] for r in part],
            mode="lines+markers" if joined else "markers",
            marker={"size": 10, "symbol": symbols, "line": {"width": 1.5},
                    "color": colors[part[0][color_key or series_key]]},
            line={"width": 1.5}, hovertemplate="%{text}<extra></extra>",
        )
    frontier_pts = [i for i, r in enumerate(pts) if not r.get("excluded") and not r["flag"]]
    if frontier and len(frontier_pts) >= 2:
        idx = [frontier_pts[i] for i in pareto_front([(xs[i], ys[i]) for i in frontier_pts],
                                                     lower_is_better=y.lower_is_better)]
        fig.add_scatter(
            x=[_clip(xs[i], floor_x) for i in idx], y=[shown_y(ys[i]) for i in idx],
            name="Pareto frontier", mode="lines", hoverinfo="skip",
            line={"dash": "dash", "color": "#444", "width": 1.5},
        )
    fig.update_layout(
        template="plotly_white", height=height, margin={"t": 30, "b": 10, "l": 10, "r": 10},
        xaxis_title=x.label, yaxis_title=y.label, hovermode="closest",
        hoverlabel={"align": "left", "font": {"size": 12}},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "title": None},
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
