"""The results schema: version 2 written and read back (version 3 only when a result carries ``runtime``),
version 1 files (the bundled ones and a saved one kept as a fixture) read with every value where version 1
kept it, sweep failures beside the results, malformed files refused with the reason, the cache, and
SCHEMA.md documenting exactly the fields the code has."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from evaluation.results import (
    MAX_RESULTS_FILE_BYTES,
    SCHEMA_VERSION,
    Failure,
    ModelInfo,
    QualityMetrics,
    Result,
    ResultCache,
    RSSScope,
    RuntimeQuality,
    WindowsInfo,
    load_results,
    loads_results,
    parse_failures,
    results_document,
    save_results,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted((ROOT / "assets" / "results").glob("*.json"))
V1_FIXTURE = Path(__file__).parent / "data" / "results-v1.json"
# The bundled files still in schema version 1 (the sweep file is version 3 since its re-measurement on 2026-12-02).
V1_FILES = [p for p in BUNDLED if json.loads(p.read_text())["schema_version"] == 1] + [V1_FIXTURE]
QUALITY_FIELDS = [f.name for f in fields(QualityMetrics) if f.name != "tokens"]


@pytest.fixture(scope="module")
def v1_results() -> list[Result]:
    return load_results(V1_FIXTURE)


@pytest.mark.parametrize("path", V1_FILES, ids=lambda p: p.name)
def test_version_1_files_read_with_every_value_in_place(path):
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1
    results = load_results(path)
    assert len(results) == len(raw["results"])
    for r, row in zip(results, raw["results"], strict=True):
        # The flat version-1 quality fields, straight from the JSON, are the embedded QualityMetrics.
        assert {k: getattr(r.quality, k) for k in QUALITY_FIELDS} == {k: row[k] for k in QUALITY_FIELDS}
        assert r.quality.tokens == row["windows"]["scored_tokens"]
        assert r.model == ModelInfo(**row["model"]) and r.windows == WindowsInfo(**row["windows"])
        assert (r.key, r.measured_bytes, r.notes, r.peak_rss_scope) == (
            row["key"], row["measured_bytes"], row["notes"], RSSScope(row["peak_rss_scope"]),
        )  # fmt: skip


def test_bundled_smollm2_results_carry_the_q4_1_note():
    rows = {r.method_id: r for r in load_results(ROOT / "assets" / "results" / "smollm2-135m-shakespeare.json")}
    assert {"baseline", "int8", "int4-g32", "rtn-3b-g64-asym", "nf4"} <= set(rows)
    assert all(any("Q4_1" in n for n in r.notes) for r in rows.values())
    assert rows["rtn-3b-g64-asym"].quality.kld_mean > rows["int4-g64"].quality.kld_mean > rows["int8"].quality.kld_mean
    assert all(abs(r.predicted_error_pct) < 2 for r in rows.values())


def test_version_2_round_trip(v1_results, tmp_path):
    path = tmp_path / "saved.json"
    save_results(path, v1_results)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 2 and SCHEMA_VERSION == 3  # nothing here needs version 3
    row = doc["results"][0]
    assert "runtime" not in row and "failures" not in doc
    assert "ppl" not in row and row["quality"]["ppl"] == v1_results[0].quality.ppl
    assert row["quality"]["tokens"] == row["windows"]["scored_tokens"]
    assert row["model"]["kind"] == "preset-gguf" and row["peak_rss_scope"] == "method"  # enums as strings
    assert load_results(path) == v1_results
    assert not [p for p in tmp_path.iterdir() if p.name != "saved.json"]  # no temp file left


def _runtime(result: Result) -> Result:
    q = result.quality
    floor = replace(q, kld_mean=0.003, top1_agreement=0.96)
    return replace(result, runtime=RuntimeQuality("llama.cpp", "llama-cpp-python 0.3.36", q, 12.5, floor, "x.gguf"))


def test_version_3_round_trip_with_runtime_and_failures(v1_results, tmp_path):
    path = tmp_path / "sweep.json"
    rows = [_runtime(v1_results[0]), *v1_results[1:]]
    failures = [Failure("smollm2-135m", "shakespeare", "int4-g256", "ValueError: group size 256 fits no layer", 1)]
    save_results(path, rows, failures)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 3 and doc["results"][0]["runtime"]["floor"]["kld_mean"] == 0.003
    assert "runtime" not in doc["results"][1]
    assert load_results(path) == rows and parse_failures(doc) == failures
    doc["schema_version"] = 2
    with pytest.raises(ValueError, match="field 'runtime' needs schema_version 3, the file says 2"):
        loads_results(json.dumps(doc))
    doc["schema_version"] = 3
    doc["failures"][0]["attempts"] = "twice"
    with pytest.raises(ValueError, match="failure 0: field 'attempts' must be int"):
        parse_failures(doc)


def _doc(results, version=SCHEMA_VERSION):
    doc = results_document(results)
    doc["schema_version"] = version
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=99), r"schema_version 99 is not supported \(this quantfit reads 1, 2, 3\)"),
        (lambda d: d.update(schema_version=True), "schema_version True is not supported"),
        (lambda d: d.update(schema="other"), "not a quantfit results file"),
        (lambda d: d["results"][0]["quality"].pop("ppl"), "required field 'quality.ppl' is missing"),
        (lambda d: d["results"][0]["quality"].update(ppl="high"), "field 'quality.ppl' must be a number, got str"),
        (lambda d: d["results"][0]["quality"].update(kld_mean=float("nan")), "'quality.kld_mean' is nan"),
        (lambda d: d["results"][0]["quality"]["kld_percentiles"].update(median="x"), "quality.kld_percentiles.median"),
        (lambda d: d["results"][0].update(measured_bytes=1.5), "field 'measured_bytes' must be int"),
        (lambda d: d["results"][0].update(notes=[1]), r"field 'notes\[0\]' must be str"),
        (lambda d: d["results"][0].update(surprise=1), "unknown field.*'surprise'"),
        (lambda d: d["results"][0]["model"].update(kind="ftp"), "'model.kind' is 'ftp', not one of preset-gguf"),
        (lambda d: d["results"][0]["windows"].pop("n_ctx"), "required field 'windows.n_ctx' is missing"),
        (lambda d: d["results"][0]["windows"].update(extra=0), "unknown field.*'windows.extra'"),
        (lambda d: d["results"][0]["env"].pop("torch"), "required field 'env.torch' is missing"),
        (lambda d: d["results"][0].update(quality=[]), "field 'quality' must be a JSON object"),
        (lambda d: d.update(results={}), "'results' must be a list"),
        (lambda d: d["results"][0]["quality"].update(kld_mean=None), "'quality.kld_mean' must not be null"),
        (lambda d: d["results"][0].update(runtime={"engine": "llama.cpp"}), "required field 'runtime.engine_version'"),
    ],
)
def test_malformed_results_are_rejected_with_the_reason(v1_results, mutate, message):
    doc = _doc(v1_results[:1])
    mutate(doc)
    with pytest.raises(ValueError, match=message):
        loads_results(json.dumps(doc))


def test_malformed_version_1_results_name_the_version_1_field():
    doc = json.loads(V1_FIXTURE.read_text())
    doc["results"][0].pop("ppl")
    with pytest.raises(ValueError, match=r"result 0: required field 'ppl' is missing \(schema version 1\)"):
        loads_results(json.dumps(doc))
    doc = json.loads(V1_FIXTURE.read_text())
    doc["results"][1]["quality"] = {}  # a version-2 field in a version-1 file
    with pytest.raises(ValueError, match="result 1: unknown field"):
        loads_results(json.dumps(doc))


def test_results_file_limits(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        loads_results(b"{broken")
    with pytest.raises(ValueError, match="over the"):
        loads_results(b" " * (MAX_RESULTS_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="cannot read results file"):
        load_results(tmp_path / "nope.json")


def test_cache_ignores_corrupt_entries(v1_results, tmp_path):
    cache = ResultCache(tmp_path)
    cache.put(v1_results[1])
    assert cache.get(v1_results[1].key) == v1_results[1]
    cache.path(v1_results[1].key).write_text("{")
    assert cache.get(v1_results[1].key) is None


def test_a_version_1_cache_entry_is_a_hit(v1_results, tmp_path):
    cache = ResultCache(tmp_path)
    cache.path(v1_results[0].key).parent.mkdir(parents=True)
    doc = json.loads(V1_FIXTURE.read_text())
    doc["results"] = doc["results"][:1]
    cache.path(v1_results[0].key).write_text(json.dumps(doc))
    assert cache.get(v1_results[0].key) == v1_results[0]


def _documented(section: str) -> set[str]:
    """Field names in the first column of the table under ``## section`` of SCHEMA.md."""
    text = (ROOT / "assets" / "results" / "SCHEMA.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return names


@pytest.mark.parametrize(
    ("section", "record"),
    [("RESULT", Result), ("quality", QualityMetrics), ("model", ModelInfo), ("windows", WindowsInfo),
     ("runtime", RuntimeQuality), ("failures", Failure)],
)
def test_schema_md_documents_exactly_the_fields(section, record):
    assert _documented(section) == {f.name for f in fields(record)}
