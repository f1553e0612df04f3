"""llama.cpp's allocation rules as formulas: KV cells, sliding-window caches, output and compute buffers,
layer split. The engine (``calculator.engines.llama_cpp``) composes them; Ollama reuses them.

Sources: the llama.cpp trees vendored by ollama/ollama, each recording its upstream ggml-org/llama.cpp commit
(``Makefile.sync`` / ``llama/vendoring``): **2024** = 3f1ae2e3 (ollama b754f5a6a, ``src/llama.cpp``),
**2025** = e54d41be (ollama 1a19df1f3, ``src/llama-kv-cache-unified[-iswa].cpp``, ``llama-model.cpp``),
**current** = a5bb8ba4 / ec98e2002 (ollama ef00199fb / f63eea3d2, ``src/llama-context.cpp``,
``llama-kv-cache-iswa.cpp``, ``llama-model.cpp``). Line numbers are in the docstrings below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from calculator.memory import weight_memory
from calculator.models import ModelSpec
from calculator.runtime import ACTIVATION_BYTES, LOGIT_BYTES, compute_stages
from calculator.units import ceil_div


class LlamaCppBuild(StrEnum):
    """Which llama.cpp's rules: the KV padding, the sliding-window cache and the per-sequence streams
    changed twice. Golden tests use the era of each log; the default is current."""

    B2024 = "2024"
    """Builds up to May 2025 (llama.cpp 3f1ae2e3): one KV cache of ``n_ctx`` cells shared by all sequences,
    ``n_ctx`` padded to 256 with flash attention / 32 without, no sliding-window cache (every layer full)."""
    B2025 = "2025"
    """Jun-Nov 2025 (e54d41be): SWA cache ``min(size, pad(n_swa x (unified ? n_seq : 1) + n_ubatch))``,
    one stream per sequence unless ``--kv-unified`` (Jul 2025), padding still 256 (FA) / 32."""
    CURRENT = "current"
    """Dec 2025 on (a5bb8ba4): padding always 256, SWA cache ``pad256(min(size, ...))``, flash attention
    ``auto`` by default; llama-server reserves logits for one output per sequence (PR #23861)."""


SWA_ARCHS = {
    "gemma2": "LLM_ARCH_GEMMA2 (pattern 2)",
    "gemma3_text": "LLM_ARCH_GEMMA3 (pattern 6, if sliding_window > 0)",
    "gemma3n": "LLM_ARCH_GEMMA3N (pattern 5)",
    "cohere2": "LLM_ARCH_COHERE2 (pattern 4)",
    "llama4": "LLM_ARCH_LLAMA4 (chunked, pattern 4)",
    "gpt_oss": "LLM_ARCH_OPENAI_MOE (pattern 2)",
    "olmo2": "LLM_ARCH_OLMO2 (pattern 4, if sliding_window > 0)",
    "exaone4": "LLM_ARCH_EXAONE4 (pattern 4)",
}
"""Hugging Face ``model_type`` -> the llama.cpp architecture that gets a sliding-window cache
(``llama_model::load_hparams``, llama.cpp ec98e2002 ``src/llama-model.cpp``: ``hparams.swa_type`` set and
``set_swa_pattern(n)``, layer ``il`` sliding iff ``il % n < n - 1``, the same layers the config's
``layer_types`` name). Every other architecture keeps a full cache in every layer, the config's window
notwithstanding: Mistral-7B-v0.1 (arch ``llama`` never reads ``sliding_window``) and Phi-3 ("Phi SWA is
currently disabled", ggml-org/llama.cpp issue #14740)."""


def kv_layer_kinds(spec: ModelSpec, build: LlamaCppBuild) -> tuple[str, ...]:
    """Per layer, "full" or "sliding" as llama.cpp caches it (see ``SWA_ARCHS``; 2024 builds: all full)."""
    kinds = spec.layer_types or ("full",) * spec.n_layers
    if build is LlamaCppBuild.B2024 or spec.arch not in SWA_ARCHS or not spec.sliding_window:
        return ("full",) * spec.n_layers
    return tuple(kinds)


def pad_to(n: int, multiple: int) -> int:
    """``GGML_PAD``: ``n`` rounded up to a multiple."""
    return ceil_div(n, multiple) * multiple


@dataclass(frozen=True)
class KvCells:
    """How many KV cells llama.cpp allocates. ``full_cells``/``swa_cells`` are per stream; there are
    ``streams`` of each (one per sequence, or one shared)."""

    n_ctx: int
    """``llama_context: n_ctx`` after padding (all streams)."""
    n_ctx_seq: int
    """Tokens one sequence (slot) may hold."""
    streams: int
    full_cells: int
    swa_cells: int
    pad: int


def kv_cells(
    build: LlamaCppBuild, n_ctx: int, n_seq: int, *, unified: bool, flash_attention: bool, ubatch: int,
    n_swa: int | None, swa_full: bool = False,
) -> KvCells:
    """llama.cpp's cell counts for ``-c n_ctx -np n_seq [--kv-unified]``.

    - 2024: ``cparams.n_ctx = GGML_PAD(n_ctx, flash_attn ? 256 : 32)`` (3f1ae2e3 src/llama.cpp:19859,
      ``llama_kv_cache_get_padding`` :4316); one cache, each sequence limited to ``n_ctx / n_seq``.
    - 2025: unified -> ``GGML_PAD(n_ctx, pad)``; else ``GGML_PAD(ceil(n_ctx / n_seq), pad)`` per stream
      (e54d41be src/llama-model.cpp:18292 ``create_memory``); SWA ``min(size, GGML_PAD(n_swa x (unified ?
      n_seq : 1) + n_ubatch, pad))`` (src/llama-kv-cache-unified-iswa.cpp:31).
    - current: ``n_ctx = GGML_PAD(n_ctx, 256)``; non-unified ``n_ctx_seq = GGML_PAD(n_ctx / n_seq, 256)``
      and ``n_ctx = n_ctx_seq x n_seq`` (ec98e2002 src/llama-context.cpp:148-165: the total can grow, as
      unslothai/unsloth PR #7530 measured: 1024 tokens x 3 slots -> 1536 cells); SWA ``GGML_PAD(min(size,
      n_swa x (unified ? n_seq : 1) + n_ubatch), 256)`` (src/llama-kv-cache-iswa.cpp:46-51, the formula
      ggerganov points to in ggml-org/llama.cpp PR #21277). ``--swa-full``: SWA cache = full size.
    """
    n_swa = n_swa or 0
    if build is LlamaCppBuild.B2024:
        pad = 256 if flash_attention else 32
        size = pad_to(n_ctx, pad)
        return KvCells(size, size // n_seq, 1, size, size, pad)
    if build is LlamaCppBuild.B2025:
        pad = 256 if flash_attention else 32
        streams = 1 if unified else n_seq
        size = pad_to(n_ctx if unified else ceil_div(n_ctx, n_seq), pad)
        swa = min(size, pad_to(n_swa * (n_seq if unified else 1) + ubatch, pad))
    else:
        pad = 256
        total = pad_to(n_ctx, pad)
        streams = 1 if unified else n_seq
        size = total if unified else pad_to(total // n_seq, pad)
        swa = pad_to(min(size, n_swa * (n_seq if unified else 1) + ubatch), pad)
    if swa_full or not n_swa:
        swa = size
    return KvCells(size * streams, size, streams, size, swa, pad)


def output_buffer_bytes(spec: ModelSpec, n_seq: int, embeddings: bool = False) -> int:
    """The output buffer llama.cpp reserves at start-up, in host memory ("CUDA_Host" / "CPU"):
    ``(n_vocab + (n_embd if embeddings)) x n_seq x 4`` (``llama_context::output_reserve`` with
    ``n_seq_max`` outputs, ec98e2002 src/llama-context.cpp:1342-1411): 128256 x 4 B = 0.49 MiB for
    Llama 3. Ollama's runner up to v0.12 set ``embeddings = true`` (ollama 43107b15 llama/llama.go:97)."""
    return (spec.vocab_size + (spec.hidden_size if embeddings else 0)) * n_seq * LOGIT_BYTES


@dataclass(frozen=True)
class ComputeBuffers:
    """Per-device compute buffers and the host one, with the stages they were built from (bytes)."""

    devices: tuple[int, ...]
    host: int
    step: int
    logits: int
    output_stage: int
    attention_stage: int
    ffn_stage: int


def compute_buffers(
    spec: ModelSpec, *, n_ctx: int, n_kv: int, ubatch: int, flash_attention: bool, logits_rows: int | None,
    device_has_layers: tuple[bool, ...], output_device: int, host_has_layers: bool, copies: int,
) -> ComputeBuffers:
    """Compute buffers as llama.cpp reserves them: per device the peak stage of the sub-graph it runs,
    plus the graph inputs copied to it (``sched_reserve``, ec98e2002 src/llama-context.cpp:325-445).

    Stages (``calculator.runtime.compute_stages``, f32 activations, ``n_tokens = min(n_ctx, n_ubatch)``,
    the graph built for the full cache ``n_kv``): logits ``rows x n_vocab x 4`` on the output device;
    attention ``n_tokens x n_head x n_kv x 4`` (the KQ scores, without flash attention) + the mask, with
    flash attention the f32 mask copied in and its f16 cast (``n_tokens x n_kv x (4 + 2)``, unslothai/unsloth
    PR #7637) + 4 hidden rows; FFN gate and up. Inputs: positions (and output ids on the output device),
    ``n_tokens x 4`` B each. Pipeline parallelism (``n_copies = 4``, multi-GPU layer split with every layer
    offloaded) keeps 4 copies of each device's inputs: its positions, the incoming hidden state
    ``n_tokens x n_embd x 4`` and 3 more f32 masks (A2: 640.01 MiB per GPU against 560.00 on one).
    The host buffer ("CUDA_Host compute buffer") holds the f32 mask (x copies), the token embeddings
    ``n_tokens x n_embd x 4`` and three int32 inputs, plus the stages of whatever runs on the CPU:
    24.01 MiB for Llama-3-8B at 8192 (XiongjieDai logs).
    """
    step, logits, output_stage, attention, ffn = compute_stages(
        spec, n_ctx, ubatch, flash_attention, n_kv=n_kv, logits_rows=logits_rows
    )
    mask_in = step * n_kv * ACTIVATION_BYTES
    if flash_attention:
        attention += mask_in
    ints = step * 4
    hidden_rows = step * spec.hidden_size * ACTIVATION_BYTES
    out = []
    for d, has_layers in enumerate(device_has_layers):
        stage = max(attention, ffn) if has_layers else 0
        inputs = ints + (ints if output_device == d else 0)
        if output_device == d:
            stage = max(stage, output_stage)
        if copies > 1:
            inputs = copies * inputs + (copies - 1) * mask_in + copies * hidden_rows
        out.append(stage + inputs if (has_layers or output_device == d) else 0)
    host_stage = max(attention, ffn) if host_has_layers else 0
    if output_device < 0:
        host_stage = max(host_stage, output_stage)
    host = copies * (mask_in + 3 * ints) + hidden_rows + host_stage
    return ComputeBuffers(tuple(out), host, step, logits, output_stage, attention, ffn)


@functools.lru_cache(maxsize=8192)
def split_layers(
    n_layer: int, n_gpu_layers: int, fractions: tuple[float, ...]
) -> tuple[tuple[int, ...], int]:
    """(device of each block, device of the output layer); -1 = CPU.

    ``i_gpu_start = max(n_layer - ngl, 0)``, ``act_gpu_layers = min(ngl, n_layer + 1)``: the LAST ``ngl``
    blocks go to the GPUs and the output layer counts as one more (``-ngl 33`` = everything for 32 blocks).
    Block ``il`` goes to the first device whose normalised cumulative split exceeds
    ``(il - i_gpu_start) / act_gpu_layers`` (``std::upper_bound``; ec98e2002 src/llama-model.cpp:2367-2397),
    in float32 as llama.cpp computes it. ``fractions``: free memory per device by default, or ``--tensor-split``.
    """
    values = np.asarray(fractions, dtype=np.float64)
    if np.all(values == values[0]):
        values = np.ones_like(values)  # equal cards split exactly evenly, whatever their byte counts round to
    splits = np.cumsum(values.astype(np.float32), dtype=np.float32)
    splits = splits / splits[-1]
    start = max(n_layer - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer + 1)
    if act <= 0:
        return (-1,) * n_layer, -1
    il = np.arange(n_layer + 1)
    x = (il - start).astype(np.float32) / np.float32(act)
    dev = np.minimum(np.searchsorted(splits, x, side="right"), len(fractions) - 1)
    dev = np.where(il < start, -1, dev).tolist()
    return tuple(dev[:n_layer]), (dev[n_layer] if n_gpu_layers > n_layer else -1)


@dataclass(frozen=True)
class NonRepeating:
    """Bytes of the tensors outside the blocks, by where llama.cpp puts them."""

    token_embd: int
    """Always host: "there is very little benefit to offloading the input layer" (src/llama-model.cpp:2410)."""
    output: int
    """``output.weight`` + ``output_norm``: on the last GPU when ``ngl > n_layer``, else host. For tied
    embeddings the output matrix is a copy of ``token_embd`` ("duplicated output tensor", :2426)."""
    other: int
    """Position embeddings and the like: host (input layer)."""
    layer_end: tuple[int, ...]
    """File offset where each block's last tensor ends, in the spec's order (token_embd, blocks, output_norm,
    output): for the mmap span. A real file may order them otherwise; the span only needs the first and last
    host tensors, which are token_embd and the output tensors either way."""
    head_end: int
    """Where the tensors before the first block (token_embd...) end."""
    file_bytes: int


@functools.lru_cache(maxsize=4096)
def nonrepeating(spec: ModelSpec, fmt: object) -> NonRepeating:
    wm = weight_memory(spec, fmt)
    layer_of = {t.name: t.layer for t in spec.tensors}
    parts = {"token_embd": 0, "output": 0, "other": 0}
    for t in wm.tensors:
        if layer_of[t.name] is not None:
            continue
        role = t.name.split(".")[0]
        key = "token_embd" if role == "token_embd" else "output" if role in ("output", "output_norm") else "other"
        parts[key] += t.bytes
    if spec.tie_word_embeddings:
        parts["output"] += parts["token_embd"]
    stored = {t.name: t.bytes for t in wm.tensors}
    layer_end = [0] * spec.n_layers
    head_end = pos = 0
    for t in spec.tensors:
        pos += stored[t.name]
        if t.layer is not None:
            layer_end[t.layer] = pos
        elif not any(layer_end):
            head_end = pos
    return NonRepeating(parts["token_embd"], parts["output"], parts["other"], tuple(layer_end), head_end, pos)


def mapped_span_bytes(nr: NonRepeating, layer_devices: tuple[int, ...], output_device: int) -> int:
    """The "CPU_Mapped model buffer" llama.cpp prints with mmap: one buffer over the file range from the
    first to the last tensor kept on the CPU, GPU tensors in between included (so a partial offload that
    leaves ``output`` on the CPU maps the whole file: ollama/ollama issue #8995's 8566.04 MiB)."""
    if output_device < 0:
        return nr.file_bytes
    host = [i for i, d in enumerate(layer_devices) if d < 0]
    return max(nr.head_end, nr.layer_end[host[-1]] if host else 0)
