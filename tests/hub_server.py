"""A local stand-in for the Hugging Face Hub, for tests (the real Hub is unreachable here).

It speaks the subset of the Hub's HTTP API that ``huggingface_hub`` uses to read files:
``HEAD``/``GET {endpoint}/{repo}/resolve/{revision}/{path}`` (with ``Range`` for safetensors and GGUF headers;
``bytes_served`` counts what each file cost),
``GET /api/models/{repo}[/revision/{rev}]`` (file listing with sizes, as ``?blobs=true`` gives), and the error
codes the client maps to exceptions (``X-Error-Code: RepoNotFound | GatedRepo | EntryNotFound``).
Tests point the real client at it with ``HF_ENDPOINT``.
"""

from __future__ import annotations

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

            def _serve(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
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

            do_GET = _serve
            do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
