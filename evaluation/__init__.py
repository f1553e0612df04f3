"""Measured quantization quality: quantize real models with real kernels and compare with the baseline.

- ``methods/``: ``quantize_(model, config)`` with frozen configs; ``base`` (protocol, registry, id parser),
  ``primitives``, and one family per module: ``kernels`` (int8 / int4 / W8A8 PyTorch kernels), ``rtn``
  (simulated 2-8 bits), ``bnb`` (NF4 / FP4), ``gptq``, ``awq``, ``gguf`` (llama.cpp file types);
- ``storage``: measured bytes of a quantized model; ``metrics``: PPL, KLD, top-1 agreement, RMS delta-p
  as llama.cpp's llama-perplexity defines them;
- ``models`` / ``corpus``: what to load and what to score it on; ``options``: ``EvaluateOptions``;
- ``scoring``: the reusable ``Baseline`` and scoring on windows; ``measure``: peak RSS, decode timing;
- ``runner``: ``evaluate(...)`` and ``cached_result(...)``; ``results``: the versioned JSON schema and cache;
  ``bounds``: the ranges, nesting and output-path checks results files are held to;
- ``access``: what a shared link may load (presets, Hub ids, operator-allowed paths);
- ``plan``: run planning for front ends; ``reference``: published tables; ``cli``: ``python -m evaluation``.

Uses torch and transformers; never streamlit. Depends on ``calculator`` for predicted bytes and recipes.
``results``, ``bounds``, ``access``, ``plan`` and ``reference`` import without torch, for pages that only read
results.
"""
