"""The OTLP/HTTP trace receiver (``POST /v1/traces``), per the OTLP specification.

Answers: 200 with an ExportTraceServiceResponse (``partial_success`` filled when
spans were rejected); 400 with a ``google.rpc.Status`` body for data that cannot
be read; 413 past the body limit; 415 for other content types; 404 elsewhere.
A bad request never stops the receiver.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_json, decode_protobuf
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    store: TraceStore
    max_body_bytes: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("otlp: " + format, *args)

    def _reply(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, message: str, content_type: str) -> None:
        status = status_pb2.Status(code=3 if code == 400 else 0, message=message)
        if content_type == JSON:
            body = json_format.MessageToJson(status).encode()
        else:
            body, content_type = status.SerializeToString(), PROTOBUF
        self._reply(code, body, content_type)

    def do_POST(self) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        reply_type = JSON if content_type == JSON else PROTOBUF
        if self.path.split("?")[0] != "/v1/traces":
            self._drain()
            self._status(404, f"unknown path {self.path[:100]}", reply_type)
            return
        length = self._content_length()
        if length is None:
            self._status(400, "missing or bad Content-Length", reply_type)
            self.close_connection = True
            return
        if length > self.server.max_body_bytes:
            self._status(
                413, f"body of {length} bytes exceeds {self.server.max_body_bytes}", reply_type
            )
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if content_type not in (PROTOBUF, JSON):
            self._status(415, f"unsupported content type {content_type!r}", reply_type)
            return
        try:
            body = self._decompress(body)
            decoded = decode_json(body) if content_type == JSON else decode_protobuf(body)
        except (DecodeFailure, OSError, EOFError, zlib.error, ValueError) as exc:
            self._status(400, str(exc).splitlines()[0][:300], reply_type)
            return
        store = self.server.store
        if decoded.rejected:
            store.count_rejected(decoded.rejected)
        store.add(decoded.spans)
        self._reply(200, self._response(decoded, reply_type), reply_type)

    def _drain(self) -> None:
        length = self._content_length()
        if length and length <= self.server.max_body_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _decompress(self, body: bytes) -> bytes:
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        if encoding == "gzip":
            # Cap the inflated size too, so a small bomb cannot exhaust memory.
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(body, self.server.max_body_bytes + 1)
            if len(out) > self.server.max_body_bytes:
                raise ValueError("decompressed body exceeds the size limit")
            return out
        if encoding in ("", "identity"):
            return body
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    @staticmethod
    def _response(decoded: Decoded, reply_type: str) -> bytes:
        resp = ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = "; ".join(decoded.reasons)
        if reply_type == JSON:
            return json.dumps(json_format.MessageToDict(resp)).encode()
        return bytes(resp.SerializeToString())


class OtlpHttpReceiver:
    def __init__(self, store: TraceStore, host: str, port: int, max_body_bytes: int) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.store = store
        self._server.max_body_bytes = max_body_bytes
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OtlpHttpReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


__all__ = ["OtlpHttpReceiver"]
