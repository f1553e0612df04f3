"""The model picker's "From a file" source: a GGUF file on the Hub (``owner/repo``, then a file) or on the
server, read from its header only (``calculator.gguf_model``), with what the file stores shown beside the
llama-quantize recipe replay for its file type.

A link may carry a Hub repo and file (URL keys ``file`` and ``ggfile``): reading a header costs a few MB
of range requests, never the weights. A local ``.gguf`` file is only read from the folders the server's
operator lists in ``QUANTFIT_ALLOWED_PATHS`` (``calculator.paths``: the one allow-list of the app); any other
path gets the same message whether it exists or not, so a link cannot probe the server's disk.
"""

from __future__ import annotations

import streamlit as st

from calculator import units
from calculator.gguf_model import GGUFChoice, GGUFModel, gguf_choices, load_gguf, parse_gguf_ref
from calculator.hub import is_repo_id
from calculator.paths import ALLOWED_PATHS_ENV, allowed_path, refused_path


def is_hub_ref(text: str) -> bool:
    return is_repo_id(parse_gguf_ref(text)[0]) and not text.startswith(("/", ".", "~"))


@st.cache_resource(max_entries=16, ttl=600, show_spinner=False)
def gguf_lookup(ref: str) -> tuple[GGUFModel | None, str | None]:
    """(GGUFModel, None) or (None, what went wrong) for ``owner/repo:file.gguf`` or an allowed local path.
    A resource cache: the same model object on every rerun (its spec keys the calculator's caches)."""
    if not is_hub_ref(ref):
        path = allowed_path(ref, folders=False)
        if path is None:
            return None, refused_path("GGUF file", ref, "paste a Hub repo such as bartowski/Qwen2.5-7B-Instruct-GGUF",
                                      ".gguf files")
        ref = str(path)
    try:
        model = load_gguf(ref)
        model.spec  # noqa: B018 (a projector or an unsized architecture says so here, once)
    except ValueError as err:
        return None, str(err)
    return model, None


@st.cache_data(max_entries=32, ttl=600, show_spinner=False)
def gguf_listing(repo: str) -> tuple[list[GGUFChoice], str | None]:
    """The repo's language-model GGUF files (one row per file, split parts joined), or what went wrong."""
    try:
        rows = [c for c in gguf_choices(repo) if c.kind == "model"]
    except ValueError as err:
        return [], str(err)
    return rows, None if rows else f"{repo} has no .gguf files; paste a GGUF repository (or use “Hub id”)"


def pick_file() -> tuple[str, GGUFModel] | None:
    """Text box (URL key ``file``) and, for a bare repo, a file box (URL key ``ggfile``); None after a message."""
    text = st.text_input("GGUF file: Hub repo or server path", key="file", bind="query-params",
                         persist_state="session", placeholder="bartowski/Qwen2.5-7B-Instruct-GGUF",
                         help="A Hub repo (then pick a file), owner/repo:file.gguf, or a .gguf path in the "
                              f"folders the server allows ({ALLOWED_PATHS_ENV}). Only the header is read.").strip()
    if not text:
        st.info("Paste a GGUF repo such as `bartowski/Qwen2.5-7B-Instruct-GGUF`, then press Enter.",
                icon=":material/description:")
        return None
    repo, filename = parse_gguf_ref(text)
    if is_hub_ref(text) and filename is None:
        with st.spinner(f"Listing {repo}…"):
            rows, error = gguf_listing(repo)
        if error:
            st.error(error, icon=":material/cloud_off:")
            return None
        files = [r.file for r in rows]
        filename = st.selectbox("File", files, key="ggfile", bind="query-params",
                                help="One row per file (split parts together), smallest first.")
        row = rows[files.index(filename)]
        st.caption(f"{row.file_type} · {units.fmt_bytes(row.size_bytes) if row.size_bytes else 'size unknown'}"
                   f"{f' in {row.parts} parts' if row.parts > 1 else ''} · {len(rows)} files in {repo}")
        text = f"{repo}:{filename}"
    with st.spinner(f"Reading the header of {text}…"):
        model, error = gguf_lookup(text)
    if model is None:
        st.error(error, icon=":material/error:")
        return None
    return text, model


def file_summary(model: GGUFModel) -> str:
    """One line: what the file stores, and how the recipe replay compares (predicted vs stored)."""
    line = (f"File: {model.file_type}, {units.fmt_bytes(model.tensor_data_bytes)} of tensor data "
            f"({model.tensor_data_bytes * 8 / model.params:.3f} bits/weight), header read "
            f"{units.fmt_gb(model.header_bytes_read)}")
    try:
        c = model.comparison()
    except ValueError:
        return line + "."
    if c.exact:
        return line + f"; llama-quantize's {c.predicted_format} recipe predicts exactly these bytes."
    return line + (f"; the {c.predicted_format} recipe predicts {units.fmt_gb(c.predicted_bytes)}: "
                   f"{len(c.differences)} of {c.tensors_compared} tensors differ ({c.delta_pct:+.2f}%).")
