"""MLX-LM on Apple silicon: weights, KV cache and prompt activations in unified memory under Metal's wired
limit.

Rules from ml-explore/mlx-lm@d78bf58e217c904ec282ed8da9b947491f78c022:

- **KV cache** (``mlx_lm/models/cache.py``): ``KVCache`` grows in steps of 256 tokens (``step = 256``; keys
  ``[B, n_kv_heads, ceil(tokens / 256) x 256, head_dim]`` in the model's float type), one per layer. A model
  whose module defines ``make_cache`` with ``RotatingKVCache(max_size=sliding_window)`` keeps only the window
  in its sliding layers: Gemma 3 (``gemma3_text.py``: every ``sliding_window_pattern``-th layer global) and
  llama-family configs that list ``layer_types``. Gemma 2 (``gemma2.py``, no ``make_cache``), Mistral-7B-v0.1
  (``MODEL_REMAPPING`` "mistral" -> ``llama.py``; no ``layer_types`` in its config) and Phi-3 cache the full
  context in every layer. ``--max-kv-size N`` makes every layer a ``RotatingKVCache`` of N tokens (models
  without ``make_cache``). ``--kv-bits 4|8`` (``QuantizedKVCache``, ``--kv-group-size`` 64): b-bit codes plus
  a float scale and bias per group, i.e. the ``int{b}-g64-asym`` layout (8-bit: 68 bytes per 64 values).
- **Prompt**: processed in chunks of ``prefill_step_size`` tokens (2048 in ``stream_generate``,
  ``generate.py``); the activations of one chunk (its FFN intermediate and hidden rows, 2-byte floats) are
  the transient peak counted as ``compute_bytes`` (an estimate: no MLX log prints it).
- **Memory limit** (``generate.py`` ``wired_limit``): mlx-lm wires up to Metal's
  ``max_recommended_working_set_size`` and warns past 90% of it ("close to the maximum recommended size ...
  This can be slow"); above the limit macOS pages. The limit is the device's ``usable_bytes``
  (``calculator.hardware``: 2/3 or 3/4 of RAM, or ``iogpu.wired_limit_mb``).
- **Weights**: MLX loads its own safetensors (``mlx_lm.convert -q``: 4-bit, group 64, a scale and bias per
  group: the ``int4-g64-asym`` format), not GGUF files.

``fit``'s ``context`` is tokens per sequence (prompt + generated) and ``batch`` the sequences generated
together. Speed: llama.cpp's Metal calibration (``calculator.speed.LLAMA_CPP_METAL``); no published mlx_lm
figure was used to fit it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from calculator import speed as speed_models
from calculator.engines.base import HOST, DeviceMemory, Engine, Layout
from calculator.memory import _is_file_type
from calculator.placement import Verdict
from calculator.runtime import ACTIVATION_BYTES, CacheType, Overhead, _ffn_width, kv_cache_cells
from calculator.units import ceil_div, check_int, fmt_gb

KV_STEP = 256
"""``KVCache.step``: the cache grows 256 tokens at a time."""
DEFAULT_PREFILL_STEP = 2048
"""``stream_generate(prefill_step_size=2048)``."""
FLOAT_BYTES = 2
"""Activations and an unquantized cache in the model's 16-bit float type (MLX's converted models are fp16/bf16)."""
_ROTATING_ARCHS = ("gemma3_text",)
_LAYER_TYPES_ARCHS = ("llama",)
_SUPPORTED = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
              "gemma3_text", "phi3", "smollm3", "olmo2", "granite", "deepseek_v2", "deepseek_v3", "gpt2"}
"""Hugging Face model types with a module in ``mlx_lm/models`` (or a ``MODEL_REMAPPING``) at the commit above."""


@dataclass(frozen=True)
class MlxOptions:
    """``mlx_lm.generate`` settings."""

    kv_bits: int | None = None
    """``--kv-bits`` 4 or 8 (quantized KV cache, mlx_lm's default group of 64); None: ``FitOptions.kv_type``
    (fp16/bf16, or ``mlx_q8``/``mlx_q4``)."""
    max_kv_size: int | None = None
    """``--max-kv-size``: a rotating cache of this many tokens per layer."""
    prefill_step_size: int = DEFAULT_PREFILL_STEP
    """Prompt tokens per forward step."""

    def __post_init__(self) -> None:
        if self.kv_bits is not None and self.kv_bits not in (4, 8):
            raise ValueError(f"--kv-bits {self.kv_bits!r} must be 4 or 8")
        if self.max_kv_size is not None:
            check_int("--max-kv-size", self.max_kv_size, example="4096")
        check_int("prefill step size", self.prefill_step_size, high=1 << 20, example="2048")


def cache_type(opts: MlxOptions, kv_type: CacheType) -> CacheType:
    """The cache MLX-LM keeps: ``--kv-bits`` wins; else the FitOptions type if MLX has it."""
    if opts.kv_bits is not None:
        return CacheType.MLX_Q8 if opts.kv_bits == 8 else CacheType.MLX_Q4
    if kv_type not in (CacheType.FP16, CacheType.BF16, CacheType.MLX_Q8, CacheType.MLX_Q4):
        raise ValueError(f"MLX-LM has no {kv_type.value} KV cache; use --kv-bits 8 or 4 (groups of 64), or fp16")
    return kv_type


class Mlx(Engine):
    name = "mlx"
    title = "MLX-LM (Apple silicon unified memory)"
    sources = ("ml-explore/mlx-lm@d78bf58e217c904ec282ed8da9b947491f78c022 mlx_lm/models/cache.py, "
               "mlx_lm/generate.py, mlx_lm/utils.py, mlx_lm/models/{gemma2,gemma3_text,llama}.py",)
    options_type = MlxOptions

    def quantized_kv(self, o):
        opts: MlxOptions = self.options(o.engine_options)
        now = cache_type(opts, o.kv_type)
        return tuple(
            (f"--kv-bits {bits}", replace(o, engine_options=replace(opts, kv_bits=bits)))
            for bits, ct in ((8, CacheType.MLX_Q8), (4, CacheType.MLX_Q4))
            if now not in (ct, CacheType.MLX_Q4)
        )

    def kinds(self, spec) -> tuple[str, ...]:
        """Per layer, "sliding" where mlx-lm makes a ``RotatingKVCache`` of the window (module docstring)."""
        types = spec.layer_types or ("full",) * spec.n_layers
        explicit = bool(spec.config.get("layer_types"))
        if spec.sliding_window and (spec.arch in _ROTATING_ARCHS or (spec.arch in _LAYER_TYPES_ARCHS and explicit)):
            return tuple(types)
        return ("full",) * spec.n_layers

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        opts: MlxOptions = self.options(o.engine_options)
        gpu = setup.gpu
        why = ""
        if not gpu.unified_memory:
            why = f"MLX runs on Apple silicon only; {gpu.name} is not a Mac"
        elif setup.count > 1:
            why = "MLX-LM runs on one Mac (its distributed mode is not modelled)"
        elif isinstance(fmt, str) and _is_file_type(fmt):
            why = (f"MLX-LM loads MLX safetensors, not GGUF file types like {fmt}: mlx_lm.convert -q stores 4-bit "
                   "groups of 64 with a scale and bias (the int4-g64-asym format)")
        elif spec.arch not in _SUPPORTED:
            why = f"mlx-lm has no model for model_type {spec.arch!r}"
        kinds = self.kinds(spec)
        cells = ceil_div(context, KV_STEP) * KV_STEP
        full = cells if opts.max_kv_size is None else min(cells, opts.max_kv_size)
        if opts.max_kv_size is not None and spec.arch not in _ROTATING_ARCHS:
            kinds = ("sliding",) * spec.n_layers
        window = opts.max_kv_size if opts.max_kv_size is not None and spec.arch not in _ROTATING_ARCHS else (
            spec.sliding_window or cells)
        sliding = min(cells, window)
        kv = kv_cache_cells(spec, kinds=kinds, full_cells=full * batch, sliding_cells=sliding * batch,
                            type_k=cache_type(opts, o.kv_type), context=context, batch=batch)
        step = min(opts.prefill_step_size, context)
        compute = batch * step * (2 * _ffn_width(spec) + 4 * spec.hidden_size) * FLOAT_BYTES
        device = DeviceMemory(
            name="Metal", device=gpu.name, weights_bytes=wf.total_bytes, kv_cache_bytes=kv.total_bytes,
            compute_bytes=compute, output_bytes=batch * spec.vocab_size * ACTIVATION_BYTES, context_bytes=0,
            usable_bytes=gpu.usable_bytes, layers=spec.n_layers, holds_output=True,
            extra_bytes=o.extra_overhead_bytes,
        )
        host = DeviceMemory(name=HOST, device="CPU RAM", weights_bytes=0, kv_cache_bytes=0, compute_bytes=0,
                            output_bytes=0, context_bytes=0, usable_bytes=setup.cpu_ram_bytes, layers=0)
        notes = []
        if device.weights_bytes > 0.9 * device.usable_bytes:
            notes.append(f"the weights ({fmt_gb(device.weights_bytes)}) are above 90% of Metal's working set "
                         f"({fmt_gb(device.usable_bytes)}): mlx_lm warns \"This can be slow\"")
        if "sliding" in kinds and context > window:
            notes.append(f"sliding layers keep {window:,} tokens; while a prompt chunk is processed they briefly hold "
                         f"up to {window - 1 + step:,} (RotatingKVCache._update_concat)")
        if why:
            verdict = Verdict.DOES_NOT_FIT
        elif device.fits:
            verdict = Verdict.FITS
        else:
            verdict = Verdict.DOES_NOT_FIT
            why = (f"Metal's working set is {fmt_gb(device.usable_bytes)} and the run needs "
                   f"{fmt_gb(device.total_bytes)}: "
                   "macOS would page (raise it with sudo sysctl iogpu.wired_limit_mb)")
        overhead = Overhead(cuda_context_bytes=0, compute_buffer_bytes=compute, logits_bytes=device.output_bytes,
                            attention_bytes=0, ffn_bytes=compute, extra_bytes=o.extra_overhead_bytes,
                            step_tokens=step, flash_attention=True)
        settings = (("kv_step", KV_STEP), ("kv_cells_full", full),
                    ("kv_cells_sliding", sliding if "sliding" in kinds else 0),
                    ("kv_cache", kv.cache_type.value),
                    ("max_kv_size", opts.max_kv_size), ("prefill_step_size", opts.prefill_step_size), ("batch", batch))
        return Layout(
            engine=self.name, verdict=verdict, devices=(device,), host=host, kv=kv, overhead=overhead,
            gpu_layers=spec.n_layers, output_on_gpu=True, layer_devices=(0,) * spec.n_layers, settings=settings,
            notes=tuple(notes), why=why,
        )

    def speed(self, spec, wf, setup, lay, context, batch, o):
        return speed_models.split_speed(
            spec, wf, setup, lay.kv.layer_bytes, lay.layer_devices, output_device=0, parallel=False, pipelined=False,
            context=context, ubatch=dict(lay.settings)["prefill_step_size"], sequences=batch,
            decode_efficiency=o.decode_efficiency, prefill_efficiency=o.prefill_efficiency,
        )
