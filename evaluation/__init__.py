"""Measured quantization quality: quantize real models with real kernels and compare with the baseline.

- ``methods``: frozen method configs and ``quantize_(model, config)`` (real int8/int4/W8A8 kernels,
  simulated RTN at 2-8 bits, bitsandbytes NF4/FP4; GPTQ, AWQ, GGUF file types plug into its registry);
- ``metrics``: PPL, KLD, top-1 agreement, RMS delta-p as llama.cpp's llama-perplexity defines them;
- ``models`` / ``corpus``: what to load and what to score it on;
- ``runner``: ``evaluate(...)`` and the reusable ``Baseline``; ``results``: the versioned JSON and cache;
- ``cli``: ``python -m evaluation run | methods | show``.

Uses torch and transformers; never streamlit. Depends on ``calculator`` for predicted bytes.
"""
