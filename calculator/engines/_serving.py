"""What the three serving engines (vLLM, SGLang, transformers) share when they answer ``fit``: the
``Layout`` built from their per-GPU numbers, and the tensor-parallel speed roofline.

A serving engine's verdict is its own start-up decision (vLLM and SGLang: would it start; transformers:
does ``generate`` stay within the GPUs), not a sum compared with a limit, so the ``Layout`` carries the
verdict and the reason as the engine says them; ``DeviceMemory`` rows hold the same bytes for the app and
the JSON. The whole-model ``KVCache`` counts ``kv_tokens`` in every layer of every rank together, so its
total is the sum of the per-GPU pools (up to vLLM's layer padding); ``extras`` holds the engine's own
report, whose keys the CLI puts at the top of ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from calculator import speed
from calculator.engines.base import HOST, DeviceMemory, Layout
from calculator.placement import Verdict
from calculator.runtime import CacheType, Overhead, kv_cache, kv_cache_cells

if TYPE_CHECKING:
    from calculator.fit import FitOptions
    from calculator.hardware import GpuSetup
    from calculator.memory import WeightFacts
    from calculator.models import ModelSpec


def serving_layout(
    engine: str, spec: ModelSpec, setup: GpuSetup, *, devices: tuple[DeviceMemory, ...], verdict: Verdict, why: str,
    kv_tokens: int, kv_type: CacheType, context: int, batch: int, compute_bytes: int, step_tokens: int,
    layer_devices: tuple[int, ...], settings: tuple[tuple[str, object], ...], notes: tuple[str, ...], report: dict,
    host: DeviceMemory | None = None,
) -> Layout:
    """The ``Layout`` of a serving engine's answer (module docstring)."""
    kv = kv_cache_cells(spec, kinds=("full",) * spec.n_layers, full_cells=kv_tokens, sliding_cells=0,
                        type_k=kv_type, context=context, batch=batch)
    fullest = max(devices, key=lambda d: d.total_bytes)
    overhead = Overhead(cuda_context_bytes=fullest.context_bytes, compute_buffer_bytes=compute_bytes,
                        logits_bytes=0, attention_bytes=0, ffn_bytes=0, extra_bytes=0, step_tokens=step_tokens,
                        flash_attention=True)
    host = host or DeviceMemory(name=HOST, device="CPU RAM", weights_bytes=0, kv_cache_bytes=0, compute_bytes=0,
                                output_bytes=0, context_bytes=0, usable_bytes=setup.cpu_ram_bytes, layers=0)
    return Layout(
        engine=engine, verdict=verdict, devices=devices, host=host,
        kv=kv, overhead=overhead, gpu_layers=spec.n_layers, output_on_gpu=True,
        layer_devices=layer_devices,
        settings=settings, notes=notes, why=why, offloaded_bytes=host.weights_bytes + host.kv_cache_bytes,
        extras=(("serving", report),),
    )


def refused_layout(engine: str, spec: ModelSpec, setup: GpuSetup, context: int, batch: int, why: str) -> Layout:
    """The answer when the engine refuses the run outright (a quantization its kernels lack on this GPU...)."""
    devices = tuple(DeviceMemory(name=f"cuda:{i}", device=g.name, weights_bytes=0, kv_cache_bytes=0, compute_bytes=0,
                                 output_bytes=0, context_bytes=0, usable_bytes=g.usable_bytes, layers=0)
                    for i, g in enumerate(setup.gpus))
    return serving_layout(
        engine, spec, setup, devices=devices, verdict=Verdict.DOES_NOT_FIT, why=why, kv_tokens=0,
        kv_type=CacheType.FP16, context=context, batch=batch, compute_bytes=0, step_tokens=0,
        layer_devices=(0,) * spec.n_layers, settings=(), notes=(),
        report={"engine": engine, "starts": False, "summary": why, "refusal": why},
    )


REFUSALS = ("quantization method", "Bfloat16", "EXL2", "GGUF")
"""Words of the errors an engine raises for a format it cannot run: answered as "does not fit" with the
engine's sentence, so format searches skip the format instead of stopping."""


def tensor_parallel_speed(
    spec: ModelSpec, wf: WeightFacts, setup: GpuSetup, context: int, batch: int, kv_type: CacheType, o: FitOptions
) -> tuple[float | None, float | None]:
    """(decode tokens/s, prefill seconds): every GPU reads its share of the weights and of ``batch`` sequences'
    KV cache at once (``calculator.speed``'s tensor-parallel roofline)."""
    kv = kv_cache(spec, context, batch, kv_type)
    decode = speed.decode_tokens_per_s(wf, kv, setup, batch, o.decode_efficiency or speed.DECODE_BANDWIDTH_EFFICIENCY)
    prefill = speed.prefill_seconds(spec, setup, context, batch,
                                    o.prefill_efficiency or speed.PREFILL_COMPUTE_EFFICIENCY)
    return decode, prefill
