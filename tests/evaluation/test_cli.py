"""``python -m evaluation``: a run on the tiny Llama, the methods list, show, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evaluation.cli import main
from evaluation.results import load_results

FAST = ["--tokens", "128", "--ctx", "64", "--decode-tokens", "1", "--quiet"]


def _run(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "evaluation", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_run_writes_results_and_prints_a_table(tiny_llama_dir, tmp_path):
    out = tmp_path / "results.json"
    proc = _run(
        "run",
        "--model",
        str(tiny_llama_dir),
        "--methods",
        "int8,rtn-3b-g32-asym",
        *FAST,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stderr
    results = load_results(out)
    assert [r.method_id for r in results] == ["baseline", "int8", "rtn-3b-g32-asym"]  # baseline row added
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["method", "bits/w", "MB"]
    assert any(line.startswith("int8 ") for line in lines)
    assert "2 windows x 64 tokens, scoring whole (126 tokens scored)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_json_output_and_show(tiny_llama_dir, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    assert (
        main(
            ["run", "--model", str(tiny_llama_dir), "--methods", "nf4", *FAST, "--json", "--cache-dir", cache]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [r["method_id"] for r in doc["results"]] == ["baseline", "nf4"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert main(["show", str(path)]) == 0
    assert "nf4" in capsys.readouterr().out


def test_methods_lists_ids_with_formats(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "int4-g32" in out and "int4-g32-asym" in out and "nf4-dq" in out
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"method": "int8", "family": "int-kernel", "calculator_format": "int8-ch"}.items() <= rows[
        1
    ].items()


def test_bad_method_is_one_line_and_exit_1():
    proc = _run("run", "--methods", "int8,int9")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: unknown method 'int9'; did you mean int8, int8-dyn, int4-g64? "
        "(run `python -m evaluation methods` for the list)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no/such/thing"], "unknown model 'no/such/thing'"),
        (["--corpus", "nope"], "unknown corpus 'nope'"),
        (["--dtype", "int3"], "dtype 'int3' is not supported"),
        (["--device", "tpu"], "is not a device name: use cpu or cuda"),
        (["--device", "mps"], "only cpu and cuda are supported"),
    ],
)
def test_bad_input_before_any_work(args, message, capsys):
    assert main(["run", *args, "--no-cache", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_group_size_that_fits_nothing_keeps_partial_results(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "partial.json"
    code = main(
        [
            "run",
            "--model",
            str(tiny_llama_dir),
            "--methods",
            "int8,int4-g256",
            *FAST,
            "--out",
            str(out),
            "--no-cache",
        ]
    )
    assert code == 1
    assert "int4-g256: group size 256" in capsys.readouterr().err
    assert [r.method_id for r in load_results(out)] == ["baseline", "int8"]


def test_corpus_shorter_than_a_window(tiny_llama_dir, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("Once more unto the breach.")
    assert (
        main(
            [
                "run",
                "--model",
                str(tiny_llama_dir),
                "--corpus",
                str(short),
                "--methods",
                "int8",
                *FAST,
                "--no-cache",
            ]
        )
        == 1
    )
    assert "shorter than one window of 64" in capsys.readouterr().err


def test_calibration_samples_must_be_positive():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "evaluation", "run", "--model", "smollm2-135m", "--methods", "gptq-4b-g128",
         "--calibration-samples", "0"], capture_output=True, text=True,
    )
    assert result.returncode == 1 and "--calibration-samples 0 must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
