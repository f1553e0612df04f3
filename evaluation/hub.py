"""Results shared where teams keep them: a Hugging Face Hub dataset repo.

    python -m evaluation push sweep.json --repo acme/quant-evals [--plot chart.png --plot chart.html]
    python -m evaluation show --repo acme/quant-evals          # every results file in the repo, as a table

``push_results`` validates the file (``results.load_results``: never push a file quantfit could not read
back), creates the dataset repo if needed (``HfApi.create_repo(repo_type="dataset", exist_ok=True)``) and
makes one commit (``HfApi.create_commit``) with the file under ``results/``, its plots under ``plots/``
(the Compare page's PNG/SVG/HTML downloads; files next to the results file with the same stem are taken
too) and a regenerated dataset card (``README.md``) that states, for every results file in the repo, the
model, corpus, windows, methods and schema version. ``repo_results`` reads every ``results/*.json`` of a
repo back, validated, for ``evaluation show --repo`` and the Compare page.

The endpoint is ``HF_ENDPOINT`` (``calculator.hub.hub_endpoint``), the token ``HF_TOKEN`` or
``hf auth login``; Hub errors become one actionable ``ValueError``. Reads (the file list and each results
file) wait at most ``QUANTFIT_HUB_TIMEOUT`` seconds (``calculator.hub.hub_timeout_s``, default 20) per
connect and per read, with no retries: ``HfApi.list_repo_tree`` takes no timeout and huggingface_hub's
session has none, so a Hub that accepts the connection and never answers would hang a page for good.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from calculator.hub import TIMEOUT_ENV, hub_endpoint, hub_reachable, hub_timeout_s, is_repo_id
from evaluation.results import MAX_RESULTS_FILE_BYTES, Result, load_results, loads_results

RESULTS_FOLDER = "results"
PLOTS_FOLDER = "plots"
PLOT_SUFFIXES = (".png", ".svg", ".html")
MAX_PLOT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class PushReport:
    """Where a push went: the repo's URL, the commit's, and the paths it wrote."""

    repo_url: str
    commit_url: str
    paths: list[str]


@dataclass(frozen=True)
class RepoResults:
    """The results files of a dataset repo that validate, by path, and one message per file that does not."""

    repo_id: str
    files: list[tuple[str, list[Result]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[Result]:
        return [r for _, rows in self.files for r in rows]


def _check_repo(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not is_repo_id(repo_id):
        raise ValueError(f"repo {repo_id!r} is not a Hub repo id: write OWNER/NAME, e.g. acme/quant-evals")
    return repo_id


def _api(token: str | None):
    from huggingface_hub import HfApi

    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        raise ValueError(f"the Hugging Face Hub ({endpoint}) is unreachable: go online, or set HF_ENDPOINT")
    return HfApi(endpoint=endpoint, token=token)


def _hub_error(err: Exception, repo_id: str, writing: bool) -> ValueError:
    """One line for a huggingface_hub (or its HTTP client's) exception."""
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(err, httpx2.TimeoutException):
        return ValueError(f"the Hub ({hub_endpoint()}) timed out after {hub_timeout_s():g} s on dataset repo "
                          f"{repo_id}: retry, or raise {TIMEOUT_ENV} (seconds)")  # fmt: skip
    if isinstance(err, httpx2.TransportError):
        return ValueError(f"the Hugging Face Hub ({hub_endpoint()}) is unreachable ({type(err).__name__}) for "
                          f"dataset repo {repo_id}: go online, or set HF_ENDPOINT")  # fmt: skip
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, GatedRepoError) or status in (401, 403):
        verb, token = ("write to", "with write access") if writing else ("read", "that can read it")
        return ValueError(f"not allowed to {verb} dataset repo {repo_id}: log in (`hf auth login`) or set "
                          f"HF_TOKEN to a token {token}")  # fmt: skip
    if isinstance(err, RepositoryNotFoundError) or status == 404:
        return ValueError(f"dataset repo {repo_id} was not found on {hub_endpoint()} (check the id; a private "
                          "repo needs `hf auth login` or HF_TOKEN)")  # fmt: skip
    if isinstance(err, HfHubHTTPError):
        return ValueError(f"the Hub answered an error for {repo_id}: {str(err).splitlines()[0]}")
    return ValueError(f"{repo_id}: {type(err).__name__}: {err}")


# ----------------------------------------------------------------------------------------------- the card


def _summary(rows: list[Result]) -> dict:
    first = rows[0]
    return {
        "models": sorted({r.model.id for r in rows}),
        "corpora": sorted({r.corpus["name"] for r in rows}),
        "windows": sorted({f"{r.windows.n_windows} x {r.windows.n_ctx} tokens ({r.windows.scoring})" for r in rows}),
        "methods": list(dict.fromkeys(r.method_id for r in rows)),
        "dtype": first.model.dtype,
    }


def _method_rows(rows: list[Result]) -> list[str]:
    lines = ["| method | bits/w | PPL | ΔPPL | KLD | top-1 | llama.cpp KLD | llama.cpp top-1 | bytes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        q, rt = r.quality, r.runtime
        bpw = "—" if r.bits_per_weight is None else f"{r.bits_per_weight:.2f}"
        run_kld = "—" if rt is None else f"{rt.quality.kld_mean:.5f}"
        run_top = "—" if rt is None else f"{100 * rt.quality.top1_agreement:.1f} %"
        lines.append(f"| `{r.method_id}` | {bpw} | {q.ppl:.3f} | {q.delta_ppl_pct:+.2f} % | {q.kld_mean:.5f} | "
                     f"{100 * q.top1_agreement:.1f} % | {run_kld} | {run_top} | {r.measured_bytes:,} |")  # fmt: skip
    return lines


def dataset_card(repo_id: str, files: dict[str, tuple[int, list[Result]]]) -> str:
    """README.md of a results repo: front matter, then per results file (path -> (schema version, results))
    its model, corpus, windows, methods and schema version, and a table of the figures."""
    models = sorted({r.model.id for _, rows in files.values() for r in rows})
    lines = ["---", "tags:", "- quantfit", "- quantization", "- llm-evaluation", "pretty_name: quantfit results",
             "---", "", f"# Quantization quality: {', '.join(models) or 'no results yet'}", "",
             "Measured by quantfit's evaluation engine (`python -m evaluation`): each method quantizes the model "
             "and is scored against the unquantized model on the same token windows, with llama.cpp's "
             "definitions (perplexity, KL divergence, top-1 agreement). Files follow the JSON schema "
             "`quantfit.evaluation.results` (its `SCHEMA.md`).", "",
             f"Load them: `python -m evaluation show --repo {repo_id}`, or the app's Compare page (Hub repo id).",
             ""]  # fmt: skip
    for path, (version, rows) in sorted(files.items()):
        s = _summary(rows)
        lines += [f"## `{path}`", "",
                  f"- model: {', '.join(s['models'])} ({s['dtype']} baseline)",
                  f"- corpus: {', '.join(s['corpora'])}; windows: {', '.join(s['windows'])}",
                  f"- methods ({len(s['methods'])}): {', '.join(s['methods'])}",
                  f"- schema: `quantfit.evaluation.results` version {version}", "",
                  *_method_rows(rows), ""]  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- push / read


def plot_files(results_path: Path, plots: list[str | Path] = ()) -> list[Path]:
    """The plots to push: those given, and files next to the results file with its stem and a plot suffix."""
    found = [Path(p) for p in plots]
    found += [p for p in results_path.parent.glob(f"{results_path.stem}.*") if p.suffix.lower() in PLOT_SUFFIXES]
    out = []
    for p in dict.fromkeys(found):
        if p.suffix.lower() not in PLOT_SUFFIXES:
            raise ValueError(f"plot {p} is not a {', '.join(PLOT_SUFFIXES)} file (export one from the Compare page)")
        if not p.is_file():
            raise ValueError(f"plot {p} does not exist")
        if p.stat().st_size > MAX_PLOT_BYTES:
            raise ValueError(f"plot {p} is over {MAX_PLOT_BYTES // 2**20} MiB")
        out.append(p)
    return out


def push_results(
    path: str | Path,
    repo_id: str,
    *,
    plots: list[str | Path] = (),
    private: bool | None = None,
    token: str | None = None,
    message: str | None = None,
) -> PushReport:
    """Upload a results file (and its plots) to a Hub dataset repo in one commit, with a regenerated card."""
    from huggingface_hub import CommitOperationAdd

    repo_id, path = _check_repo(repo_id), Path(path)
    rows = load_results(path)  # ValueError naming the problem: a file quantfit cannot read is never pushed
    if not rows:
        raise ValueError(f"{path} holds no results: nothing to push")
    version = json.loads(path.read_text())["schema_version"]
    pictures = plot_files(path, plots)
    api = _api(token)
    target = f"{RESULTS_FOLDER}/{path.name}"
    try:
        url = api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
        existing = repo_results(repo_id, token=token, missing_ok=True)
        card_files = {p: (v, r) for p, v, r in existing.versions if p != target}
        card_files[target] = (version, rows)
        operations = [CommitOperationAdd(target, str(path))]
        operations += [CommitOperationAdd(f"{PLOTS_FOLDER}/{p.name}", str(p)) for p in pictures]
        operations.append(CommitOperationAdd("README.md", dataset_card(repo_id, card_files).encode()))
        summary = message or f"quantfit results: {path.name} ({len(rows)} results)"
        commit = api.create_commit(repo_id, operations, commit_message=summary, repo_type="dataset")
    except ValueError:
        raise
    except Exception as err:  # huggingface_hub's HTTP and repository errors
        raise _hub_error(err, repo_id, writing=True) from None
    return PushReport(str(url), commit.commit_url, [op.path_in_repo for op in operations])


@dataclass(frozen=True)
class _Loaded(RepoResults):
    versions: list[tuple[str, int, list[Result]]] = field(default_factory=list)


def _get(url: str, token: str | None, params: dict | None = None):
    """One GET with ``QUANTFIT_HUB_TIMEOUT`` and no retries; Hub error statuses raise huggingface_hub's errors."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().get(url, params=params, headers=build_hf_headers(token=token), timeout=hub_timeout_s())
    hf_raise_for_status(response)
    return response


def _list_files(repo_id: str, revision: str | None, token: str | None) -> list[tuple[str, int]]:
    """(path, bytes) of every file of a dataset repo: the Hub's tree listing, following its ``Link: next``
    pages (what ``HfApi.list_repo_tree`` requests, with a timeout)."""
    from urllib.parse import quote

    url = f"{hub_endpoint()}/api/datasets/{repo_id}/tree/{quote(revision or 'main', safe='')}"
    params: dict | None = {"recursive": "true"}
    files = []
    while url:
        response = _get(url, token, params)
        files += [(e["path"], int(e["size"])) for e in response.json() if e.get("type") == "file"]
        url, params = response.links.get("next", {}).get("url"), None
    return files


def repo_results(
    repo_id: str,
    *,
    filename: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    missing_ok: bool = False,
) -> RepoResults:
    """Every ``results/*.json`` of a dataset repo (or only ``filename``), validated; a bad file is a problem
    line, not an exception. ``missing_ok``: a repo without results (or not yet created) gives none."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    repo_id = _check_repo(repo_id)
    if not hub_reachable(hub_endpoint(), min(3.0, hub_timeout_s())):
        raise ValueError(f"the Hugging Face Hub ({hub_endpoint()}) is unreachable: go online, or set HF_ENDPOINT")
    try:
        tree = _list_files(repo_id, revision, token)
    except (RepositoryNotFoundError, EntryNotFoundError) as err:
        if missing_ok:
            return _Loaded(repo_id)
        raise _hub_error(err, repo_id, writing=False) from None
    except Exception as err:
        raise _hub_error(err, repo_id, writing=False) from None
    wanted = [(p, n) for p, n in tree if p.startswith(f"{RESULTS_FOLDER}/") and p.endswith(".json")]
    if filename is not None:
        name = filename if filename.startswith(f"{RESULTS_FOLDER}/") else f"{RESULTS_FOLDER}/{filename}"
        wanted = [(p, n) for p, n in wanted if p == name]
        if not wanted:
            raise ValueError(f"dataset repo {repo_id} has no {name}; it holds {', '.join(p for p, _ in tree)}")
    files, problems, versions = [], [], []
    for path, size in wanted:
        if size > MAX_RESULTS_FILE_BYTES:
            problems.append(f"{repo_id}/{path}: {size:,} bytes, over the {MAX_RESULTS_FILE_BYTES:,}-byte limit")
            continue
        url = hf_hub_url(repo_id, path, repo_type="dataset", revision=revision, endpoint=hub_endpoint())
        try:
            raw = _get(url, token).content
        except Exception as err:
            raise _hub_error(err, repo_id, writing=False) from None
        try:
            rows = loads_results(raw, where=f"{repo_id}/{path}")
        except ValueError as err:
            problems.append(f"{repo_id}/{path}: {str(err).split(': ', 1)[-1]}")
            continue
        files.append((path, rows))
        versions.append((path, json.loads(raw)["schema_version"], rows))
    if not files and not problems and not missing_ok:
        raise ValueError(f"dataset repo {repo_id} is not a quantfit results repo: it has no {RESULTS_FOLDER}/*.json "
                         "(push one with `python -m evaluation push RESULTS --repo OWNER/NAME`)")  # fmt: skip
    return _Loaded(repo_id, files, problems, versions)


def describe(loaded: RepoResults) -> str:
    """One line per file: path, result count, models."""
    lines = []
    for path, rows in loaded.files:
        models = Counter(r.model.id for r in rows)
        lines.append(f"{loaded.repo_id}/{path}: {len(rows)} results ({', '.join(models)})")
    return "\n".join(lines + [f"left out: {p}" for p in loaded.problems])


# ----------------------------------------------------------------------------------------------- command line


def register(sub) -> None:
    """``python -m evaluation push RESULTS --repo OWNER/NAME``."""
    push = sub.add_parser("push", help="upload a results file (and plots) to a Hugging Face Hub dataset repo")
    push.add_argument("path", type=Path, help="results JSON (python -m evaluation run|sweep --out)")
    push.add_argument("--repo", required=True, help="dataset repo id OWNER/NAME (created if missing)")
    push.add_argument("--plot", action="append", default=[], help="a PNG/SVG/HTML chart to upload too (repeat)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--message", help="commit message")
    push.set_defaults(func=command)


def command(args) -> int:
    report = push_results(args.path, args.repo, plots=args.plot, private=args.private or None, message=args.message)
    print(f"pushed {', '.join(report.paths)} to {report.repo_url}\ncommit: {report.commit_url}")
    return 0
