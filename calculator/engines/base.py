"""The engine interface: how one serving program turns a model, its devices and its own settings into
memory per device and a speed.

People do not run "a model"; they run llama.cpp, Ollama, MLX, vLLM..., and each allocates differently: which
layers get a sliding-window cache, how cells are padded, how parallel sequences share the context, which
buffers exist and where they live, what stays in host memory. An ``Engine`` owns those rules and their
citations; ``calculator.fit.fit`` only asks it for a ``Layout`` (every byte per device and on the host, and
the verdict) and a speed.

Adding an engine is one module with one ``Engine`` subclass (its settings as a frozen dataclass, its
rules with their sources) and one line in ``calculator.engines.registry``. Nothing else changes: the CLI,
the app and the searches pass ``FitOptions(engine=..., engine_options=<its settings>)`` through.

Shared here: ``DeviceMemory`` (one device's bytes, as the engine's own start-up log would print them),
``Layout`` (a placed run), ``FlashAttention`` (on/off/auto, the llama.cpp family's choice) and the
``Engine`` base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from calculator.placement import Verdict
from calculator.runtime import KVCache, Overhead

if TYPE_CHECKING:
    from calculator.companions import CompanionRow
    from calculator.fit import FitOptions
    from calculator.hardware import GpuSetup
    from calculator.memory import WeightFacts
    from calculator.models import ModelSpec

HOST = "host"
"""``DeviceMemory.name`` of what stays in system RAM."""


class FlashAttention(StrEnum):
    """llama.cpp ``--flash-attn on|off|auto`` (Ollama: ``OLLAMA_FLASH_ATTENTION``)."""

    ON = "on"
    """Fused attention: no KQ score matrix in the compute buffer; quantized V caches allowed."""
    OFF = "off"
    """The KQ scores of a micro-batch against the whole cache are materialised (context x heads x 4 B)."""
    AUTO = "auto"
    """The engine decides: on where the backend supports it (llama.cpp builds from Oct 2025 default to it)."""


def parse_flash_attention(value: FlashAttention | str | bool) -> FlashAttention:
    """``"on"``, ``True``, ``FlashAttention.AUTO`` ... -> FlashAttention; ValueError naming the choices."""
    if isinstance(value, bool):
        return FlashAttention.ON if value else FlashAttention.OFF
    try:
        return FlashAttention(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"flash attention {value!r} must be one of on, off, auto") from None


@dataclass(frozen=True)
class DeviceMemory:
    """One device's bytes in a placed run, split the way engines log them. Units: bytes.

    For llama.cpp: ``weights_bytes`` is its "model buffer", ``kv_cache_bytes`` its "KV buffer",
    ``compute_bytes`` its "compute buffer", ``output_bytes`` its "output buffer"; ``context_bytes`` (the
    CUDA context and library workspaces) is not logged by llama.cpp but is taken from the device all the
    same. ``layers`` counts the repeating blocks placed here.
    """

    name: str
    """As the engine names it: ``CUDA0``, ``Metal``, ``MTL0``, ``host``."""
    device: str
    """The catalogue device (``RTX 4090``) or ``CPU RAM``."""
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    output_bytes: int
    context_bytes: int
    usable_bytes: int | None
    """What may be used (GPU: usable memory; host: the CPU RAM given, or None when not checked)."""
    layers: int
    holds_output: bool = False
    """This device holds the output layer (llama.cpp: the last GPU when all layers are offloaded)."""
    extra_bytes: int = 0
    """User reserve (``--overhead-gib``)."""
    mapped_bytes: int | None = None
    """Host only, llama.cpp with mmap: the "CPU_Mapped model buffer" a log prints, i.e. the file range from
    the first to the last host tensor (GPU tensors in between included); the RAM really kept is
    ``weights_bytes``."""
    companion_bytes: int = 0
    """Files loaded beside the model that sit here (``--mmproj``, ``-md``; ``calculator.companions``)."""

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.output_bytes
            + self.context_bytes + self.extra_bytes + self.companion_bytes
        )

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.usable_bytes is None else self.usable_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.usable_bytes is None or self.total_bytes <= self.usable_bytes

    def to_dict(self) -> dict:
        data = {
            "name": self.name,
            "device": self.device,
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "compute_bytes": self.compute_bytes,
            "output_bytes": self.output_bytes,
            "context_bytes": self.context_bytes,
            "extra_bytes": self.extra_bytes,
            "total_bytes": self.total_bytes,
            "usable_bytes": self.usable_bytes,
            "layers": self.layers,
            "holds_output": self.holds_output,
        }
        if self.mapped_bytes is not None:
            data["mapped_bytes"] = self.mapped_bytes
        if self.companion_bytes:
            data["companion_bytes"] = self.companion_bytes
        return data


@dataclass(frozen=True)
class Layout:
    """A run placed by an engine: every device, the host, the verdict, and what the engine resolved."""

    engine: str
    verdict: Verdict
    devices: tuple[DeviceMemory, ...]
    host: DeviceMemory
    kv: KVCache
    overhead: Overhead
    """The fullest device's runtime overhead, in the engine-independent terms of ``calculator.runtime``."""
    gpu_layers: int
    """Repeating blocks on the GPUs."""
    output_on_gpu: bool
    layer_devices: tuple[int, ...]
    """Per block: the index into ``devices`` that runs it, or -1 for the host (CPU)."""
    settings: tuple[tuple[str, object], ...] = ()
    """What the engine resolved from its defaults and the user's settings (n_ctx, cells, slots...)."""
    notes: tuple[str, ...] = ()
    """One line each: what the engine did that the user may not expect (padding, a clamped setting...)."""
    why: str = ""
    """Why it does not fit (or why no offload), in one line."""
    offloaded_bytes: int = 0
    """Weights and KV cache of the blocks (and output layer) left in system RAM: what offloading moved."""
    extras: tuple[tuple[str, object], ...] = field(default=(), repr=False)
    """Engine-specific reports (Ollama's own estimate...), JSON-ready."""
    companions: tuple[CompanionRow, ...] = ()
    """The ``--mmproj`` / ``-md`` rows, placed (each says which devices hold its bytes)."""

    @property
    def fullest(self) -> DeviceMemory:
        """The device with the least headroom (the one that decides the verdict)."""
        return min(self.devices, key=lambda d: (d.headroom_bytes, -d.total_bytes))

    @property
    def weight_bytes(self) -> int:
        return sum(d.weights_bytes for d in self.devices) + self.host.weights_bytes

    @property
    def overhead_bytes(self) -> int:
        """Everything but weights, KV cache and companion files, over devices and host."""
        return sum(
            d.total_bytes - d.weights_bytes - d.kv_cache_bytes - d.companion_bytes for d in (*self.devices, self.host)
        )

    @property
    def cpu_bytes(self) -> int:
        """Model data kept in system RAM: host weights + host KV cache."""
        return self.host.weights_bytes + self.host.kv_cache_bytes


class Engine(ABC):
    """One serving program's memory rules. Subclasses set the class attributes and implement ``layout``
    and ``speed``; ``context_limit`` and ``fits`` have generic defaults."""

    name: ClassVar[str]
    """The ``EngineName`` value (``"llama.cpp"``)."""
    title: ClassVar[str]
    """One line for menus."""
    sources: ClassVar[tuple[str, ...]]
    """Where its rules come from (repository@commit path, or URL)."""
    options_type: ClassVar[type]
    """Its settings: a frozen, validated dataclass whose no-argument instance holds the engine's defaults."""
    offloads: ClassVar[bool] = False
    """It can leave blocks in CPU RAM (llama.cpp ``-ngl``): the advice then offers fewer GPU layers."""

    def options(self, value: object | None) -> object:
        """The engine's settings: ``value``, or its defaults when None; ValueError for another engine's."""
        if value is None:
            return self.options_type()
        if not isinstance(value, self.options_type):
            raise ValueError(
                f"engine_options {type(value).__name__} do not go with engine {self.name}; "
                f"pass {self.options_type.__name__}(...) or leave them out"
            )
        return value

    @abstractmethod
    def layout(
        self, spec: ModelSpec, fmt: object, wf: WeightFacts, setup: GpuSetup, context: int, batch: int,
        o: FitOptions,
    ) -> Layout:
        """Place one inference run: ``context`` and ``batch`` as this engine reads them (its docstring).
        ``fmt`` is what ``fit`` was given (a format or file type name, or ``calculator.stored.StoredWeights``);
        ``wf`` its bytes per block (``calculator.memory.weight_facts``)."""

    @abstractmethod
    def speed(
        self, spec: ModelSpec, wf: WeightFacts, setup: GpuSetup, lay: Layout, context: int, batch: int,
        o: FitOptions,
    ) -> tuple[float | None, float | None]:
        """(decode tokens/s, prefill seconds for the whole context); None where it cannot be estimated."""

    def quantized_kv(self, o: FitOptions) -> tuple[tuple[str, FitOptions], ...]:
        """Smaller KV caches this engine offers, as (the flag a user would type, the options with it)."""
        return ()

    def slots_as_batch(self, o: FitOptions, batch: int) -> tuple[FitOptions, int]:
        """Options whose slot count (if the engine's settings hold one) moved into ``batch``, so a search can
        vary it (default: nothing to move)."""
        return o, batch

    def slot_context(self, context: int, batch: int, slots: int, o: FitOptions) -> int:
        """The ``context`` that gives ``slots`` sequences the room each of ``batch`` has now (default: the same:
        ``context`` is per sequence)."""
        return context

    def context_limit(self, spec: ModelSpec, batch: int, o: FitOptions) -> int | None:
        """The largest ``context`` the max-context search tries (default: the model's maximum)."""
        return spec.max_context or None

    def fits(
        self, spec: ModelSpec, fmt: object, wf: WeightFacts, setup: GpuSetup, context: int, batch: int,
        o: FitOptions,
    ) -> bool:
        """Everything on the GPU(s) at this context (the max-context bisection calls this)."""
        return self.layout(spec, fmt, wf, setup, context, batch, o).verdict is Verdict.FITS
