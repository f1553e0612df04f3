"""Corpora (offline Shakespeare split, WikiText-2 archive and Hub errors, text files) and token windows."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from transformers import AutoTokenizer

from evaluation.corpus import (
    calibration_sequences,
    load_corpus,
    make_windows,
    shakespeare_split,
    text_corpus,
    wikitext2_corpus,
    wikitext2_from_archive,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_shakespeare_split_is_disjoint_deterministic_and_folio_free():
    evaluation, calibration = shakespeare_split()
    assert (len(evaluation), len(calibration)) == (35, 7)
    assert not {p.name for p in evaluation} & {p.name for p in calibration}
    assert all(p.name.endswith("_gut.txt") for p in evaluation + calibration)  # no First Folio duplicates
    assert calibration[0].name == "cymbeline_gut.txt"  # the 6th work in name order
    assert shakespeare_split() == (evaluation, calibration)
    corpus = load_corpus("shakespeare")
    assert corpus.text.startswith("ALL'S WELL THAT ENDS WELL")
    assert corpus.describe()["eval_files"][0] == "alls_well_that_ends_well_gut.txt"
    assert len(corpus.sha256) == 64 and corpus.sha256 == load_corpus("Shakespeare").sha256


@pytest.mark.parametrize(("scoring", "first", "scored"), [("whole", 0, 63), ("second-half", 32, 31)])
def test_windows_and_scoring(tokenizer, scoring, first, scored):
    windows = make_windows(tokenizer, load_corpus("shakespeare"), n_ctx=64, max_tokens=300, scoring=scoring)
    assert windows.tokens.shape == (4, 64)  # 300 // 64 windows
    assert (windows.first, windows.scored_per_window) == (first, scored)
    info = windows.info()
    assert (info.n_windows, info.scored_tokens, info.scoring) == (4, 4 * scored, scoring)
    assert windows.bos_token_id is None  # this tokenizer adds no BOS by default


def test_windows_are_the_prefix_of_the_whole_tokenization(tokenizer):
    corpus = text_corpus(
        "\n".join(f"line {i}: to be, or not to be" for i in range(3000)), calibration_text="x"
    )
    windows = make_windows(tokenizer, corpus, n_ctx=128, max_tokens=1024)
    full = tokenizer(corpus.text, add_special_tokens=False)["input_ids"]
    assert windows.tokens.flatten().tolist() == full[: 8 * 128]


def test_bos_replaces_the_first_token_of_each_window(tokenizer, monkeypatch):
    class WithBos:
        bos_token_id = 7

        def __call__(self, text, add_special_tokens=True):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            return {"input_ids": ([7] if add_special_tokens else []) + ids}

    windows = make_windows(WithBos(), load_corpus("shakespeare"), n_ctx=32, max_tokens=96)
    assert windows.bos_token_id == 7 and windows.tokens[:, 0].tolist() == [7, 7, 7]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ctx": 64, "max_tokens": 32}, "less than one window"),
        ({"n_ctx": 4, "max_tokens": 64}, "n_ctx 4 must be a whole number >= 8"),
        ({"n_ctx": 64, "max_tokens": 128, "scoring": "middle"}, "middle"),
    ],
)
def test_bad_window_settings(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_windows(tokenizer, load_corpus("shakespeare"), **kwargs)


def test_corpus_shorter_than_a_window(tokenizer):
    with pytest.raises(ValueError, match="shorter than one window of 512"):
        make_windows(tokenizer, text_corpus("too short", calibration_text=""), n_ctx=512, max_tokens=1024)


def test_text_file_corpus_and_errors(tmp_path, tokenizer):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n" * 500, encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.name == "file:notes.txt" and corpus.calibration_files  # calibration from Shakespeare
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00broken")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_corpus(str(bad))
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        load_corpus("nope")


def test_calibration_sequences_come_from_the_calibration_text(tokenizer):
    corpus = load_corpus("shakespeare")
    seqs = calibration_sequences(tokenizer, corpus, n_samples=3, seq_len=50)
    assert [tuple(s.shape) for s in seqs] == [(1, 50)] * 3
    expected = tokenizer(corpus.calibration_text[:5000], add_special_tokens=False)["input_ids"][:150]
    assert torch.cat(seqs, 1)[0].tolist() == expected
    with pytest.raises(ValueError, match="calibration text"):
        calibration_sequences(
            tokenizer, text_corpus("a b c", calibration_text="short"), n_samples=2, seq_len=64
        )


def _wikitext_zip(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "wikitext-2-raw/wiki.test.raw", " = Robert Boulter = \n\n Robert Boulter is an English actor .\n"
        )
        zf.writestr("wikitext-2-raw/wiki.train.raw", " = Valkyria Chronicles III = \n")
    path.write_bytes(buf.getvalue())
    return path


def test_wikitext_archive_layout(tmp_path):
    corpus = wikitext2_from_archive(_wikitext_zip(tmp_path / "w.zip"))
    assert corpus.name == "wikitext2" and corpus.text.startswith(" = Robert Boulter")
    assert corpus.calibration_text.startswith(" = Valkyria")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not the WikiText-2 raw archive"):
        wikitext2_from_archive(tmp_path / "bad.zip")


def test_wikitext_unreachable_hub_says_what_to_do(fake_hub, tmp_path):
    # The fake Hub has no such dataset: the real client's error becomes one actionable line.
    with pytest.raises(ValueError, match="WikiText-2 comes from the Hugging Face Hub.*--corpus shakespeare"):
        wikitext2_corpus(cache_dir=tmp_path / "hf")


def test_wikitext_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(ValueError, match="127.0.0.1:9.*could not be fetched.*--corpus shakespeare"):
        wikitext2_corpus(cache_dir=tmp_path / "hf")
