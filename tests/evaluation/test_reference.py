"""Published reference tables: schema, sources, and every derived number checked against the sources' own
figures (the 70B scoreboard's printed deltas, the quantize README's bits per weight, the calculator's GPTQ
formats)."""

from __future__ import annotations

import math
import re
import shutil

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calculator.formats import get_format
from calculator.models import preset_record
from evaluation.reference import (
    COLUMNS,
    MODEL_PRESETS,
    REFERENCE_DIR,
    bits_from_size,
    gptq_group_bits,
    load_reference,
    model_params,
    read_table,
    reference_tables,
    size_rounding_bits,
)

EXPECTED_TABLES = {
    "gptq_for_llama", "llamacpp_llama1_kquants", "llamacpp_llama1_legacy", "llamacpp_llama2_70b_scoreboard",
    "llamacpp_llama2_7b_vs_llama3", "llamacpp_llama2_bpw", "llamacpp_llama3_8b_scoreboard",
}  # fmt: skip


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return load_reference()


def _row(ref: pd.DataFrame, table: str, model: str, quant_type: str, imatrix: str = "None") -> pd.Series:
    found = ref[(ref.table == table) & (ref.model == model) & (ref.quant_type == quant_type)]
    if table == "llamacpp_llama3_8b_scoreboard":
        found = found[found.imatrix == imatrix]
    assert len(found) == 1, found
    return found.iloc[0]


def test_every_table_has_the_schema_and_a_source_on_every_row(ref):
    assert set(reference_tables()) == EXPECTED_TABLES
    for stem in reference_tables():
        raw = pd.read_csv(REFERENCE_DIR / f"{stem}.csv", dtype=str, keep_default_na=False)
        assert tuple(raw.columns) == COLUMNS, stem
        assert (raw.source != "").all() and raw.source_url.str.startswith("https://").all(), stem
    assert len(ref) == 167
    assert (REFERENCE_DIR / "README.md").is_file()


def test_llama3_8b_scoreboard_golden_numbers(ref):
    q4km = _row(ref, "llamacpp_llama3_8b_scoreboard", "Meta-Llama-3-8B", "Q4_K_M")
    # 4.58 GiB x 2^30 x 8 / 8,030,261,248 official parameters
    assert q4km.bits_per_weight == pytest.approx(4.58 * 2**33 / 8_030_261_248)
    assert q4km.bits_per_weight == pytest.approx(4.8993, abs=1e-4)
    # PPL 6.407115, printed delta 0.175482 -> baseline 6.231633, +2.816 %
    assert q4km.baseline_ppl == pytest.approx(6.231633, abs=1e-6)
    assert q4km.delta_ppl_pct == pytest.approx(100 * 0.175482 / 6.231633)
    assert q4km.kld == 0.031273
    imatrix = _row(ref, "llamacpp_llama3_8b_scoreboard", "Meta-Llama-3-8B", "Q4_K_M", "WT 10m")
    assert imatrix.delta_ppl_pct < q4km.delta_ppl_pct  # the importance matrix helps, as published
    # Every row of the scoreboard implies the same unquantized PPL (to the 6 printed decimals).
    board = ref[ref.table == "llamacpp_llama3_8b_scoreboard"]
    assert (board.ppl - board.delta_ppl).max() - (board.ppl - board.delta_ppl).min() < 5e-6


def test_70b_scoreboard_deltas_equal_the_percentages_it_prints(ref):
    board = ref[ref.table == "llamacpp_llama2_70b_scoreboard"]
    checked = 0
    for _, row in board.iterrows():
        printed = re.search(r"as written: ([\d.]+)%", row.notes)
        if printed:
            assert round(row.delta_ppl_pct, 2) == pytest.approx(float(printed[1]), abs=0.005), row.quant_type
            checked += 1
    assert checked == 12
    fp16 = _row(ref, "llamacpp_llama2_70b_scoreboard", "Llama-2-70B", "FP16")
    assert fp16.delta_ppl_pct == 0 and fp16.bits_per_weight == 16


def test_size_derived_bits_agree_with_llamacpp_bpw_table(ref):
    """The 70B scoreboard's file sizes over the official count give the quantize README's bits per weight,
    within the two roundings (sizes to 0.01 GiB, bits to 0.01), for every type but Q3_K_M: the two tables
    come from different llama.cpp revisions and its recipe moved by 0.011 bits in between."""
    board = ref[ref.table == "llamacpp_llama2_70b_scoreboard"].set_index("quant_type")
    bpw = ref[(ref.table == "llamacpp_llama2_bpw") & (ref.model == "Llama-2-70B")].set_index("quant_type")
    shared = sorted(set(board.index) & set(bpw.index))
    assert len(shared) == 9
    params = model_params("Llama-2-70B")[0]
    tolerance = size_rounding_bits("GiB", params) + 0.005
    off = {q for q in shared if abs(board.bits_per_weight[q] - bpw.bits_per_weight[q]) > tolerance}
    assert off == {"Q3_K_M"}
    assert board.bits_per_weight["Q3_K_M"] - bpw.bits_per_weight["Q3_K_M"] == pytest.approx(-0.0106, abs=1e-4)
    assert board.bits_per_weight["Q4_K_M"] == pytest.approx(4.7995, abs=1e-4)  # 38.54 GiB


def test_flagged_row_keeps_its_flag_and_uses_the_printed_delta(ref):
    flagged = ref[ref.flagged]
    assert len(flagged) == 1
    row = flagged.iloc[0]
    assert (row.model, row.quant_type) == ("Llama-2-7B", "Q2_K")
    assert row.flag.startswith("SOURCE ANOMALY")
    assert row.ppl == 5.794552  # kept as published
    # Baseline from the table's other rows (q8_0: 5.798542 - 0.003990), delta as printed.
    assert row.baseline_ppl == pytest.approx(5.794552, abs=1e-6)
    assert row.delta_ppl_pct == pytest.approx(100 * 0.625552 / 5.794552, rel=1e-6)


def test_gptq_rows_bits_are_the_published_packing(ref):
    rows = ref[(ref.table == "gptq_for_llama") & ref.group_size.notna()]
    assert len(rows) == 18  # group 64 (15 rows) and 1024 (3)
    for _, row in rows.iterrows():
        b, g = int(row.bits), int(row.group_size)
        # GPTQ-for-LLaMa quant.py QuantLinear, counted by hand: per g weights an fp16 scale and a b-bit zero.
        assert row.bits_per_weight == pytest.approx(b + (16 + b) / g, rel=1e-12)
        if g in (32, 64, 128):  # the group sizes the calculator lists: its own format agrees
            assert row.bits_per_weight == pytest.approx(float(get_format(f"gptq-{b}b-g{g}").bits_per_weight()))
    assert gptq_group_bits(4, 64) == 4.3125 and gptq_group_bits(4, 1024) == 4 + 20 / 1024
    fp16 = ref[(ref.table == "gptq_for_llama") & (ref.method == "FP16")]
    assert (fp16.delta_ppl_pct == 0).all() and len(fp16) == 6
    rtn2 = ref[(ref.table == "gptq_for_llama") & (ref.quant_type == "RTN w2") & (ref.corpus == "wikitext-2")
               & (ref.model == "LLaMA-v1-7B")].iloc[0]
    assert rtn2.delta_ppl_pct == pytest.approx(100 * (101940 / 5.67 - 1))  # below 3 bits RTN collapses


def test_every_plottable_row_has_coordinates(ref):
    quality = ref[ref.ppl.notna() | ref.delta_ppl.notna()]
    assert quality.delta_ppl_pct.notna().all()
    no_bits = quality[quality.bits_per_weight.isna()]
    # Only LLaMA-13B k-quants: the PR's size column was cut from the excerpt.
    assert set(no_bits.table) == {"llamacpp_llama1_kquants"} and set(no_bits.model) == {"LLaMA-v1-13B"}
    assert (ref.bits_basis != "").all()
    assert set(ref.corpus) == {"wikitext-2", "ptb", "c4", ""}


def test_llama1_counts_come_from_llama2_shapes():
    assert MODEL_PRESETS["LLaMA-v1-7B"] == "llama-2-7b"
    assert model_params("LLaMA-v1-7B")[0] == 6_738_415_616 == preset_record("llama-2-7b")["official_params"]
    assert model_params("unknown model") == (None, "")


@given(st.floats(min_value=1.0, max_value=16.0), st.integers(min_value=10**8, max_value=10**12))
def test_bits_from_size_inverts_size_from_bits(bits, params):
    size_gib = bits * params / 8 / 2**30
    assert bits_from_size(size_gib, "GiB", params) == pytest.approx(bits)
    assert bits_from_size(size_gib * 2**30 / 1e9, "GB", params) == pytest.approx(bits)
    assert bits_from_size(size_gib + 0.01, "G", params) > bits_from_size(size_gib, "G", params)


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unit 'MB'"):
        bits_from_size(1.0, "MB", 10)
    with pytest.raises(ValueError, match="'nope' not found.*known: gptq_for_llama"):
        read_table("nope")
    bad = tmp_path / "bad.csv"
    shutil.copy(REFERENCE_DIR / "llamacpp_llama2_70b_scoreboard.csv", bad)
    text = bad.read_text().replace("3.5550", "3.55x", 1)
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"bad.csv row 2: ppl '3.55x' is not a number"):
        read_table(bad)
    bad.write_text(text.replace("model,method", "model_name,method", 1))
    with pytest.raises(ValueError, match="columns .* differ from the schema"):
        read_table(bad)
    with pytest.raises(ValueError, match="no reference tables"):
        load_reference(directory=tmp_path / "empty")


def test_sizes_are_gib_for_llamacpp_tables(ref):
    llamacpp = ref[ref.table.str.startswith("llamacpp") & ref["size"].notna()]
    assert set(llamacpp.size_unit) <= {"G", "GiB"}
    assert not math.isnan(llamacpp.bits_per_weight.max()) and llamacpp.bits_per_weight.max() <= 16.6
