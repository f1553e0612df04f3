"""Quality as an inference engine runs a method's own file: GGUF files through llama.cpp.

The runner scores a GGUF method by dequantizing the file's tensors into transformers, which measures the
weight error alone. llama.cpp's CPU kernels also quantize the activations: a Q4_1 x activation dot
product runs as Q4_1 x Q8_1, Q4_K as Q4_K x Q8_K (ggml ``type_traits_cpu[type].vec_dot_type``,
ggml-org/llama.cpp ``ggml/src/ggml-cpu/ggml-cpu.c``), and the KV cache is F16. What llama.cpp users get
is the file *and* those kernels. Here the quantized file (``model.runtime_file``, left by
``evaluation.methods.gguf``) is loaded by llama.cpp through llama-cpp-python (``Llama(logits_all=True)``),
fed the very token windows of the evaluation (ids, never text; each window from an empty KV cache), and
its logits are compared with the same baseline logits by ``metrics.compare``.

The **floor** is llama.cpp on the baseline's own weights against the baseline: the source GGUF when the
model came as one (SmolLM2's Q4_1 file: its dequantized weights *are* the baseline), otherwise the
baseline model written as an F32 GGUF (F32 x F32 kernels: agreement to round-off). It is computed once
per baseline and repeated in every GGUF result (``RuntimeQuality.floor``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import torch

from evaluation.metrics import TokenStats, compare, summarize
from evaluation.results import QualityMetrics, RuntimeQuality

ENGINE = "llama.cpp"
SUPPORTED_ROPE = ("default",)
"""RoPE types the placeholder GGUF describes fully (scaled RoPE needs llama.cpp's rope_freqs tensor)."""


def engine_version() -> str | None:
    """``llama-cpp-python <version>``, or None when it is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return f"llama-cpp-python {llama_cpp.__version__}"


def engine_key() -> dict:
    """What a GGUF result's cache key adds: a result scored by another llama.cpp is another result."""
    return {"engine": ENGINE, "version": engine_version()}


def llama_cpp_logits(path: str, tokens: torch.Tensor, first: int, threads: int) -> Iterator[np.ndarray]:
    """llama.cpp's logits [n_ctx - 1 - first, V] (fp32) for each window [n_windows, n_ctx] of ``tokens``."""
    import llama_cpp

    n_ctx = tokens.shape[1]
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, n_threads=threads,
        n_threads_batch=threads, n_gpu_layers=0, verbose=False,
    )  # fmt: skip
    try:
        for window in tokens:
            llm.reset()  # the next eval clears the KV cache from position 0
            llm.eval(window.tolist())
            yield np.array(llm.scores[first : n_ctx - 1], dtype=np.float32)
    finally:
        llm.close()


def score_file(baseline, path: str) -> tuple[TokenStats, float]:
    """Per-token statistics of llama.cpp running ``path`` against ``baseline`` (a ``scoring.Baseline``), and
    wall seconds."""
    windows = baseline.windows
    parts, start = [], time.perf_counter()
    for i, logits in enumerate(llama_cpp_logits(path, windows.tokens, windows.first, torch.get_num_threads())):
        ref = baseline.references[i]
        device = ref.lse.device
        targets = windows.tokens[i, windows.first + 1 :].to(device)

        def base_rows(lo: int, hi: int, i: int = i, device: torch.device = device) -> torch.Tensor:
            return baseline.logits.rows(i, lo, hi).to(device)

        parts.append(compare(torch.from_numpy(logits).to(device), base_rows, ref, targets))
    return TokenStats.cat(parts).cpu(), time.perf_counter() - start


def _unsupported(baseline) -> str | None:
    """Why llama.cpp cannot run this baseline's model faithfully, or None."""
    params = getattr(baseline.model_config, "rope_parameters", None) or {}
    rope = params.get("rope_type", "default")
    if rope not in SUPPORTED_ROPE:
        return f"llama.cpp runtime scoring supports default RoPE only, this model uses {rope!r}"
    return None


def runtime_floor(baseline) -> tuple[QualityMetrics | None, str | None]:
    """(llama.cpp on the baseline's own weights vs the baseline, which file), computed once per baseline."""
    if "floor" in baseline.runtime_cache:
        return baseline.runtime_cache["floor"]
    source = baseline.source
    found: tuple[QualityMetrics | None, str | None] = (None, None)
    if source.gguf_file is not None:
        stats, _ = score_file(baseline, str(source.path / source.gguf_file))
        found = (summarize(stats), f"{source.gguf_file} (the baseline's own weights)")
    elif baseline.model is not None and baseline.options.device_map is None:
        from evaluation.methods.gguf import T, gguf_layout, write_gguf

        layout = gguf_layout(baseline.model)
        with tempfile.TemporaryDirectory(prefix="quantfit-floor-") as tmp:
            path = os.path.join(tmp, "baseline-f32.gguf")
            write_gguf(baseline.model, layout, path, "F32", dict.fromkeys(layout.names.values(), T.F32))
            stats, _ = score_file(baseline, path)
        found = (summarize(stats), "the baseline written as an F32 GGUF")
    baseline.runtime_cache["floor"] = found
    return found


def runtime_quality(baseline, model) -> tuple[RuntimeQuality | None, str | None]:
    """(llama.cpp's quality of the file a GGUF method left on ``model``, a note when it cannot be measured)."""
    from evaluation.methods.gguf import RUNTIME_FILE_ATTR

    path = getattr(model, RUNTIME_FILE_ATTR, None)
    if path is None:
        return None, None
    version = engine_version()
    if version is None:
        return None, "llama.cpp runtime quality not measured: pip install llama-cpp-python==0.3.36"
    if why := _unsupported(baseline):
        return None, f"llama.cpp runtime quality not measured: {why}"
    stats, seconds = score_file(baseline, path)
    floor, floor_file = runtime_floor(baseline)
    return RuntimeQuality(ENGINE, version, summarize(stats), seconds, floor, floor_file), None
