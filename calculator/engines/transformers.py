"""Hugging Face transformers ``generate``: the peak ``torch.cuda.max_memory_allocated`` of one call.

``transformers_peak(spec, fmt, gpu, gpus, TransformersSettings(batch=B, new_tokens=N, ...), prompt_tokens=P)``
sums, per device (``device_map="auto"``: blocks split evenly over the GPUs as accelerate's balanced map
does, the embedding on the first, the final norm and lm_head on the last, blocks that do not fit on the
GPUs left in CPU RAM)::

    peak = weights + KV cache + the largest transient of the prompt pass (or of one decode step)

- **Weights** as loaded: the dtype for fp16/bf16/fp32; bitsandbytes 8-bit (``load_in_8bit``: an int8 code
  and a scale per output row, ``int8-ch``) and 4-bit (``nf4``/``fp4``, ``-dq`` for double quantization)
  quantize the Linear layers inside the blocks and keep embeddings and lm_head in 16 bits, as GPTQ/AWQ
  checkpoints do (``calculator.memory``).
- **KV cache**: ``DynamicCache`` grows to ``P + N - 1`` tokens (the last token is never fed back);
  ``StaticCache`` allocates ``P + N`` up front (transformers docs ``kv_cache.md``, e.g.
  https://huggingface.co/docs/transformers/v4.53.0/kv_cache); sliding-window layers keep the window
  (``calculator.runtime.kv_cache``).
- **Prompt pass** (``B x P`` tokens at once), the largest of: the MLP (``act(gate)``, ``up`` and their
  product, ``3 x intermediate``, plus two hidden rows), eager attention's scores (``B x heads x P x P`` in
  the model dtype, their fp32 softmax and its cast back; SDPA's fused kernels keep none), and the logits.
  **The logits are one row per sequence, not one per prompt token**: ``generate`` sets
  ``logits_to_keep=1`` for models that support it ("set it to 1 to avoid computing the whole logit matrix.
  This can save a lot of memory during the first forward pass", huggingface/transformers
  ``src/transformers/generation/utils.py`` @ 1097d4b3f8dd6440add50f87a2784b03cc0b4c85), so the fp32
  full-prompt logits the issue expected (``B x P x vocab x 4``) exist only in older releases or models
  without ``logits_to_keep``: ``full_prompt_logits=True`` counts them. Each step then copies the last row
  to fp32 (``outputs.logits[:, -1, :].clone().float()``).
- **bitsandbytes 4-bit** dequantizes a whole weight for a multi-token input, to fp16 and then to the
  compute dtype (``bnb_4bit_compute_dtype``, fp32 unless set): the largest Linear's ``out x in x (2 + 4)``
  bytes ride on top of the prompt pass.

``torch.cuda.max_memory_allocated`` does not see the CUDA context; the verdict adds it per GPU
(``calculator.runtime.DEFAULT_CUDA_CONTEXT_BYTES``) and compares with the total CUDA reports
(``calculator.engines._cuda``), as accelerate's device map reads free memory from CUDA. Checked against
the three figures of transformers' own guide (huggingface/transformers
``docs/source/en/llm_tutorial_optimization.md`` @ fd6da664a7fece6257fda6d0b11feddaee9ffab2; bigcode/octocoder
on an A100 40GB): bf16 29.03 GiB, 8-bit 15.22, 4-bit 9.54 (tests/calculator/test_engine_transformers.py;
within 3 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from calculator import units
from calculator.engines import _cuda, _serving
from calculator.engines.base import HOST, DeviceMemory, Engine, Layout
from calculator.formats import Family, get_format
from calculator.gguf_recipes import FILE_TYPES
from calculator.hardware import GpuSpec
from calculator.memory import weight_memory
from calculator.models import ModelSpec
from calculator.placement import Verdict
from calculator.runtime import DEFAULT_CUDA_CONTEXT_BYTES, CacheType, kv_cache
from calculator.stored import StoredWeights
from calculator.units import check_int


class CacheKind(StrEnum):
    """``generate(cache_implementation=...)``."""

    DYNAMIC = "dynamic"
    """``DynamicCache`` (the default): grows one token per step."""
    STATIC = "static"
    """``StaticCache``: the whole ``prompt + new_tokens`` allocated before the first step."""


class AttentionImpl(StrEnum):
    """``attn_implementation``."""

    SDPA = "sdpa"
    """PyTorch's fused scaled-dot-product attention (the default): no score matrix kept."""
    EAGER = "eager"
    """Plain matmul + softmax: ``B x heads x P x P`` scores in the model dtype, softmax in fp32."""


@dataclass(frozen=True)
class TransformersSettings:
    """How ``generate`` is called (``prompt_tokens`` is the fit's ``--context``)."""

    batch: int = 1
    new_tokens: int = 256
    cache: CacheKind = CacheKind.DYNAMIC
    attention: AttentionImpl = AttentionImpl.SDPA
    full_prompt_logits: bool = False
    """True for transformers before ``logits_to_keep`` or models without it: logits of every prompt token."""
    compute_dtype_bytes: int = 4
    """bitsandbytes 4-bit compute dtype (fp32 unless ``bnb_4bit_compute_dtype`` is set)."""
    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT_BYTES

    def __post_init__(self) -> None:
        check_int("--batch", self.batch, example="1")
        check_int("--new-tokens", self.new_tokens, example="256")
        for name, enum in (("cache", CacheKind), ("attention", AttentionImpl)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(str(value).lower()))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                flag = "--attn" if name == "attention" else f"--{name}"
                raise ValueError(f"{flag} {value!r} is not one of {choices}") from None
        if self.compute_dtype_bytes not in (2, 4):
            raise ValueError(f"compute dtype bytes {self.compute_dtype_bytes!r} must be 2 (fp16/bf16) or 4 (fp32)")
        check_int("CUDA context bytes", self.cuda_context_bytes, low=0, example=f"{DEFAULT_CUDA_CONTEXT_BYTES:,}")


def _storage(fmt: str | StoredWeights) -> tuple[str | StoredWeights, bool, int]:
    """(format, quantize embeddings?, activation dtype bytes) as ``from_pretrained`` loads ``fmt``."""
    if isinstance(fmt, StoredWeights):
        return fmt, False, 2
    name = fmt.strip()
    if name.upper() in FILE_TYPES and not name.lower().startswith(("bf16", "f16", "f32")):
        raise ValueError(f"transformers dequantizes GGUF files ({fmt}) when it loads them; pick the dtype it "
                         "loads into (fp16 or bf16) or a bitsandbytes format (nf4, int8-ch)")
    f = get_format(name)
    if f.family is Family.FLOAT:
        return f.name, f.bits_per_weight() >= 16, 4 if f.name == "fp32" else 2
    if f.family is Family.EXL2:
        raise ValueError(f"transformers cannot load EXL2 ({fmt}); use ExLlamaV2, or pick gptq/awq/nf4")
    return f.name, False, 2


@dataclass(frozen=True)
class DevicePeak:
    """One device's share of the peak, bytes."""

    name: str
    weights_bytes: int
    kv_cache_bytes: int
    transient_bytes: int
    layers: int
    usable_bytes: int | None

    @property
    def peak_allocated_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.transient_bytes


@dataclass(frozen=True)
class TransformersPeak:
    """The peak of one ``generate`` call and its parts (bytes)."""

    devices: tuple[DevicePeak, ...]
    host: DevicePeak
    weights_bytes: int
    kv_cache_bytes: int
    logits_bytes: int
    mlp_bytes: int
    attention_bytes: int
    dequant_bytes: int
    cuda_context_bytes: int

    @property
    def peak_allocated_bytes(self) -> int:
        """``torch.cuda.max_memory_allocated`` of the fullest GPU."""
        return max(d.peak_allocated_bytes for d in self.devices)

    @property
    def fits(self) -> bool:
        return all(d.usable_bytes is None or d.peak_allocated_bytes + self.cuda_context_bytes <= d.usable_bytes
                   for d in self.devices) and self.host.weights_bytes == 0

    @property
    def verdict(self) -> str:
        gib = f"{self.peak_allocated_bytes / units.GiB:.2f} GiB peak allocated per GPU"
        if self.fits:
            return f"fits: {gib}"
        if self.host.weights_bytes:
            return (f"needs CPU offload: {self.host.layers} blocks ({self.host.weights_bytes / units.GiB:.2f} GiB) "
                    f"stay in CPU RAM under device_map='auto'; {gib}")
        return f"does not fit: {gib} + CUDA context"

    def to_dict(self) -> dict:
        return {
            "engine": "transformers", "fits": self.fits, "summary": self.verdict,
            "peak_allocated_bytes": self.peak_allocated_bytes, "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes, "logits_bytes": self.logits_bytes, "mlp_bytes": self.mlp_bytes,
            "attention_bytes": self.attention_bytes, "dequant_bytes": self.dequant_bytes,
            "cuda_context_bytes": self.cuda_context_bytes,
            "devices": [{"name": d.name, "weights_bytes": d.weights_bytes, "kv_cache_bytes": d.kv_cache_bytes,
                         "transient_bytes": d.transient_bytes, "layers": d.layers,
                         "peak_allocated_bytes": d.peak_allocated_bytes} for d in (*self.devices, self.host)],
        }


def _largest_linear(spec: ModelSpec) -> int:
    return max((math.prod(t.shape) for t in spec.tensors if t.layer is not None and len(t.shape) == 2), default=0)


def transformers_peak(spec: ModelSpec, fmt: str, gpu: GpuSpec, gpus: int = 1,
                      settings: TransformersSettings | None = None, *, prompt_tokens: int = 512) -> TransformersPeak:
    """Peak memory of ``model.generate`` on ``gpus`` x ``gpu`` (module docstring for every term)."""
    s = TransformersSettings() if settings is None else settings
    check_int("prompt tokens (--context)", prompt_tokens, example="512")
    check_int("--gpus", gpus, example="1")
    stored, quantize_embeddings, act = _storage(fmt)
    wm = weight_memory(spec, stored, quantize_embeddings=quantize_embeddings)
    b, p, n = s.batch, prompt_tokens, s.new_tokens
    kv_tokens = p + n if s.cache is CacheKind.STATIC else p + n - 1
    kv = kv_cache(spec, kv_tokens, b, CacheType.FP32 if act == 4 else CacheType.FP16)

    logits = b * (p if s.full_prompt_logits else 1) * spec.vocab_size * (act + 4)
    mlp = b * p * (3 * spec.intermediate_size + 2 * spec.hidden_size) * act
    attention = b * spec.n_heads * p * p * (2 * act + 4) if s.attention is AttentionImpl.EAGER else 0
    bnb4 = isinstance(stored, str) and get_format(stored).family is Family.BNB
    dequant = _largest_linear(spec) * (2 + s.compute_dtype_bytes) if bnb4 and p > 1 else 0
    block_transient = max(mlp, attention) + dequant

    per_layer = [0] * spec.n_layers
    first = last = 0
    for t, ts in zip(wm.tensors, spec.tensors, strict=True):
        if ts.layer is not None:
            per_layer[ts.layer] += t.bytes
        elif ts.role in ("token_embd", "position_embd"):
            first += t.bytes
        else:
            last += t.bytes
    # balanced device map: blocks in order, an even share of block bytes per GPU; what exceeds a GPU's
    # usable memory (after its CUDA context and the run's transients) stays on the host
    share = math.ceil(sum(per_layer) / gpus)
    total, _ = _cuda.cuda_total_bytes(gpu)
    devices, host_layers, host_weights, host_kv = [], 0, 0, 0
    layer = 0
    for i in range(gpus):
        fixed = (first if i == 0 else 0) + (last if i == gpus - 1 else 0)
        room = total - s.cuda_context_bytes - fixed - block_transient - logits
        placed = weights = kv_bytes = 0
        while layer < spec.n_layers and (weights + per_layer[layer] <= share or placed == 0 or i == gpus - 1):
            cost = per_layer[layer] + kv.layer_bytes[layer]
            if weights + kv_bytes + cost > room:
                break
            weights += per_layer[layer]
            kv_bytes += kv.layer_bytes[layer]
            placed += 1
            layer += 1
        transient = block_transient + (logits if i == gpus - 1 else 0)
        devices.append(DevicePeak(f"cuda:{i}", weights + fixed, kv_bytes, transient, placed, total))
    for rest in range(layer, spec.n_layers):
        host_layers += 1
        host_weights += per_layer[rest]
        host_kv += kv.layer_bytes[rest]
    host = DevicePeak("cpu", host_weights, host_kv, 0, host_layers, None)
    return TransformersPeak(tuple(devices), host, wm.total_bytes, kv.total_bytes, logits, mlp, attention, dequant,
                            s.cuda_context_bytes)


class Transformers(Engine):
    """``--engine transformers``: ``context`` is the prompt length, ``batch`` the sequences of one ``generate``
    call (they override ``TransformersSettings.batch``); the verdict is whether the peak stays on the GPUs."""

    name = "transformers"
    title = "transformers generate(): peak max_memory_allocated"
    sources = ("huggingface/transformers src/transformers/generation/utils.py @ "
               "1097d4b3f8dd6440add50f87a2784b03cc0b4c85",
               "huggingface/transformers docs/source/en/llm_tutorial_optimization.md @ "
               "fd6da664a7fece6257fda6d0b11feddaee9ffab2")
    options_type = TransformersSettings

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        s: TransformersSettings = self.options(o.engine_options)
        if not setup.homogeneous:
            raise ValueError("give one --gpu with --gpus N: the balanced device map is modelled for identical GPUs")
        try:
            r = transformers_peak(spec, fmt, setup.gpu, setup.count, replace(s, batch=batch), prompt_tokens=context)
        except ValueError as err:
            if not any(word in str(err) for word in _serving.REFUSALS):
                raise
            return _serving.refused_layout(self.name, spec, setup, context, batch, str(err))
        devices = tuple(
            DeviceMemory(name=d.name, device=setup.gpu.name, weights_bytes=d.weights_bytes,
                         kv_cache_bytes=d.kv_cache_bytes, compute_bytes=d.transient_bytes, output_bytes=0,
                         context_bytes=s.cuda_context_bytes, usable_bytes=d.usable_bytes, layers=d.layers,
                         holds_output=i == setup.count - 1)
            for i, d in enumerate(r.devices)
        )
        host = DeviceMemory(name=HOST, device="CPU RAM", weights_bytes=r.host.weights_bytes,
                            kv_cache_bytes=r.host.kv_cache_bytes, compute_bytes=0, output_bytes=0, context_bytes=0,
                            usable_bytes=setup.cpu_ram_bytes, layers=r.host.layers)
        verdict = Verdict.FITS if r.fits else Verdict.OFFLOAD if r.host.layers else Verdict.DOES_NOT_FIT
        layer_devices = [i for i, d in enumerate(r.devices) for _ in range(d.layers)]
        layer_devices += [-1] * (spec.n_layers - len(layer_devices))
        kv_tokens = context + s.new_tokens - (1 if s.cache is CacheKind.DYNAMIC else 0)
        return _serving.serving_layout(
            self.name, spec, setup, devices=devices, verdict=verdict, why="" if r.fits else r.verdict,
            kv_tokens=kv_tokens * batch, kv_type=CacheType.FP32 if _storage(fmt)[2] == 4 else CacheType.FP16,
            context=context, batch=batch,
            compute_bytes=max(d.transient_bytes for d in r.devices), step_tokens=context,
            layer_devices=tuple(layer_devices),
            settings=(("batch", batch), ("prompt_tokens", context), ("new_tokens", s.new_tokens),
                      ("cache", s.cache.value), ("attention", s.attention.value)),
            notes=(), report=r.to_dict(), host=host,
        )

    def speed(self, spec, wf, setup, lay, context, batch, o):
        if lay.host.layers:
            return None, None
        return _serving.tensor_parallel_speed(spec, wf, setup, context, batch, lay.kv.cache_type, o)
