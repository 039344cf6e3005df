"""What every lab process shares: its environment contract, telemetry and a small HTTP base."""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_ENV = "SRE_SPACE_LAB_TOKEN"  # never on a command line, never logged
PORTS_ENV = "SRE_SPACE_LAB_PORTS"
OTLP_ENV = "SRE_SPACE_LAB_OTLP"
DIR_ENV = "SRE_SPACE_LAB_DIR"
# The supervisor binds every listening socket and hands it down by fd: the port
# never changes across restarts and no other process can grab it in between.
FD_ENV = "SRE_SPACE_LAB_LISTEN_FD"
SUPERVISOR_ENV = "SRE_SPACE_LAB_SUPERVISOR_PID"
INSTANCE_ENV = "SRE_SPACE_LAB_INSTANCE"


def ports() -> dict[str, int]:
    return {k: int(v) for k, v in json.loads(os.environ[PORTS_ENV]).items()}


def lab_dir() -> Path:
    return Path(os.environ[DIR_ENV])


class _OncePerMinute(logging.Filter):
    """Without a receiver the exporter fails every half second; one line a minute is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - self._last.get(key, -60.0) < 60.0:
            return False
        self._last[key] = now
        return True


def quiet_logging(name: str) -> None:
    """Children log to their file (stdout/stderr are redirected there by the supervisor)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(_OncePerMinute())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def exit_with_supervisor() -> None:
    """Exit when the supervisor is gone (even SIGKILLed): no orphan keeps a port or load."""
    # The pid comes from the supervisor itself: had it died before this line ran,
    # os.getppid() would already name our new parent and we would wait forever.
    parent = int(os.environ.get(SUPERVISOR_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def listening_server(handler: type[BaseHTTPRequestHandler]) -> LabServer:
    """The HTTP server on the socket the supervisor bound for this process."""
    sock = socket.socket(fileno=int(os.environ[FD_ENV]))
    server = LabServer(sock.getsockname(), handler, bind_and_activate=False)
    server.socket.close()  # the unbound one the constructor made
    server.socket = sock
    return server


ENVIRONMENT_ENV = "SRE_SPACE_LAB_ENVIRONMENT"


def tracer_provider(service: str, version: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": service,
            # A deploy starts new processes: the release is the process's for life.
            "service.version": version,
            # One per replica: ``payments-1-4242``; the name stays the service's.
            "service.instance.id": f"{os.environ.get(INSTANCE_ENV) or service}-{os.getpid()}",
            "deployment.environment.name": os.environ.get(ENVIRONMENT_ENV) or "lab",
        }
    )
    provider = TracerProvider(resource=resource)
    for endpoint in os.environ[OTLP_ENV].split():  # one exporter per mind (`up --export-to`)
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=2)
        # Short delay: the squad should see spans within a second, not five.
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=500, max_queue_size=8192)
        )
    return provider


def call(
    port: int,
    method: str,
    path: str,
    doc: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """One JSON request to a loopback lab process; raises OSError when it is not there."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps(doc).encode() if doc is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        except http.client.HTTPException as exc:  # a peer that died mid-answer
            raise ConnectionError(f"broken answer from port {port}: {exc!r}") from exc
        try:
            return resp.status, json.loads(raw) if raw else {}
        except ValueError:
            return resp.status, {"raw": raw[:200].decode(errors="replace")}
    finally:
        conn.close()


class LabServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def get_request(self) -> Any:
        try:
            return super().get_request()
        except OSError:
            # A listener shut from outside (the supervisor took it away) polls as
            # ready forever: back off instead of spinning on accept.
            time.sleep(0.2)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that gave up (timeout, restart) is routine here, not a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_json(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def authorized(self) -> bool:
        expected = os.environ.get(TOKEN_ENV, "")
        given = self.headers.get("Authorization", "")
        if expected and hmac.compare_digest(given, f"Bearer {expected}"):
            return True
        self.send_json(401, {"error": "missing or wrong token"})
        return False
