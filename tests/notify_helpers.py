"""A real HTTP server on 127.0.0.1 standing in for Slack, PagerDuty or a webhook receiver.

It records every request (its time, path, headers and body) and answers as its
``answer`` function says: a status, headers and a body per request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]
OK: Reply = (200, {}, b"ok")


@dataclass
class Request:
    at: float  # time.time() when the server read it
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the server answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    url: str
    answer: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def answered(self, status_class: int = 2) -> list[Request]:
        return [r for r in self.got() if r.status // 100 == status_class]


def script(*replies: Reply, then: Reply = OK) -> Callable[[Request], Reply]:
    """Answers in this order, then ``then`` for ever."""
    left = list(replies)
    lock = threading.Lock()

    def answer(_: Request) -> Reply:
        with lock:
            return left.pop(0) if left else then

    return answer


@contextmanager
def recorder(answer: Callable[[Request], Reply] | None = None) -> Iterator[Recorder]:
    rec = Recorder("", answer or script())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size)
            request = Request(time.time(), self.path, dict(self.headers.items()), body, 0)
            status, headers, reply = rec.answer(request)
            request.status = status
            with rec.lock:
                rec.requests.append(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
