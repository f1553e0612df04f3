"""Ollama: llama.cpp underneath, with Ollama's defaults and words, plus Ollama's own estimate beside.

Ollama v0.30+ (ollama/ollama 9db4bdbad, 2026-05-29) starts upstream llama-server (``LLAMA_CPP_VERSION`` b10488
in the fb307609 snapshot) with ``-c num_ctx x np -np np`` and no ``--kv-unified`` (llm/llama_server.go:368-409),
so every request slot gets ``num_ctx`` cells; ``--cache-type-k/-v`` from ``OLLAMA_KV_CACHE_TYPE``,
``--flash-attn`` from ``OLLAMA_FLASH_ATTENTION`` (unset: auto), ``-ngl`` only when ``num_gpu`` is set.
So ``fit``'s ``context`` is ``num_ctx`` (per request) and ``batch`` is ``OLLAMA_NUM_PARALLEL``; the memory is
the llama.cpp engine's (current build, llama-server) for that command line.

Defaults (``OllamaOptions``; sources in each field): ``num_ctx`` by total VRAM since v0.15.5 (``default_num_ctx``),
``OLLAMA_NUM_PARALLEL`` 1 (since v0.10.0), flash attention auto, f16 KV. Ollama's FAQ (docs/faq.mdx): "The K/V
context cache can be quantized ... when Flash Attention is enabled"; with flash attention off a quantized
type falls back to f16, as v0.9.6 warned ("quantized kv cache requested but flash attention disabled").

``ollama ps`` and the scheduler do not use llama.cpp's numbers. ``ollama_estimate`` ports v0.9.6's
``EstimateGPULayers`` (llm/memory.go and fs/ggml/ggml.go ``GraphSize`` at 43107b15, the last release that logged
``msg=offload ... memory.required.full=...``); v0.30+ predicts only ``file size + 2 x layers x kv_heads x
head_dim x num_ctx x 2`` (``PredictServerVRAM``, llm/llama_server.go:2681-2700). Both are reported with why they
differ from what llama.cpp allocates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from calculator import units
from calculator.engines.base import Engine, FlashAttention, Layout, parse_flash_attention
from calculator.engines.llama_cpp import LlamaCpp, LlamaCppOptions
from calculator.engines.llama_cpp_rules import LlamaCppBuild, nonrepeating
from calculator.hardware import Backend, GpuSetup
from calculator.memory import weight_memory
from calculator.runtime import CacheType, parse_cache_type

_OLLAMA = "ollama/ollama"
MINIMUM_MEMORY = {Backend.CUDA: 457 * units.MiB, Backend.ROCM: 457 * units.MiB, Backend.METAL: 512 * units.MiB}
"""Per-GPU reserve of the v0.9.6 estimate: ``cudaMinimumMemory = rocmMinimumMemory = 457 MiB``
(discover/gpu.go:41-42), ``metalMinimumMemory = 512 MiB`` (discover/gpu_darwin.go:21)."""


def default_num_ctx(setup: GpuSetup) -> int:
    """Ollama's default ``num_ctx`` since v0.15.5 (commit 0334ffa62): 262144 with >= 47 GiB of total VRAM,
    32768 with >= 23 GiB, else 4096 (server/routes.go:2049-2058; 4096 from v0.6.7, 2048 before). VRAM as the
    driver reports it: a card sold as "24 GB" has 24 GiB (the thresholds sit just under 48 and 24 GiB for
    that reason); a Mac reports Metal's working set."""
    total = sum(g.usable_bytes if g.unified_memory else g.memory_bytes * units.GiB // units.GB for g in setup.gpus)
    return 262144 if total >= 47 * units.GiB else 32768 if total >= 23 * units.GiB else 4096


@dataclass(frozen=True)
class OllamaOptions:
    """What an Ollama user sets, in Ollama's words. ``num_ctx`` is ``fit``'s ``context``."""

    num_parallel: int | None = None
    """``OLLAMA_NUM_PARALLEL``; None: ``fit``'s ``batch`` (Ollama's default is 1 since v0.10.0, server/sched.go)."""
    kv_cache_type: CacheType | None = None
    """``OLLAMA_KV_CACHE_TYPE`` (f16, q8_0, q4_0); None: ``FitOptions.kv_type``. Applied only with flash attention."""
    flash_attention: FlashAttention = FlashAttention.AUTO
    """``OLLAMA_FLASH_ATTENTION``: unset = auto (llm/llama_server.go:613-621), 1 = on, 0 = off."""
    num_gpu: int | None = None
    """``num_gpu`` (passed as ``-ngl``; 0 = CPU only); None: llama-server fits as many layers as it can."""
    num_batch: int | None = None
    """``num_batch`` (``-b``/``-ub``); None: ``FitOptions.ubatch`` (llama-server's 512)."""
    gpu_overhead_bytes: int = 0
    """``OLLAMA_GPU_OVERHEAD``: bytes Ollama keeps free on every GPU."""

    def __post_init__(self) -> None:
        if self.num_parallel is not None:
            units.check_int("OLLAMA_NUM_PARALLEL", self.num_parallel, high=4096, example="1")
        if self.kv_cache_type is not None:
            kvt = parse_cache_type(self.kv_cache_type)
            if kvt not in (CacheType.FP16, CacheType.Q8_0, CacheType.Q4_0):
                raise ValueError(f"OLLAMA_KV_CACHE_TYPE {self.kv_cache_type!r} must be one of f16, q8_0, q4_0 "
                                 "(docs/faq.mdx)")
            object.__setattr__(self, "kv_cache_type", kvt)
        object.__setattr__(self, "flash_attention", parse_flash_attention(self.flash_attention))
        if self.num_gpu is not None:
            units.check_int("num_gpu", self.num_gpu, low=0, high=100_000, example="999, or 0 for CPU only")
        if self.num_batch is not None:
            units.check_int("num_batch", self.num_batch, high=1 << 20, example="512")
        units.check_int("OLLAMA_GPU_OVERHEAD (bytes)", self.gpu_overhead_bytes, low=0, example="0")


class Ollama(Engine):
    name = "ollama"
    title = "Ollama (llama-server underneath, num_ctx per request x OLLAMA_NUM_PARALLEL)"
    sources = (
        f"{_OLLAMA}@fb30760996871fa9460115c753afd2c60d4ab0f7 llm/llama_server.go, server/routes.go, "
        "server/sched.go, docs/faq.mdx",
        f"{_OLLAMA}@43107b15b9bcff51ef1c5391c273fd1a747f6d0a (v0.9.6) llm/memory.go, fs/ggml/ggml.go, discover/gpu.go",
    )
    options_type = OllamaOptions
    offloads = True

    def quantized_kv(self, o):
        oo: OllamaOptions = self.options(o.engine_options)
        now = oo.kv_cache_type or o.kv_type
        out = []
        for ct in (CacheType.Q8_0, CacheType.Q4_0):
            if now in (ct, CacheType.Q4_0):
                continue
            fa = FlashAttention.ON if oo.flash_attention is FlashAttention.OFF else oo.flash_attention
            flag = f"OLLAMA_KV_CACHE_TYPE={ct.value}"
            flag += " OLLAMA_FLASH_ATTENTION=1" if fa is not oo.flash_attention else ""
            out.append((flag,
                        replace(o, engine_options=replace(oo, kv_cache_type=ct, flash_attention=fa))))
        return tuple(out)

    def slots_as_batch(self, o, batch):
        oo: OllamaOptions = self.options(o.engine_options)
        if oo.num_parallel is None:
            return o, batch
        return replace(o, engine_options=replace(oo, num_parallel=None)), oo.num_parallel

    def _runner(self, spec, batch, o):
        """(num_ctx per request, slots, the FitOptions llama-server runs with, notes)."""
        oo: OllamaOptions = self.options(o.engine_options)
        np_ = oo.num_parallel or batch
        if oo.num_parallel is not None and batch not in (1, oo.num_parallel):
            raise ValueError(f"batch {batch} and OLLAMA_NUM_PARALLEL {oo.num_parallel} disagree; give one of them")
        kvt = oo.kv_cache_type or o.kv_type
        notes = []
        if kvt not in (CacheType.FP16, CacheType.Q8_0, CacheType.Q4_0):
            raise ValueError(f"OLLAMA_KV_CACHE_TYPE {kvt.value!r} must be one of f16, q8_0, q4_0 (docs/faq.mdx)")
        if kvt is not CacheType.FP16 and oo.flash_attention is FlashAttention.OFF:
            notes.append(f"OLLAMA_KV_CACHE_TYPE={kvt.value} needs flash attention, which is off: Ollama uses f16 "
                         "(\"quantized kv cache requested but flash attention disabled\")")
            kvt = CacheType.FP16
        fa = FlashAttention.ON if oo.flash_attention is FlashAttention.AUTO else oo.flash_attention
        lo = LlamaCppOptions(build=LlamaCppBuild.CURRENT, parallel=np_, kv_unified=False, flash_attention=fa,
                             cache_type_k=kvt, cache_type_v=kvt, n_gpu_layers=oo.num_gpu, server=True)
        runner = replace(o, engine="llama.cpp", engine_options=lo, ubatch=oo.num_batch or o.ubatch,
                         extra_overhead_bytes=o.extra_overhead_bytes + oo.gpu_overhead_bytes)
        return np_, runner, notes

    def layout(self, spec, fmt, wf, setup, context, batch, o) -> Layout:
        np_, runner, notes = self._runner(spec, batch, o)
        num_ctx = context
        if spec.max_context and num_ctx > spec.max_context:
            notes.append(f"num_ctx {num_ctx:,} is above the model's {spec.max_context:,}: Ollama lowers it to "
                         "n_ctx_train (\"requested context size too large for model\", llm/server.go)")
            num_ctx = spec.max_context
        lay = LlamaCpp().layout(spec, fmt, wf, setup, num_ctx * np_, np_, runner)
        settings = (("num_ctx", num_ctx), ("OLLAMA_NUM_PARALLEL", np_),
                    ("llama_server_args", f"-c {num_ctx * np_} -np {np_}"), *lay.settings)
        est = ollama_estimate(spec, fmt, setup, num_ctx * np_, np_, runner, self.options(o.engine_options))
        return replace(lay, engine=self.name, settings=settings, notes=(*notes, *lay.notes),
                       extras=(("ollama_estimate", est),))

    def fits(self, spec, fmt, wf, setup, context, batch, o) -> bool:
        np_, runner, _ = self._runner(spec, batch, o)
        return LlamaCpp().fits(spec, fmt, wf, setup, min(context, spec.max_context or context) * np_, np_, runner)

    def context_limit(self, spec, batch, o) -> int | None:
        return spec.max_context or None

    def speed(self, spec, wf, setup, lay, context, batch, o):
        np_, runner, _ = self._runner(spec, batch, o)
        return LlamaCpp().speed(spec, wf, setup, lay, dict(lay.settings)["n_ctx"], np_, runner)


# Ollama's own estimate (v0.9.6 llm/memory.go EstimateGPULayers + fs/ggml/ggml.go GraphSize)

_GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "gemma": "gemma",
              "gemma2": "gemma2", "gemma3_text": "gemma3"}
"""Hugging Face model_type -> the GGUF architecture whose ``GraphSize`` formula Ollama applies. Architectures with
no case there (phi3, qwen3, ...) get the fallback ``gqa x kv / 6``; those with a case not ported here
(deepseek2, phi2, stablelm, chatglm, command-r) are not estimated."""
_NOT_PORTED = {"deepseek_v2", "deepseek_v3"}


def _graph_size(spec, fmt, context: int, batch: int, n_parallel: int, kv_bytes_per_element: float):
    """(kv per layer, partial, full) as ``GraphSize`` computes them (0 where Ollama has no formula)."""
    emb, heads, heads_kv, vocab = spec.hidden_size, spec.n_heads, spec.n_kv_heads, spec.vocab_size
    head = spec.head_dim
    kv = [int(context * (head + (spec.v_head_dim or head)) * heads_kv * kv_bytes_per_element)] * spec.n_layers
    arch = _GGUF_ARCH.get(spec.arch)
    partial = full = 0
    if arch == "llama":
        full = max(4 * batch * (1 + 4 * emb + context * (1 + heads)), 4 * batch * (emb + vocab))
        partial = 4 * batch * emb + max(
            4 * batch * (1 + emb + max(context, emb)) + emb * emb * 9 // 16
            + 4 * context * (batch * heads + head * heads_kv),
            4 * batch * (emb + vocab) + emb * vocab * 105 // 128,
        )
        if spec.n_experts:  # stacked experts: the "mixtral 8x22b" branch
            gate = next(t.bytes for t in weight_memory(spec, fmt).tensors if t.name == "blk.0.ffn_gate_exps.weight")
            ff = spec.intermediate_size
            partial = max(
                3 * gate + 4 * batch * (2 * ff + heads_kv + emb + context + head * heads_kv),
                4 * (context * batch * heads + context * head * heads_kv + batch * 1024 + head * heads_kv * batch),
            )
    elif arch in ("gemma", "gemma2", "gemma3"):
        full = max(4 * batch * (emb + vocab), 4 * batch * (2 + context + context * heads + 2 * emb + 2 * head * heads))
        partial = max(
            4 * emb * batch + emb * vocab * 105 // 128 + 4 * vocab * batch,
            4 * batch * (2 * emb + 1 + 2 * head * heads + context + context * heads) + 4 * head * context * 8
            + emb * head * heads * 9 // 16,
        )
        if arch == "gemma3" and spec.sliding_window:
            window = n_parallel * spec.sliding_window + batch
            kv = [k if (i + 1) % 6 == 0 else int(window * 2 * head * heads_kv * kv_bytes_per_element)
                  for i, k in enumerate(kv)]
    elif arch == "qwen2":
        full = max(4 * batch * (emb + vocab), 4 * batch * (1 + 2 * emb + context + context * heads))
        partial = max(4 * batch * (emb + vocab) + emb * vocab * 105 // 128,
                      4 * (batch * (1 + 2 * emb + context * (1 + heads)) + emb * (1 + context)))
    return kv, partial, full


def ollama_estimate(spec, fmt, setup: GpuSetup, context: int, n_parallel: int, runner, oo: OllamaOptions) -> dict:
    """Ollama v0.9.6's ``EstimateGPULayers`` for the GPUs of ``setup`` (free memory = usable memory), as its
    ``msg=offload`` log line reports it, and why it differs from llama.cpp's allocation."""
    if spec.arch in _NOT_PORTED:
        return {"estimated": False, "why": f"Ollama's GraphSize case for {spec.arch} is not ported here"}
    lo: LlamaCppOptions = runner.engine_options
    per_element = {CacheType.Q8_0: 1.0, CacheType.Q4_0: 0.5}.get(lo.cache_type_k, 2.0)  # kvCacheBytesPerElement
    batch = min(context, runner.ubatch or 512)
    kv, partial, full = _graph_size(spec, fmt, context, batch, n_parallel, per_element)
    kv_total = sum(kv)
    if partial == 0:
        partial = (spec.n_heads // max(spec.n_kv_heads, 1)) * kv_total // 6
    if full == 0:
        full = partial
    metal = setup.gpu.backend is Backend.METAL
    if metal:
        partial = full
    elif setup.count > 1:
        full = partial
    graph = max(partial, full)
    wf_layers = _block_bytes(spec, fmt)
    nr = nonrepeating(spec, fmt)
    output_layer = nr.output  # memoryLayerOutput: output_norm + (output, or token_embd when tied)
    overhead = oo.gpu_overhead_bytes
    free = [g.usable_bytes for g in setup.gpus]
    minimum = [MINIMUM_MEMORY.get(g.backend, MINIMUM_MEMORY[Backend.CUDA]) for g in setup.gpus]
    layer0 = wf_layers[0] + kv[0]
    alloc = [0] * setup.count
    counts = [0] * setup.count
    with_space = []
    for i in range(setup.count):
        if free[i] < overhead + graph + minimum[i] + 2 * layer0:
            continue
        with_space.append(i)
        alloc[i] += minimum[i] + layer0
    overflow = count = 0
    num_gpu = lo.n_gpu_layers if lo.n_gpu_layers is not None else -1
    for i in reversed(range(spec.n_layers)):
        size = wf_layers[i] + kv[i]
        if num_gpu >= 0 and count >= num_gpu:
            overflow += size
            continue
        for j in range(len(with_space), 0, -1):
            g = with_space[i % j]
            if free[g] > overhead + alloc[g] + graph + size:
                alloc[g] += size
                counts[g] += 1
                count += 1
                break
            with_space.remove(g)
        if not with_space:
            overflow += size
    fully = count >= spec.n_layers
    if num_gpu < 0 or count < num_gpu:
        for j in range(len(with_space), 0, -1):
            g = with_space[count % j]
            if free[g] > overhead + alloc[g] + graph + output_layer:
                alloc[g] += output_layer
                counts[g] += 1
                count += 1
                break
    if count < spec.n_layers + 1:
        fully = False
        overflow += output_layer
    for i in range(setup.count):
        if counts[i] > 0:
            alloc[i] += full if fully else partial
    vram = sum(alloc)
    return {
        "estimated": True,
        "version": "v0.9.6 EstimateGPULayers (llm/memory.go)",
        "layers_offload": count,
        "layers_model": spec.n_layers + 1,
        "memory_required_full_bytes": vram + overflow,
        "memory_required_partial_bytes": vram,
        "memory_required_kv_bytes": kv_total,
        "memory_graph_full_bytes": full,
        "memory_graph_partial_bytes": partial,
        "allocations_bytes": alloc,
        "predicted_vram_v0_30_bytes": weight_memory(spec, fmt).total_bytes
        + 2 * spec.n_layers * spec.n_kv_heads * (spec.hidden_size // spec.n_heads) * context * 2,
        "why_it_differs": [
            "KV cache: every layer counted at the full num_ctx x parallel in f16/q8_0/q4_0 element sizes "
            "(sliding-window layers only for gemma3; head_dim taken as hidden/heads in v0.30's prediction)",
            "graph: per-architecture heuristics that ignore flash attention, added to every GPU that holds layers",
            f"reserves: {', '.join(units.fmt_gib(m) for m in dict.fromkeys(minimum))} minimum per GPU plus one spare "
            "layer, plus OLLAMA_GPU_OVERHEAD",
            "llama.cpp keeps token_embd in host memory and its compute buffers follow the real graph",
        ],
    }


def _block_bytes(spec, fmt) -> list[int]:
    """Per block, the bytes of its tensors (``blk.N`` group size in Ollama's ``GroupLayers``)."""
    out = [0] * spec.n_layers
    layer_of = {t.name: t.layer for t in spec.tensors}
    for t in weight_memory(spec, fmt).tensors:
        if layer_of[t.name] is not None:
            out[layer_of[t.name]] += t.bytes
    return out
