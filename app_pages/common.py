"""Shared UI helpers for every page of the quantfit app. UI only: every number comes from calculator/.

Pages (and the issue-6 pages quality / reference / compare) use these. Widget keys double as URL query
parameter names (``bind="query-params"``), so a copied link reopens the same state.

    run_page(main: Callable[[], None]) -> None
        Run a page body. A ``ValueError`` (a user mistake) becomes ``st.error`` with its message; any other
        exception becomes ``st.error`` plus a server-log traceback. No traceback ever reaches the page.
    model_picker(*, default_source=PRESET, default_preset="llama-3.1-8b", default_params="70B",
                 sources=SOURCES) -> ModelChoice | None
        Model from a searchable preset list, a Hub id (spinner while looked up), an uploaded config.json or
        a bare parameter count. URL keys: src, model, hub, params, cfg (an uploaded config, compressed).
        Returns None after showing st.error / st.warning / st.info saying what to do.
    resolve_subject(ref: tuple[str, str]) -> ModelSpec | int      (cache_resource; raises ValueError)
        What calculator functions take, from ``ModelChoice.ref``; use ``ref`` as the cache key of page
        computations (it is small and hashable, a ModelSpec is not cheap to hash).
    gpu_multiselect(*, key="gpus", default=("RTX 4090", "H100 SXM"), label=...) -> list[GpuSpec]
    gpu_select(*, key="gpu", default="RTX 4090", label=...) -> GpuSpec | None   (catalogue or "Custom…")
    warn_unknown_url_value(key, options, what) -> None   before a bound widget: flag a link's bad value
    page_title(title: str, share_keys: Iterable[str]) -> None   st.title with share_link at its right.
    share_link(keys: Iterable[str], *, key="share") -> None    "Copy link" popover with share_url(keys).
    share_url(keys: Iterable[str], *, base: str | None = None) -> str
        The page URL with the current values of ``keys`` (widget keys) and the ``cfg`` upload.
    download_bar() -> container     a horizontal row to put the download helpers below in
    table_downloads(rows: list[dict], *, stem: str, key: str, meta: dict | None = None, label="Table") -> None
        CSV and JSON download buttons; ``rows`` hold raw values (sizes as int bytes).
    figure_downloads(fig, *, stem: str, key: str, label="Chart") -> None
        PNG and SVG (kaleido, system Chromium) and standalone interactive HTML, rendered on click.
    csv_bytes(rows) -> bytes;  json_bytes(rows, meta=None) -> bytes;  figure_bytes(fig, fmt) -> bytes
    encode_config(data: bytes) -> str;  decode_config(text: str) -> bytes    (the ``cfg`` URL value)
    units_footer() -> None      Sidebar block: GB = 10^9 B, GiB = 2^30 B, and the sources, on every page.
    clear_caches() -> None      Clear the app's st.cache_data and st.cache_resource (tests, bench).
    MODEL_KEYS                  The model picker's URL keys; pass them plus the page's own to share_link.
    FAMILY_LABELS, GB_NOTE, PRESET/HUB/CONFIG/PARAMS    shared wording (family names, units, model sources)
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import os
import shutil
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urlencode

import streamlit as st

from calculator import units
from calculator.formats import Family
from calculator.hardware import GpuSpec, catalogue, get_gpu
from calculator.models import (
    HubModel,
    ModelSpec,
    list_presets,
    load_config_bytes,
    load_hub,
    load_preset,
    preset_record,
)

_LOG = logging.getLogger("quantfit.app")

PRESET, HUB, CONFIG, PARAMS = "Preset", "Hub id", "config.json", "Parameters"
SOURCES = (PRESET, HUB, CONFIG, PARAMS)
"""Model sources, as shown and as written in the URL (``src=Hub+id``): bound widgets put the option
text in the link, so options are plain readable strings and no bound widget uses ``format_func``."""
MODEL_KEYS = ("src", "model", "hub", "params")
"""The model picker's URL keys (pass them, plus the page's own keys, to share_link)."""
CFG_PARAM = "cfg"
"""Query parameter carrying an uploaded config.json (zlib + URL-safe base64), so upload links work too."""
MAX_CFG_CHARS = 6000
"""Longest ``cfg`` we put in a link: browsers and proxies accept ~8k-character URLs."""
MAX_SANE_PARAMS = 10 * 10**12
"""Above this we warn: the largest published LLMs have ~2T parameters."""
MAX_PARAMS = 10**15
"""Above this we refuse: 1,000T parameters is no model, and byte counts would overflow the table's int64."""
MAX_GPU_BYTES = 100 * 10**12
"""Above this a custom GPU is refused (100 TB; the largest accelerators have a few hundred GB)."""
CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium: kaleido (via choreographer, which reads BROWSER_PATH) renders PNG/SVG with it."""

GB_NOTE = "GB = 10⁹ bytes, GiB = 2³⁰ bytes"

FAMILY_LABELS = {
    Family.FLOAT: "float", Family.INT: "integer, ideal (no scales)",
    Family.GROUP_INT: "integer + fp16 scales", Family.GPTQ: "GPTQ", Family.AWQ: "AWQ",
    Family.BNB: "bitsandbytes", Family.MICROSCALING: "microscaling FP4", Family.EXL2: "EXL2",
    Family.GGUF: "GGUF tensor type",
}
"""How the pages name each format family (tables, chart legends, the Formats page filter)."""
assert set(FAMILY_LABELS) == set(Family), set(Family) ^ set(FAMILY_LABELS)

# Sources behind the numbers the pages show (linked from the footer on every page).
SOURCE_LINKS: tuple[tuple[str, str], ...] = (
    ("GGUF block sizes: gguf GGML_QUANT_SIZES (llama.cpp gguf-py/gguf/constants.py)",
     "https://github.com/ggml-org/llama.cpp/blob/007dbbf3fd17eefe9b47fee45f48f7ba5e62b714/gguf-py/gguf/constants.py"),
    ("GGUF file types: llama.cpp src/llama-quant.cpp",
     "https://github.com/ggml-org/llama.cpp/blob/007dbbf3fd17eefe9b47fee45f48f7ba5e62b714/src/llama-quant.cpp"),
    ("GPTQ (Frantar et al. 2022)", "https://arxiv.org/abs/2210.17323"),
    ("AWQ (Lin et al. 2023)", "https://arxiv.org/abs/2306.00978"),
    ("NF4 / QLoRA (Dettmers et al. 2023)", "https://arxiv.org/abs/2305.14314"),
    ("OCP Microscaling (MX) v1.0",
     "https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf"),
    ("Model shapes: each model's Hugging Face config.json", "https://huggingface.co/docs/transformers"),
)


# Page guard ---------------------------------------------------------------------------------------------

def run_page(main: Callable[[], None]) -> None:
    """Run a page body; errors become messages, never tracebacks (st.stop / reruns pass through)."""
    try:
        main()
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - the page must not show a traceback; the log keeps it
        _LOG.exception("page failed")
        st.error(
            f"quantfit hit an internal error ({type(err).__name__}: {err}). Change an input or reload; "
            "if it persists, please report it with the link from “Copy link”.",
            icon=":material/bug_report:",
        )


# Models -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """What the model picker resolved: the calculator input plus how to label and cite it."""

    ref: tuple[str, str]
    """Hashable cache key: (PRESET, name) | (HUB, repo id) | (CONFIG, cfg text) | (PARAMS, "70B")."""
    subject: ModelSpec | int
    """A ModelSpec (shapes known) or a bare parameter count (int)."""
    label: str
    source: str
    """Where the model's facts come from, in full (exports carry it)."""
    short_source: str
    """One line of it for the page (the full text goes in a tooltip)."""
    hub_checkpoint_params: int | None = None
    """Parameters counted from the Hub checkpoint's safetensors headers (Hub look-ups only)."""

    @property
    def spec(self) -> ModelSpec | None:
        return self.subject if isinstance(self.subject, ModelSpec) else None

    @property
    def total_params(self) -> int:
        return self.subject.total_params if isinstance(self.subject, ModelSpec) else self.subject


@st.cache_data(max_entries=64, show_spinner=False)
def preset_labels() -> dict[str, str]:
    """Preset name -> "Llama 3.1 8B · 8.03B params · meta-llama/Llama-3.1-8B" (the searchable text)."""
    out = {}
    for name in list_presets():
        record = preset_record(name)
        spec = load_preset(name)
        label = f"{record.get('display_name') or name} · {units.fmt_count(spec.total_params)} params"
        if record.get("hf_id"):
            label += f" · {record['hf_id']}"
        out[name] = label
    return out


@st.cache_data(max_entries=32, ttl=600, show_spinner=False)
def hub_lookup(repo_id: str) -> tuple[HubModel | None, str | None]:
    """(HubModel, None) or (None, what went wrong). Failures are cached too (10 min) so an offline Hub
    costs one time-out, not one per rerun; "Retry" clears this cache."""
    try:
        return load_hub(repo_id), None
    except ValueError as err:
        return None, str(err)


@st.cache_resource(max_entries=64, show_spinner=False)
def resolve_subject(ref: tuple[str, str]) -> ModelSpec | int:
    """ModelSpec (or parameter count) for a ``ModelChoice.ref``; ValueError says what to fix.

    A resource cache, not a data cache: it hands back the same (frozen, never mutated) ModelSpec object
    on every rerun, so calculator.runtime's per-spec memo (keyed by object identity) keeps its hits,
    and no 1,000-tensor spec is unpickled per rerun. Hub answers themselves sit in ``hub_lookup``.
    """
    kind, value = ref
    if kind == PRESET:
        return load_preset(value)
    if kind == PARAMS:
        return units.parse_count(value)
    if kind == CONFIG:
        return load_config_bytes(decode_config(value), name="uploaded config.json")
    if kind == HUB:
        hub, error = hub_lookup(value)
        if hub is None:
            raise ValueError(error)
        return hub.spec
    raise ValueError(f"model source {kind!r} is not one of {', '.join(SOURCES)}")


def encode_config(data: bytes) -> str:
    """config.json bytes -> compact URL-safe text (JSON re-serialised compactly, zlib, base64url)."""
    try:
        compact = json.dumps(json.loads(data.decode("utf-8")), separators=(",", ":"), sort_keys=True).encode()
    except (UnicodeDecodeError, json.JSONDecodeError):
        compact = data  # keep it as sent; load_config_bytes will say why it is not a config
    return base64.urlsafe_b64encode(zlib.compress(compact, 9)).decode().rstrip("=")


def decode_config(text: str) -> bytes:
    """Inverse of ``encode_config``; ValueError for a damaged link."""
    damaged = ValueError("the config.json in this link is damaged (the 'cfg' part of the URL); upload the "
                         "file again")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        inflate = zlib.decompressobj()
        data = inflate.decompress(raw, 1_000_001)
    except (binascii.Error, zlib.error, ValueError):
        raise damaged from None
    if not inflate.eof:  # truncated link, or more than the 1 MB a config.json may have
        raise damaged
    return data


def warn_unknown_url_value(key: str, options: Iterable[str], what: str) -> None:
    """Call before creating the bound widget ``key``: Streamlit silently drops a URL value that is not
    one of the options; say so instead, so a mistyped or outdated link does not mislead."""
    wanted = st.query_params.get(key)
    if wanted and wanted not in set(options):
        st.warning(f"The link asks for {what} {wanted!r}, which is not in the list; showing the default "
                   "instead. Pick one from the list.", icon=":material/link_off:")


def model_picker(
    *,
    default_source: str = PRESET,
    default_preset: str = "llama-3.1-8b",
    default_params: str = "70B",
    sources: tuple[str, ...] = SOURCES,
) -> ModelChoice | None:
    """The model row shared by the pages: source + value. See the module docstring."""
    presets = list(preset_labels())
    if st.session_state.get("src") not in (None, *sources):
        # Carried over from a page that offers more sources (Memory's parameter count): start from this
        # page's default instead of leaving an invalid value in the URL.
        st.session_state["src"] = default_source
    if st.query_params.get("src", default_source) == PRESET:
        warn_unknown_url_value("model", presets, "preset")
    left, right = st.columns(2, vertical_alignment="bottom")
    source = left.segmented_control(
        "Model from", sources, default=default_source, key="src", bind="query-params",
        persist_state="session", required=True,
        help="A preset (offline, with sources), a Hugging Face Hub id, your config.json, or just a "
             "parameter count like 70B.",
    )
    if source != CONFIG and CFG_PARAM in st.query_params:
        del st.query_params[CFG_PARAM]
    with right:
        if source == PRESET:
            return _pick_preset(presets, default_preset)
        if source == HUB:
            return _pick_hub()
        if source == CONFIG:
            return _pick_config()
        return _pick_params(default_params)


def _pick_preset(presets: list[str], default: str) -> ModelChoice | None:
    if not presets:
        st.warning("No presets are installed (assets/presets is empty); use a Hub id, a config.json or a "
                   "parameter count.")
        return None
    name = st.selectbox(
        "Preset (type to search)", presets, index=presets.index(default) if default in presets else 0,
        key="model", bind="query-params", persist_state="session",
    )
    spec = resolve_subject((PRESET, name))
    record = preset_record(name)
    short = f"{record.get('hf_id', name)} config.json (offline preset {name})"
    source = f"{short}: {record.get('config_source', '')}"
    return ModelChoice((PRESET, name), spec, record.get("display_name") or name, source, short)


def _pick_hub() -> ModelChoice | None:
    repo = st.text_input("Hugging Face Hub id", key="hub", bind="query-params", persist_state="session",
                         placeholder="Qwen/Qwen2.5-7B",
                         help="Reads config.json and the safetensors headers only (no weights). Gated "
                              "repos need HF_TOKEN on the server.").strip()
    if not repo:
        st.info("Type a Hub model id such as `Qwen/Qwen2.5-7B`, then press Enter.", icon=":material/search:")
        return None
    with st.spinner(f"Looking up {repo} on the Hugging Face Hub…"):
        hub, error = hub_lookup(repo)
    if hub is None:
        st.error(error, icon=":material/cloud_off:")
        if st.button("Retry the look-up", key="hub_retry"):
            hub_lookup.clear()
            st.rerun()
        return None
    source = f"Hugging Face Hub {repo} config.json"
    return ModelChoice((HUB, repo), hub.spec, repo, source, source, hub.checkpoint_params or None)


def _pick_config() -> ModelChoice | None:
    upload = st.file_uploader("config.json", type=["json"], key="upload",
                              help="A transformers config.json (a few KB). It is put in the link, "
                                   "compressed, so a copied link reopens it.")
    if upload is not None:
        cfg = encode_config(upload.getvalue())
        if len(cfg) <= MAX_CFG_CHARS:
            if st.query_params.get(CFG_PARAM) != cfg:
                st.query_params[CFG_PARAM] = cfg
        else:
            st.warning(f"This config.json is too large to put in a link ({len(cfg):,} characters once "
                       "compressed); links will not carry it.", icon=":material/link_off:")
        name = upload.name
    elif CFG_PARAM in st.query_params:
        cfg, name = st.query_params[CFG_PARAM], "config.json from the link"
    else:
        st.info("Upload a model's config.json (from its Hub page, “Files and versions”).",
                icon=":material/upload_file:")
        return None
    spec = resolve_subject((CONFIG, cfg))
    source = f"uploaded {name}"
    return ModelChoice((CONFIG, cfg), spec, f"{spec.arch} from {name}", source, source)


def _pick_params(default: str) -> ModelChoice | None:
    text = st.text_input("Parameter count", value=default, key="params", bind="query-params",
                         persist_state="session",
                         help="70B, 8e9, 1.5T, 135M. Without a config.json only weight memory is exact "
                              "(nominal bits per weight); KV cache needs the architecture.").strip()
    n_params = units.parse_count(text)
    if n_params > MAX_PARAMS:
        st.error(f"{text!r} is {n_params:.3g} parameters, beyond any model (the largest have ~2T); give a "
                 "count such as 70B, 405B or 1.5T.", icon=":material/error:")
        return None
    if n_params > MAX_SANE_PARAMS:
        st.warning(f"{units.fmt_count(n_params)} parameters is more than any published model (~2T); check "
                   "the number (B = 10⁹, T = 10¹²).", icon=":material/warning:")
    source = "bare parameter count: each format's nominal bits per weight × parameters / 8"
    return ModelChoice((PARAMS, text), n_params, f"{units.fmt_count(n_params)} parameters", source, source)


# GPUs ---------------------------------------------------------------------------------------------------

def gpu_names() -> list[str]:
    return [g.name for g in catalogue()]


def gpu_multiselect(*, key: str = "gpus", default: tuple[str, ...] = ("RTX 4090", "H100 SXM"),
                    label: str = "Draw GPU memory lines") -> list[GpuSpec]:
    """Catalogue GPUs to compare against (memory as sold, decimal GB)."""
    names = gpu_names()
    unknown = [n for n in st.query_params.get_all(key) if n not in names]
    if unknown:
        st.warning(f"The link asks for GPU {', '.join(map(repr, unknown))}, not in the catalogue; left out.",
                   icon=":material/link_off:")
    chosen = st.multiselect(label, names, default=[n for n in default if n in names], key=key,
                            bind="query-params")
    return [get_gpu(n) for n in chosen]


CUSTOM_GPU = "Custom…"


def gpu_select(*, key: str = "gpu", default: str = "RTX 4090", label: str = "GPU") -> GpuSpec | None:
    """One catalogue GPU, or "Custom…" with a ``custom:24GiB:1000GB/s`` description (URL key
    ``<key>_custom``); None (after an st.error) for a custom description that does not parse."""
    names = [*gpu_names(), CUSTOM_GPU]
    warn_unknown_url_value(key, names, "GPU")
    name = st.selectbox(label, names, index=names.index(default) if default in names else 0, key=key,
                        bind="query-params", help="Memory as sold (decimal GB). Type to search.")
    if name == CUSTOM_GPU:
        text = st.text_input("Custom GPU", "custom:24GiB:1000GB/s", key=f"{key}_custom", bind="query-params",
                             help="custom:MEMORY[:BANDWIDTH][:TFLOPS], e.g. custom:48GB:960GB/s:180TFLOPS")
        try:
            gpu = get_gpu(text if text.strip().lower().startswith("custom") else f"custom:{text}")
        except ValueError as err:
            st.error(f"Custom GPU {text!r}: {err}", icon=":material/error:")
            return None
        if gpu.memory_bytes > MAX_GPU_BYTES:
            st.error(f"custom GPU memory {units.fmt_gb(gpu.memory_bytes)} is beyond any accelerator (limit "
                     f"{units.fmt_gb(MAX_GPU_BYTES, 0)}); give e.g. custom:24GiB or custom:80GB",
                     icon=":material/error:")
            return None
        return gpu
    return get_gpu(name)


# Sharing ------------------------------------------------------------------------------------------------

def share_url(keys: Iterable[str], *, base: str | None = None) -> str:
    """The current page's URL carrying the values of ``keys`` (and an uploaded config), for sharing.

    Built from the widget values themselves: bound widgets update the browser's URL from the frontend,
    so ``st.query_params`` lags one run behind them.
    """
    params: list[tuple[str, str]] = []
    for key in keys:
        value = st.session_state.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            params += [(key, str(v)) for v in value]
        else:
            params.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    if st.session_state.get("src") == CONFIG and CFG_PARAM in st.query_params:
        params.append((CFG_PARAM, st.query_params[CFG_PARAM]))
    if base is None:
        base = st.context.url or ""
    query = urlencode(params)
    return f"{base}?{query}" if query else base


def page_title(title: str, share_keys: Iterable[str]) -> None:
    """The page title with the "Copy link" button at its right."""
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.title(title)
    with right:
        share_link(share_keys)


def share_link(keys: Iterable[str], *, key: str = "share") -> None:
    """A "Copy link" popover: the URL in a code box (its copy icon puts it on the clipboard)."""
    # Lazy: the link is built and shown only while the popover is open, so a page load does not fetch the
    # code-highlighter bundle (1.5 MB of JavaScript) for a closed popover.
    with st.popover("Copy link", icon=":material/link:", key=key, on_change="rerun",
                    width="stretch") as popover:
        if popover.open:
            st.caption("This link reopens the page with the same model and settings:")
            st.code(share_url(keys), language=None, wrap_lines=True)


# Downloads ----------------------------------------------------------------------------------------------

def _plain(value):
    if isinstance(value, Fraction):
        return float(value)
    return value


def csv_bytes(rows: list[dict]) -> bytes:
    """Rows -> CSV (header from the first row's keys; sizes stay int bytes)."""
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
    return out.getvalue().encode()


def json_bytes(rows: list[dict], meta: dict | None = None) -> bytes:
    """``{"units": ..., **meta, "rows": rows}`` as indented JSON."""
    doc = {"units": {"bytes": "exact bytes", "gb": "10^9 bytes", "gib": "2^30 bytes"}, **(meta or {}),
           "rows": rows}
    return json.dumps(doc, indent=2, default=_plain).encode()


def download_bar():
    """The row under a page's results: ``with download_bar(): table_downloads(...); figure_downloads(..)``."""
    return st.container(horizontal=True, vertical_alignment="center", gap="large")


def table_downloads(rows: list[dict], *, stem: str, key: str, meta: dict | None = None, label: str = "Table"
                    ) -> None:
    """CSV and JSON download buttons for a table (no rerun on click), after a small ``label``."""
    row = st.container(horizontal=True, width="content", vertical_alignment="center")
    row.caption(label)
    row.download_button("CSV", csv_bytes(rows), f"{stem}.csv", "text/csv", key=f"{key}_csv",
                        icon=":material/download:", on_click="ignore")
    row.download_button("JSON", json_bytes(rows, meta), f"{stem}.json", "application/json", key=f"{key}_json",
                        icon=":material/download:", on_click="ignore")


def _use_system_chromium() -> bool:
    """Point kaleido (choreographer reads BROWSER_PATH) at Debian's chromium; never download a browser.
    False when no Chromium is installed (PNG/SVG export is then unavailable)."""
    if "BROWSER_PATH" not in os.environ:
        found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
        if not found:
            return False
        os.environ["BROWSER_PATH"] = found
    return os.path.exists(os.environ["BROWSER_PATH"])


_IMAGE_SIZE = {"width": 1200, "height": 600, "scale": 2}
_MIME = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html"}


def figure_bytes(fig, fmt: str) -> bytes:
    """A Plotly figure as PNG or SVG (kaleido + system Chromium) or standalone interactive HTML.

    Exported on a copy with the ``plotly_white`` template: Streamlit's default Plotly template holds
    placeholder colours (``#000001``...) that only Streamlit's browser side replaces, so a file exported
    with it comes out black.
    """
    import plotly.graph_objects as go

    fig = go.Figure(fig).update_layout(template="plotly_white")
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode()
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format {fmt!r} is not one of png, svg, html")
    if not _use_system_chromium():
        raise ValueError(f"PNG/SVG export needs Chromium ({CHROMIUM}, Debian package chromium); "
                         "download the HTML chart instead")
    import kaleido

    # One Chromium stays up for later exports (first image ~2 s, then ~0.2 s); kaleido closes it at exit.
    kaleido.start_sync_server(silence_warnings=True)
    with warnings.catch_warnings():
        # plotly passes its per-call browser options, which the running server already has.
        warnings.filterwarnings("ignore", "The kopts argument is ignored if using a server")
        return fig.to_image(format=fmt, **_IMAGE_SIZE)


def figure_downloads(fig, *, stem: str, key: str, label: str = "Chart") -> None:
    """PNG, SVG and HTML download buttons; each file is rendered only when its button is clicked."""
    row = st.container(horizontal=True, width="content", vertical_alignment="center")
    row.caption(label)
    can_render = _use_system_chromium()
    for fmt in ("png", "svg", "html"):
        html = fmt == "html"
        if not html and not can_render:
            row.button(fmt.upper(), key=f"{key}_{fmt}", disabled=True, icon=":material/image:",
                       help=f"Needs Chromium at {CHROMIUM} (Debian package chromium) for kaleido")
            continue
        row.download_button(fmt.upper(), lambda f=fmt: figure_bytes(fig, f), f"{stem}.{fmt}", _MIME[fmt],
                            key=f"{key}_{fmt}", icon=":material/code:" if html else ":material/image:",
                            on_click="ignore",
                            help="Standalone interactive chart (plotly.js included)" if html else None)


# Display ------------------------------------------------------------------------------------------------

def units_footer() -> None:
    """Units and sources, shown in the sidebar of every page (app.py calls it)."""
    with st.sidebar:
        st.caption(f"**Units.** {GB_NOTE}. GPU memory is as sold (an “80 GB” H100 = 80 × 10⁹ bytes). "
                   "Weight sizes are exact tensor bytes, every scale, zero and index included.")
        st.caption("**Sources.** " + " · ".join(f"[{text}]({url})" for text, url in SOURCE_LINKS))


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()

