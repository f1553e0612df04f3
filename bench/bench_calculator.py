"""Print how long the calculator takes: the full format x preset grid in-process, and the CLI.

Goals (issue 2): grid < 20 ms in-process, one CLI call < 1 s. Run: `.venv/bin/python bench/bench_calculator.py`.
"""

from __future__ import annotations

import subprocess
import sys
import time

from calculator.formats import FORMATS
from calculator.gguf_recipes import FILE_TYPES
from calculator.memory import weight_memory
from calculator.models import list_presets, load_preset


def grid() -> tuple[int, int]:
    ok = failed = 0
    specs = [load_preset(name) for name in list_presets()]
    for spec in specs:
        for fmt in list(FORMATS) + list(FILE_TYPES):
            try:
                weight_memory(spec, fmt)
                ok += 1
            except ValueError:
                failed += 1  # e.g. a GGUF tensor type whose block does not divide a row
    return ok, failed


def main() -> None:
    t0 = time.perf_counter()
    ok, failed = grid()
    cold = time.perf_counter() - t0
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        grid()
        runs.append(time.perf_counter() - t0)
    n_presets = len(list_presets())
    print(f"grid: {n_presets} presets x {len(FORMATS) + len(FILE_TYPES)} formats/file types = {ok + failed} "
          f"cells ({failed} not storable, e.g. rows not divisible by a GGUF block)")
    print(f"grid first run (specs built, cold caches): {cold * 1000:.1f} ms")
    print(f"grid warm, best of 3: {min(runs) * 1000:.1f} ms  ({min(runs) / (ok + failed) * 1e6:.1f} us per cell)")
    per_preset = min(runs) / n_presets
    print(f"per preset, all formats: {per_preset * 1000:.2f} ms")
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "calculator", "weights", "--params", "70B", "--format", "int4",
                        "--json"], check=True, capture_output=True)
        cli.append(time.perf_counter() - t0)
    print(f"CLI `weights --params 70B --format int4 --json`, best of 3: {min(cli) * 1000:.0f} ms (process start incl.)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "calculator", "gguf", "--config", "llama-3.1-8b", "--quant", "Q4_K_M",
                    "--json"], check=True, capture_output=True)
    print(f"CLI `gguf --config llama-3.1-8b --quant Q4_K_M --json`: {(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
