"""The fault classifier on real libraries' messages, in the formats their sources raise.

Where the library is installed here, the message is produced by raising the
real exception (SQLAlchemy's QueuePool, httpx against a closed port, a socket
that times out); elsewhere the format is the one in the library's source.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy.pool import QueuePool

from sre_space.rca.classify import (
    FAULT_CLASSES,
    classify_exception,
    classify_message,
    classify_span,
    classify_status,
)
from sre_space.safe_text import message_template
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.vocabulary import describe

# (exception.type as OpenTelemetry records it, exception.message, class)
CATALOGUE = [
    # Python: SQLAlchemy, psycopg, requests/urllib3, httpx, redis, builtins
    (
        "sqlalchemy.exc.TimeoutError",
        "QueuePool limit of size 20 overflow 0 reached, connection timed out, timeout 30.00 "
        "(Background on this error at: https://sqlalche.me/e/20/3o7r)",
        "saturation",
    ),
    ("sqlalchemy.exc.TimeoutError", "", "saturation"),
    ("psycopg_pool.PoolTimeout", "couldn't get a connection after 30.00 sec", "saturation"),
    ("psycopg.errors.TooManyConnections", "sorry, too many clients already", "saturation"),
    (
        "psycopg.OperationalError",
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
        "connections?",
        "unreachable",
    ),
    (
        "psycopg.OperationalError",
        "consuming input failed: server closed the connection unexpectedly\n\tThis probably "
        "means the server terminated abnormally",
        "unreachable",
    ),
    (
        "psycopg.errors.QueryCanceled",
        "canceling statement due to statement timeout",
        "timeout",
    ),
    (
        "requests.exceptions.ConnectionError",
        "HTTPConnectionPool(host='localhost', port=8080): Max retries exceeded with url: /pay "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at "
        "0x7f3a2c1d0e50>: Failed to establish a new connection: [Errno 111] Connection refused'))",
        "unreachable",
    ),
    (
        "requests.exceptions.ReadTimeout",
        "HTTPConnectionPool(host='localhost', port=8080): Read timed out. (read timeout=2)",
        "timeout",
    ),
    (
        "requests.exceptions.ConnectTimeout",
        "HTTPConnectionPool(host='10.0.0.1', port=80): Max retries exceeded with url: / (Caused "
        "by ConnectTimeoutError(<urllib3.connection.HTTPConnection object at 0x7f3a2c1d0e50>, "
        "'Connection to 10.0.0.1 timed out. (connect timeout=3)'))",
        "unreachable",
    ),
    ("urllib3.exceptions.ReadTimeoutError", "Read timed out.", "timeout"),
    ("httpx.ReadTimeout", "timed out", "timeout"),
    ("httpx.ReadTimeout", "", "timeout"),
    ("httpx.WriteTimeout", "", "timeout"),
    ("httpx.ConnectTimeout", "timed out", "unreachable"),
    ("httpx.ConnectError", "[Errno 111] Connection refused", "unreachable"),
    ("httpx.ConnectError", "All connection attempts failed", "unreachable"),
    ("httpx.ConnectError", "[Errno -2] Name or service not known", "unreachable"),
    (
        "httpx.RemoteProtocolError",
        "Server disconnected without sending a response.",
        "unreachable",
    ),
    ("httpx.ReadError", "", "unreachable"),
    ("httpx.PoolTimeout", "", "saturation"),
    (
        "redis.exceptions.ConnectionError",
        "Error 111 connecting to localhost:6379. Connection refused.",
        "unreachable",
    ),
    ("redis.exceptions.TimeoutError", "Timeout reading from socket", "timeout"),
    ("redis.exceptions.ConnectionError", "Too many connections", "saturation"),
    (
        "redis.exceptions.OutOfMemoryError",
        "command not allowed when used memory > 'maxmemory'.",
        "memory",
    ),
    ("TimeoutError", "timed out", "timeout"),
    ("TimeoutError", "", "timeout"),
    ("ConnectionRefusedError", "[Errno 111] Connection refused", "unreachable"),
    ("ConnectionResetError", "[Errno 104] Connection reset by peer", "unreachable"),
    ("BrokenPipeError", "[Errno 32] Broken pipe", "unreachable"),
    ("socket.gaierror", "[Errno -3] Temporary failure in name resolution", "unreachable"),
    ("OSError", "[Errno 113] No route to host", "unreachable"),
    ("MemoryError", "", "memory"),
    ("KeyError", "'sku-42'", "error"),
    ("KeyError", "'timeout'", "error"),  # a missing key, whatever it is called
    ("ValueError", "invalid literal for int() with base 10: 'x'", "error"),
    # Java
    (
        "java.sql.SQLTransientConnectionException",
        "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
        "saturation",
    ),
    ("java.net.SocketTimeoutException", "Read timed out", "timeout"),
    ("java.net.SocketTimeoutException", "connect timed out", "unreachable"),
    ("java.net.ConnectException", "Connection refused", "unreachable"),
    ("java.net.ConnectException", "Connection refused (Connection refused)", "unreachable"),
    ("java.net.UnknownHostException", "db.internal", "unreachable"),
    ("java.net.SocketException", "Connection reset", "unreachable"),
    ("java.lang.OutOfMemoryError", "Java heap space", "memory"),
    ("java.lang.OutOfMemoryError", "GC overhead limit exceeded", "memory"),
    (
        "java.util.concurrent.RejectedExecutionException",
        "Task java.util.concurrent.FutureTask@5e9f23b4 rejected from "
        "java.util.concurrent.ThreadPoolExecutor@4783da3f[Running, pool size = 10, active "
        "threads = 10, queued tasks = 100, completed tasks = 912]",
        "saturation",
    ),
    ("java.util.concurrent.TimeoutException", "", "timeout"),
    (
        "org.springframework.web.client.ResourceAccessException",
        'I/O error on GET request for "http://stock:8080/items": Connection refused',
        "unreachable",
    ),
    ("java.lang.NullPointerException", "", "error"),
    ("java.lang.IllegalStateException", "order already shipped", "error"),
    (
        "io.grpc.StatusRuntimeException",
        "DEADLINE_EXCEEDED: deadline exceeded after 4.999870263s",
        "timeout",
    ),
    ("io.grpc.StatusRuntimeException", "UNAVAILABLE: io exception", "unreachable"),
    (
        "io.grpc.StatusRuntimeException",
        "RESOURCE_EXHAUSTED: gRPC message exceeds maximum size",
        "saturation",
    ),
    # Go (error strings; the type is often *url.Error or *errors.errorString)
    ("*url.Error", 'Get "http://pay:8080/charge": context deadline exceeded', "timeout"),
    ("", "context deadline exceeded", "timeout"),
    ("*net.OpError", "dial tcp 10.0.0.1:5432: connect: connection refused", "unreachable"),
    ("*net.OpError", "read tcp 10.0.0.2:51234->10.0.0.1:5432: i/o timeout", "timeout"),
    ("*net.OpError", "dial tcp 10.0.0.1:5432: i/o timeout", "unreachable"),
    ("*net.DNSError", "lookup db.internal on 10.0.0.2:53: no such host", "unreachable"),
    (
        "*url.Error",
        'Get "http://pay:8080/": net/http: request canceled (Client.Timeout exceeded while '
        "awaiting headers)",
        "timeout",
    ),
    ("", "read tcp 10.0.0.2:51234->10.0.0.1:80: read: connection reset by peer", "unreachable"),
    ("", "rpc error: code = Unavailable desc = connection error", "unreachable"),
    ("", "rpc error: code = DeadlineExceeded desc = context deadline exceeded", "timeout"),
    ("", "rpc error: code = ResourceExhausted desc = too many requests", "saturation"),
    ("", "fatal error: runtime: out of memory", "memory"),
    # Node
    ("Error", "connect ECONNREFUSED 127.0.0.1:3000", "unreachable"),
    ("Error", "connect ETIMEDOUT 10.0.0.1:443", "unreachable"),
    ("Error", "ETIMEDOUT", "timeout"),
    ("Error", "read ECONNRESET", "unreachable"),
    ("Error", "socket hang up", "unreachable"),
    ("Error", "getaddrinfo ENOTFOUND payments.internal", "unreachable"),
    (
        "",
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "memory",
    ),
    ("Error", "EMFILE: too many open files, open '/tmp/x'", "saturation"),
    # Python gRPC
    ("grpc.RpcError", "StatusCode.UNAVAILABLE: failed to connect to all addresses", "unreachable"),
    ("grpc.RpcError", "StatusCode.DEADLINE_EXCEEDED: Deadline Exceeded", "timeout"),
    ("grpc.RpcError", "StatusCode.RESOURCE_EXHAUSTED: Bandwidth exhausted", "saturation"),
    # HTTP clients that raise on status
    (
        "httpx.HTTPStatusError",
        "Server error '503 Service Unavailable' for url 'http://pay:8080/charge'",
        "unreachable",
    ),
    (
        "httpx.HTTPStatusError",
        "Server error '504 Gateway Timeout' for url 'http://pay:8080/charge'",
        "timeout",
    ),
    (
        "httpx.HTTPStatusError",
        "Client error '429 Too Many Requests' for url 'http://pay:8080/charge'",
        "saturation",
    ),
    (
        "httpx.HTTPStatusError",
        "Server error '500 Internal Server Error' for url 'http://pay:8080/charge'",
        "error",
    ),
    ("requests.exceptions.HTTPError", "502 Server Error: Bad Gateway for url: /x", "unreachable"),
]


def test_vocabulary_is_exactly_the_seven_classes() -> None:
    assert FAULT_CLASSES == (
        "saturation",
        "timeout",
        "unreachable",
        "error",
        "latency",
        "cpu",
        "memory",
    )
    assert all(describe(c) != c for c in FAULT_CLASSES)


@pytest.mark.parametrize(("exc_type", "message", "expected"), CATALOGUE)
def test_real_library_messages(exc_type: str, message: str, expected: str) -> None:
    assert classify_exception(exc_type, message) == expected
    span = _failed(events=[_exception(exc_type, message)])
    assert classify_span(span) == expected


def _exception(exc_type: str, message: str) -> SpanEvent:
    attrs = {"exception.type": exc_type, "exception.message": message}
    return SpanEvent("exception", 1, {k: v for k, v in attrs.items() if v})


def _failed(
    *, events: list[SpanEvent] | None = None, attributes: dict[str, object] | None = None
) -> Span:
    return Span(
        "a" * 32,
        "b" * 16,
        None,
        "svc",
        "op",
        0,
        1,
        SpanKind.CLIENT,
        error=True,
        events=events,
        attributes=dict(attributes or {}),
    )


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"rpc.grpc.status_code": 14}, "unreachable"),
        ({"rpc.grpc.status_code": 4}, "timeout"),
        ({"rpc.grpc.status_code": 8}, "saturation"),
        ({"rpc.grpc.status_code": 13}, "error"),
        ({"http.response.status_code": 429}, "saturation"),
        ({"http.response.status_code": 502}, "unreachable"),
        ({"http.response.status_code": 503}, "unreachable"),
        ({"http.response.status_code": 504}, "timeout"),
        ({"http.response.status_code": 500}, "error"),
        ({"http.status_code": "504"}, "timeout"),
        ({"error.type": "500"}, "error"),
        ({"error.type": "timeout"}, "timeout"),
        ({"error.type": "java.net.UnknownHostException"}, "unreachable"),
        ({"error.type": "_OTHER"}, "error"),
        ({}, "error"),
        # the exception is more specific than the status code it ended in
        ({"http.response.status_code": 500, "error.type": "ReadTimeout"}, "timeout"),
    ],
)
def test_semantic_convention_attributes(attributes: dict[str, object], expected: str) -> None:
    assert classify_span(_failed(attributes=attributes)) == expected


def test_a_span_that_did_not_fail_has_no_class() -> None:
    ok = Span("a" * 32, "b" * 16, None, "svc", "op", 0, 1, SpanKind.SERVER)
    assert classify_span(ok) is None
    assert classify_message("") is None
    assert classify_message("order 7 shipped") is None
    assert classify_status(http=200) is None and classify_status(http=404) is None


def test_status_in_text() -> None:
    assert classify_message("HTTP 503") == "unreachable"
    assert classify_message("HTTP 500") == "error"
    assert classify_message("HTTP 429") == "saturation"


def _type_name(exc: BaseException) -> str:
    """``exception.type`` as the OpenTelemetry SDK records it."""
    module, name = type(exc).__module__, type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"


def _raised(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except Exception as exc:  # the exception is the result
        return exc
    raise AssertionError("did not raise")


def test_real_sqlalchemy_pool_timeout_is_saturation() -> None:
    pool = QueuePool(lambda: sqlalchemy.create_engine("sqlite://").raw_connection(), pool_size=1,
                     max_overflow=0, timeout=0.01)  # fmt: skip
    held = pool.connect()
    try:
        exc = _raised(pool.connect)
    finally:
        held.close()
    assert isinstance(exc, sqlalchemy.exc.TimeoutError)
    assert "QueuePool limit" in str(exc)
    assert classify_exception(_type_name(exc), str(exc)) == "saturation"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_httpx_connect_error_and_read_timeout() -> None:
    port = _closed_port()
    refused = _raised(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2))
    assert isinstance(refused, httpx.ConnectError)
    assert classify_exception(_type_name(refused), str(refused)) == "unreachable"

    # A server that accepts and never answers: the caller's read times out.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        done.wait(10)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        hung = _raised(lambda: httpx.get(url, timeout=httpx.Timeout(5.0, read=0.2)))
    finally:
        done.set()
        t.join(10)
        for conn in accepted:
            conn.close()
        server.close()
    assert isinstance(hung, httpx.ReadTimeout)
    assert classify_exception(_type_name(hung), str(hung)) == "timeout"


def test_real_builtin_socket_errors() -> None:
    port = _closed_port()

    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=2)

    refused = _raised(connect)
    assert isinstance(refused, ConnectionRefusedError)
    assert classify_exception(_type_name(refused), str(refused)) == "unreachable"
    missing = _raised(lambda: {}["sku"])
    assert classify_exception(_type_name(missing), str(missing)) == "error"


def test_message_template_masks_numbers_and_strips_control_characters() -> None:
    raw = "HikariPool-1 - Connection is not available, request timed out after 30000ms.\x1b[31m\r\n"
    template = message_template(raw)
    assert "\x1b" not in template and "\r" not in template and "\n" not in template
    assert "<n>" in template and "30000" not in template


def _ours(sdk_span: ReadableSpan) -> Span:
    """An OpenTelemetry SDK span as the localiser reads it (what OTLP would carry)."""
    ctx = sdk_span.context
    assert ctx is not None
    return Span(
        f"{ctx.trace_id:032x}",
        f"{ctx.span_id:016x}",
        None,
        "caller",
        sdk_span.name,
        sdk_span.start_time or 0,
        sdk_span.end_time or 0,
        SpanKind(int(sdk_span.kind.value) + 1),
        error=sdk_span.status.status_code == StatusCode.ERROR,
        attributes=dict(sdk_span.attributes or {}),
        events=[SpanEvent(e.name, e.timestamp, dict(e.attributes or {})) for e in sdk_span.events],
    )


def test_spans_of_the_real_httpx_instrumentation_classify() -> None:
    """OpenTelemetry's httpx instrumentation records the failures; the class comes out right."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        done.wait(10)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    client = httpx.Client(timeout=httpx.Timeout(5.0, read=0.2))
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    try:
        for url in (
            f"http://127.0.0.1:{server.getsockname()[1]}/charge",  # accepts, never answers
            f"http://127.0.0.1:{_closed_port()}/reserve",  # refuses
        ):
            with contextlib.suppress(httpx.HTTPError):
                client.get(url)
    finally:
        HTTPXClientInstrumentor.uninstrument_client(client)
        client.close()
        done.set()
        t.join(10)
        for conn in accepted:
            conn.close()
        server.close()
    hung, refused = (_ours(s) for s in exporter.get_finished_spans())
    assert hung.kind == SpanKind.CLIENT and hung.error
    assert classify_span(hung) == "timeout"
    assert classify_span(refused) == "unreachable"
