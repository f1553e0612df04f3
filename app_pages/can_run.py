"""What can I run? page: GPU(s) + context + KV cache type -> every preset (and any Hub model added) ranked by
what fits entirely on the GPU(s), each with the best file type that fits and that type's expected quality.

The question people take to recommender tools, answered with exact bytes: per model, ``calculator.search.
best_format`` (the highest-quality format in ``calculator.quality.QUALITY_ORDER`` that fits) and
``calculator.fit`` for its numbers; the quality cost is ``ui.fit_views.format_quality`` (llama.cpp's
Llama-3-8B KLD scoreboard, or measured here for SmolLM2-135M). Ranking: models that fit first; among them
by quality class (4-bit or better, 3-bit, 2-bit and below: a 70B squeezed into IQ2_XXS loses more than a
32B at Q4_K_M), then the most parameters, then the lower KLD.
"""

from __future__ import annotations

import streamlit as st

from calculator import units
from calculator.fit import FitOptions, as_setup, fit
from calculator.hardware import GpuSetup
from calculator.hub import is_repo_id
from calculator.models import list_presets, load_preset
from calculator.quality import QUALITY_KLD, QUALITY_ORDER
from calculator.runtime import CacheType
from calculator.search import best_format
from calculator.units import shown
from ui import fit_views
from ui.context import context_input
from ui.export import download_bar, table_downloads
from ui.guard import run_page
from ui.pickers import HUB, gpu_select, hub_lookup
from ui.share import fit_url, page_title
from ui.style import RESULTS_FIRST
from ui.url_state import MAX_URL_WARNINGS, warn_bad_url_number, warn_unknown_url_value

KV_TYPES = [c.value for c in CacheType]
# Quality classes by the KLD of the file types that bound them on llama.cpp's scoreboard (calculator.quality).
TIERS = ((QUALITY_KLD["IQ4_XS"], "4-bit class or better"), (QUALITY_KLD["Q3_K_S"], "3-bit class: noticeable loss"),
         (float("inf"), "2-bit or below: heavy loss"))
# A server's worth (Will it fit? sizes up to 64): every preset in 30 file types on 64 GPUs at a 10M-token
# context cost 1.6-2.6 s of server CPU per view, on 8 GPUs ~0.5 s (docs/testing.md).
MAX_GPUS = 8
MAX_HUB_MODELS = 8  # Hub models one view looks up (each is a network round trip the first time)
MAX_HUB_NAME_CHARS = 96  # the Hub's limit on an owner or a repo name (huggingface_hub validate_repo_id)


def hub_ids_from(text: str) -> tuple[tuple[str, ...], list[str]]:
    """(the Hub ids to look up, warnings) for the comma-separated "Add Hub ids" text, checked before any Hub call:
    ids of the Hub's shape only (``_hub_shape``), each once, at most ``MAX_HUB_MODELS``; each warning names what
    was left out."""
    wanted = list(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))
    bad = [h for h in wanted if not _hub_shape(h)]
    ids = [h for h in wanted if _hub_shape(h)]
    warnings = []
    if bad:
        warnings.append(f"Not a Hub model id (owner/name: letters, digits, _ . -, at most {MAX_HUB_NAME_CHARS} "
                        f"characters each): {_listed(bad)}; left out.")
    if len(ids) > MAX_HUB_MODELS:
        warnings.append(f"{len(ids)} Hub models listed; the first {MAX_HUB_MODELS} are ranked, "
                        f"{_listed(ids[MAX_HUB_MODELS:])} left out.")
    return tuple(ids[:MAX_HUB_MODELS]), warnings


def _hub_shape(text: str) -> bool:
    """``owner/name`` (``calculator.hub.is_repo_id``) that the Hub's own rules accept (huggingface_hub's
    validate_repo_id: at most 96 characters each, no ``--`` or ``..``, no leading or trailing ``-`` or ``.``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not is_repo_id(text) or len(text) > 2 * MAX_HUB_NAME_CHARS + 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _listed(values: list[str]) -> str:
    more = len(values) - MAX_URL_WARNINGS
    return ", ".join(map(shown, values[:MAX_URL_WARNINGS])) + (f" and {more} more" if more > 0 else "")


def _row(name: str, label: str, spec, setup: GpuSetup, context: int, opts: FitOptions, source: str) -> dict:
    best = best_format(spec, setup, context, 1, options=opts)
    shown = best or fit(spec, QUALITY_ORDER[-1], setup, context, 1, options=opts, with_max_context=False)
    kld, quality_source = fit_views.format_quality(shown.format, name) if best else (None, "")
    rank_kld = QUALITY_KLD.get(shown.format, kld or 0.0)  # the class goes by the published ranking
    tier = next(i for i, (limit, _) in enumerate(TIERS) if rank_kld <= limit)
    return {
        "tier": tier, "quality": TIERS[tier][1] if best else "",
        "model": label, "preset": name, "params": spec.total_params, "params_text": units.fmt_count(spec.total_params),
        "fits": best is not None, "best_format": best.format if best else "none",
        "verdict": "fits" if best else f"does not fit (even {shown.format}: {units.fmt_gb(shown.per_device_bytes)}"
                                       f" per GPU)",
        "per_gpu_gb": units.to_gb(shown.per_device_bytes), "free_gb": units.to_gb(shown.headroom_bytes),
        "decode_tokens_per_s": best.decode_tokens_per_s if best else None, "kld": kld,
        "quality_source": quality_source, "source": source,
    }


@st.cache_data(max_entries=64, show_spinner=False)
def ranking(setup: GpuSetup, context: int, opts: FitOptions, hub_ids: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    """(rows ranked as the module docstring says, one message per Hub id that could not be read)."""
    rows, problems = [], []
    for name in list_presets():
        rows.append(_row(name, name, load_preset(name), setup, context, opts, "preset"))
    for repo in hub_ids:
        hub, error = hub_lookup(repo)
        if hub is None:
            problems.append(f"{repo}: {error}")
            continue
        rows.append(_row(repo, repo, hub.spec, setup, context, opts, "Hugging Face Hub"))
    rows.sort(key=lambda r: (not r["fits"], r["tier"] if r["fits"] else 0,
                             -r["params"] if r["fits"] else r["per_gpu_gb"], r["kld"] if r["kld"] is not None else 1.0))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank if r["fits"] else None
        r["fit_link"] = fit_url(r["best_format"] if r["fits"] else QUALITY_ORDER[-1], r["preset"],
                                setup.gpu.name) if r["source"] == "preset" else None
    return rows, problems


COLUMNS = {
    "rank": st.column_config.NumberColumn("#", format="%d", width="small"),
    "model": st.column_config.TextColumn("Model", pinned=True),
    "params_text": st.column_config.TextColumn("Parameters"),
    "best_format": st.column_config.TextColumn("Best file type", help="The highest-quality format (lowest "
                                               "published KLD) that fits entirely on the GPU(s)"),
    "quality": st.column_config.TextColumn("Quality class", width="medium"),
    "kld": st.column_config.NumberColumn("KLD", format="%.4f", help="Of that file type: lower is better"),
    "decode_tokens_per_s": st.column_config.NumberColumn("Tokens/s", format="%.1f"),
    "free_gb": st.column_config.NumberColumn("Free GB / GPU", format="%+.2f"),
    "verdict": st.column_config.TextColumn("Verdict", width="medium"),
    "quality_source": st.column_config.TextColumn("Quality source", width="medium"),
    "fit_link": st.column_config.LinkColumn("Will it fit?", display_text="details ↗"),
}


def main() -> None:
    page_title("What can I run?")
    answer = st.container(key=f"{RESULTS_FIRST}_ranking")
    c = st.columns([2, 0.8, 1.2, 1.8, 1.1], vertical_alignment="bottom")
    with c[0]:
        gpu = gpu_select()
    warn_bad_url_number("n_gpus", low=1, high=MAX_GPUS, default=1, what="GPU count")
    n_gpus = c[1].number_input("GPUs", 1, MAX_GPUS, 1, key="n_gpus", bind="query-params",
                               help=f"Identical GPUs, up to {MAX_GPUS} here (Will it fit? takes up to 64)")
    context = context_input(c[2], c[3], max_context=None)
    warn_unknown_url_value("kv", KV_TYPES, "KV cache type")
    kv = c[4].selectbox("KV cache", KV_TYPES, index=KV_TYPES.index("fp16"), key="kv", bind="query-params",
                        help="llama.cpp --cache-type-k/-v; q8_0 halves the cache")
    hub_text = st.text_input(f"Add {HUB}s", key="hub_add", bind="query-params",
                             placeholder="optional, comma-separated: Qwen/Qwen2.5-7B, google/gemma-2-2b",
                             help="Read from the Hub (config.json and safetensors headers only) and ranked "
                                  "with the presets")
    if gpu is None:
        return
    hub_ids, warnings = hub_ids_from(hub_text)
    for warning in warnings:
        st.warning(warning, icon=":material/link_off:")
    setup = as_setup(gpu, int(n_gpus))
    with st.spinner("Sizing every model in every format…"):
        rows, problems = ranking(setup, context, FitOptions(kv_type=kv), hub_ids)
    for problem in problems:
        st.error(f"Hub model left out: {problem}", icon=":material/cloud_off:")
    fitting = [r for r in rows if r["fits"]]
    with answer:
        if fitting:
            top, largest = fitting[0], max(fitting, key=lambda r: r["params"])
            speed = f", ~{top['decode_tokens_per_s']:,.0f} tokens/s" if top["decode_tokens_per_s"] else ""
            also = ("" if largest is top else f" The largest that fits at all: {largest['model']} as "
                    f"{largest['best_format']} ({largest['quality']}).")
            st.success(f"**{len(fitting)} of {len(rows)} models fit** entirely on {setup.label} at "
                       f"{context:,} tokens. Best: **{top['model']}** ({top['params_text']} parameters) as "
                       f"**{top['best_format']}**, {top['quality']}{speed}.{also}", icon=":material/check_circle:")
        else:
            st.error(f"**No model fits** entirely on {setup.label} at {context:,} tokens: try a shorter context, "
                     "a quantized KV cache or more GPUs.", icon=":material/block:")
    st.dataframe(rows, hide_index=True, key="can_run_table", column_config=COLUMNS, column_order=list(COLUMNS),
                 height=min(35 * (len(rows) + 1) + 3, 720))
    st.caption("KLD: the mean KL divergence of the file type to the unquantized model, "
               f"{fit_views.PUBLISHED} (for SmolLM2-135M: {fit_views.MEASURED}); it ranks file types, the value "
               "differs per model. Batch 1; Will it fit? has every other setting.")
    stem = f"quantfit-can-run-{setup.label}-{context}".replace(" ", "_").replace("/", "_")
    with download_bar():
        table_downloads(rows, stem=stem, key="can_run_dl",
                        meta={"gpus": setup.label, "context": context, "kv_cache": kv})


run_page(main)
