"""``--mmproj`` and ``--draft`` placed where llama.cpp puts them (``calculator.companions``): the projector on
GPU 0 only (host with ``--no-mmproj-offload``), the draft split like the main model with its KV cache at the
run's context; separate rows in ``fit --json``, counted in the verdict of the devices that hold them and not
in ``overhead_bytes``. And vLLM given a GGUF file as stored: a note or one clear line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calculator.companions import Companions, Role
from calculator.fit import FitOptions, as_setup, fit
from calculator.gguf_model import load_gguf
from tests.calculator.gguf_fixtures import write_mmproj, write_model_gguf

TWO_4090 = as_setup("RTX 4090", 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("companions")
    write_model_gguf(folder / "tiny-F16.gguf")
    write_model_gguf(folder / "tiny-Q8_0.gguf", quantized=True)
    write_mmproj(folder / "mmproj-tiny-F16.gguf")
    write_model_gguf(folder / "split-F16.gguf", split_max_tensors=8)
    return folder


def _fit(files, companions=None, gpus=TWO_4090, context=4096, **kw):
    model = load_gguf(str(files / "tiny-F16.gguf"))
    return fit(model.spec, model.stored, gpus, context, options=FitOptions(companions=companions, **kw))


def test_mmproj_on_gpu0_only(files):
    projector = load_gguf(str(files / "mmproj-tiny-F16.gguf"))
    plain, with_mmproj = _fit(files), _fit(files, Companions.of(mmproj=projector))
    size = projector.tensor_data_bytes
    assert [d.total_bytes - p.total_bytes for d, p in zip(with_mmproj.devices, plain.devices, strict=True)] == [size, 0]
    assert [d.companion_bytes for d in with_mmproj.devices] == [size, 0] and with_mmproj.host.companion_bytes == 0
    assert with_mmproj.overhead_bytes == plain.overhead_bytes  # not a per-GPU reserve any more
    assert with_mmproj.total_bytes == plain.total_bytes + size
    (row,) = with_mmproj.companions
    assert row.role is Role.MMPROJ and row.placement == (("CUDA0", size),)


def test_no_mmproj_offload_keeps_it_in_host_memory(files):
    projector = load_gguf(str(files / "mmproj-tiny-F16.gguf"))
    r = _fit(files, Companions.of(mmproj=projector, mmproj_offload=False))
    assert [d.companion_bytes for d in r.devices] == [0, 0]
    assert r.host.companion_bytes == projector.tensor_data_bytes
    assert r.companions[0].placement == (("host", projector.tensor_data_bytes),)


def test_draft_kv_scales_with_context_and_splits_like_the_main_model(files):
    draft = Companions.of(draft=load_gguf(str(files / "tiny-Q8_0.gguf")))
    short, long = (_fit(files, draft, context=c).companions[0] for c in (2048, 4096))
    spec = draft.draft_spec  # 4 layers x 2 KV heads x 64 dims x (K + V) x f16 (-ctkd default) x tokens
    assert short.kv_cache_bytes == 4 * 2 * 64 * 2 * 2 * 2048 and long.kv_cache_bytes == 2 * short.kv_cache_bytes
    assert spec.n_layers == 4 and short.weight_bytes == draft.draft_bytes
    assert [name for name, _ in long.placement] == ["CUDA0", "CUDA1"]  # -devd empty: every GPU
    assert sum(b for _, b in long.placement) == long.total_bytes
    one_gpu = _fit(files, draft, gpus=as_setup("RTX 4090")).companions[0]
    assert one_gpu.placement == (("CUDA0", one_gpu.total_bytes),)


def test_draft_counts_in_the_max_context_search(files):
    draft = Companions.of(draft=load_gguf(str(files / "tiny-F16.gguf")))
    small = as_setup("custom:48MiB")  # the tiny model alone: 28.5 MiB; with its draft beside it: 45.5 MiB
    alone, paired = _fit(files, gpus=small, cuda_context_bytes=0), _fit(files, draft, gpus=small, cuda_context_bytes=0)
    assert alone.fits and paired.verdict.value == "fits_with_cpu_offload"  # -ngl auto makes room for the draft
    assert paired.max_context < alone.max_context == 4096


def test_companions_refused_where_not_modelled(files):
    draft = Companions.of(draft=load_gguf(str(files / "tiny-F16.gguf")))
    with pytest.raises(ValueError, match="modelled for inference with llama.cpp .* not vllm"):
        FitOptions(engine="vllm", companions=draft)
    with pytest.raises(ValueError, match=r"Ollama: --mmproj only"):
        FitOptions(engine="ollama", companions=draft)
    with pytest.raises(ValueError, match="not a projector"):
        Companions.of(mmproj=load_gguf(str(files / "tiny-F16.gguf")))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "calculator", *args], capture_output=True, text=True, timeout=120)


def test_fit_json_has_the_rows_and_every_old_key(files):
    base = ["fit", "--gguf", str(files / "tiny-F16.gguf"), "--gpu", "RTX 4090", "--gpus", "2", "--json"]
    plain = json.loads(_cli(*base).stdout)
    out = _cli(*base, "--mmproj", str(files / "mmproj-tiny-F16.gguf"), "--draft", str(files / "tiny-Q8_0.gguf"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(plain) <= set(data)
    mmproj, draft = data["companions"]
    assert (mmproj["role"], mmproj["device"], list(mmproj["placement"])) == ("mmproj", "CUDA0", ["CUDA0"])
    assert (draft["role"], draft["device"]) == ("draft", "CUDA0+CUDA1") and draft["kv_cache_bytes"] > 0
    assert [d["companion_bytes"] for d in data["devices"]] == [
        mmproj["placement"]["CUDA0"] + draft["placement"]["CUDA0"], draft["placement"]["CUDA1"]]
    assert data["overhead_bytes"] == plain["overhead_bytes"]


def test_vllm_with_a_stored_gguf_says_so_in_one_line(files):
    out = _cli("fit", "--engine", "vllm", "--gguf", str(files / "tiny-F16.gguf"), "--gpu", "H100 SXM")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "vLLM's GGUF support is highly experimental" in out.stdout
    split = sorted(files.glob("split-F16-00001-of-*.gguf"))[0]
    out = _cli("fit", "--engine", "vllm", "--gguf", str(split), "--gpu", "H100 SXM")
    assert "Traceback" not in out.stderr
    assert "vLLM loads single-file GGUF models only" in out.stdout + out.stderr
