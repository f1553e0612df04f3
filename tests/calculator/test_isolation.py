"""calculator/ never imports torch or streamlit (the dependency direction app -> evaluation -> calculator),
and importing it touches no network library: checked in a fresh interpreter over every submodule."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import calculator

FORBIDDEN = ("torch", "streamlit", "transformers", "evaluation", "app_pages", "ui")


def _submodules() -> list[str]:
    found = pkgutil.walk_packages(calculator.__path__, "calculator.")
    return sorted(m.name for m in found if m.name != "calculator.__main__")


def test_every_submodule_is_listed():
    names = _submodules()
    files = {p.relative_to(Path(calculator.__file__).parent.parent).with_suffix("").as_posix().replace("/", ".")
             for p in Path(calculator.__file__).parent.rglob("*.py")}
    files = {f.removesuffix(".__init__") for f in files} - {"calculator", "calculator.__main__"}
    assert set(names) == files
    assert {"calculator.fit", "calculator.search", "calculator.cli.fit", "calculator.hub"} <= set(names)


def test_calculator_imports_neither_torch_nor_streamlit():
    code = (
        "import importlib, sys\n"
        f"for name in {_submodules()!r}: importlib.import_module(name)\n"
        "import calculator.cli; calculator.cli.build_parser()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m == 'huggingface_hub')\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
