"""Rows on the quality pages' common columns: a measured ``Result`` or a published reference row becomes one
dict of raw values (sizes int bytes, percentages in percent) plus its hover text, so one chart
(``ui.charts``) and one table layout (``RESULT_COLUMNS``) serve results and published tables alike.
"""

from __future__ import annotations

import html
import math
import textwrap

import streamlit as st

from calculator import units
from calculator.gguf_recipes import FILE_TYPES
from evaluation.results import Result
from ui.labels import method_family_label
from ui.share import fit_url, known_format, memory_url


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def plain(text: object) -> str:
    """Text from a results file (method ids, notes, file names) for Plotly's hover and legend labels, which
    render HTML tags: ``<img src=x onerror=...>`` must arrive as text, so ``<``, ``>``, ``&`` and quotes are
    escaped."""
    return html.escape(str(text))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


HOVER_CHARS = 44
"""Hover lines wrap at this many characters: a ~300-pixel box that fits beside a point on a 390-pixel phone."""


def hover_text(lines: list[str]) -> str:
    """Plotly hover HTML from lines, each wrapped at ``HOVER_CHARS`` (a long line would push the box off the
    screen's edge on a phone)."""
    return "<br>".join("<br>".join(textwrap.wrap(line, HOVER_CHARS, break_on_hyphens=False,
                                                  break_long_words=False)) or line  # never inside a tag or &lt;
                       for line in lines)


def result_row(result: Result, origin: str) -> dict:
    """One measured result; ``origin`` says where it came from (a file name, "bundled", "this session")."""
    n_params, quality = result.model.n_params, result.quality
    row = {
        "id": f"{origin}|{result.key}",
        "origin": origin,
        "model": result.model.id,
        "corpus": result.corpus.get("name", ""),
        "tokens": f"{result.windows.n_windows} × {result.windows.n_ctx}",
        "method": result.method_id,
        "family": method_family_label(result.family),
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
        "ppl": quality.ppl,
        "ppl_err": quality.ppl_err,
        "delta_ppl_pct": quality.delta_ppl_pct,
        "kld_mean": quality.kld_mean,
        "kld_err": quality.kld_err,
        "top1_pct": _pct(quality.top1_agreement),
        "rms_dp_pct": _pct(quality.rms_dp),
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
    return hover_text([
        f"<b>{plain(r['method'])}</b> · {plain(r['family'])}", f"{bits}, {group}, {bpw} bits/weight{whole}",
        f"PPL {r['ppl']:.3f} ± {r['ppl_err']:.3f} (ΔPPL {r['delta_ppl_pct']:+.2f}%)",
        f"KLD {r['kld_mean']:.5f} ± {r['kld_err']:.5f} · top-1 {r['top1_pct']:.2f}%",
        f"measured {r['measured_bytes']:,} B ({units.fmt_gb(r['measured_bytes'], 3)}), {predicted}",
        f"eval {r['eval_s']:.1f} s, quantize {r['quantize_s']:.1f} s · {plain(r['origin'])}",
    ])


def reference_rows(frame) -> list[dict]:
    """Published rows (a frame from ``evaluation.reference.load_reference``) on the same columns; they
    carry bits per weight but no bytes, and their source, link and flag."""
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


def _reference_hover(r: dict) -> str:
    parts = [f"<b>{plain(r['model'])} {plain(r['method'])}</b>"]
    if r["bits_per_weight"] is not None:
        parts.append(f"{r['bits_per_weight']:.3f} bits/weight")
    if r["ppl"] is not None:
        err = f" ± {r['ppl_err']:.4f}" if r["ppl_err"] is not None else ""
        parts.append(f"PPL {r['ppl']:.4f}{err} ({plain(r['corpus'])}, {plain(r['tokens'])})")
    if r["delta_ppl_pct"] is not None:
        parts.append(f"ΔPPL {r['delta_ppl_pct']:+.2f}%")
    if r["kld_mean"] is not None:
        parts.append(f"KLD {r['kld_mean']:.6f}")
    parts.append(f"source: {plain(_short(r['source'], 90))}")
    if r["flag"]:
        parts.append(f"⚠ FLAGGED: {plain(_short(r['flag'], 120))}")
    return hover_text(parts)


def add_links(rows: list[dict], model: str, gpu: str | None = None) -> None:
    """Give every row ``fit_link`` and ``memory_link``: its format priced on the preset ``model`` (None
    for a format the size calculator does not list)."""
    for r in rows:
        ok = known_format(r.get("format"))
        r["fit_link"] = fit_url(r["format"], model, gpu) if ok else None
        r["memory_link"] = memory_url(r["format"], model) if ok else None


RESULT_COLUMNS = {
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
"""How the Quality and Compare tables show result rows (the column order is this dict's)."""
