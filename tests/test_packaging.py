"""Packaging: `pip install .` gives a working library and CLI in any environment (issue 9).

The package list in pyproject.toml is explicit (a find would sweep in tests/ and bench/), so a new subpackage
must be listed; the data files ship as the package ``quantfit_assets`` and only ``calculator.paths`` locates them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("calculator", "evaluation")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "quantfit_assets" in listed


def test_console_scripts_point_at_real_functions() -> None:
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {"quantfit": "calculator.cli:main", "quantfit-eval": "evaluation.cli:main"}
    for module in ("calculator/cli/__init__.py", "evaluation/cli.py"):
        tree = ast.parse((ROOT / module).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), module


def test_only_calculator_paths_locates_assets() -> None:
    """Code that built `Path(__file__).parent.parent / "assets"` itself would break in an installed wheel."""
    offenders = [
        str(p.relative_to(ROOT))
        for top in ("calculator", "evaluation", "ui", "app_pages")
        for p in (ROOT / top).rglob("*.py")
        if p.name != "paths.py" and '"assets"' in p.read_text()
    ]
    assert offenders == []


@pytest.mark.timeout(300)
def test_pip_install_gives_a_working_cli(tmp_path: Path) -> None:
    """Install into an empty target folder and run the CLI from elsewhere: assets come from the wheel."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(ROOT)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    assert (target / "quantfit_assets" / "gpus.csv").is_file()
    assert (target / "quantfit_assets" / "presets" / "llama-3.1-8b.json").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import calculator.paths as p, json, sys; from calculator.cli import main;"
        "assert 'quantfit_assets' in str(p.ASSETS_DIR), p.ASSETS_DIR;"
        "sys.exit(main(['weights', '--model', 'llama-3.1-8b', '--format', 'Q4_K_M', '--json']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert '"weight_bytes": 4912898048' in out.stdout  # llama.cpp's published 4.8944 bpw for Llama-3.1-8B Q4_K_M
