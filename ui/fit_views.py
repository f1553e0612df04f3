"""The Will-it-fit answers besides the chart: the verdict sentence, the advice that makes a run fit (each a
button that sets the widgets), and every common format at once with its expected quality cost.

Numbers come from ``calculator.fit`` / ``calculator.search``; quality costs from ``calculator.quality``
(llama.cpp's Llama-3-8B KLD scoreboard) or, for SmolLM2-135M, from the results measured here
(``assets/results``, read through ``ui.quality_data``). The calculator has no per-format quality *label*
(which model, which source), so ``format_quality`` makes one here from those two public sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from calculator import units
from calculator.fit import FitOptions, FitResult, Verdict, fit
from calculator.hardware import GpuSetup
from calculator.quality import QUALITY_KLD, QUALITY_ORDER
from calculator.search import Advice, AdviceKind, advise
from evaluation.plan import BUNDLED_SWEEP
from ui.labels import plural
from ui.pickers import PRESET, ModelChoice, resolve_subject
from ui.quality_data import matching_results

EVERY_FORMAT = ("fp16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS", "Q4_0", "Q3_K_M",
                "Q3_K_S", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_XS", "IQ2_XXS", "IQ1_S")
"""The formats the "Every format" table prices: the GGUF file types people download, F16 to IQ1_S (every one
has a published KLD, so each row gets a quality cost)."""
assert set(EVERY_FORMAT) <= set(QUALITY_KLD), set(EVERY_FORMAT) - set(QUALITY_KLD)

PUBLISHED = "published for Llama-3-8B (llama.cpp scoreboard)"
MEASURED = "measured here (SmolLM2-135M, shakespeare)"
MEASURED_MODEL = "smollm2-135m"
"""The preset whose formats have quality measured here (the bundled results' model)."""
MAX_SUGGESTED_GPUS = 8
""""Add GPUs" advice looks up to this many (a server's worth)."""


def plain(markdown: str) -> str:
    """Verdict markdown without its ** and ` marks (for a downloaded chart's title)."""
    return markdown.replace("**", "").replace("`", "")


def verdict_message(r: FitResult, setup: GpuSetup) -> tuple[str, str]:
    """("success" | "warning" | "error", the verdict in markdown) for one fit."""
    where = f"{r.gpu_count}× {r.gpu}" if r.gpu_count > 1 else r.gpu
    use = (f"{units.fmt_gb(r.per_device_bytes)} of {units.fmt_gb(r.usable_bytes)} usable per GPU "
           f"({units.fmt_gib(r.per_device_bytes)} of {units.fmt_gib(r.usable_bytes)})")
    speed = f", ~{r.decode_tokens_per_s:,.1f} tokens/s" if r.decode_tokens_per_s else ""
    if r.verdict is Verdict.FITS:
        return "success", f"**Fits** on {where}: {use}, {units.fmt_gb(r.headroom_bytes)} free."
    if r.verdict is Verdict.OFFLOAD:
        cpu = units.fmt_gb(r.cpu_offload_bytes)
        offloaded = r.n_layers - r.gpu_layers
        if offloaded == 0:  # every block fits; only the token embedding and output layer stay behind
            return "warning", (
                f"**Runs with the output layer in CPU RAM**: all {r.n_layers} blocks on {where}, the token "
                f"embedding and output layer ({cpu}) in CPU RAM (llama.cpp `-ngl {r.gpu_layers}`; all on "
                f"the GPU would be `-ngl {r.gpu_layers + 1}`){speed}. GPU side: {use}.")
        return "warning", (
            f"**Offload {plural(offloaded, 'layer')}** to the CPU: {r.gpu_layers} of {r.n_layers} blocks on "
            f"{where} (llama.cpp `-ngl {r.gpu_layers}`), {cpu} in CPU RAM{speed}. GPU side: {use}.")
    return "error", (f"**Does not fit** on {where}: needs {units.fmt_gb(r.per_device_bytes)} per GPU, "
                     f"{units.fmt_gb(r.usable_bytes)} usable ({units.fmt_gb(-r.headroom_bytes)} short).")


def draw_verdict(r: FitResult, setup: GpuSetup) -> str:
    """The verdict box; returns its plain text (the title of a downloaded chart)."""
    kind, text = verdict_message(r, setup)
    icon = {"success": ":material/check_circle:", "warning": ":material/swap_horiz:", "error": ":material/block:"}
    getattr(st, kind)(text, icon=icon[kind])
    return plain(text)


@dataclass(frozen=True)
class AdviceButton:
    """One ``calculator.search.advise`` row as the page shows it: a button label, the widget values it sets,
    and the outcome."""

    label: str
    changes: tuple[tuple[str, object], ...]
    """(widget key, value) pairs, e.g. (("kv", "q8_0"), ("fa", True))."""
    outcome: str


def _outcome(r: FitResult) -> str:
    speed = f", ~{r.decode_tokens_per_s:,.1f} tokens/s" if r.decode_tokens_per_s else ""
    return f"fits: {units.fmt_gb(r.per_device_bytes)} of {units.fmt_gb(r.usable_bytes)} per GPU{speed}"


_MODE_LABELS = {"qlora": "QLoRA"}
"""``advise``'s training-mode values as the page's Mode control names them."""


def advice_button(a: Advice, setup: GpuSetup, context: int) -> AdviceButton | None:
    """The widgets one advice row sets (None for "fewer GPU layers": the offload verdict already is that run)."""
    r, v = a.result, a.value
    if a.kind is AdviceKind.KV_CACHE_TYPE:
        if a.change.startswith("--kv-cache-dtype"):  # vLLM's own setting (ui.serving)
            return AdviceButton(f"KV cache {v}", (("kv_dtype", v),), _outcome(r))
        # llama.cpp and Ollama need flash attention for a quantized V cache
        fa = (("fa", True),) if "--flash-attention on" in a.change or "FLASH_ATTENTION=1" in a.change else ()
        return AdviceButton(f"KV cache {v}", (("kv", v), *fa), _outcome(r))
    if a.kind is AdviceKind.GRADIENT_CHECKPOINTING:
        return AdviceButton("Gradient checkpointing", (("ckpt", True),), _outcome(r))
    if a.kind is AdviceKind.QLORA:
        return AdviceButton("QLoRA (4-bit frozen base)", (("mode", _MODE_LABELS[v]),), _outcome(r))
    if a.kind is AdviceKind.FEWER_SLOTS:
        if r.context == context:
            return AdviceButton(f"Batch {v}", (("batch", v),), _outcome(r))
        # llama.cpp's -c is shared by the slots: fewer slots of the same length need a smaller -c
        return AdviceButton(f"Batch {v}, context {r.context:,}", (("batch", v), ("ctx", r.context)), _outcome(r))
    if a.kind is AdviceKind.SHORTER_CONTEXT:
        return AdviceButton(f"Context {v:,} tokens", (("ctx", v),), _outcome(r))
    if a.kind is AdviceKind.SMALLER_FORMAT:
        return AdviceButton(f"File type {v}", (("fmt", v),),
                            f"{_outcome(r)}; KLD {QUALITY_KLD[v]:.4f} {PUBLISHED}")
    if a.kind is AdviceKind.MORE_GPUS:
        return AdviceButton(f"{v}× {setup.gpu.name}", (("n_gpus", v),), _outcome(r))
    return None


@st.cache_data(max_entries=128, show_spinner=False)
def advice(ref: tuple[str, str], fmt: str, setup: GpuSetup, context: int, batch: int, opts: FitOptions,
           with_best_format: bool, _result: FitResult) -> tuple[Advice, ...]:
    """``calculator.search.advise`` for a run that does not fit entirely on the GPUs, more GPUs looked for up to
    ``MAX_SUGGESTED_GPUS``. ``_result``: the run's fit (the other arguments determine it: not hashed)."""
    return advise(resolve_subject(ref), fmt, setup, context, batch, options=opts, result=_result,
                  max_gpus=max(setup.count, MAX_SUGGESTED_GPUS), with_best_format=with_best_format)


EAGER_SEARCH_TENSORS = 400
"""A model from a link or an upload (config.json, Hub id, file) with more tensors than this waits for a click
before the page sizes every ranked file type (30) and catalogue GPU (61) for it: ~17 ms of server CPU per file
type at 1,200 tensors, ~0.7 s in all. Presets search at once: their sizings are kept by the server (lru
caches) and shared by every view. Llama 3.1 8B has 291 tensors, a 70B 723."""
SEARCHED = "fit_searched_model"
"""Session key: the ``ModelChoice.ref`` whose searches were asked for (not in the URL: a link cannot ask)."""


def searches_run(choice: ModelChoice) -> bool:
    """Whether the page runs the format-wide and catalogue-wide searches for this model now."""
    spec = choice.spec
    return (choice.ref[0] == PRESET or spec is None or len(spec.tensors) <= EAGER_SEARCH_TENSORS
            or st.session_state.get(SEARCHED) == choice.ref)


def _ask_searches(ref: tuple[str, str]) -> None:
    st.session_state[SEARCHED] = ref


def search_button(choice: ModelChoice, key: str) -> None:
    """The click that runs the searches for a large model from a link, and why they wait for it."""
    st.button("Search file types and GPUs", key=key, on_click=_ask_searches, args=(choice.ref,),
              icon=":material/search:", help=f"{choice.label} has {len(choice.spec.tensors):,} tensors: sizing it "
              "in every ranked file type and on every catalogue GPU takes the server about a second, so a link "
              "does not start it")


def apply_changes(changes: tuple[tuple[str, object], ...]) -> None:
    """Button callback: set the widgets (before the rerun draws them), so the page shows the changed run and
    the URL follows."""
    for key, value in changes:
        st.session_state[key] = value


def draw_advice(items: tuple[Advice, ...], r: FitResult, setup: GpuSetup) -> None:
    """Buttons for the changes that make it fit, each with its outcome; a note when none does."""
    buttons = [b for b in (advice_button(a, setup, r.context) for a in items) if b is not None]
    if not buttons:
        st.caption("No single change makes it fit: combine a smaller file type with a shorter context, or pick "
                   "a bigger GPU.")
        return
    st.markdown("**What makes it fit** (one change each; click to apply):")
    if r.verdict is Verdict.OFFLOAD and r.decode_tokens_per_s:
        st.caption(f"Or keep the offload at ~{r.decode_tokens_per_s:,.1f} tokens/s: the CPU reads its share of "
                   "the weights at its RAM's speed, so each change below is faster.")
    for i, item in enumerate(buttons):
        row = st.container(horizontal=True, vertical_alignment="center", gap="small")
        row.button(item.label, key=f"advice_{i}", on_click=apply_changes, args=(item.changes,),
                   icon=":material/auto_fix_high:")
        row.caption(item.outcome)


def format_quality(fmt: str, model: str) -> tuple[float | None, str]:
    """(mean KLD, its source) of ``fmt``: measured here for SmolLM2-135M's GGUF file types, else llama.cpp's
    Llama-3-8B scoreboard; (None, "") for a format with neither."""
    if model == MEASURED_MODEL:
        for _, result in matching_results(BUNDLED_SWEEP):
            if result.calculator_format == fmt and result.family == "gguf":
                return result.quality.kld_mean, MEASURED
    if fmt in QUALITY_KLD:
        return QUALITY_KLD[fmt], PUBLISHED
    return None, ""


def _short_verdict(r: FitResult) -> str:
    if r.verdict is Verdict.FITS:
        return "fits"
    if r.verdict is Verdict.OFFLOAD:
        offloaded = r.n_layers - r.gpu_layers
        return f"offload {plural(offloaded, 'layer')}" if offloaded else "offload output layer"
    return "does not fit"


def _short_bytes(r: FitResult, setup: GpuSetup) -> int:
    """Minus what is missing per GPU for everything to sit on the GPUs (after an offload ``headroom_bytes`` is
    the GPU side's, which would read as room to spare). The run's bytes split evenly: exact for one GPU."""
    return setup.gpu.usable_bytes - -(-r.total_bytes // setup.count)


@st.cache_data(max_entries=64, show_spinner=False)
def every_format(ref: tuple[str, str], setup: GpuSetup, context: int, batch: int, opts: FitOptions
                 ) -> list[dict]:
    """One row per ``EVERY_FORMAT`` file type on these GPUs at this context (raw values, bytes as ints), the
    highest-quality one that fits entirely on the GPUs marked ``best``."""
    spec = resolve_subject(ref)
    model = ref[1]
    rows = []
    for fmt in EVERY_FORMAT:
        r = fit(spec, fmt, setup, context, batch, options=opts, with_max_context=False)
        kld, source = format_quality(fmt, model)
        rows.append({"best": "", "format": fmt, "verdict": _short_verdict(r),
                     "bits_per_weight": r.weight_bytes * 8 / spec.total_params,
                     "total_bytes": r.total_bytes, "total_gb": units.to_gb(r.total_bytes),
                     "per_gpu_gb": units.to_gb(r.per_device_bytes),
                     "free_gb": units.to_gb(r.headroom_bytes if r.fits else _short_bytes(r, setup)),
                     "decode_tokens_per_s": r.decode_tokens_per_s,
                     "kld": kld, "quality_source": source, "fits": r.fits})
    fitting = [row for row in rows if row["fits"]]
    if fitting:
        best = min(fitting, key=lambda row: (row["kld"] is None, row["kld"] or 0.0,
                                             QUALITY_ORDER.index(row["format"])))
        best["best"] = "★ best"
    return rows


EVERY_FORMAT_COLUMNS = {
    "best": st.column_config.TextColumn("", width="small"),
    "format": st.column_config.TextColumn("Format", pinned=True),
    "verdict": st.column_config.TextColumn("Verdict"),
    "total_gb": st.column_config.NumberColumn("Total GB", format="%.2f", help="Every byte of the run: weights, "
                                              "KV cache, buffers (all GPUs and CPU RAM)"),
    "free_gb": st.column_config.NumberColumn("Free GB / GPU", format="%+.2f",
                                             help="Negative: what is missing per GPU for the whole run to sit on "
                                                  "the GPU(s) (offloaded rows run anyway, slower)"),
    "decode_tokens_per_s": st.column_config.NumberColumn("Tokens/s", format="%.1f"),
    "kld": st.column_config.NumberColumn("KLD", format="%.4f", help="Mean KL divergence to the unquantized "
                                         "model: lower is better (see Quality source)"),
    "quality_source": st.column_config.TextColumn("Quality source", width="medium"),
    "bits_per_weight": st.column_config.NumberColumn("Bits/weight", format="%.2f"),
    "per_gpu_gb": st.column_config.NumberColumn("GB / GPU", format="%.2f"),
}
"""How the "Every format" table shows its rows (the column order is this dict's)."""


def styled_every_format(rows: list[dict]):
    """The rows as a pandas Styler with the best row shaded."""
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["fits", "total_bytes"])

    def shade(row):
        return ["background-color: rgba(33, 195, 84, 0.18)" if row["best"] else ""] * len(row)

    return frame.style.apply(shade, axis=1)
