"""Published size/quality tables, bundled as ``assets/reference/*.csv``, put on the axes of our own results.

Every CSV row is one published number transcribed from one source (``source``: repo@commit path and table,
``source_url``: a link to it). Nothing in a CSV is computed; everything derived is derived here, by rules a
test checks row by row:

- ``bits_per_weight``: the bits the source gives (llama.cpp's "bits/weight" rows and BPW tables, the
  GPTQ tables' wbits) plus, for group-wise GPTQ rows, the fp16 scale and packed zero of every group; or
  else the published file size over the official parameter count of the model
  (``size GiB x 2^30 x 8 / params``, params from ``assets/presets/<preset>.json``). ``bits_basis`` says
  which rule, with its rounding.
- ``delta_ppl_pct``: 100 x (PPL / PPL(baseline) - 1) against the same table's baseline on the same model,
  text and context: ``ppl - delta_ppl`` where the table prints both (llama.cpp's KLD scoreboards),
  else the table's F16 / FP16 row.

Rows a source got wrong keep their published numbers and carry the reason in ``flag``; pages must show it.
llama.cpp's "G" file sizes are GiB (2^30 bytes); see ``assets/reference/README.md`` for every table.
Pure Python + pandas: the app imports it without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from calculator.formats import get_format
from calculator.models import preset_record
from calculator.paths import ASSETS_DIR

REFERENCE_DIR = ASSETS_DIR / "reference"

COLUMNS: tuple[str, ...] = (
    "model", "method", "quant_type", "imatrix", "bits", "bits_note", "group_size", "dataset", "ctx", "ppl",
    "ppl_err", "delta_ppl", "kld", "size", "size_unit", "source", "source_url", "notes", "flag",
)  # fmt: skip
"""The columns of every reference CSV, in this order."""
NUMERIC = ("bits", "group_size", "ctx", "ppl", "ppl_err", "delta_ppl", "kld", "size")
SIZE_UNITS = {"G": 2**30, "GiB": 2**30, "GB": 10**9}
"""llama.cpp prints GiB as "G" (``llama_model_ftype_name`` sizes, ``quantize --help``); "GB" is decimal."""
SIZE_DECIMALS = 2
"""Every published size is rounded to 0.01 of its unit, which bounds the error of derived bits."""
FLOAT_TYPES = ("F16", "FP16", "BF16", "F32")

# Model name as the sources spell it -> preset holding its official parameter count.
MODEL_PRESETS: dict[str, str] = {
    "Meta-Llama-3-8B": "llama-3-8b",
    "Llama-2-7B": "llama-2-7b",
    "Llama-2-13B": "llama-2-13b",
    "Llama-2-70B": "llama-2-70b",
    # LLaMA 1 7B/13B have the shapes of Llama 2 7B/13B (dim 4096/5120, 32/40 layers, FFN 11008/13824,
    # vocab 32000): the Llama 2 paper (Touvron et al. 2023, arXiv:2307.09288 §2.2) lists a longer context
    # and grouped-query attention (34B/70B only) as the architectural differences, so the counts are equal.
    "LLaMA-v1-7B": "llama-2-7b",
    "LLaMA-v1-13B": "llama-2-13b",
}


# --------------------------------------------------------------------------------------------- reading


def reference_tables(directory: Path = REFERENCE_DIR) -> list[str]:
    """The bundled tables by file stem, sorted (``llamacpp_llama3_8b_scoreboard`` ...)."""
    return sorted(p.stem for p in directory.glob("*.csv"))


def read_table(name: str | Path, directory: Path = REFERENCE_DIR) -> pd.DataFrame:
    """One reference CSV as published (numbers as floats, text as str); ValueError names a bad row."""
    path = Path(name) if Path(name).suffix == ".csv" else directory / f"{name}.csv"
    if not path.is_file():
        known = ", ".join(reference_tables(directory))
        raise ValueError(f"reference table {name!r} not found in {directory} (known: {known})")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(raw.columns) != COLUMNS:
        raise ValueError(f"{path.name}: columns {list(raw.columns)} differ from the schema {list(COLUMNS)}")
    table = raw.copy()
    for col in NUMERIC:
        parsed = pd.to_numeric(raw[col].replace("", None), errors="coerce")
        bad = raw[col].ne("") & parsed.isna()
        if bad.any():
            row = int(bad.idxmax())
            raise ValueError(f"{path.name} row {row + 2}: {col} {raw[col][row]!r} is not a number")
        table[col] = parsed.astype(float)
    for i, row in raw.iterrows():
        where = f"{path.name} row {i + 2}"
        if not row["source"] or not row["source_url"].startswith("https://"):
            raise ValueError(f"{where}: every row needs its source and an https source_url")
        if row["size"] and row["size_unit"] not in SIZE_UNITS:
            raise ValueError(f"{where}: size_unit {row['size_unit']!r} is not one of {', '.join(SIZE_UNITS)}")
    table.insert(0, "table", path.stem)
    return table


# --------------------------------------------------------------------------------------------- deriving


def model_params(model: str) -> tuple[int | None, str]:
    """(official parameter count, where it is from) for a model as the sources name it."""
    preset = MODEL_PRESETS.get(model)
    if preset is None:
        return None, ""
    record = preset_record(preset)
    return int(record["official_params"]), f"assets/presets/{preset}.json official_params"


def bits_from_size(size: float, unit: str, params: int) -> float:
    """Bits per weight of a file of ``size`` ``unit`` holding ``params`` weights.

    Llama 2 70B Q4_K_M, 38.54 GiB: 38.54 x 2^30 x 8 / 68,976,648,192 = 4.7995 (llama.cpp's BPW table: 4.80).
    """
    if unit not in SIZE_UNITS:
        raise ValueError(f"size unit {unit!r} is not one of {', '.join(SIZE_UNITS)}")
    if params <= 0:
        raise ValueError(f"params {params} must be positive")
    return size * SIZE_UNITS[unit] * 8 / params


def size_rounding_bits(unit: str, params: int) -> float:
    """The most a size rounded to ``SIZE_DECIMALS`` can move ``bits_from_size``: half a last digit."""
    return 0.5 * 10**-SIZE_DECIMALS * SIZE_UNITS[unit] * 8 / params


def gptq_group_bits(bits: float, group_size: int) -> float:
    """Nominal bits per weight of a GPTQ checkpoint with ``bits``-bit codes in groups of ``group_size``: the
    calculator's GPTQ layout (``calculator.formats`` ``gptq-{bits}b-g*``: codes plus, per group, an fp16
    scale and a ``bits``-bit packed zero, as GPTQ-for-LLaMa's ``QuantLinear`` stores them) at the row's
    group size, which may be one the calculator does not list (GPTQ-for-LLaMa's g1024).
    4-bit, group 64: 4 + (16 + 4) / 64 = 4.3125.
    """
    layout = get_format(f"gptq-{int(bits)}b-g128")
    return float(dataclasses.replace(layout, group_size=group_size).bits_per_weight())


def _is_float(quant_type: str) -> bool:
    """F16 rows, however a table spells them ("F16", "FP16 w16")."""
    return quant_type.split()[0].upper() in FLOAT_TYPES if quant_type.strip() else False


def _bits(row: pd.Series, params: int | None, params_source: str) -> tuple[float | None, str]:
    if _is_float(row["quant_type"]):
        return 16.0, "F16: 16 bits per weight (llama.cpp keeps 1-D norm vectors in F32: < 0.001 bits more)"
    if pd.notna(row["bits"]):
        if pd.notna(row["group_size"]):
            b, g = row["bits"], int(row["group_size"])
            return gptq_group_bits(b, g), (
                f"{b:g}-bit codes + fp16 scale + {b:g}-bit zero per {g} weights (GPTQ-for-LLaMa packing); "
                "quantized matrices only"
            )
        if row["bits_note"]:
            return float(row["bits"]), row["bits_note"]
        return float(row["bits"]), (
            f"nominal {row['bits']:g}-bit codes of the quantized matrices (one scale and zero per row add "
            "< 0.01 bits)"
        )
    if pd.notna(row["size"]) and params:
        unit = row["size_unit"]
        return bits_from_size(row["size"], unit, params), (
            f"{row['size']:g} {unit} x {SIZE_UNITS[unit]:,} x 8 / {params:,} parameters ({params_source}); "
            f"the size is rounded to 0.01 {unit} (±{size_rounding_bits(unit, params):.4f} bits) and is the "
            "whole file"
        )
    return None, "the source gives neither bits nor a file size"


def _corpus(dataset: str) -> str:
    text = dataset.lower()
    if text.startswith("wikitext"):
        return "wikitext-2"
    return text.split()[0] if text else ""


def _series(row: pd.Series) -> str:
    if row["table"].startswith("llamacpp"):
        kind = "llama.cpp" + (" imatrix" if row["imatrix"] not in ("", "None") else "")
    else:
        kind = row["method"]
    corpus = _corpus(row["dataset"])
    return f"{row['model']} · {kind}" + ("" if corpus in ("wikitext-2", "") else f" · {corpus}")


def _label(row: pd.Series) -> str:
    if row["table"].startswith("llamacpp"):
        imatrix = row["imatrix"]
        return row["quant_type"] + (f" (imatrix {imatrix})" if imatrix not in ("", "None") else "")
    group = f" g{int(row['group_size'])}" if pd.notna(row["group_size"]) else ""
    return f"{row['quant_type']}{group}"


def _baselines(table: pd.DataFrame) -> pd.Series:
    """PPL of the unquantized model for each row, from the row's own table, model, text and context."""
    out = pd.Series(float("nan"), index=table.index)
    keys = ["table", "model", "dataset", "ctx"]
    for _, group in table.groupby(keys, dropna=False, sort=False):
        has_delta = group["delta_ppl"].notna() & group["ppl"].notna()
        own = group["ppl"] - group["delta_ppl"]
        trusted = own[has_delta & group["flag"].eq("")]
        floats = group[group["quant_type"].map(_is_float) & group["ppl"].notna()]
        fallback = float(floats["ppl"].iloc[0]) if len(floats) else float("nan")
        for i in group.index:
            if has_delta[i] and group.at[i, "flag"] == "":
                out[i] = own[i]
            elif len(trusted):
                # A flagged row's PPL is the suspect cell: take the baseline its table implies elsewhere.
                out[i] = float(trusted.median())
            else:
                out[i] = fallback
    return out


def load_reference(tables: Iterable[str] | None = None, directory: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Every row of the chosen tables (default: all) with the derived columns of the module docstring.

    Added columns: ``table``, ``params``, ``params_source``, ``bits_per_weight``, ``bits_basis``,
    ``baseline_ppl``, ``delta_ppl_pct``, ``corpus`` (wikitext-2 / ptb / c4), ``series`` (model and method
    family: one legend entry), ``label`` (the format of the point), ``flagged``.
    """
    names = list(tables) if tables is not None else reference_tables(directory)
    if not names:
        raise ValueError(f"no reference tables in {directory}")
    frame = pd.concat([read_table(n, directory) for n in names], ignore_index=True)
    params = [model_params(m) for m in frame["model"]]
    frame["params"] = pd.array([p for p, _ in params], dtype="Int64")
    frame["params_source"] = [s for _, s in params]
    bits = [_bits(row, p, s) for (_, row), (p, s) in zip(frame.iterrows(), params, strict=True)]
    frame["bits_per_weight"] = [b for b, _ in bits]
    frame["bits_per_weight"] = frame["bits_per_weight"].astype(float)
    frame["bits_basis"] = [why for _, why in bits]
    frame["baseline_ppl"] = _baselines(frame)
    delta = frame["delta_ppl"].where(frame["delta_ppl"].notna(), frame["ppl"] - frame["baseline_ppl"])
    frame["delta_ppl_pct"] = 100.0 * delta / frame["baseline_ppl"]
    frame["corpus"] = [_corpus(d) for d in frame["dataset"]]
    frame["series"] = [_series(row) for _, row in frame.iterrows()]
    frame["label"] = [_label(row) for _, row in frame.iterrows()]
    frame["flagged"] = frame["flag"].ne("")
    return frame
