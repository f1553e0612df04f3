"""The evaluation CLI: outputs that would destroy data are refused before anything runs (``--out`` to a user's
JSON, a directory, an unwritable place), and every cheap check comes before the model is loaded. The
evaluation itself is replaced by a stub here: a case passes only if it ends before reaching it, or (for an
allowed ``--out``) exactly when it reaches it."""

from __future__ import annotations

import json
import time

import pytest

from evaluation.results import SCHEMA, load_results, save_results
from tests.hostile.conftest import one_line_error
from tests.hostile.test_files import BUNDLED

REACHED = "the evaluation was reached"


@pytest.fixture
def no_evaluation(monkeypatch):
    """``evaluation.runner.evaluate`` and the model loader replaced: reaching them raises ``REACHED``."""
    import evaluation.runner
    import evaluation.scoring

    def reached(*args, **kwargs):
        raise ValueError(REACHED)

    monkeypatch.setattr(evaluation.runner, "evaluate", reached)
    monkeypatch.setattr(evaluation.scoring, "load_model", reached)


def _user_json(tmp):
    path = tmp / "user.json"
    path.write_text('{"my": "data"}')
    return path


def _results_file(tmp):
    path = tmp / "results.json"
    save_results(path, load_results(BUNDLED[0])[:1])
    return path


def _under_a_file(tmp):
    (tmp / "file.txt").write_text("x")
    return tmp / "file.txt" / "results.json"


# (id, make the --out path, extra flags, the error line (None: allowed, so the stub is reached))
OUTS = [
    ("user-json", _user_json, [],
     "--out {out} exists and is not a quantfit results file; it would be overwritten: give another name, or --force "
     "to replace it"),
    ("user-text", lambda t: (t / "notes.txt", (t / "notes.txt").write_text("notes"))[0], [],
     "--out {out} exists and is not a quantfit results file; it would be overwritten: give another name, or --force "
     "to replace it"),
    ("big-user-file", lambda t: (t / "big.json", (t / "big.json").write_bytes(b" " * (33 * 2**20)))[0], [],
     "--out {out} exists and is not a quantfit results file; it would be overwritten: give another name, or --force "
     "to replace it"),
    ("user-json-forced", _user_json, ["--force"], None),
    ("a-results-file", _results_file, [], None),
    ("a-new-folder", lambda t: t / "new" / "deeper" / "results.json", [], None),
    ("a-directory", lambda t: t, [], "--out {out} is a directory; give a file name, e.g. {out}/results.json"),
    ("under-a-file", _under_a_file, [], "--out {out}: {tmp}/file.txt is not a directory"),
    ("unwritable", lambda t: "/proc/self/results.json", [],
     "--out /proc/self/results.json: cannot write in /proc/self (No such file or directory)"),
    ("a-device", lambda t: "/dev/null", [],
     "--out /dev/null is not a regular file; give a file name such as results.json"),
]


@pytest.mark.parametrize(("make", "flags", "message"), [o[1:] for o in OUTS], ids=[o[0] for o in OUTS])
def test_out_is_checked_before_anything_runs(tmp_path, quantfit_eval, no_evaluation, make, flags, message):
    out = make(tmp_path)
    before = out.read_bytes() if isinstance(out, type(tmp_path)) and out.is_file() else None
    start = time.time()
    status, _, err = quantfit_eval("run", "--out", str(out), "--quiet", "--tokens", "1024", *flags)
    assert status == 1
    expected = REACHED if message is None else message.format(out=out, tmp=tmp_path)
    assert one_line_error(err) == expected
    if before is not None:
        assert out.read_bytes() == before  # nothing was written
    if message is not None:
        assert time.time() - start < 3  # refused before torch and the model


# (id, flags, the error line): every one before the model loads
CHEAP = [
    ("tokens-zero", ["--tokens", "0"],
     "max_tokens 0 must be a whole number from 8 to 134217728 (e.g. 4096 tokens in all)"),
    ("tokens-huge", ["--tokens", "1" + "0" * 20],
     "max_tokens 100000000000000000000 must be a whole number from 8 to 134217728 (e.g. 4096 tokens in all)"),
    ("ctx-zero", ["--ctx", "0"], "n_ctx 0 must be a whole number from 8 to 134217728 (e.g. 512 tokens per window)"),
    ("tokens-below-one-window", ["--tokens", "256", "--ctx", "512"],
     "max_tokens 256 is less than one window of n_ctx 512: raise --tokens or lower --ctx"),
    ("decode-negative", ["--decode-tokens", "-1"],
     "decode_tokens -1 must be a whole number >= 0 (e.g. 16, or 0 to skip decode timing)"),
    ("threads-negative", ["--threads", "-1"], "--threads -1 must be a whole number from 0 to 4096 (e.g. 4, or 0 for "
                                              "torch's choice)"),
    ("calibration-zero", ["--calibration-samples", "0"], "--calibration-samples 0 must be at least 1 (e.g. 4)"),
    ("unknown-method", ["--methods", "bogus"],
     "unknown method 'bogus' (run `python -m evaluation methods` for the list)"),
    ("no-methods", ["--methods", ",,,"], "no methods in ',,,'; e.g. --methods int8,int4-g32,rtn-3b-g32-asym"),
    ("dtype", ["--dtype", "fp8"], "dtype 'fp8' is not supported: use bf16 (default), fp32 or fp16"),
    ("device", ["--device", "tpu"], "device 'tpu' is not a device name: use cpu or cuda"),
    ("missing-corpus", ["--corpus", "/nonexistent/text.txt"],
     "unknown corpus '/nonexistent/text.txt': use shakespeare (offline), wikitext2 (Hub) or a path to a UTF-8 text "
     "file"),
    ("unknown-model", ["--model", "no-such-model"],
     "unknown model 'no-such-model': not a preset (smollm2-135m), an existing folder or .gguf file, nor a Hub id of "
     "the form owner/name"),
]


@pytest.mark.parametrize(("flags", "message"), [c[1:] for c in CHEAP], ids=[c[0] for c in CHEAP])
def test_cheap_checks_before_the_model(quantfit_eval, monkeypatch, flags, message):
    import evaluation.scoring

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before a cheap check")

    monkeypatch.setattr(evaluation.scoring, "load_model", never)
    status, _, err = quantfit_eval("run", "--quiet", "--no-cache", *flags)
    assert status == 1
    assert one_line_error(err) == message


def test_schema_name_is_what_the_check_reads(tmp_path):
    path = _results_file(tmp_path)
    assert json.loads(path.read_text())["schema"] == SCHEMA
