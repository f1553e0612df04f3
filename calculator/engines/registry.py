"""The engines quantfit knows, by name. Adding one: a module with its ``Engine`` subclass, a member of
``EngineName`` and one line in ``_ENGINES`` below."""

from __future__ import annotations

import functools
import importlib
from enum import StrEnum

from calculator.engines.base import Engine


class EngineName(StrEnum):
    """The serving program a fit is for (``--engine``)."""

    LLAMA_CPP = "llama.cpp"
    """llama.cpp (llama-server / llama-cli; also LM Studio's runtime): the default."""
    OLLAMA = "ollama"
    """Ollama: llama.cpp underneath, with Ollama's defaults and words (num_ctx, OLLAMA_NUM_PARALLEL)."""
    MLX = "mlx"
    """Apple's MLX-LM on Apple silicon unified memory."""
    VLLM = "vllm"
    """vLLM's V1 engine: a paged KV pool carved from ``--gpu-memory-utilization`` (``vllm serve``)."""
    SGLANG = "sglang"
    """SGLang: a token pool carved from ``--mem-fraction-static``."""
    TRANSFORMERS = "transformers"
    """Hugging Face transformers ``generate``: the peak ``torch.cuda.max_memory_allocated``."""


_ENGINES = {
    EngineName.LLAMA_CPP: "calculator.engines.llama_cpp:LlamaCpp",
    EngineName.OLLAMA: "calculator.engines.ollama:Ollama",
    EngineName.MLX: "calculator.engines.mlx:Mlx",
    EngineName.VLLM: "calculator.engines.vllm:Vllm",
    EngineName.SGLANG: "calculator.engines.sglang:Sglang",
    EngineName.TRANSFORMERS: "calculator.engines.transformers:Transformers",
}
assert set(_ENGINES) == set(EngineName)


def parse_engine(value: EngineName | str) -> EngineName:
    """``"llama.cpp"``, ``"Ollama"``, ``EngineName.MLX`` -> EngineName; ValueError naming the choices."""
    if isinstance(value, EngineName):
        return value
    key = str(value).strip().lower()
    key = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "llama_cpp": "llama.cpp", "mlx-lm": "mlx"}.get(key, key)
    try:
        return EngineName(key)
    except ValueError:
        choices = ", ".join(e.value for e in EngineName)
        raise ValueError(f"engine {value!r} is not known; choose one of {choices}") from None


@functools.cache
def get_engine(name: EngineName | str) -> Engine:
    """The engine object for a name (one instance each; engines hold no state)."""
    module, _, cls = _ENGINES[parse_engine(name)].partition(":")
    return getattr(importlib.import_module(module), cls)()


def engine_names() -> list[str]:
    return [e.value for e in EngineName]
