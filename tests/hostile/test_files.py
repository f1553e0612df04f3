"""Files that are not what they claim: truncated or corrupt GGUF and safetensors files, results files with
impossible numbers or hostile structure, and ``evaluation show`` on things that are not results files
(``/dev/zero`` reports 0 bytes and never ends). Each ends in one line naming the file and the problem."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from evaluation.results import MAX_RESULTS_FILE_BYTES, load_results, loads_results, results_document, save_results
from tests.hostile.conftest import one_line_error

BUNDLED = sorted((Path(__file__).parents[2] / "assets" / "results").glob("*.json"))


@pytest.fixture(scope="module")
def one_result():
    """A valid version-2 result object (from the bundled files), to break one field at a time."""
    return results_document(load_results(BUNDLED[0])[:1])["results"][0]


def _gguf_bytes() -> bytes:
    from evaluation.models import smollm2_gguf_path

    with smollm2_gguf_path().open("rb") as f:
        return f.read(4096)


# (id, bytes of a file named model.gguf, the problem gguf-py raised)
GGUFS = [
    ("truncated-after-header", lambda: _gguf_bytes()[:1000], "IndexError: index 0 is out of bounds"),
    ("magic-and-version-only", lambda: b"GGUF\x03\x00\x00\x00", "ValueError: not enough values to unpack"),
    ("random-bytes", lambda: bytes(range(256)) * 4, "ValueError: GGUF magic invalid"),
    ("empty", lambda: b"", "ValueError: cannot mmap an empty file"),
]


@pytest.mark.parametrize(("make", "problem"), [g[1:] for g in GGUFS], ids=[g[0] for g in GGUFS])
def test_corrupt_gguf_for_evaluation(tmp_path, make, problem):
    from evaluation.models import resolve_model_source

    path = tmp_path / "model.gguf"
    path.write_bytes(make())
    with pytest.raises(ValueError, match=r"^model\.gguf is not a readable GGUF file \(" + re.escape(problem)) as err:
        resolve_model_source(path)
    assert str(err.value).endswith("; is it truncated?") and "\n" not in str(err.value)


def test_corrupt_gguf_through_the_cli(tmp_path, quantfit_eval):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    status, _, err = quantfit_eval("run", "--model", str(path), "--quiet", "--no-cache")
    assert status == 1
    assert one_line_error(err).startswith("model.gguf is not a readable GGUF file (ValueError: not enough values")


def test_truncated_safetensors_folder(tmp_path):
    from evaluation.models import load_model, resolve_model_source
    from tests.conftest import LLAMA_TINY_CONFIG

    (tmp_path / "config.json").write_text(json.dumps(LLAMA_TINY_CONFIG))
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    source = resolve_model_source(tmp_path)
    expected = f"^transformers could not load {tmp_path.name} from {re.escape(str(tmp_path))}: Error while deserial"
    with pytest.raises(ValueError, match=expected):
        load_model(source)


def _broken(result: dict, path: str, value) -> dict:
    row = json.loads(json.dumps(result))
    *parents, last = path.split(".")
    target = row
    for key in parents:
        target = target[key]
    target[last] = value
    return {"schema": "quantfit.evaluation.results", "schema_version": 2, "results": [row]}


def _nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


# (id, field, value, the message after "up.json: result 0: ")
RESULTS = [
    ("negative-perplexity", "quality.ppl", -3.0, "field 'quality.ppl' is -3.0; it must be positive"),
    ("zero-perplexity", "quality.ppl", 0.0, "field 'quality.ppl' is 0.0; it must be positive"),
    ("negative-baseline", "quality.baseline_ppl", -1.0, "field 'quality.baseline_ppl' is -1.0; it must be positive"),
    ("negative-bits", "bits", -4, "field 'bits' is -4; it must be from 1 to 64"),
    ("huge-bits", "bits", 1000, "field 'bits' is 1000; it must be from 1 to 64"),
    ("negative-bits-per-weight", "bits_per_weight", -4.0, "field 'bits_per_weight' is -4.0; it must be positive"),
    ("bits-per-weight-over-64", "bits_per_weight", 65.0, "field 'bits_per_weight' is 65.0; it must be from 0 to 64"),
    ("negative-bytes", "measured_bytes", -1, "field 'measured_bytes' is -1; it must be from 0 to 1e+30"),
    ("30-digit-bytes", "measured_bytes", 10**30, "field 'measured_bytes' has 31 digits, beyond any real count"),
    ("agreement-over-one", "quality.top1_agreement", 1.5,
     "field 'quality.top1_agreement' is 1.5; it must be from 0 to 1"),
    ("negative-kld", "quality.kld_mean", -0.5, "field 'quality.kld_mean' is -0.5; it must be from -1e-06 to 1e+30"),
    ("negative-kld-percentile", "quality.kld_percentiles", {"99": -2.0},
     "field 'quality.kld_percentiles' is -2.0; it must be from -1e-06 to 1e+30"),
    ("float-beyond-1e30", "quality.ppl_err", 1e300, "field 'quality.ppl_err' is 1e+300, beyond 1e+30"),
    ("negative-seconds", "eval_seconds", -5.0, "field 'eval_seconds' is -5.0; it must be from 0 to 1e+30"),
    ("deep-method-config", "method_config", {"a": _nested(40)}, "field 'method_config' nests deeper than 16 levels"),
    ("string-perplexity", "quality.ppl", "12", "field 'quality.ppl' must be a number, got str '12'"),
    ("null-method", "method_id", None, "field 'method_id' must not be null"),
]


@pytest.mark.parametrize(("field", "value", "message"), [r[1:] for r in RESULTS], ids=[r[0] for r in RESULTS])
def test_results_with_impossible_values(one_result, field, value, message):
    raw = json.dumps(_broken(one_result, field, value))
    with pytest.raises(ValueError, match="^" + re.escape(f"up.json: result 0: {message}") + "$"):
        loads_results(raw, where="up.json")


RAW_RESULTS = [
    ("infinity", lambda r: json.dumps(_broken(r, "quality.ppl", 1.0)).replace('"ppl": 1.0', '"ppl": Infinity'),
     "up.json: result 0: field 'quality.ppl' is inf: NaN and infinity are not numbers here"),
    ("nan", lambda r: json.dumps(_broken(r, "quality.ppl", 1.0)).replace('"ppl": 1.0', '"ppl": NaN'),
     "up.json: result 0: field 'quality.ppl' is nan: NaN and infinity are not numbers here"),
    ("nested-200000-deep", lambda r: "[" * 200_000, "up.json: nested too deeply to be a results file"),
    ("5000-digit-number", lambda r: '{"schema": ' + "9" * 5000 + "}",
     "up.json: not a usable results file (Exceeds the limit (4300 digits)"),
    ("too-many-results", lambda r: json.dumps({**_broken(r, "bits", 4), "results": [{}] * 10_001}),
     "up.json: 10,001 results, over the limit of 10,000 per file"),
    ("not-quantfit", lambda r: '{"user": "data"}', "up.json: not a quantfit results file (schema None"),
    ("over-the-size-cap", lambda r: " " * (MAX_RESULTS_FILE_BYTES + 1),
     f"up.json: {MAX_RESULTS_FILE_BYTES + 1:,} bytes, over the {MAX_RESULTS_FILE_BYTES:,}-byte limit"),
]


@pytest.mark.parametrize(("make", "message"), [r[1:] for r in RAW_RESULTS], ids=[r[0] for r in RAW_RESULTS])
def test_results_files_that_are_not(one_result, make, message):
    start = time.process_time()
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        loads_results(make(one_result), where="up.json")
    assert time.process_time() - start < 5


# evaluation show: (id, how to make the path, the error line, or None for a table)
SHOWN = [
    ("dev-zero", lambda tmp, r: "/dev/zero",
     f"results file /dev/zero is over the {MAX_RESULTS_FILE_BYTES:,}-byte limit"),
    ("directory", lambda tmp, r: str(tmp), "cannot read results file {tmp}: Is a directory"),
    ("missing", lambda tmp, r: str(tmp / "nope.json"),
     "cannot read results file {tmp}/nope.json: No such file or directory"),
    ("negative-ppl", lambda tmp, r: _write(tmp, _broken(r, "quality.ppl", -1.0)),
     "{tmp}/r.json: result 0: field 'quality.ppl' is -1.0; it must be positive"),
    ("user-json", lambda tmp, r: _write(tmp, {"user": "data"}),
     "{tmp}/r.json: not a quantfit results file (schema None, expected 'quantfit.evaluation.results')"),
    ("valid", lambda tmp, r: _write(tmp, _broken(r, "bits", r["bits"])), None),
]


def _write(tmp: Path, document: dict) -> str:
    path = tmp / "r.json"
    path.write_text(json.dumps(document))
    return str(path)


@pytest.mark.parametrize(("make", "message"), [s[1:] for s in SHOWN], ids=[s[0] for s in SHOWN])
def test_evaluation_show(tmp_path, one_result, quantfit_eval, make, message):
    start = time.time()
    status, out, err = quantfit_eval("show", make(tmp_path, one_result))
    if message is None:
        assert status == 0 and one_result["method_id"] in out
    else:
        assert status == 1
        assert one_line_error(err) == message.format(tmp=tmp_path)
    assert time.time() - start < 10


def test_saved_results_still_load(tmp_path):
    """The bounds refuse nothing the engine writes: every bundled result round-trips."""
    results = [r for path in BUNDLED for r in load_results(path)]
    save_results(tmp_path / "all.json", results)
    assert len(load_results(tmp_path / "all.json")) == len(results)
