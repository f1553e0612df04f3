"""The sidebar footer on every page: what GB and GiB mean, and the sources behind the numbers."""

from __future__ import annotations

import streamlit as st

from ui.labels import GB_NOTE

LLAMA_CPP = "https://github.com/ggml-org/llama.cpp/blob/007dbbf3fd17eefe9b47fee45f48f7ba5e62b714"
SOURCE_LINKS: tuple[tuple[str, str], ...] = (
    ("GGUF block sizes: gguf GGML_QUANT_SIZES (llama.cpp gguf-py/gguf/constants.py)",
     f"{LLAMA_CPP}/gguf-py/gguf/constants.py"),
    ("GGUF file types: llama.cpp src/llama-quant.cpp", f"{LLAMA_CPP}/src/llama-quant.cpp"),
    ("GPTQ (Frantar et al. 2022)", "https://arxiv.org/abs/2210.17323"),
    ("AWQ (Lin et al. 2023)", "https://arxiv.org/abs/2306.00978"),
    ("NF4 / QLoRA (Dettmers et al. 2023)", "https://arxiv.org/abs/2305.14314"),
    ("OCP Microscaling (MX) v1.0",
     "https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf"),
    ("Model shapes: each model's Hugging Face config.json", "https://huggingface.co/docs/transformers"),
)
"""(text, link) for every source the pages' numbers rest on."""


def units_footer() -> None:
    """Units and sources in the sidebar (app.py calls it once, so every page has it)."""
    with st.sidebar:
        st.caption(f"**Units.** {GB_NOTE}. GPU memory is as sold (an “80 GB” H100 = 80 × 10⁹ bytes). "
                   "Weight sizes are exact tensor bytes, every scale, zero and index included.")
        st.caption("**Sources.** " + " · ".join(f"[{text}]({url})" for text, url in SOURCE_LINKS))
