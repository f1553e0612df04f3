"""The CLI as a user runs it: JSON outputs, human output with both units, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calculator.cli import main


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("params", "fmt", "expected"),
                         [("70e9", "fp16", 140_000_000_000), ("70B", "int4", 35_000_000_000),
                          ("1.5T", "fp8", 1_500_000_000_000), ("135M", "bf16", 270_000_000)])
def test_weights_json(capsys, params, fmt, expected):
    assert run_json(capsys, "weights", "--params", params, "--format", fmt)["weight_bytes"] == expected


def test_weights_human_output_has_both_units(capsys):
    assert main(["weights", "--params", "70B", "--format", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "140.00 GB" in out and "130.39 GiB" in out


def test_gguf_json(capsys):
    data = run_json(capsys, "gguf", "--config", "llama-3.1-8b", "--quant", "Q4_K_M")
    assert abs(data["bits_per_weight"] - 4.8944) < 0.01
    assert data["file_bytes"] == round(data["bits_per_weight"] * data["params"] / 8)
    assert data["type_counts"]["Q4_K"] > data["type_counts"]["Q6_K"] > 0


def test_formats_json_lists_every_format(capsys):
    data = run_json(capsys, "formats")
    names = {f["name"]: f["bits_per_weight"] for f in data["formats"]}
    assert names["fp16"] == 16 and names["nf4"] == 4.5 and names["Q4_0"] == 4.5
    assert any(ft["name"] == "Q4_K_M" for ft in data["gguf_file_types"])


def test_weights_with_model_and_file_type(capsys):
    data = run_json(capsys, "weights", "--model", "llama-3.1-8b", "--format", "Q4_K_M")
    assert data["format"] == "Q4_K_M" and len(data["type_counts"]) >= 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["weights", "--params=-70B", "--format", "fp16"], "must be positive"),
     (["weights", "--params", "nan", "--format", "fp16"], "is not a number"),
     (["weights", "--params", "0", "--format", "fp16"], "must be positive"),
     (["weights", "--params", "70B", "--format", "int5"], "unknown format 'int5'"),
     (["weights", "--params", "70B", "--format", "Q4_K_M"], "GGUF file type"),
     (["weights", "--model", "no-such-model", "--format", "fp16"], "unknown preset"),
     (["gguf", "--config", "llama-3.1-8b", "--quant", "Q4_K_X"], "Q4_K_X")],
)
def test_bad_input_is_one_clear_line(argv, message):
    result = subprocess.run([sys.executable, "-m", "calculator", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_malformed_config_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": "big"}')
    result = subprocess.run([sys.executable, "-m", "calculator", "weights", "--model", str(bad), "--format", "fp16"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "config.json field hidden_size 'big' must be a whole number >= 1" in result.stderr


def test_one_module_per_subcommand_in_help_order(capsys):
    from calculator import cli

    assert [m.__name__.rsplit(".", 1)[1] for m in cli.SUBCOMMANDS] == [
        "weights", "gguf", "formats", "models", "info", "fit", "gpus"]
    with pytest.raises(SystemExit, match="0"):
        main(["--help"])
    assert "{weights,gguf,formats,models,info,fit,gpus}" in capsys.readouterr().out
