"""A local stand-in for the Hugging Face Hub, for tests (the real Hub is unreachable here).

It speaks the subset of the Hub's HTTP API that ``huggingface_hub`` uses to read files:
``HEAD``/``GET {endpoint}/{repo}/resolve/{revision}/{path}`` (with ``Range`` for safetensors and GGUF headers;
``bytes_served`` counts what each file cost),
``GET /api/models/{repo}[/revision/{rev}]`` (file listing with sizes, as ``?blobs=true`` gives), and the error
codes the client maps to exceptions (``X-Error-Code: RepoNotFound | GatedRepo | EntryNotFound``).
Tests point the real client at it with ``HF_ENDPOINT``.

Dataset repos (``datasets``, a namespace of their own) can also be written, as ``HfApi.create_repo`` and
``create_commit`` do it: ``POST /api/repos/create``, ``POST /api/validate-yaml`` (a README's card),
``POST /api/datasets/{repo}/preupload/{rev}`` (every file "regular": sent inline), ``POST
/api/datasets/{repo}/commit/{rev}`` (NDJSON header + base64 files; each commit a new sha), and read back
with ``GET /api/datasets/{repo}[/revision/{rev}]``, ``GET /api/datasets/{repo}/tree/{rev}`` and
``HEAD``/``GET /datasets/{repo}/resolve/{rev}/{path}``. Writes need an ``Authorization`` header (401
otherwise), as on the real Hub.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors_header_only(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors file whose data section is zeros: enough for header parsing and sizes.

    ``tensors``: name -> (dtype like "BF16", shape).
    """
    itemsize = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I8": 1, "U8": 1, "F8_E4M3": 1}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = itemsize[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


@dataclass
class FakeHub:
    """Repos are dicts of path -> bytes; ``gated`` repos answer 403 GatedRepo without a token."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    bytes_served: dict[str, int] = field(default_factory=dict)
    """File path -> body bytes sent for it (GETs of ``resolve`` URLs): what a header read cost."""
    datasets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Dataset repos: path -> bytes, written by commits."""
    commits: dict[str, list[str]] = field(default_factory=dict)
    """Per dataset repo, the summary of every commit, oldest first."""

    def dataset_sha(self, repo: str) -> str:
        """The dataset repo's current commit: a new sha after every commit."""
        return hashlib.sha1(f"{repo}:{len(self.commits.get(repo, []))}".encode()).hexdigest()

    def _write_request(self, handler, path: str) -> None:
        """POST endpoints: create a repo, validate a card, preupload, commit."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if not handler.headers.get("authorization"):
            return handler._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        if path == "/api/repos/create":
            data = json.loads(body)
            repo = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            if data.get("type") != "dataset":
                return handler._error(400, "BadRequest", "this fake Hub creates dataset repos only")
            if repo in self.datasets:  # the Hub's 409 names the repo's url too (create_repo(exist_ok) reads it)
                return handler._json({"error": "You already created this dataset repo",
                                      "url": f"{handler.endpoint}/datasets/{repo}"}, status=409)
            self.datasets[repo] = {}
            self.commits[repo] = []
            return handler._json({"url": f"{handler.endpoint}/datasets/{repo}", "name": repo})
        if path == "/api/validate-yaml":
            return handler._json({})
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
        if not m or m.group(1) not in self.datasets:
            return handler._error(404, "RepoNotFound", "Repository not found")
        repo, action = m.group(1), m.group(2)
        if action == "preupload":
            files = json.loads(body)["files"]
            return handler._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                            for f in files]})
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"]["summary"]
            elif item["key"] == "file":
                self.datasets[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                self.datasets[repo].pop(item["value"]["path"], None)
        self.commits[repo].append(summary)
        sha = self.dataset_sha(repo)
        return handler._json({"commitUrl": f"{handler.endpoint}/datasets/{repo}/commit/{sha}", "commitOid": sha,
                              "pullRequestUrl": None})

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            endpoint = ""

            def _json(self, data, status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _write(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                hub._write_request(self, self.path.split("?")[0])

            def _serve(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                if path.startswith(("/api/datasets/", "/datasets/")):
                    return self._serve_dataset(path)
                if m := re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path):
                    repo = m.group(1)
                    if repo not in hub.repos:
                        return self._error(404, "RepoNotFound", "Repository not found")
                    body = json.dumps({
                        "id": repo, "sha": COMMIT,
                        "siblings": [{"rfilename": f, "size": len(d)} for f, d in sorted(hub.repos[repo].items())],
                    }).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return None
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if not m:
                    return self._error(404, "RepoNotFound", "Repository not found")
                repo, _rev, filename = m.groups()
                if repo not in hub.repos:
                    return self._error(401, "RepoNotFound", "Repository not found")
                if repo in hub.gated and not self.headers.get("authorization"):
                    return self._error(403, "GatedRepo", "Access to this repo is restricted")
                data = hub.repos[repo].get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found")
                etag = hashlib.sha256(data).hexdigest()
                status, start, end = 200, 0, len(data) - 1
                if rng := self.headers.get("Range"):
                    rm = re.match(r"bytes=(\d+)-(\d*)", rng)
                    start = int(rm.group(1))
                    end = min(int(rm.group(2)) if rm.group(2) else len(data) - 1, len(data) - 1)
                    status = 206
                chunk = data[start:end + 1]
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(len(chunk)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if self.command != "HEAD":  # counted before sending: the client may finish before we return
                    hub.bytes_served[f"{repo}/{filename}"] = hub.bytes_served.get(f"{repo}/{filename}", 0) + len(chunk)
                    self.wfile.write(chunk)
                return None

            def _serve_dataset(self, path: str) -> None:
                m = re.match(r"^/api/datasets/([^/]+/[^/]+)(?:/revision/[^/]+)?$", path)
                t = re.match(r"^/api/datasets/([^/]+/[^/]+)/tree/[^/]+(?:/(.*))?$", path)
                r = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
                repo = (m or t or r).group(1) if (m or t or r) else None
                if repo not in hub.datasets:
                    return self._error(404, "RepoNotFound", "Repository not found")
                files = hub.datasets[repo]
                if m:
                    return self._json({"id": repo, "sha": hub.dataset_sha(repo), "private": False,
                                       "siblings": [{"rfilename": f} for f in sorted(files)]})
                if t:
                    prefix = (t.group(2) or "").strip("/")
                    return self._json([{"type": "file", "path": f, "size": len(files[f]),
                                        "oid": hashlib.sha1(files[f]).hexdigest()}
                                       for f in sorted(files) if not prefix or f.startswith(prefix + "/")])
                data = files.get(r.group(2))
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found")
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.dataset_sha(repo))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return None

            do_GET = _serve
            do_HEAD = _serve
            do_POST = _write

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Handler.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return Handler.endpoint

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
