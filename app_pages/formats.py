"""Formats page: every weight format and GGUF file type, what its bytes hold, and a file type's
per-tensor recipe replayed on a real model. Data from ``calculator.formats`` and ``calculator.gguf_recipes``.
"""

from __future__ import annotations

import streamlit as st

from calculator import units
from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES, SOURCE, gguf_file
from ui.export import table_downloads
from ui.guard import run_page
from ui.labels import FORMAT_FAMILY_LABELS, GB_NOTE
from ui.pickers import CONFIG, HUB, PRESET, model_picker, resolve_subject
from ui.share import page_title

TABS = ("Weight formats", "GGUF file types", "Recipe on a model")


@st.cache_data(max_entries=4, show_spinner=False)
def format_rows() -> list[dict]:
    return [
        {"format": f.name, "family": FORMAT_FAMILY_LABELS[f.family],
         "bits_per_weight": float(f.bits_per_weight()), "bits_per_weight_exact": str(f.bits_per_weight()),
         "holds": f.holds, "description": f.description, "source": f.source}
        for f in FORMATS.values()
    ]


@st.cache_data(max_entries=4, show_spinner=False)
def file_type_rows() -> list[dict]:
    return [
        {"file_type": ft.name, "ftype_id": int(ft.ftype), "main_tensor_type": ft.default_type.name,
         "recipe": ft.summary, "source": SOURCE}
        for ft in FILE_TYPES.values()
    ]


def _layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0–2, 5, 7–8" (display only)."""
    out, start, prev = [], None, None
    for i in sorted(layers):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}–{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}–{prev}" if prev > start else f"{start}")
    return ", ".join(out)


@st.cache_data(max_entries=64, show_spinner=False)
def recipe(ref: tuple[str, str], file_type: str) -> dict:
    """The replayed file: totals, bytes by tensor type, and per role which type in which layers."""
    spec = resolve_subject(ref)
    if isinstance(spec, int):
        raise ValueError("a GGUF recipe needs tensor names and shapes: pick a preset, Hub id or config.json")
    gf = gguf_file(spec, file_type)
    shapes = {t.name: t.shape for t in spec.tensors}
    layer_of = {t.name: t.layer for t in spec.tensors}
    roles: dict[tuple[str, str], dict] = {}
    for name, type_name, n_bytes in gf.tensor_types:
        parts = name.split(".")
        role = ".".join(parts[2:]) if parts[0] == "blk" else name
        entry = roles.setdefault((role, type_name), {"tensor": role, "type": type_name, "layers": [],
                                                     "count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += n_bytes
        if layer_of[name] is not None:
            entry["layers"].append(layer_of[name])
    role_rows = [
        {"tensor": e["tensor"], "type": e["type"],
         "layers": _layer_ranges(e["layers"]) if e["layers"] else "—", "tensors": e["count"],
         "bytes": e["bytes"], "gb": units.to_gb(e["bytes"])}
        for e in roles.values()
    ]
    return {
        "model": spec.name, "file_type": gf.file_type, "bytes": gf.tensor_data_bytes,
        "padded_bytes": gf.padded_tensor_data_bytes, "bits_per_weight": float(gf.bits_per_weight),
        "params": gf.total_params, "imatrix": gf.imatrix, "requires_imatrix": gf.requires_imatrix,
        "by_type": [{"type": t, "tensors": gf.type_counts[t], "bytes": b, "gb": units.to_gb(b)}
                    for t, b in gf.bytes_by_type.items()],
        "roles": role_rows,
        "tensors": [{"name": n, "shape": " × ".join(map(str, shapes[n])), "type": t, "bytes": b}
                    for n, t, b in gf.tensor_types],
        "fallbacks": [f"{f.name}: row length {f.row_length} is not a multiple of {f.wanted}'s block, so "
                      f"{f.got}" for f in gf.fallbacks],
        "source": gf.source,
    }


def _formats_section() -> None:
    st.subheader("Weight formats")
    families = list(FORMAT_FAMILY_LABELS.values())
    chosen = st.pills("Families", families, selection_mode="multi", default=families, key="fam",
                      bind="query-params")
    rows = [r for r in format_rows() if r["family"] in chosen]
    st.dataframe(rows, hide_index=True, key="formats_table", height=460, column_config={
        "format": st.column_config.TextColumn("Format", pinned=True),
        "family": "Family",
        "bits_per_weight": st.column_config.NumberColumn("Bits / weight", format="%.4f",
                                                         help="Nominal: a large tensor whose rows divide "
                                                              "the group/block size"),
        "bits_per_weight_exact": st.column_config.TextColumn("Exact (fraction)"),
        "holds": st.column_config.TextColumn("What the bytes hold", width="large"),
        "description": st.column_config.TextColumn("Description", width="medium"),
        "source": st.column_config.TextColumn("Source", width="medium"),
    })
    st.caption(f"{len(rows)} of {len(FORMATS)} formats. Group sizes and EXL2 targets not listed also work by "
               "name (int4-g96, exl2-4.25). Per-channel formats show their code bits; the per-row scale adds "
               "16 / row length bits.")
    table_downloads(rows, stem="quantfit-formats", key="formats_dl")


def _file_types_section() -> None:
    st.subheader("GGUF file types")
    st.caption("A file type (Q4_K_M) is a recipe: llama-quantize picks a tensor type for each tensor by its "
               f"name, layer and the model's shape. Replayed from {SOURCE}.")
    rows = file_type_rows()
    st.dataframe(rows, hide_index=True, key="file_types_table", column_config={
        "file_type": st.column_config.TextColumn("File type", pinned=True),
        "ftype_id": st.column_config.NumberColumn("general.file_type", format="%d"),
        "main_tensor_type": "Most tensors",
        "recipe": st.column_config.TextColumn("Recipe (dense model)", width="large"),
        "source": None,
    })
    table_downloads(rows, stem="quantfit-gguf-file-types", key="file_types_dl")


def _recipe_section() -> None:
    st.subheader("Per-tensor recipe on a real model")
    choice = model_picker(default_source=PRESET, sources=(PRESET, HUB, CONFIG))
    names = list(FILE_TYPES)
    file_type = st.selectbox("File type", names, index=names.index("Q4_K_M"), key="ft", bind="query-params")
    if choice is None:
        return
    r = recipe(choice.ref, file_type)
    m = st.columns(3)
    m[0].metric("Tensor data", units.fmt_gb(r["bytes"]), units.fmt_gib(r["bytes"]), delta_color="off",
                delta_arrow="off", border=True, help="No GGUF header, metadata or alignment padding")
    m[1].metric("Bits per weight", f"{r['bits_per_weight']:.4f}", border=True,
                help="tensor data bytes × 8 / parameters, the BPW llama-quantize prints")
    m[2].metric("Parameters", f"{r['params']:,}", border=True)
    if r["requires_imatrix"]:
        st.info(f"llama-quantize makes {file_type} only with an importance matrix (imatrix); the replay "
                "assumes one.", icon=":material/info:")
    for line in r["fallbacks"]:
        st.caption(f"Fallback: {line}")
    left, right = st.columns([1, 2])
    with left:
        st.dataframe(r["by_type"], hide_index=True, key="recipe_by_type", column_config={
            "type": "Tensor type", "tensors": "Tensors",
            "bytes": st.column_config.NumberColumn("Bytes", format="localized"),
            "gb": st.column_config.NumberColumn("GB (10⁹ B)", format="%.3f")})
    with right:
        st.dataframe(r["roles"], hide_index=True, key="recipe_roles", column_config={
            "tensor": "Tensor", "type": "Type",
            "layers": st.column_config.TextColumn("Layers", width="medium"),
            "tensors": "Count", "bytes": st.column_config.NumberColumn("Bytes", format="localized"),
            "gb": st.column_config.NumberColumn("GB (10⁹ B)", format="%.3f")})
    with st.expander(f"All {len(r['tensors'])} tensors"):
        st.dataframe(r["tensors"], hide_index=True, key="recipe_tensors",
                     column_config={"bytes": st.column_config.NumberColumn("bytes", format="localized")})
    st.caption(f"Source: {r['source']}; model: {choice.short_source}. "
               f"Padded to {units.fmt_gb(r['padded_bytes'])} with 32-byte tensor alignment.")
    stem = f"quantfit-recipe-{choice.label}-{file_type}".replace("/", "_").replace(" ", "_")
    meta = {k: r[k] for k in ("model", "file_type", "bytes", "bits_per_weight", "source")}
    table_downloads(r["tensors"], stem=stem, key="recipe_dl", label="Tensor table", meta=meta)


def main() -> None:
    page_title("Formats: what the bytes hold")
    st.caption(f"Every weight format quantfit sizes, with its exact bits per weight. {GB_NOTE}.")
    # The open tab is in the URL (``tab=Recipe+on+a+model``), and only the open tab runs.
    tab_formats, tab_files, tab_recipe = st.tabs(TABS, key="tab", bind="query-params", on_change="rerun")
    if tab_formats.open:
        with tab_formats:
            _formats_section()
    if tab_files.open:
        with tab_files:
            _file_types_section()
    if tab_recipe.open:
        with tab_recipe:
            _recipe_section()


run_page(main)
