"""Accelerators: the GPU catalogue (``assets/gpus.csv``), custom devices and multi-GPU setups.

Every catalogue row carries its source. Memory is stored as sold, in decimal GB (an "80 GB" H100 is
counted as 80e9 bytes; drivers usually expose a little more, e.g. 24564 MiB on a 24 GB RTX 4090), so a
"fits" verdict is conservative. Bandwidth is decimal GB/s as vendors print it. ``fp16_tflops`` is the
peak *dense* FP16 matrix rate: tensor/matrix cores where the device has them (no 2:4 sparsity; GeForce
cards at FP16 accumulate), else the packed FP16 vector rate; each row's notes say which.

Unified-memory machines (Apple silicon) let the GPU wire only part of the RAM: Metal's
``recommendedMaxWorkingSetSize``, which llama.cpp and MLX both take as the GPU's memory (ggml-metal reports
it as the device total; mlx_lm ``generate.wired_limit`` wires up to it). Logged values give the rule in the
``usable_fraction`` column (macOS 13-15): **2/3 of RAM up to 32 GB, 3/4 from 64 GB** --

- M1 8 GB: ``recommendedMaxWorkingSetSize = 5726.63 MB`` (2/3 of 8 GiB, rounded up to a 16 KiB page),
  XiongjieDai/GPU-Benchmarks-on-LLM-Inference@aa72e0ec ``LLaMA 3/Mac/M1_8GB.ipynb``;
- M1 Max 32 GB: ``21845.34 MB`` (MiB units, 2/3), ggml-org/llama.cpp PR #2011; M2 Max 32 GB: the same,
  ollama/ollama issue #434;
- M1 Max 64 GB and M3 Max 64 GB: ``51539.61 MB`` (3/4), the same repository's ``M1max_64GB.ipynb`` and
  ``M3max_64GB.ipynb``; M2 Max 96 GB: ``73728,00 MB`` (MiB units, 3/4), ggml-org/llama.cpp issue #3213;
  M2 Ultra 192 GB: ``154618.82 MB`` (3/4), ``M2ultra_192GB.ipynb``.

36 and 48 GB machines were not observed; they get 2/3 (the smaller, safe side). macOS 26 reports more
(107.52 GiB of 128 GiB on an M5 Max, 0.84: antirez/ds4 PR #893). ``sudo sysctl iogpu.wired_limit_mb=N``
raises the limit and Metal reports exactly N MiB (same PR: 114688 -> 112.00 GiB): ``with_wired_limit``.
Apple sells unified memory in binary gigabytes (a "192GB" Mac has 192 GiB: 0.75 x 192 x 2^30 B is the
logged 154618.82 MB), so those rows give memory with its unit (``192GiB``).

A run may use several devices, possibly different ones (``GpuSetup([rtx3090, rtx3060])``): llama.cpp
splits layers across them in proportion to their free memory.
"""

from __future__ import annotations

import csv
import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

from calculator import units
from calculator.paths import ASSETS_DIR

CATALOGUE_PATH = ASSETS_DIR / "gpus.csv"

UNIFIED_MEMORY_USABLE_FRACTION = 0.75
"""Share of a large (>= 64 GB) unified-memory machine's RAM the GPU may use (see module docstring)."""

METAL_PAGE_BYTES = 16384
"""Apple silicon page: Metal's recommended working set is a whole number of them (5726.63 MB on an 8 GB M1 is
2/3 of 8 GiB rounded up to 16 KiB)."""

DEFAULT_CPU_BANDWIDTH_GB_PER_S = 89.6
"""Dual-channel DDR5-5600: 2 channels x 8 bytes x 5600 MT/s = 89.6 GB/s (JEDEC DDR5 data rate x bus
width). Used only for the decode speed of layers offloaded to the CPU; change it per setup."""


class Category(StrEnum):
    """Where a device is sold; the app groups the catalogue by it."""

    CONSUMER = "consumer"
    """Gaming cards (GeForce, Radeon RX, Arc)."""
    WORKSTATION = "workstation"
    """Professional desktop cards (RTX A6000, RTX 6000 Ada, RTX PRO)."""
    DATACENTER = "datacenter"
    """Server accelerators (A100, H100, MI300X...)."""
    APPLE = "apple"
    """Apple silicon with unified memory."""
    CUSTOM = "custom"
    """A device the user described (``custom:24GiB[:1000GB/s]``)."""


class Backend(StrEnum):
    """The GPU backend llama.cpp uses for a vendor (its buffer names: ``CUDA0``, ``ROCm0``, ``Metal``...)."""

    CUDA = "CUDA"
    """NVIDIA; also assumed for custom devices."""
    ROCM = "ROCm"
    """AMD (HIP build; llama.cpp names its buffers ROCm0...)."""
    SYCL = "SYCL"
    """Intel Arc."""
    METAL = "Metal"
    """Apple silicon (2025+ builds name the buffers MTL0)."""


_BACKENDS = {"NVIDIA": Backend.CUDA, "AMD": Backend.ROCM, "Intel": Backend.SYCL, "Apple": Backend.METAL}


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator. ``memory_bytes`` as sold; ``usable_bytes`` is what a model may occupy."""

    name: str
    vendor: str
    memory_bytes: int
    bandwidth_gb_per_s: float | None = None
    fp16_tflops: float | None = None
    category: Category = Category.CUSTOM
    memory_type: str = ""
    unified_memory: bool = False
    usable_fraction: float = 1.0
    price_usd: float | None = None
    aliases: tuple[str, ...] = ()
    source: str = ""
    notes: str = ""
    wired_limit_bytes: int | None = None
    """macOS ``iogpu.wired_limit_mb`` override of the GPU working set (replaces ``usable_fraction``)."""

    def __post_init__(self) -> None:
        units.check_int(f"GPU {self.name!r}: memory bytes", self.memory_bytes, example="24_000_000_000 for 24 GB")
        if self.wired_limit_bytes is not None:
            units.check_int(f"GPU {self.name!r}: wired limit bytes", self.wired_limit_bytes,
                            high=self.memory_bytes, example="iogpu.wired_limit_mb=114688 on a 128 GB Mac")
        for label, value in (
            ("bandwidth", self.bandwidth_gb_per_s),
            ("fp16 TFLOPS", self.fp16_tflops),
            ("price", self.price_usd),
        ):
            if value is not None and not 0 < value < float("inf"):
                raise ValueError(f"GPU {self.name!r}: {label} {value!r} must be a positive finite number (or left out)")
        if not 0 < self.usable_fraction <= 1:
            raise ValueError(
                f"GPU {self.name!r}: usable fraction {self.usable_fraction!r} must be in (0, 1]; "
                "e.g. 0.75 for a Mac whose GPU may wire 75% of RAM"
            )

    @property
    def usable_bytes(self) -> int:
        """Bytes a model may occupy on this device: memory x usable fraction (rounded down); on a unified-memory
        machine Metal's recommended working set (rounded up to a page) or the ``iogpu.wired_limit_mb`` set."""
        if self.wired_limit_bytes is not None:
            return self.wired_limit_bytes
        if self.unified_memory:
            exact = Fraction(self.memory_bytes) * Fraction(self.usable_fraction).limit_denominator(1000)
            return units.ceil_div(int(exact), METAL_PAGE_BYTES) * METAL_PAGE_BYTES
        return int(self.memory_bytes * self.usable_fraction)

    @property
    def backend(self) -> Backend:
        """llama.cpp's backend for this device (custom devices: CUDA)."""
        return _BACKENDS.get(self.vendor, Backend.CUDA)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "category": self.category.value,
            "memory_bytes": self.memory_bytes,
            "usable_bytes": self.usable_bytes,
            "memory_type": self.memory_type,
            "bandwidth_gb_per_s": self.bandwidth_gb_per_s,
            "fp16_tflops": self.fp16_tflops,
            "unified_memory": self.unified_memory,
            "usable_fraction": self.usable_fraction,
            "price_usd": self.price_usd,
            "aliases": list(self.aliases),
            "source": self.source,
            "notes": self.notes,
            "backend": self.backend.value,
            "wired_limit_bytes": self.wired_limit_bytes,
        }


@dataclass(frozen=True, init=False)
class GpuSetup:
    """The devices of one run, in order (llama.cpp's CUDA0, CUDA1...), plus the host's CPU RAM for offload.

    ``GpuSetup(gpu, count)`` is ``count`` identical devices; ``GpuSetup([rtx3090, rtx3060])`` a mixed set.
    ``cpu_ram_bytes=None`` means "not checked": an offload verdict then assumes enough RAM and says so.
    """

    gpus: tuple[GpuSpec, ...]
    cpu_ram_bytes: int | None
    cpu_bandwidth_gb_per_s: float

    def __init__(
        self,
        gpu: GpuSpec | Sequence[GpuSpec],
        count: int = 1,
        cpu_ram_bytes: int | None = None,
        cpu_bandwidth_gb_per_s: float = DEFAULT_CPU_BANDWIDTH_GB_PER_S,
    ) -> None:
        units.check_int("GPU count", count, high=units.MAX_GPU_COUNT, example="--gpus 2")
        if isinstance(gpu, GpuSpec):
            gpus = (gpu,) * count
        elif isinstance(gpu, Sequence) and not isinstance(gpu, str) and gpu and all(
            isinstance(g, GpuSpec) for g in gpu
        ):
            if count != 1:
                raise ValueError(f"GPU count {count} goes with one device; a list of devices already names each")
            gpus = tuple(gpu)
            units.check_int("GPU count", len(gpus), high=units.MAX_GPU_COUNT, example="--gpus 2")
        else:
            raise ValueError(f"expected a GpuSpec or a list of them, got {units.shown(gpu)}")
        if cpu_ram_bytes is not None:
            units.check_int("CPU RAM bytes", cpu_ram_bytes, low=0, example="64_000_000_000 for 64 GB")
        units.check_float("CPU bandwidth (GB/s)", cpu_bandwidth_gb_per_s, high=1e6, low_open=True, example="89.6")
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "cpu_ram_bytes", cpu_ram_bytes)
        object.__setattr__(self, "cpu_bandwidth_gb_per_s", float(cpu_bandwidth_gb_per_s))

    @property
    def gpu(self) -> GpuSpec:
        """The first device (all of them, when the set is homogeneous)."""
        return self.gpus[0]

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def homogeneous(self) -> bool:
        return all(g == self.gpus[0] for g in self.gpus)

    @property
    def unified_memory(self) -> bool:
        return any(g.unified_memory for g in self.gpus)

    @property
    def label(self) -> str:
        """``RTX 4090``, ``2x RTX 4090``, ``RTX 3090 + RTX 3060 12GB``."""
        groups: list[list] = []
        for g in self.gpus:
            if groups and groups[-1][0] == g:
                groups[-1][1] += 1
            else:
                groups.append([g, 1])
        return " + ".join(g.name if n == 1 else f"{n}x {g.name}" for g, n in groups)

    @property
    def usable_bytes(self) -> int:
        """Usable bytes over all devices."""
        return sum(g.usable_bytes for g in self.gpus)


# Catalogue

_COLUMNS = [
    "name",
    "aliases",
    "vendor",
    "category",
    "memory_gb",
    "memory_type",
    "bandwidth_gb_s",
    "fp16_tflops",
    "unified_memory",
    "usable_fraction",
    "price_usd",
    "source",
    "notes",
]


def _optional_float(row: dict, key: str) -> float | None:
    return float(row[key]) if row[key].strip() else None


def _memory_bytes(text: str) -> int:
    """``24`` -> 24 GB as sold (decimal); ``192GiB`` -> binary, for Apple's unified memory."""
    text = text.strip()
    return units.parse_bytes(text) if text[-1:].isalpha() else round(float(text) * units.GB)


def _row_to_gpu(row: dict, line: int) -> GpuSpec:
    if not row["source"].strip():
        raise ValueError(f"{CATALOGUE_PATH.name} line {line} ({row['name']}): every row needs a source")
    return GpuSpec(
        name=row["name"].strip(),
        vendor=row["vendor"].strip(),
        memory_bytes=_memory_bytes(row["memory_gb"]),
        bandwidth_gb_per_s=_optional_float(row, "bandwidth_gb_s"),
        fp16_tflops=_optional_float(row, "fp16_tflops"),
        category=Category(row["category"].strip()),
        memory_type=row["memory_type"].strip(),
        unified_memory=row["unified_memory"].strip() == "yes",
        usable_fraction=float(Fraction(row["usable_fraction"].strip())),
        price_usd=_optional_float(row, "price_usd"),
        aliases=tuple(a.strip() for a in row["aliases"].split(";") if a.strip()),
        source=row["source"].strip(),
        notes=row["notes"].strip(),
    )


@functools.cache
def catalogue() -> tuple[GpuSpec, ...]:
    """Every device in ``assets/gpus.csv``, in file order (read once)."""
    with CATALOGUE_PATH.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != _COLUMNS:
            raise ValueError(f"{CATALOGUE_PATH} columns {reader.fieldnames} differ from {_COLUMNS}")
        gpus = tuple(_row_to_gpu(row, i) for i, row in enumerate(reader, start=2))
    names = [g.name for g in gpus]
    if len(set(names)) != len(names):
        raise ValueError(f"{CATALOGUE_PATH.name} repeats a device name")
    return gpus


_BRAND_WORDS = ("nvidia", "geforce", "tesla", "amd", "radeon", "instinct", "intel", "apple")


def _key(text: str) -> str:
    """``"NVIDIA GeForce RTX-4090"`` -> ``"rtx4090"``: case, spaces, dashes and brand words ignored."""
    text = text.lower()
    for word in _BRAND_WORDS:
        text = re.sub(rf"\b{word}\b", "", text)
    return re.sub(r"[^a-z0-9]", "", text)


@functools.cache
def _index() -> dict[str, GpuSpec]:
    out: dict[str, GpuSpec] = {}
    for gpu in catalogue():
        for label in (gpu.name, *gpu.aliases):
            key = _key(label)
            if key in out and out[key] is not gpu:
                raise ValueError(
                    f"{CATALOGUE_PATH.name}: {label!r} names both {out[key].name} and {gpu.name}"
                )
            out[key] = gpu
    return out


_CUSTOM_HELP = "custom:MEMORY[:BANDWIDTH][:TFLOPS], e.g. custom:24GiB or custom:24GiB:1000GB/s:165TFLOPS"


def get_gpu(name: str) -> GpuSpec:
    """A catalogue device by name or alias (case/space/brand-insensitive), or a ``custom:`` device.

    A unique partial name works ("4090"); an ambiguous one ("H100", "A100") lists its matches; a typo
    gets "did you mean".
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("no GPU given; name one from `python -m calculator gpus` or use " + _CUSTOM_HELP)
    text = name.strip()
    if text.lower().startswith("custom"):
        return parse_custom_gpu(text)
    index = _index()
    key = _key(text)
    if key in index:
        return index[key]
    partial = sorted({gpu.name for k, gpu in index.items() if key and key in k})
    if len(partial) == 1:
        return next(g for g in catalogue() if g.name == partial[0])
    if len(partial) > 1:
        raise ValueError(f"GPU {name!r} matches several devices: {', '.join(partial)}; name one of them")
    labels = {g.name: g.name for g in catalogue()} | {a: g.name for g in catalogue() for a in g.aliases}
    close = difflib.get_close_matches(text, list(labels), n=3, cutoff=0.6)
    close = list(dict.fromkeys(labels[c] for c in close))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown GPU {name!r}{hint} (`python -m calculator gpus` lists all {len(catalogue())}; "
        f"or describe it: {_CUSTOM_HELP})"
    )


_BANDWIDTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(GB/S|TB/S)\s*$", re.IGNORECASE)
_TFLOPS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*TFLOPS\s*$", re.IGNORECASE)


def parse_custom_gpu(text: str) -> GpuSpec:
    """``custom:24GiB``, ``custom:24GiB:1000GB/s``, ``custom:80GB:3.35TB/s:989TFLOPS`` -> GpuSpec.

    Memory takes any unit ``units.parse_bytes`` reads (GB = 10^9, GiB = 2^30). Without a bandwidth
    the decode-speed estimate is left out; without TFLOPS, the prefill estimate.
    """
    if len(text) > units.MAX_NUMBER_CHARS * 3:  # before the regexes, which backtrack on long digit runs
        raise ValueError(f"custom GPU {text[:24]!r}... is {len(text):,} characters long; write {_CUSTOM_HELP}")
    parts = text.strip().split(":")
    if parts[0].strip().lower() != "custom" or len(parts) < 2 or not parts[1].strip() or len(parts) > 4:
        raise ValueError(f"custom GPU {text!r} is not understood; write {_CUSTOM_HELP}")
    memory = units.parse_bytes(parts[1].strip())
    bandwidth = tflops = None
    for part in parts[2:]:
        if m := _BANDWIDTH_RE.match(part):
            scale = 1000 if m.group(2).upper() == "TB/S" else 1
            bandwidth = float(m.group(1)) * scale
        elif m := _TFLOPS_RE.match(part):
            tflops = float(m.group(1))
        else:
            raise ValueError(
                f"custom GPU part {part!r} is neither a bandwidth (1000GB/s, 3.35TB/s) nor a compute rate "
                f"(165TFLOPS); write {_CUSTOM_HELP}"
            )
    return GpuSpec(
        name=f"custom {units.fmt_gib(memory)}",
        vendor="custom",
        memory_bytes=memory,
        bandwidth_gb_per_s=bandwidth,
        fp16_tflops=tflops,
        category=Category.CUSTOM,
        source="user-described device",
    )


def with_usable_fraction(gpu: GpuSpec, fraction: float) -> GpuSpec:
    """The same device with another usable fraction."""
    return replace(gpu, usable_fraction=fraction)


def with_wired_limit(gpu: GpuSpec, wired_limit_mb: int) -> GpuSpec:
    """A Mac after ``sudo sysctl iogpu.wired_limit_mb=N``: Metal's working set becomes exactly N MiB
    (antirez/ds4 PR #893: 114688 -> "recommendedMaxWorkingSetSize: 112.00 GiB")."""
    if not gpu.unified_memory:
        raise ValueError(f"iogpu.wired_limit_mb is a macOS setting; {gpu.name} is not an Apple silicon Mac")
    mib = units.check_int("iogpu.wired_limit_mb", wired_limit_mb, high=gpu.memory_bytes // units.MiB,
                          example=f"{gpu.memory_bytes * 7 // 8 // units.MiB} on this Mac")
    return replace(gpu, wired_limit_bytes=mib * units.MiB, name=f"{gpu.name} (wired limit {mib} MiB)")
