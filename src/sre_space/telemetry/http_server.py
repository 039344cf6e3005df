"""The OTLP/HTTP receiver's server: connections, the request handler, wire constants.

:class:`_Server` hands each connection to a :class:`_Handler` thread (at most
``max_connections`` at once; any more are answered 503). :class:`_Handler`
serves ``POST /v1/traces``, ``POST /api/alerts`` and ``GET /metrics`` for
:class:`~sre_space.telemetry.receiver.OtlpHttpReceiver` (whose docstring
lists every answer): it checks the bearer token
(:func:`bearer_ok`), reads the body (``Content-Length`` or chunked, gzip
inflated, :class:`BadBody` past the limit), decodes it and offers it to the
intake. Moved out of :mod:`~sre_space.telemetry.receiver`, which re-exports
these names; the receiver's start, stop and bind rule stay there.
``AlertReceiver`` is the Protocol ``POST /api/alerts`` hands bodies to.
"""

from __future__ import annotations

import contextlib
import email.utils
import hmac
import json
import logging
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from sre_space.metrics import Metrics
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_json, decode_protobuf

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = (PROTOBUF, "application/protobuf")
TRACES_PATH = "/v1/traces"
METRICS_PATH = "/metrics"
ALERTS_PATH = "/api/alerts"
SOURCE = "otlp_http"
IDLE_TIMEOUT_S = 60.0
_EMPTY_OK_PROTO = ExportTraceServiceResponse().SerializeToString()
_EMPTY_OK_JSON = b"{}"

# google.rpc.Code values used in Status bodies (HTTP ignores them; they help a reader)
_RPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 503: 14}


_date_cache: tuple[int, str] = (0, "")


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` value carries ``token`` (always, when there is no token)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class BadBody(Exception):
    """The body cannot be taken: carries the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class AlertReceiver(Protocol):
    """What ``POST /api/alerts`` hands its body to: the mind's ``alerts.AlertBox``.

    A protocol, not an import: alerts sit on the incident log, which telemetry
    (below it) never imports.
    """

    def receive(self, body: bytes) -> tuple[int, dict[str, Any]]: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128
    intake: Intake
    max_body_bytes: int
    max_connections: int
    token: str | None
    metrics: Metrics
    alerts: AlertReceiver | None

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.active: set[socket.socket] = set()
        self.active_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.active_lock:
            full = len(self.active) >= self.max_connections
            if not full:
                self.active.add(request)
        if full:
            self.intake.refuse(SOURCE)
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: "
                    + str(self.intake.retry_after_s).encode()
                    + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A peer that vanished mid-request is not worth a traceback on stderr.
        log.debug("otlp-http: connection from %s failed", client_address, exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        with self.active_lock:
            self.active.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.active_lock:
            conns = list(self.active)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server_version = "sre-space-otlp"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("otlp-http: " + format, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per export would cost more than the export; errors still log

    # --- answers ------------------------------------------------------------------

    def _reply(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        # One write for the head and the body: two small writes would meet
        # Nagle's algorithm and the peer's delayed ACK (milliseconds per export).
        head = [
            f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}",
            f"Date: {_http_date()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        if headers:
            head.extend(f"{k}: {v}" for k, v in headers.items())
        if self.close_connection:
            head.append("Connection: close")
        head.append("\r\n")
        self.wfile.write("\r\n".join(head).encode("latin-1") + body)

    def _status(
        self,
        code: int,
        message: str,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        status = status_pb2.Status(code=_RPC_CODES.get(code, 2), message=message)
        if code == 400:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="body", description=message
                        )
                    ]
                )
            )
            status.details.append(detail)
        if content_type == JSON:
            body = json.dumps(json_format.MessageToDict(status)).encode()
        else:
            body, content_type = status.SerializeToString(), PROTOBUF
        self._reply(code, body, content_type, headers)

    # --- methods ------------------------------------------------------------------

    def do_POST(self) -> None:
        raw_type = self.headers.get("Content-Type") or ""
        content_type = raw_type.split(";", 1)[0].strip().lower()
        reply_type = JSON if content_type == JSON else PROTOBUF
        path = self.path.split("?", 1)[0]
        if path == ALERTS_PATH:
            self._post_alerts()
            return
        intake = self.server.intake
        if not bearer_ok(self.headers.get("Authorization"), self.server.token):
            # Unread body: the stream cannot be reused.
            self.close_connection = True
            self._status(
                401, "missing or wrong bearer token", reply_type, {"WWW-Authenticate": "Bearer"}
            )
            return
        try:
            body = self._read_body()
        except BadBody as exc:
            self.close_connection = True
            if exc.code == 400:
                intake.bad_request(SOURCE)
            self._status(exc.code, str(exc), reply_type)
            return
        except (TimeoutError, OSError):  # the peer stalled or left mid-body
            self.close_connection = True
            return
        if path != TRACES_PATH:
            self._status(
                404, f"unknown path {path[:100]!r}; traces go to {TRACES_PATH}", reply_type
            )
            return
        if content_type not in _PROTOBUF_TYPES and content_type != JSON:
            self._status(
                415,
                f"unsupported content type {content_type[:100]!r}; use {PROTOBUF} or {JSON}",
                reply_type,
            )
            return
        if not intake.has_room():
            intake.refuse(SOURCE)
            self._overloaded(reply_type)
            return
        try:
            body = self._decompress(body)
            decoded = decode_json(body) if content_type == JSON else decode_protobuf(body)
        except BadBody as exc:
            if exc.code == 400:
                intake.bad_request(SOURCE)
            self._status(exc.code, str(exc), reply_type)
            return
        except DecodeFailure as exc:
            intake.bad_request(SOURCE)
            self._status(
                400, str(exc).splitlines()[0][:300] if str(exc) else "bad data", reply_type
            )
            return
        except Exception:  # a decoder bug: say so in the log, answer like bad data
            log.exception("otlp-http: decoding a %s body failed", content_type)
            intake.bad_request(SOURCE)
            self._status(400, "the payload could not be decoded", reply_type)
            return
        if not intake.offer(decoded, SOURCE):
            self._overloaded(reply_type)
            return
        self._reply(200, self._response(decoded, reply_type), reply_type)

    def _json(self, code: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._reply(code, json.dumps(doc).encode(), JSON, headers)

    def _post_alerts(self) -> None:
        """An Alertmanager or Grafana notification: stored, then answered (see alerts.py)."""
        if not bearer_ok(self.headers.get("Authorization"), self.server.token):
            self.close_connection = True  # the body is not read
            self._json(
                401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"}
            )
            return
        try:
            body = self._read_body()
        except BadBody as exc:
            self.close_connection = True
            self.server.metrics.alert("unknown", "refused")
            self._json(exc.code, {"error": str(exc)})
            return
        except (TimeoutError, OSError):  # the peer stalled or left mid-body
            self.close_connection = True
            return
        box = self.server.alerts
        if box is None:
            self._json(404, {"error": "no mind takes alerts on this listener"})
            return
        try:
            body = self._decompress(body)
        except BadBody as exc:
            self.server.metrics.alert("unknown", "refused")
            self._json(exc.code, {"error": str(exc)})
            return
        code, doc = box.receive(body)
        self._json(code, doc)

    def _overloaded(self, reply_type: str) -> None:
        retry = str(self.server.intake.retry_after_s)
        self._status(503, "intake queue is full; retry later", reply_type, {"Retry-After": retry})

    def _not_allowed(self) -> None:
        try:
            self._read_body()
        except (BadBody, OSError):
            self.close_connection = True  # the body was not read: the stream is lost
        self._status(
            405, f"method {self.command} not allowed; use POST", PROTOBUF, {"Allow": "POST"}
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._not_allowed()
            return
        try:
            self._read_body()  # a GET may carry one; read it so the connection stays usable
        except (BadBody, OSError):
            self.close_connection = True
        if not bearer_ok(self.headers.get("Authorization"), self.server.token):
            self._reply(
                401,
                b"missing or wrong bearer token\n",
                "text/plain; charset=utf-8",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        try:
            body, content_type = self.server.metrics.exposition(self.headers.get("Accept"))
        except Exception:  # a collector failed (the incident log unreadable): say so, go on
            log.exception("otlp-http: rendering /metrics failed")
            self._reply(500, b"metrics unavailable\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def do_HEAD(self) -> None:
        self._reply(405, b"", PROTOBUF, {"Allow": "POST"})

    # --- body -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.command == "POST":
                raise BadBody(411, "a body needs Content-Length or chunked Transfer-Encoding")
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BadBody(400, f"bad Content-Length {raw[:40]!r}") from None
        if length < 0:
            raise BadBody(400, f"bad Content-Length {raw[:40]!r}")
        if length > limit:
            raise BadBody(413, f"body of {length} bytes exceeds the limit of {limit}")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadBody(400, "body ended before Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            if not line.endswith(b"\n"):
                raise BadBody(400, "bad chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadBody(400, "bad chunk size") from None
            if size < 0:
                raise BadBody(400, "bad chunk size")
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.rfile.readline(8194)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            total += size
            if total > limit:
                raise BadBody(413, f"body exceeds the limit of {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadBody(400, "truncated chunk")
            parts.append(chunk)

    def _decompress(self, body: bytes) -> bytes:
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise BadBody(415, f"unsupported Content-Encoding {encoding[:40]!r}; use gzip")
        limit = self.server.max_body_bytes
        d = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
        try:
            # Cap the inflated size too, so a small bomb cannot exhaust memory.
            out = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BadBody(400, f"invalid {encoding} body: {exc}") from None
        if len(out) > limit:
            raise BadBody(413, f"decompressed body exceeds the limit of {limit} bytes")
        if not d.eof:
            raise BadBody(400, f"truncated {encoding} body")
        return out

    @staticmethod
    def _response(decoded: Decoded, reply_type: str) -> bytes:
        if not decoded.rejected:
            return _EMPTY_OK_JSON if reply_type == JSON else _EMPTY_OK_PROTO
        resp = ExportTraceServiceResponse()
        resp.partial_success.rejected_spans = decoded.rejected
        resp.partial_success.error_message = decoded.message
        if reply_type == JSON:
            return json.dumps(json_format.MessageToDict(resp)).encode()
        return bytes(resp.SerializeToString())
