"""A tiny token-protected JSON API on loopback, for a running mind.

Other commands (``memory search``, ``status``, the TUI) ask the mind through it
so the mind stays the only process that writes memory.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sre_space.errors import Unavailable
from sre_space.paths import Paths

Route = Callable[[dict[str, str]], Any]


def write_secret(path: Path, value: str) -> None:
    """Write a file only its owner can read (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    os.replace(tmp, path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    token: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, doc: Any) -> None:
        body = json.dumps(doc, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not hmac.compare_digest(auth, f"Bearer {self.server.token}"):
            self._send(401, {"error": "missing or wrong token"})
            return
        url = urllib.parse.urlsplit(self.path)
        route = self.server.routes.get(url.path)
        if route is None:
            self._send(404, {"error": f"no route {url.path}"})
            return
        params = dict(urllib.parse.parse_qsl(url.query))
        try:
            self._send(200, route(params))
        except (ValueError, KeyError) as exc:
            self._send(400, {"error": str(exc)})


class LocalApi:
    def __init__(self, routes: dict[str, Route], token_path: Path, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.routes = routes
        self._server.token = secrets.token_urlsafe(24)
        write_secret(token_path, self._server.token)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> LocalApi:
        threading.Thread(target=self._server.serve_forever, name="mind-api", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def mind_port(paths: Paths) -> int | None:
    """The API port of a live mind on this home, or None."""
    try:
        doc = json.loads(paths.mind_state.read_text())
        os.kill(int(doc["pid"]), 0)
        return int(doc["api_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def get(port: int, token_path: Path, path: str, params: dict[str, Any] | None = None) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}{query}",
        headers={"Authorization": f"Bearer {token_path.read_text().strip()}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"the running mind did not answer on port {port}: {exc}") from None
