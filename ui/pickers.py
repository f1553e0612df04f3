"""The model and GPU pickers the pages share. Each returns plain calculator inputs (or None after a message
saying what to do), so a page reads a picker and calls the calculator with what it returns.

Model sources: a searchable preset list, a Hugging Face Hub id (config.json and safetensors headers only),
an uploaded config.json (carried in the link, see ``ui.url_state``), a GGUF file read from its header
(``ui.file_picker``) or a bare parameter count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import streamlit as st

from calculator import units
from calculator.hardware import GpuSpec, catalogue, get_gpu
from calculator.hub import HubModel, load_hub
from calculator.models import ModelSpec, list_presets, load_config_bytes, load_preset, preset_record
from calculator.stored import StoredWeights
from ui.url_state import (
    CFG_PARAM,
    MAX_CFG_CHARS,
    decode_config,
    encode_config,
    replace_url_value,
    warn_unknown_url_value,
    warn_unknown_url_values,
)

PRESET, HUB, CONFIG, FILE, PARAMS = "Preset", "Hub id", "config.json", "From a file", "Parameters"
SOURCES = (PRESET, HUB, CONFIG, FILE, PARAMS)
"""Model sources, as shown and as written in the URL (``src=Hub+id``): bound widgets put the option
text in the link, so options are plain readable strings and no bound widget uses ``format_func``."""
MODEL_KEYS = ("src", "model", "hub", "file", "ggfile", "params")
"""The model picker's URL keys (pass them, plus the page's own keys, to ``ui.share.page_title``)."""
MAX_SANE_PARAMS = 10 * 10**12
"""Above this we warn: the largest published LLMs have ~2T parameters."""
MAX_PARAMS = 10**15
"""Above this we refuse: 1,000T parameters is no model, and byte counts would overflow the table's int64."""
MAX_GPU_BYTES = 100 * 10**12
"""Above this a custom GPU is refused (100 TB; the largest accelerators have a few hundred GB)."""
CUSTOM_GPU = "Custom…"
MAX_LINK_TENSORS = 1200
"""Most tensors a model from a link, an upload, the Hub or a GGUF header may have in the app (the largest preset,
Llama 3.1 405B, has 1,137; Qwen3-235B-A22B ~1,130): sizing costs CPU per tensor and format, and a link is
written by anyone. The command line has no such limit."""


def link_sized(spec: ModelSpec, what: str) -> ModelSpec:
    """``spec`` if the app may size it (``MAX_LINK_TENSORS``), else a ValueError saying to use the CLI."""
    if len(spec.tensors) > MAX_LINK_TENSORS:
        raise ValueError(f"{what} describes {len(spec.tensors):,} tensors, more than the {MAX_LINK_TENSORS:,} this "
                         "app sizes (the largest presets have ~1,100); size it with the command line "
                         "(python -m calculator)")
    return spec


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
    stored: StoredWeights | None = None
    """A GGUF file's own tensor types and bytes ("From a file"): pass it to ``fit``/``weight_memory`` where a
    format goes to size the file as stored."""

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
        n_params = load_preset(name).total_params
        label = f"{record.get('display_name') or name} · {units.fmt_count(n_params)} params"
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
    on every rerun, so the calculator's per-spec caches keep their hits and no 1,000-tensor spec is
    unpickled per rerun. Use ``ref`` (small, hashable) as the cache key of page computations.
    """
    kind, value = ref
    if kind == PRESET:
        return load_preset(value)
    if kind == PARAMS:
        return units.parse_count(value)
    if kind == CONFIG:
        return link_sized(load_config_bytes(decode_config(value), name="uploaded config.json"), "this config.json")
    if kind == HUB:
        hub, error = hub_lookup(value)
        if hub is None:
            raise ValueError(error)
        return link_sized(hub.spec, f"Hub model {value}")
    if kind == FILE:
        from ui.file_picker import gguf_lookup

        model, error = gguf_lookup(value)
        if model is None:
            raise ValueError(error)
        return link_sized(model.spec, f"GGUF file {value}")
    raise ValueError(f"model source {kind!r} is not one of {', '.join(SOURCES)}")


def model_picker(
    *,
    default_source: str = PRESET,
    default_preset: str = "llama-3.1-8b",
    default_params: str = "70B",
    sources: tuple[str, ...] = SOURCES,
) -> ModelChoice | None:
    """The model row: source (URL key ``src``) and its value (``model``, ``hub``, ``params`` or ``cfg``).
    None after an st.error / st.warning / st.info saying what to do."""
    presets = list(preset_labels())
    if st.session_state.get("src") not in (None, *sources):
        # Carried over from a page that offers more sources (Memory's parameter count): start from this
        # page's default instead of leaving an invalid value in the URL.
        st.session_state["src"] = default_source
    if st.query_params.get("src", default_source) == PRESET:
        _canonical_url_preset(presets)
    left, right = st.columns(2, vertical_alignment="bottom")
    source = left.segmented_control(
        "Model from", sources, default=default_source, key="src", bind="query-params",
        persist_state="session", required=True,
        help="A preset (offline, with sources), a Hugging Face Hub id, your config.json, a GGUF file (Hub "
             "or server, header only), or just a parameter count like 70B.",
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
        if source == FILE:
            return _pick_file()
        return _pick_params(default_params)


def _pick_preset(presets: list[str], default: str) -> ModelChoice | None:
    if not presets:
        st.warning("No presets are installed (assets/presets is empty); use a Hub id, a config.json or a "
                   "parameter count.")
        return None
    name = st.selectbox(
        "Preset (type to search)", presets, index=presets.index(default) if default in presets else 0,
        key="model", bind="query-params", persist_state="session", accept_new_options=True,
        on_change=_canonical_typed_preset,
        help="Type a few letters (l318 finds llama-3.1-8b), or a model's full name and Enter: "
             "“Llama 3.1 8B” and “meta-llama/Llama-3.1-8B-Instruct” both open llama-3.1-8b.",
    )
    if name not in presets:  # typed, and no preset matches (a match was swapped in by the callback)
        near = ", ".join(preset_suggestions(name)) or ", ".join(presets[:6]) + ", …"
        st.warning(f"No preset matches {name!r}. Close names: {near}. For any other model, pick “Hub id”.",
                   icon=":material/search_off:")
        return None
    spec = resolve_subject((PRESET, name))
    record = preset_record(name)
    short = f"{record.get('hf_id', name)} config.json (offline preset {name})"
    source = f"{short}: {record.get('config_source', '')}"
    return ModelChoice((PRESET, name), spec, record.get("display_name") or name, source, short)


_NAME_SUFFIXES = frozenset({"instruct", "chat", "it", "hf", "base", "gguf"})
"""Trailing words a checkpoint's name adds to the model's (Llama-3.1-8B-Instruct, gemma-2-9b-it)."""


def preset_key(text: str) -> str:
    """A model name reduced to what identifies it: the Hub repo without its owner, lower case, without spaces,
    dots, dashes or underscores and without Instruct/Chat/it suffixes. ``preset_key("meta-llama/Llama-3.1-8B-
    Instruct")`` == ``preset_key("llama 3.1 8b")`` == ``preset_key("llama-3.1-8b")`` == "llama318b"."""
    words = [w for w in re.split(r"[\s._\-]+", text.strip().lower().rsplit("/", 1)[-1]) if w]
    while len(words) > 1 and words[-1] in _NAME_SUFFIXES:
        words.pop()
    return "".join(words)


@st.cache_data(max_entries=4, show_spinner=False)
def _preset_keys() -> dict[str, str]:
    """Each preset's searchable keys (its name, display name and Hub id) -> the preset."""
    keys: dict[str, str] = {}
    for name in list_presets():
        record = preset_record(name)
        for text in (name, record.get("display_name") or "", record.get("hf_id") or ""):
            if text:
                keys.setdefault(preset_key(text), name)
    return keys


def find_preset(text: str) -> str | None:
    """The preset a typed name means (``preset_key`` equal, or the name with an owner word in front: "Meta
    Llama 3.1 8B"); None when none or several match."""
    wanted = preset_key(text)
    keys = _preset_keys()
    if wanted in keys:
        return keys[wanted]
    found = {name for key, name in keys.items() if len(key) >= 5 and wanted.endswith(key)}
    return found.pop() if len(found) == 1 else None


def preset_suggestions(text: str, limit: int = 5) -> list[str]:
    """Presets whose key starts with the typed one, or shares its first letters ("mistral 7b" -> both v0.1 and
    v0.3)."""
    wanted = preset_key(text)
    keys = _preset_keys()
    for n in (len(wanted), 6, 4):
        found = list(dict.fromkeys(name for key, name in keys.items() if key.startswith(wanted[:n])))
        if found:
            return found[:limit]
    return []


def _canonical_typed_preset() -> None:
    """on_change of the preset box: a typed name that means a preset becomes that preset."""
    typed = st.session_state.get("model")
    if typed and typed not in preset_labels():
        st.session_state["model"] = find_preset(typed) or typed


def _canonical_url_preset(presets: list[str]) -> None:
    """A link's ``model=Llama-3.1-8B-Instruct`` opens llama-3.1-8b; an unknown name gets the picker's warning."""
    wanted = st.query_params.get("model")
    if wanted and wanted not in presets and st.session_state.get("model", wanted) == wanted:
        found = find_preset(wanted)
        if found:
            st.session_state.pop("model", None)
            replace_url_value("model", found)


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
    _say_assumed(hub.spec)
    source = f"Hugging Face Hub {repo} config.json"
    return ModelChoice((HUB, repo), hub.spec, repo, source, source, hub.checkpoint_params or None)


def _say_assumed(spec: ModelSpec) -> None:
    """Name the fields the config.json left out and the transformers defaults they took (ModelSpec.assumed)."""
    if spec.assumed:
        st.caption("Not in this config.json, so transformers' defaults apply: " + "; ".join(spec.assumed))


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
    _say_assumed(spec)
    source = f"uploaded {name}"
    return ModelChoice((CONFIG, cfg), spec, f"{spec.arch} from {name}", source, source)


def _pick_file() -> ModelChoice | None:
    from ui.file_picker import file_summary, pick_file

    picked = pick_file()
    if picked is None:
        return None
    ref, model = picked
    st.caption(file_summary(model))
    source = f"GGUF header of {ref}"
    label = ref.rpartition(":")[2].rpartition("/")[2]  # the file name
    return ModelChoice((FILE, ref), model.spec, label, source, source, stored=model.stored)


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


def gpu_names() -> list[str]:
    """Every catalogue GPU's name (``assets/gpus.csv``), in catalogue order."""
    return [g.name for g in catalogue()]


def gpu_multiselect(*, key: str = "gpus", default: tuple[str, ...] = ("RTX 4090", "H100 SXM"),
                    label: str = "Draw GPU memory lines") -> list[GpuSpec]:
    """Catalogue GPUs to compare against (memory as sold, decimal GB)."""
    names = gpu_names()
    warn_unknown_url_values(key, names, "GPU", "the catalogue")
    chosen = st.multiselect(label, names, default=[n for n in default if n in names], key=key,
                            bind="query-params")
    return [get_gpu(n) for n in chosen]


def gpu_select(*, key: str = "gpu", default: str = "RTX 4090", label: str = "GPU") -> GpuSpec | None:
    """One catalogue GPU, or "Custom…" with a ``custom:24GiB:1000GB/s`` description (URL key
    ``<key>_custom``); None (after an st.error) for a custom description that does not parse."""
    names = [*gpu_names(), CUSTOM_GPU]
    warn_unknown_url_value(key, names, "GPU")
    name = st.selectbox(label, names, index=names.index(default) if default in names else 0, key=key,
                        bind="query-params", help="Memory as sold (decimal GB). Type to search.")
    if name != CUSTOM_GPU:
        return get_gpu(name)
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

