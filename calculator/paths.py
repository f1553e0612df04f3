"""Where quantfit's data files are: the checkout's ``assets/`` or, after ``pip install .``, the installed
data package ``quantfit_assets`` (the same folder, shipped inside the wheel; see pyproject.toml)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _assets_dir() -> Path:
    if (_CHECKOUT_ASSETS / "gpus.csv").is_file():
        return _CHECKOUT_ASSETS
    spec = importlib.util.find_spec("quantfit_assets")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "quantfit's data files are missing: run from a checkout, or install the package with `pip install .`"
        )
    return Path(spec.origin).parent


ASSETS_DIR: Path = _assets_dir()
"""The data folder: presets/, gpus.csv, reference/, results/."""
