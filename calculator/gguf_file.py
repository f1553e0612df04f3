"""A GGUF file's header and tensor-info table, read without its tensor data, from any byte source.

GGUF layout (ggml-org/ggml ``docs/gguf.md``; llama.cpp ``ggml/src/gguf.cpp`` ``gguf_init_from_file_impl``):
magic ``GGUF``, uint32 version, uint64 tensor count, uint64 metadata count, the metadata (string key,
uint32 value type, value), one info per tensor (string name, uint32 n_dims, uint64 ``ne[n_dims]``,
uint32 ggml type, uint64 offset), zero padding to ``general.alignment`` (default 32), then the tensor
data. Strings are a uint64 length + UTF-8 bytes. Little-endian; a big-endian file shows a byte-swapped
version, which is how gguf-py's ``GGUFReader`` tells them apart too.

Why not ``gguf.GGUFReader``: it ``np.memmap``s the whole file and builds a numpy view per field (3.8 s
for SmolLM2's 49,152-token vocabulary on this project's CI machine), works on local files only, and
trusts the counts it reads. ``read_header`` walks a ``ByteSource`` (a local file here; HTTP range reads
in ``calculator.hub``) in growing chunks, only as far as the tensor-info table ends, and checks every
count and length against ``MAX_HEADER_BYTES`` *before* reading: a header claiming 10**12 tensors or a
10**9-byte string is refused having read a few dozen bytes. Tensor sizes come from
``gguf.GGML_QUANT_SIZES`` (whole blocks per row, as ``ggml_row_size``); the tests compare every field and
tensor with ``GGUFReader`` on the real SmolLM2 Q4_1 file.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Protocol

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType
from gguf.gguf_reader import READER_SUPPORTED_VERSIONS

from calculator.units import MiB, ceil_div

MAGIC = b"GGUF"
MAX_HEADER_BYTES = 64 * MiB
"""Header + metadata + tensor infos. Real headers are 1-20 MB, nearly all of it the tokenizer (SmolLM2:
1.79 MB; a 262k-token Gemma 3 vocabulary with scores: ~7 MB); 64 MiB leaves 3x room and bounds what a
hostile header can make us read."""
MAX_TENSORS = 100_000
"""DeepSeek-V3 (671B) has 1,025 tensors, Llama 3.1 405B 1,138; unmerged per-expert files a few 10,000."""
MAX_METADATA = 100_000
"""Metadata pairs; real files have 20-60."""
MAX_DIMS = 4
"""``GGML_MAX_DIMS`` (ggml/include/ggml.h)."""
MAX_ELEMENTS = 2**62
"""gguf.cpp refuses tensors whose element count overflows int64; we keep the same bound."""
MAX_ARRAY_DEPTH = 2
"""An array of arrays at most (gguf-py writes nested lists; nothing deeper exists)."""
KEEP_ARRAY_ITEMS = 4096
"""Arrays up to this length keep their values (per-layer head counts); longer ones (a vocabulary) keep
only their length, as an ``ArrayInfo``."""
KEEP_STRING_BYTES = 1 * MiB
"""Strings up to this size are decoded into the metadata (chat templates are 1-30 KB)."""
FIRST_CHUNK_BYTES = 256 * 1024
"""First read; each further read doubles what we hold, so we read at most twice the header size."""

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}
assert set(_SCALARS) | {GGUFValueType.STRING, GGUFValueType.ARRAY} == set(GGUFValueType)


class ByteSource(Protocol):
    """Where header bytes come from: ``read(offset, n)`` returns up to ``n`` bytes (fewer only at the end)."""

    name: str
    size: int | None
    """File size in bytes when known (local files; the Hub's Content-Range), else None."""
    bytes_read: int
    """Bytes fetched so far: the figure the tests bound."""

    def read(self, offset: int, n: int) -> bytes: ...


class LocalSource:
    """A local file, read only where asked. ``size`` is the reported size (0 for devices such as /dev/zero,
    which is why the parser trusts ``MAX_HEADER_BYTES``, not ``size``, to stop)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.name = os.fspath(path)
        if not os.path.isfile(self.name):
            raise ValueError(f"GGUF file {self.name!r} does not exist (or is not a regular file)")
        self.size = os.path.getsize(self.name)
        self.bytes_read = 0

    def read(self, offset: int, n: int) -> bytes:
        try:
            with open(self.name, "rb") as f:
                f.seek(offset)
                data = f.read(n)
        except OSError as err:
            raise ValueError(f"cannot read {self.name!r}: {err.strerror or err}") from None
        self.bytes_read += len(data)
        return data


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (a vocabulary): its element type and length."""

    element_type: str
    count: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it. ``shape`` is PyTorch order (``ne`` reversed), so
    ``shape[-1]`` is the row length ``ne0`` that blocks run along."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    """ggml tensor type (``Q4_K``, ``F32``...)."""
    offset: int
    """Byte offset from the start of the tensor data."""
    n_bytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before a GGUF file's tensor data. ``data_offset``: where the tensor data starts."""

    name: str
    version: int
    byte_order: str
    """``<`` little-endian (every published file), ``>`` big-endian (s390x builds)."""
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int | None
    bytes_read: int
    """Bytes fetched from the source to read this header."""
    metadata: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def tensor_data_bytes(self) -> int:
        """Exact sum of the tensors' bytes (no alignment padding): what ``GGUFReader`` sums as ``n_bytes``."""
        return sum(t.n_bytes for t in self.tensors)

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)


class _Cursor:
    """A growing window onto the source: ``need(n)`` fetches until ``n`` more bytes are held."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.buf = bytearray()
        self.pos = 0
        self.order = "<"

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > MAX_HEADER_BYTES:
            raise ValueError(
                f"{self.source.name}: {what} at byte {self.pos:,} claims {n:,} bytes, past the "
                f"{MAX_HEADER_BYTES // MiB} MiB a GGUF header may take (corrupt or hostile file)"
            )
        while len(self.buf) < end:
            want = min(max(end - len(self.buf), len(self.buf), FIRST_CHUNK_BYTES), MAX_HEADER_BYTES - len(self.buf))
            chunk = self.source.read(len(self.buf), want)
            if not chunk:
                raise ValueError(
                    f"{self.source.name} ends after {len(self.buf):,} bytes, inside its GGUF header "
                    f"(reading {what}); the file is truncated (an interrupted download?)"
                )
            self.buf += chunk

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(self.order + fmt)
        self.need(size, what)
        values = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.unpack("Q", what)
        self.need(n, what)
        start, self.pos = self.pos, self.pos + n
        if not keep:
            return None
        if n > KEEP_STRING_BYTES:
            return f"<{n:,}-byte string>"
        return bytes(self.buf[start:self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0):
        try:
            vt = GGUFValueType(vtype)
        except ValueError:
            raise ValueError(f"{self.source.name}: {what} has value type {vtype}, which GGUF does not define") from None
        if vt in _SCALARS:
            return self.unpack(_SCALARS[vt], what)
        if vt is GGUFValueType.STRING:
            return self.string(what)
        if depth >= MAX_ARRAY_DEPTH:
            raise ValueError(f"{self.source.name}: {what} nests arrays {depth + 1} deep (at most {MAX_ARRAY_DEPTH})")
        etype, count = self.unpack("IQ", what)
        min_item = struct.calcsize("<" + _SCALARS[GGUFValueType(etype)]) if etype in set(_SCALARS) else 8
        if count * min_item > MAX_HEADER_BYTES - self.pos:
            raise ValueError(
                f"{self.source.name}: {what} claims {count:,} array items, more than a "
                f"{MAX_HEADER_BYTES // MiB} MiB GGUF header can hold (corrupt or hostile file)"
            )
        keep = count <= KEEP_ARRAY_ITEMS
        if etype in set(_SCALARS):
            fmt = _SCALARS[GGUFValueType(etype)]
            size = struct.calcsize("<" + fmt) * count
            self.need(size, what)
            start, self.pos = self.pos, self.pos + size
            if keep:
                return list(struct.unpack_from(f"{self.order}{count}{fmt}", self.buf, start))
            return ArrayInfo(GGUFValueType(etype).name, count)
        if etype == GGUFValueType.STRING and not keep:
            for _ in range(count):  # skip a vocabulary: lengths only, nothing decoded
                self.string(what, keep=False)
            return ArrayInfo("STRING", count)
        items = [self.value(etype, what, depth + 1) for _ in range(count)]
        return items if keep else ArrayInfo(GGUFValueType(etype).name if etype in set(GGUFValueType) else "?", count)


def _tensor_bytes(name: str, shape: tuple[int, ...], qtype: GGMLQuantizationType, source: str) -> int:
    """``nrows * ggml_row_size(type, ne0)`` (ggml.c), block layout from ``GGML_QUANT_SIZES``."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    if shape[-1] % block:
        raise ValueError(
            f"{source}: tensor {name} has rows of {shape[-1]} values, not a multiple of the "
            f"{qtype.name} block of {block}: the header is corrupt"
        )
    return math.prod(shape[:-1]) * (shape[-1] // block) * type_size


def _tensor_info(cur: _Cursor, index: int) -> TensorInfo:
    what = f"tensor info {index}"
    name = cur.string(what)
    n_dims = cur.unpack("I", what)
    if not 1 <= n_dims <= MAX_DIMS:
        raise ValueError(f"{cur.source.name}: tensor {name!r} has {n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
    ne = [cur.unpack("Q", what) for _ in range(n_dims)]
    if min(ne) < 1 or math.prod(ne) > MAX_ELEMENTS:
        raise ValueError(f"{cur.source.name}: tensor {name!r} has impossible dimensions {ne}")
    type_id = cur.unpack("I", what)
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        raise ValueError(
            f"{cur.source.name}: tensor {name!r} has ggml type id {type_id}, which the installed gguf "
            "package does not know (a newer llama.cpp type? upgrade gguf)"
        ) from None
    offset = cur.unpack("Q", what)
    shape = tuple(reversed(ne))
    return TensorInfo(name, shape, qtype.name, offset, _tensor_bytes(name, shape, qtype, cur.source.name))


def _check_layout(name: str, tensors: tuple[TensorInfo, ...], alignment: int, data_offset: int,
                  file_size: int | None) -> None:
    """Offsets aligned and non-overlapping, and (size known) the data inside the file."""
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise ValueError(f"{name}: tensor {t.name!r} appears twice in the header (corrupt file)")
        seen.add(t.name)
        if t.offset % alignment:
            raise ValueError(f"{name}: tensor {t.name!r} offset {t.offset} is not aligned to {alignment} bytes")
    ordered = sorted(tensors, key=lambda t: t.offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.offset + a.n_bytes > b.offset:
            raise ValueError(f"{name}: tensors {a.name!r} and {b.name!r} overlap (corrupt header)")
    if file_size and ordered:
        end = data_offset + ordered[-1].offset + ordered[-1].n_bytes
        if end > file_size:
            raise ValueError(
                f"{name} is {file_size:,} bytes but its header places tensor data up to byte {end:,}: "
                "the file is truncated (an interrupted download?)"
            )


def read_header(source: ByteSource) -> GGUFHeader:
    """Parse the header and tensor infos from ``source`` (bounded: see the module docstring)."""
    cur = _Cursor(source)
    cur.need(4, "the magic")
    if bytes(cur.buf[:4]) != MAGIC:
        raise ValueError(
            f"{source.name} is not a GGUF file: it starts with {bytes(cur.buf[:4])!r}, not {MAGIC!r}"
        )
    cur.pos = 4
    version = cur.unpack("I", "the version")
    if version & 0xFFFF == 0 and (version >> 16) & 0xFFFF:  # byte-swapped: a big-endian file
        cur.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in READER_SUPPORTED_VERSIONS:
        known = ", ".join(map(str, READER_SUPPORTED_VERSIONS))
        raise ValueError(
            f"{source.name} is GGUF version {version}; this reader knows versions {known} "
            "(version 1 files predate August 2023: re-convert them with a current llama.cpp)"
        )
    n_tensors, n_kv = cur.unpack("QQ", "the counts")
    # smallest possible entries: a tensor info is >= 33 bytes, a metadata pair >= 13
    for count, limit, what, min_size in ((n_tensors, MAX_TENSORS, "tensors", 33),
                                         (n_kv, MAX_METADATA, "metadata pairs", 13)):
        if count > limit or count * min_size > MAX_HEADER_BYTES:
            raise ValueError(
                f"{source.name} claims {count:,} {what}; a GGUF header holds at most {limit:,} "
                "(corrupt or hostile file)"
            )
    metadata: dict = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key {i}")
        vtype = cur.unpack("I", f"metadata {key!r}")
        metadata[key] = cur.value(vtype, f"metadata {key!r}")
    tensors = tuple(_tensor_info(cur, i) for i in range(n_tensors))
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"{source.name}: general.alignment {alignment!r} must be a power of two")
    data_offset = ceil_div(cur.pos, alignment) * alignment
    _check_layout(source.name, tensors, alignment, data_offset, source.size)
    return GGUFHeader(source.name, version, cur.order, tensors, alignment, data_offset, source.size,
                      source.bytes_read, metadata)


def read_local_header(path: str | os.PathLike) -> GGUFHeader:
    """``read_header`` of a local file."""
    return read_header(LocalSource(path))
