"""Numbers without bounds: parameter counts, memory sizes, GPU counts, contexts, batches and float flags are
read with bounds before any arithmetic. Each case is the exact value or one error line naming the value."""

from __future__ import annotations

import json
import re
import time

import pytest

from calculator import units
from calculator.speed import DECODE_BANDWIDTH_EFFICIENCY
from tests.hostile.conftest import one_line_error, quoted

COUNT_HINT = "give e.g. 70e9, 70B, 1.5T or 135M"
BYTES_HINT = "give e.g. 24GiB, 80GB or 512MiB"

# (text, the count, or the error message)
COUNTS = [
    ("70B", 70_000_000_000),
    ("1.5T", 1_500_000_000_000),
    ("135M", 135_000_000),
    ("7e9", 7_000_000_000),
    (" 8b ", 8_000_000_000),
    ("1e15", 10**15),
    (12_345, 12_345),
    ("1e99999999", f"parameter count '1e99999999' is out of range (exponent 99999999 beyond +/-30); {COUNT_HINT}"),
    ("1e400", f"parameter count '1e400' is out of range (exponent 400 beyond +/-30); {COUNT_HINT}"),
    ("1e-400", f"parameter count '1e-400' is out of range (exponent -400 beyond +/-30); {COUNT_HINT}"),
    ("1e16", f"parameter count '1e16' is above 1e+15 (1,000T), beyond any model; {COUNT_HINT}"),
    ("2000T", f"parameter count '2000T' is above 1e+15 (1,000T), beyond any model; {COUNT_HINT}"),
    (10**20, f"parameter count 100000000000000000000 is above 1e+15 (1,000T), beyond any model; {COUNT_HINT}"),
    (10**5000, f"parameter count 5001-digit number is above 1e+15 (1,000T), beyond any model; {COUNT_HINT}"),
    ("inf", f"parameter count 'inf' is not a number; {COUNT_HINT}"),
    ("nan", f"parameter count 'nan' is not a number; {COUNT_HINT}"),
    (float("inf"), f"parameter count inf is not finite; {COUNT_HINT}"),
    (float("nan"), f"parameter count nan is not finite; {COUNT_HINT}"),
    ("-5", f"parameter count '-5' must be positive; {COUNT_HINT}"),
    ("0", f"parameter count '0' must be positive; {COUNT_HINT}"),
    ("0.5", "parameter count '0.5' is not a whole number of parameters"),
    ("1" * 100, f"parameter count '11111111111111111111'... is 100 characters long, not a number; {COUNT_HINT}"),
    ("1" * 100_000 + "x", f"parameter count '11111111111111111111'... is 100,001 characters long, not a number; "
                          f"{COUNT_HINT}"),
    ("seventy", f"parameter count 'seventy' is not a number; {COUNT_HINT}"),
    (True, f"parameter count True is not a number; {COUNT_HINT}"),
]


@pytest.mark.parametrize(("text", "expected"), COUNTS, ids=[quoted(t)[:24] for t, _ in COUNTS])
def test_parse_count(text, expected):
    start = time.process_time()
    if isinstance(expected, int):
        assert units.parse_count(text) == expected
    else:
        with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
            units.parse_count(text)
    assert time.process_time() - start < 0.1


BYTES = [
    ("24GiB", 24 * 2**30),
    ("80 GB", 80 * 10**9),
    ("0.5KiB", 512),
    ("1e18", 10**18),
    ("1e400", f"memory size '1e400' is out of range (exponent 400 beyond +/-30); {BYTES_HINT}"),
    ("2e18", f"memory size '2e18' is above 1e+18 bytes (1 EB), beyond any machine; {BYTES_HINT}"),
    ("2000000TB", f"memory size '2000000TB' is above 1e+18 bytes (1 EB), beyond any machine; {BYTES_HINT}"),
    ("inf", f"memory size 'inf' is not understood; {BYTES_HINT}"),
    ("-5GB", f"memory size '-5GB' is not understood; {BYTES_HINT}"),
    ("0GB", f"memory size '0GB' must be positive; {BYTES_HINT}"),
    ("9" * 65, f"memory size '99999999999999999999'... is 65 characters long, not a number; {BYTES_HINT}"),
    (24.5, f"memory size 24.5 is not a number; {BYTES_HINT}"),
]


@pytest.mark.parametrize(("text", "expected"), BYTES, ids=[quoted(t)[:24] for t, _ in BYTES])
def test_parse_bytes(text, expected):
    if isinstance(expected, int):
        assert units.parse_bytes(text) == expected
    else:
        with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
            units.parse_bytes(text)


FLOATS = [
    (float("inf"), "x inf must be a number from 0 to 1e+06"),
    (float("nan"), "x nan must be a number from 0 to 1e+06"),
    (-1.0, "x -1.0 must be a number from 0 to 1e+06"),
    (10**400, "x 401-digit number must be a number from 0 to 1e+06"),
    (True, "x True must be a number from 0 to 1e+06"),
    ("3", "x '3' must be a number from 0 to 1e+06"),
]


@pytest.mark.parametrize(("value", "message"), FLOATS, ids=[quoted(v)[:16] for v, _ in FLOATS])
def test_check_float(value, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        units.check_float("x", value, high=1e6)
    assert units.check_float("x", 3, high=1e6) == 3.0


WEIGHTS = ["weights", "--format", "int4", "--params"]
FIT = ["fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "RTX 4090"]

# (argv, the one error line, or a check on the --json output)
CLI = [
    ([*WEIGHTS, "1e99999999"], f"parameter count '1e99999999' is out of range (exponent 99999999 beyond +/-30); "
                               f"{COUNT_HINT}"),
    ([*WEIGHTS, "1e400"], f"parameter count '1e400' is out of range (exponent 400 beyond +/-30); {COUNT_HINT}"),
    ([*WEIGHTS, "inf"], f"parameter count 'inf' is not a number; {COUNT_HINT}"),
    ([*WEIGHTS, "nan"], f"parameter count 'nan' is not a number; {COUNT_HINT}"),
    ([*WEIGHTS, "1e16"], f"parameter count '1e16' is above 1e+15 (1,000T), beyond any model; {COUNT_HINT}"),
    ([*WEIGHTS, "70B", "--json"], lambda d: d["weight_bytes"] == 35_000_000_000),
    ([*FIT, "--gpus", "1000000000"], "GPU count 1000000000 must be a whole number from 1 to 256 (e.g. --gpus 2)"),
    ([*FIT, "--gpus", "0"], "GPU count 0 must be a whole number from 1 to 256 (e.g. --gpus 2)"),
    ([*FIT, "--context", "0"], "context 0 must be a whole number from 1 to 134217728 (e.g. 8192 tokens)"),
    ([*FIT, "--context", "99999999999"], "context 99999999999 must be a whole number from 1 to 134217728 (e.g. 8192 "
                                         "tokens)"),
    ([*FIT, "--batch", "0"], "batch 0 must be a whole number from 1 to 65536 (e.g. 1 sequence)"),
    ([*FIT, "--batch", "1000000"], "batch 1000000 must be a whole number from 1 to 65536 (e.g. 1 sequence)"),
    ([*FIT, "--overhead-gib", "inf"], "--overhead-gib inf must be a number from 0 to 1e+06 (e.g. 0)"),
    ([*FIT, "--overhead-gib", "nan"], "--overhead-gib nan must be a number from 0 to 1e+06 (e.g. 0)"),
    ([*FIT, "--overhead-gib", "-1"], "--overhead-gib -1.0 must be a number from 0 to 1e+06 (e.g. 0)"),
    ([*FIT, "--overhead-gib", "1e308"], "--overhead-gib 1e+308 must be a number from 0 to 1e+06 (e.g. 0)"),
    ([*FIT, "--cuda-context-mib", "inf"], "--cuda-context-mib inf must be a number from 0 to 1e+06 (e.g. 0)"),
    ([*FIT, "--cpu-bandwidth", "inf"],
     "CPU bandwidth (GB/s) inf must be a number above 0 and at most 1e+06 (e.g. 89.6)"),
    ([*FIT, "--cpu-bandwidth", "0"], "CPU bandwidth (GB/s) 0.0 must be a number above 0 and at most 1e+06 (e.g. 89.6)"),
    ([*FIT, "--cpu-ram", "1e400"], f"memory size '1e400' is out of range (exponent 400 beyond +/-30); {BYTES_HINT}"),
    ([*FIT, "--mode", "lora", "--lora-rank", "1" + "0" * 21],
     "LoRA rank 1000000000000000000000 must be a whole number from 1 to 16777216 (e.g. 16)"),
    ([*FIT, "--ubatch", "1" + "0" * 20],
     "ubatch (prompt tokens per step) 100000000000000000000 must be a whole number from 1 to 134217728 (e.g. 512, "
     "or None)"),
    ([*FIT, "--decode-efficiency", "nan"],
     f"decode efficiency nan must be in (0, 1], e.g. {DECODE_BANDWIDTH_EFFICIENCY}"),
    (["fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "custom:1e400"],
     f"memory size '1e400' is out of range (exponent 400 beyond +/-30); {BYTES_HINT}"),
    (["fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "custom:24GiB:" + "1" * 400 + "GB/s"],
     "custom GPU 'custom:24GiB:11111111111'... is 417 characters long; write custom:MEMORY[:BANDWIDTH][:TFLOPS], "
     "e.g. custom:24GiB or custom:24GiB:1000GB/s:165TFLOPS"),
    (["fit", "--model", "llama-3.1-8b", "--format", "Q4_K_M", "--gpu", "custom:24GiB:" + "9" * 170 + "GB/s",
      "--json"], lambda d: d["fits"] is True),
    ([*FIT, "--json"], lambda d: d["fits"] is True and d["gpu_count"] == 1),
    ([*FIT, "--gpus", "256", "--json"], lambda d: d["fits"] is True and d["gpu_count"] == 256),
    ([*FIT, "--context", "134217728", "--json"], lambda d: d["fits"] is False),
]


@pytest.mark.parametrize(("argv", "expected"), CLI, ids=[" ".join(a[1:])[-40:] for a, _ in CLI])
def test_calculator_cli(calc, argv, expected):
    start = time.process_time()
    status, out, err = calc(*argv)
    if callable(expected):
        assert status == 0, err
        assert expected(json.loads(out))
    else:
        assert status == 2
        assert one_line_error(err) == expected
    assert time.process_time() - start < 5
