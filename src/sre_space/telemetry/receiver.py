"""The OTLP/HTTP trace receiver (``POST /v1/traces``), per the OTLP specification.

Answers, in the encoding of the request (``application/x-protobuf`` or
``application/json``):

- 200 with an ``ExportTraceServiceResponse``; ``partial_success`` is filled
  (``rejected_spans``, ``error_message``) when some spans were refused, and
  left unset otherwise. An empty request is a success.
- 400 with a ``google.rpc.Status`` (a ``BadRequest`` in ``details``) for a
  payload that cannot be read: not protobuf, not JSON, broken gzip.
- 413 past the body limit, before or after decompression (connection closed).
- 415 for another content type or content coding.
- 503 with ``Retry-After`` when the intake queue is full (retryable).
- 404 for other paths, 405 for other methods, 411 for a body of no length.
- 401 (``WWW-Authenticate: Bearer``) when the receiver has a token and the
  request does not carry ``Authorization: Bearer <token>``. A receiver bound
  anywhere but loopback must have one (see :func:`check_bind`).

``GET /metrics`` answers the mind's metrics (``metrics.py``) in Prometheus's
text format (OpenMetrics when the scraper asks for it). With a token it needs
the token too: a listener has one because it is reachable off loopback, and
the metrics say which incidents are open and what the Fixer did; Prometheus
sends it with ``authorization: {credentials_file: ...}`` in its scrape config.

``POST /api/alerts`` takes Prometheus Alertmanager's (version 4) and
Grafana's webhook notifications into the mind's alert box (``alerts.py``),
with the same token rule and body limit. It answers one line of JSON: 202
once the alerts are stored (the squad works afterwards), 400 for what is not a
notification, 413 past the limit, 415 for another content coding, 401
without the token, 500 only when they could not be stored (Alertmanager
retries that, and never a 4xx); 404 where no mind hosts the listener.

Bodies may come with ``Content-Length`` or chunked; ``Content-Encoding: gzip``
is inflated with the same limit. Connections are kept alive. A bad request
never stops the receiver; at most ``max_connections`` are served at once, and
any more are answered 503 and closed.

This module holds :class:`OtlpHttpReceiver` (start, stop, endpoint) and the
bind rule (:func:`check_bind`); the HTTP server it runs (the connection cap,
the request handler, ``bearer_ok``, ``BadBody``, ``AlertReceiver``, the paths
and content types) is in :mod:`sre_space.telemetry.http_server`, re-exported here.
"""

from __future__ import annotations

import ipaddress
import threading

from sre_space.errors import UsageError
from sre_space.metrics import Metrics
from sre_space.telemetry.http_server import ALERTS_PATH as ALERTS_PATH
from sre_space.telemetry.http_server import IDLE_TIMEOUT_S as IDLE_TIMEOUT_S
from sre_space.telemetry.http_server import JSON as JSON
from sre_space.telemetry.http_server import METRICS_PATH as METRICS_PATH
from sre_space.telemetry.http_server import PROTOBUF as PROTOBUF
from sre_space.telemetry.http_server import SOURCE as SOURCE
from sre_space.telemetry.http_server import TRACES_PATH, _Server
from sre_space.telemetry.http_server import AlertReceiver as AlertReceiver
from sre_space.telemetry.http_server import BadBody as BadBody
from sre_space.telemetry.http_server import bearer_ok as bearer_ok
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.store import TraceStore


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a listener off loopback without a token: its spans drive the Fixer's actions."""
    if not token and not is_loopback(host):
        raise UsageError(
            f"an OTLP receiver on {host} (not loopback) needs a bearer token: "
            "set otlp_token (SRE_SPACE_OTLP_TOKEN)"
        )


class OtlpHttpReceiver:
    """Serves ``POST /v1/traces`` into an :class:`Intake`, and ``GET /metrics``.

    Given a bare :class:`TraceStore`, it makes an intake of its own that is not
    started, so spans reach the store before the response is sent (tests, small
    tools); the mind passes its running intake.
    """

    def __init__(
        self,
        sink: Intake | TraceStore,
        host: str,
        port: int,
        max_body_bytes: int,
        max_connections: int = 256,
        token: str | None = None,
        metrics: Metrics | None = None,
        alerts: AlertReceiver | None = None,
    ) -> None:
        check_bind(host, token)
        self.intake = sink if isinstance(sink, Intake) else Intake(sink)
        # The mind's metrics, or this receiver's own: its intake's counts at least.
        self.metrics = metrics or Metrics()
        self.metrics.watch_intake(self.intake)
        self._server = _Server((host, port))
        self._server.token = token
        self._server.metrics = self.metrics
        self._server.alerts = alerts
        self._server.intake = self.intake
        self._server.max_body_bytes = max_body_bytes
        self._server.max_connections = max_connections
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        host = self._server.server_address[0]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{self.port}{TRACES_PATH}"

    def start(self) -> OtlpHttpReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="otlp-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()
        self._server.close_connections()


__all__ = ["OtlpHttpReceiver"]
