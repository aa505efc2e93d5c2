"""A local HTTP server that plays the Hugging Face Hub and Baidu's Paddle file server in tests."""
from __future__ import annotations

import hashlib
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
        self.commits: dict[str, str] = {}  # path → the commit a Hub file is served from (default COMMIT)
        self.truncate: set[str] = set()
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
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
