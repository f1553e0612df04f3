"""Accelerators: the GPU catalogue (``assets/gpus.csv``), custom devices and multi-GPU setups.

Every catalogue row carries its source. Memory is stored as sold, in decimal GB (an "80 GB" H100 is
counted as 80e9 bytes; drivers usually expose a little more, e.g. 24564 MiB on a 24 GB RTX 4090), so a
"fits" verdict is conservative. Bandwidth is decimal GB/s as vendors print it. ``fp16_tflops`` is the
peak *dense* FP16 matrix rate: tensor/matrix cores where the device has them (no 2:4 sparsity; GeForce
cards at FP16 accumulate), else the packed FP16 vector rate; each row's notes say which.

Unified-memory machines (Apple silicon) let the GPU wire only part of the RAM: Metal's
``recommendedMaxWorkingSetSize``, about 75% of RAM on large machines (gpustack/gpustack issue #1375:
"the recommended max working set ... which is 75% of total RAM"; measured 107.52 GiB of 128 GiB in
antirez/ds4 PR #893, so 0.75 is on the safe side). That fraction is the ``usable_fraction`` column,
and it can be changed per device (``GpuSpec.usable_fraction``).
"""

from __future__ import annotations

import csv
import difflib
import functools
import re
from dataclasses import dataclass, replace
from enum import StrEnum

from calculator import units
from calculator.paths import ASSETS_DIR

CATALOGUE_PATH = ASSETS_DIR / "gpus.csv"

UNIFIED_MEMORY_USABLE_FRACTION = 0.75
"""Default share of a unified-memory machine's RAM the GPU may use (see module docstring)."""

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

    def __post_init__(self) -> None:
        units.check_int(f"GPU {self.name!r}: memory bytes", self.memory_bytes, example="24_000_000_000 for 24 GB")
        for label, value in (
            ("bandwidth", self.bandwidth_gb_per_s),
            ("fp16 TFLOPS", self.fp16_tflops),
            ("price", self.price_usd),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"GPU {self.name!r}: {label} {value!r} must be positive (or left out)")
        if not 0 < self.usable_fraction <= 1:
            raise ValueError(
                f"GPU {self.name!r}: usable fraction {self.usable_fraction!r} must be in (0, 1]; "
                "e.g. 0.75 for a Mac whose GPU may wire 75% of RAM"
            )

    @property
    def usable_bytes(self) -> int:
        """Bytes a model may occupy on this device (memory x usable fraction, rounded down)."""
        return int(self.memory_bytes * self.usable_fraction)

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
        }


@dataclass(frozen=True)
class GpuSetup:
    """``count`` identical devices (tensor-parallel split) plus the host's CPU RAM for offload.

    ``cpu_ram_bytes=None`` means "not checked": an offload verdict then assumes enough RAM and says so.
    """

    gpu: GpuSpec
    count: int = 1
    cpu_ram_bytes: int | None = None
    cpu_bandwidth_gb_per_s: float = DEFAULT_CPU_BANDWIDTH_GB_PER_S

    def __post_init__(self) -> None:
        units.check_int("GPU count", self.count, example="--gpus 2")
        if self.cpu_ram_bytes is not None:
            units.check_int("CPU RAM bytes", self.cpu_ram_bytes, low=0, example="64_000_000_000 for 64 GB")
        if not self.cpu_bandwidth_gb_per_s > 0:
            raise ValueError(f"CPU bandwidth {self.cpu_bandwidth_gb_per_s!r} GB/s must be positive")

    @property
    def label(self) -> str:
        return self.gpu.name if self.count == 1 else f"{self.count}x {self.gpu.name}"

    @property
    def usable_bytes(self) -> int:
        """Usable bytes over all devices."""
        return self.gpu.usable_bytes * self.count


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


def _row_to_gpu(row: dict, line: int) -> GpuSpec:
    if not row["source"].strip():
        raise ValueError(f"{CATALOGUE_PATH.name} line {line} ({row['name']}): every row needs a source")
    return GpuSpec(
        name=row["name"].strip(),
        vendor=row["vendor"].strip(),
        memory_bytes=round(float(row["memory_gb"]) * units.GB),
        bandwidth_gb_per_s=_optional_float(row, "bandwidth_gb_s"),
        fp16_tflops=_optional_float(row, "fp16_tflops"),
        category=Category(row["category"].strip()),
        memory_type=row["memory_type"].strip(),
        unified_memory=row["unified_memory"].strip() == "yes",
        usable_fraction=float(row["usable_fraction"]),
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
    """The same device with another usable fraction (e.g. a Mac after raising ``iogpu.wired_limit_mb``)."""
    return replace(gpu, usable_fraction=fraction)
