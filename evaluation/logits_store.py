"""Where the baseline's logits wait between the baseline pass and each method's comparison.

They are the one large thing an evaluation keeps: scored tokens x vocabulary values in the model's dtype
(SmolLM2 at 4,096 tokens: 4,088 x 49,152 x 2 bytes = 402 MB in bf16; a 128k-vocabulary model at 32k
tokens in fp32: 16.8 GB). Two stores, one interface (``put`` a window, read ``rows`` of a window back):

- ``MemoryLogits``: tensors on the model's device (or arrays handed over by Ray's object store);
- ``FileLogits``: one raw file (windows x tokens x vocabulary, the model's dtype), read back a chunk of
  rows at a time into one reused buffer, so that only a chunk is ever in RAM. A memory map would read the
  same way, but every page it touched would count in the process's resident memory until the kernel
  dropped it; reading into a buffer keeps RSS flat. The file goes to ``EvaluateOptions.cache_dir``
  (``scratch/``) or the system's temporary folder, and is deleted when the store is closed or collected.

``LogitsStorage.AUTO`` picks the file above ``AUTO_FILE_BYTES``. Values are stored exactly (no top-k
truncation), so every metric is the same whichever store holds them.
"""

from __future__ import annotations

import abc
import enum
import os
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

AUTO_FILE_BYTES = 512 * 2**20
"""AUTO keeps baseline logits up to 512 MiB in memory (SmolLM2 at 4,096 tokens: 383 MiB); above, a file."""


class LogitsStorage(enum.StrEnum):
    """Where ``prepare_baseline`` keeps the baseline logits."""

    AUTO = "auto"
    """Memory up to ``AUTO_FILE_BYTES``, a file above."""
    MEMORY = "memory"
    """Tensors on the model's device."""
    FILE = "file"
    """A raw file read back a chunk at a time (large vocabularies and token budgets)."""


# numpy has no bfloat16: such arrays travel as int16 with the same bits.
_NUMPY_CARRIER = {torch.bfloat16: np.int16}


class LogitsStore(abc.ABC):
    """Baseline logits of ``n_windows`` windows, each [rows, vocab] of ``dtype``."""

    def __init__(self, n_windows: int, rows: int, vocab: int, dtype: torch.dtype):
        self.n_windows, self.n_rows, self.vocab, self.dtype = n_windows, rows, vocab, dtype

    @property
    def nbytes(self) -> int:
        return self.n_windows * self.n_rows * self.vocab * self.dtype.itemsize

    def _check_window(self, i: int, logits: torch.Tensor | None = None) -> None:
        if not 0 <= i < self.n_windows:
            raise ValueError(f"window {i} is outside 0..{self.n_windows - 1}")
        if logits is not None and (tuple(logits.shape) != (self.n_rows, self.vocab) or logits.dtype != self.dtype):
            raise ValueError(
                f"window logits {tuple(logits.shape)} {logits.dtype} do not match the store's "
                f"({self.n_rows}, {self.vocab}) {self.dtype}"
            )

    @abc.abstractmethod
    def put(self, i: int, logits: torch.Tensor) -> None:
        """Keep window ``i``'s logits [rows, vocab]."""

    @abc.abstractmethod
    def rows(self, i: int, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of window ``i`` [stop - start, vocab], on the store's device. A file store
        returns a view of its one buffer: valid until the next call."""

    def to_numpy(self) -> np.ndarray:
        """All windows as one array [n_windows, rows, vocab] (bf16 as int16 bits), for Ray's object store."""
        carrier = _NUMPY_CARRIER.get(self.dtype)
        out = []
        for i in range(self.n_windows):
            t = self.rows(i, 0, self.n_rows).cpu()
            out.append((t.view(torch.int16) if carrier is not None else t).numpy().copy())
        return np.stack(out)

    @abc.abstractmethod
    def close(self) -> None:
        """Free what the store holds (a file store deletes its file)."""


class MemoryLogits(LogitsStore):
    """Logits as tensors on one device."""

    def __init__(self, n_windows: int, rows: int, vocab: int, dtype: torch.dtype):
        super().__init__(n_windows, rows, vocab, dtype)
        self._windows: list[torch.Tensor | None] = [None] * n_windows

    @classmethod
    def from_numpy(cls, array: np.ndarray, dtype: torch.dtype, device: torch.device | str = "cpu") -> MemoryLogits:
        """A store over ``to_numpy``'s array (no copy on the CPU; read-only arrays are only read)."""
        n_windows, rows, vocab = array.shape
        store = cls(n_windows, rows, vocab, dtype)
        with warnings.catch_warnings():  # Ray's arrays are read-only views of its object store: only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            tensor = torch.from_numpy(np.asarray(array))
        if dtype in _NUMPY_CARRIER:
            tensor = tensor.view(dtype)
        store._windows = list(tensor.to(device).unbind(0))
        return store

    def put(self, i: int, logits: torch.Tensor) -> None:
        self._check_window(i, logits)
        logits = logits.detach()
        if logits.untyped_storage().nbytes() > logits.numel() * logits.element_size() * 1.1:
            logits = logits.clone()  # a slice of a bigger output: keep only its own rows
        self._windows[i] = logits

    def rows(self, i: int, start: int, stop: int) -> torch.Tensor:
        self._check_window(i)
        window = self._windows[i]
        if window is None:
            raise ValueError(f"window {i} of the baseline logits was never stored")
        return window[start:stop]

    def close(self) -> None:
        self._windows = [None] * self.n_windows


def _unlink(path: str, fh) -> None:
    fh.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class FileLogits(LogitsStore):
    """Logits in one raw file, [n_windows, rows, vocab] in C order, read back through a reused buffer."""

    def __init__(
        self,
        n_windows: int,
        rows: int,
        vocab: int,
        dtype: torch.dtype,
        *,
        directory: str | Path | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__(n_windows, rows, vocab, dtype)
        folder = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix="quantfit-baseline-", suffix=".logits", dir=folder)
        self._fh = os.fdopen(fd, "r+b", buffering=0)
        self._fh.truncate(self.nbytes)
        self._finalizer = weakref.finalize(self, _unlink, self.path, self._fh)
        self.device = torch.device(device)
        self._itemsize = dtype.itemsize
        self._buffer = torch.empty(0, dtype=torch.uint8)

    def _offset(self, i: int, start: int) -> int:
        return (i * self.n_rows + start) * self.vocab * self._itemsize

    def put(self, i: int, logits: torch.Tensor) -> None:
        self._check_window(i, logits)
        raw = logits.detach().cpu().contiguous().view(torch.uint8).numpy()
        self._fh.seek(self._offset(i, 0))
        self._fh.write(memoryview(raw).cast("B"))

    def rows(self, i: int, start: int, stop: int) -> torch.Tensor:
        self._check_window(i)
        n = (stop - start) * self.vocab * self._itemsize
        if self._buffer.numel() < n:
            self._buffer = torch.empty(n, dtype=torch.uint8)
        view = self._buffer[:n]
        self._fh.seek(self._offset(i, start))
        got = self._fh.readinto(memoryview(view.numpy()))
        if got != n:  # internal invariant: the file was sized for every window at creation
            raise RuntimeError(f"{self.path}: read {got} of {n} bytes")
        return view.view(self.dtype).view(stop - start, self.vocab).to(self.device)

    def close(self) -> None:
        self._finalizer()


def make_store(
    storage: LogitsStorage | str,
    n_windows: int,
    rows: int,
    vocab: int,
    dtype: torch.dtype,
    *,
    device: torch.device,
    directory: str | Path | None = None,
) -> LogitsStore:
    """The store ``storage`` asks for (AUTO: a file above ``AUTO_FILE_BYTES``)."""
    storage = LogitsStorage(storage)
    if storage is LogitsStorage.AUTO:
        size = n_windows * rows * vocab * dtype.itemsize
        storage = LogitsStorage.FILE if size > AUTO_FILE_BYTES else LogitsStorage.MEMORY
    if storage is LogitsStorage.FILE:
        return FileLogits(n_windows, rows, vocab, dtype, directory=directory, device=device)
    return MemoryLogits(n_windows, rows, vocab, dtype)
