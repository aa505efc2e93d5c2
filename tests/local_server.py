"""A local HTTP server that plays the Hugging Face Hub and Baidu's Paddle file server in tests.

Downloads: GET/HEAD of any stored path (``/{repo}/resolve/main/{file}`` for the Hub). Uploads, as
``huggingface_hub.HfApi.create_repo`` and ``upload_folder`` (huggingface_hub 2.4) call them:
``POST /api/repos/create``, ``POST /api/validate-yaml`` (the README's metadata, checked with huggingface_hub's own
parser), ``POST /api/models/{repo}/preupload/{rev}`` and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON). Every
file is answered ``uploadMode: "regular"`` (its bytes travel base64 in the commit), a mode the real Hub uses for small
files; for large binaries it answers ``lfs``, which huggingface_hub then sends through Xet storage, a protocol this
server does not play. Committed files are stored and served at ``/{repo}/resolve/{rev}/{path}``. Write requests
need an ``Authorization: Bearer`` header, as on the Hub.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LocalServer:
    """Serve byte blobs at paths. ``truncate`` paths send half the body under a full Content-Length;
    ``delay`` slows every response chunk (to make concurrent downloads overlap)."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self.repos: set[str] = set()  # created through the API
        self.uploads: list[dict] = []  # each commit made through the API: its header and paths
        self.commits: dict[str, str] = {}  # path → the commit a Hub file is served from (default COMMIT)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _head(self) -> bytes | None:
                path = self.path.split("?")[0]
                server.requests.append((self.command, path))
                body = server.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", server.commits.get(path, LocalServer.COMMIT))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_POST(self):
                path = self.path.split("?")[0]
                server.requests.append(("POST", path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    return self._json(401, {"error": "Invalid credentials"})
                status, answer = server.api(path, body)
                self._json(status, answer)

            def _json(self, status: int, answer: dict):
                data = json.dumps(answer).encode()
                self.send_response(status)
                if status == 404:
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                body = self._head()
                if body is None:
                    return
                if self.path.split("?")[0] in server.truncate:
                    body = body[: len(body) // 2]
                for i in range(0, len(body), 1 << 16):
                    if server.delay:
                        time.sleep(server.delay)
                    self.wfile.write(body[i: i + (1 << 16)])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- the Hub's upload API ---------------------------------------------------------------------------------------

    def api(self, path: str, body: bytes) -> tuple[int, dict]:
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo}"}
            self.repos.add(repo)
            return 200, {"url": f"{self.url}/{repo}", "name": repo}
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body)["content"])
        found = re.fullmatch(r"/api/models/(.+)/(preupload|commit)/([^/]+)", path)
        if found is None:
            return 404, {"error": f"no such endpoint {path}"}
        repo, action, rev = found.groups()
        if repo not in self.repos:
            return 404, {"error": f"Repository not found: {repo}"}
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files], "commitOid": self.COMMIT}
        return self._commit(repo, rev, body)

    def _commit(self, repo: str, rev: str, body: bytes) -> tuple[int, dict]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), None)
        if header is None:
            return 400, {"error": "commit without a header"}
        stored = []
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                if value.get("encoding") != "base64":
                    return 400, {"error": f"unsupported encoding {value.get('encoding')!r}"}
                self.files[f"/{repo}/resolve/{rev}/{value['path']}"] = base64.b64decode(value["content"])
                stored.append(value["path"])
            elif item["key"] != "header":
                return 400, {"error": f"this server takes regular files only, got {item['key']!r}"}
        self.uploads.append({"repo": repo, "summary": header.get("summary"), "paths": stored})
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{self.COMMIT}", "commitOid": self.COMMIT,
                     "success": True}

    @staticmethod
    def _validate_yaml(content: str) -> tuple[int, dict]:
        """The README's metadata as the Hub checks it: a YAML mapping, and a model-index huggingface_hub can read."""
        from huggingface_hub import ModelCard

        try:
            card = ModelCard(content, ignore_metadata_errors=False)
        except Exception as e:  # noqa: BLE001 - any parse failure is the client's error
            return 400, {"errors": [{"message": f"{type(e).__name__}: {e}"}]}
        if "model-index" in card.data.to_dict() and not card.data.eval_results:
            return 400, {"errors": [{"message": "model-index has no readable results"}]}
        return 200, {"errors": [], "warnings": []}

    def add_hub_repo(self, repo_id: str, folder: Path, commit: str | None = None) -> None:
        """Serve ``folder``'s files as Hub repo ``repo_id``, at ``main`` and at ``commit`` (default :attr:`COMMIT`)."""
        commit = commit or self.COMMIT
        for f in Path(folder).iterdir():
            if f.is_file():
                for revision in ("main", commit):
                    path = f"/{repo_id}/resolve/{revision}/{f.name}"
                    self.files[path] = f.read_bytes()
                    self.commits[path] = commit

    def requested(self, prefix: str = "/") -> list[str]:
        """The paths requested so far (HEAD or GET) that start with ``prefix``."""
        return [p for _, p in self.requests if p.startswith(prefix)]

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
