"""Fault classes a person recognises, read from standards and real libraries' messages.

The classes are the vocabulary's (:data:`sre_space.vocabulary.FAULT_CLASSES`, one
vocabulary for the Brain, the runbook and memory); what each covers here:

=========== ==============================================================
saturation  a pool, queue or set of threads ran out (waits, then refusals)
timeout     the callee accepted the call but did not answer in time
unreachable the callee could not be reached: refused, reset, DNS, no route
error       the service's own exceptions and 5xx (e.g. after a release)
latency     slow own work
cpu         own work slower on every operation of one service
memory      out of memory, OOM kills
=========== ==============================================================

A failed span is read through OpenTelemetry's semantic conventions: its
``exception`` events (``exception.type``, ``exception.message``), then
``error.type``, the status message, ``rpc.grpc.status_code`` and
``http.response.status_code`` (or the older ``http.status_code``). Text is
matched against a catalogue of the messages real libraries raise (Python,
Java, Go, Node, gRPC, HTTP), most specific first: a pool that timed out
handing out a connection is *saturation*, not *timeout*, although its message
says "timed out"; a connect that timed out never reached the callee, so it is
*unreachable*. ``latency`` and ``cpu`` carry no message: the localiser names
them from where time was spent.
"""

from __future__ import annotations

import re
from typing import Final

from sre_space.safe_text import CONTROL_BUT_TAB_NEWLINE
from sre_space.telemetry.model import Span
from sre_space.vocabulary import FAULT_CLASSES as FAULT_CLASSES  # re-exported: scripts read it here
from sre_space.vocabulary import TIMEOUT, UNREACHABLE, FaultClass

# Failures that say the *callee* did not answer: on a call out, they blame it.
CALLEE_CLASSES: Final[frozenset[str]] = frozenset({TIMEOUT, UNREACHABLE})

_I = re.IGNORECASE

# (class, pattern), most specific first: the first match decides.
_CATALOGUE: Final[list[tuple[FaultClass, re.Pattern[str]]]] = [
    # --- memory
    ("memory", re.compile(r"\bMemoryError\b|OutOfMemory|out of memory|\bOOM\b", _I)),
    ("memory", re.compile(r"Java heap space|GC overhead limit|heap limit|Cannot allocate memory")),
    ("memory", re.compile(r"\bENOMEM\b|memory limit exceeded|OOMKilled", _I)),
    # --- saturation: pools, queues, threads, rate limits
    # SQLAlchemy: "QueuePool limit of size 5 overflow 10 reached, connection timed out,
    # timeout 30.00"; its exc.TimeoutError is raised for nothing else.
    ("saturation", re.compile(r"QueuePool limit|sqlalchemy\.exc\.TimeoutError")),
    # HikariCP: "HikariPool-1 - Connection is not available, request timed out after 30000ms."
    ("saturation", re.compile(r"Connection is not available, request timed out|HikariPool")),
    ("saturation", re.compile(r"SQLTransientConnectionException")),
    # httpx.PoolTimeout, psycopg_pool.PoolTimeout ("couldn't get a connection after 30.00 sec"),
    # Apache HttpClient ConnectionPoolTimeoutException, urllib3 EmptyPoolError.
    ("saturation", re.compile(r"PoolTimeout|couldn't get a connection after", _I)),
    ("saturation", re.compile(r"Timeout waiting for (a )?connection from pool", _I)),
    ("saturation", re.compile(r"EmptyPoolError|Pool reached maximum size", _I)),
    (
        "saturation",
        re.compile(
            r"\b(pool|connections?|threads?|workers?|resources?) (are |is |was )?exhausted", _I
        ),
    ),
    ("saturation", re.compile(r"\bpool (is )?(full|exhausted)\b|pool limit", _I)),
    # Postgres: "sorry, too many clients already"; redis "Too many connections";
    # "Too many open files" (EMFILE); HTTP 429 "Too Many Requests".
    ("saturation", re.compile(r"too many (clients|connections|requests|open files)", _I)),
    ("saturation", re.compile(r"remaining connection slots are reserved|\bEMFILE\b", _I)),
    # Java executors: "Task ... rejected from java.util.concurrent.ThreadPoolExecutor@..."
    ("saturation", re.compile(r"RejectedExecution|rejected from .*Executor|BulkheadFull", _I)),
    ("saturation", re.compile(r"\bqueue (is )?full\b|queue\.Full\b", _I)),
    # gRPC RESOURCE_EXHAUSTED (Python StatusCode.RESOURCE_EXHAUSTED, Go codes.ResourceExhausted)
    ("saturation", re.compile(r"RESOURCE_EXHAUSTED|ResourceExhausted|resource exhausted", _I)),
    ("saturation", re.compile(r"\bRateLimit|rate limit(ed)? exceeded", _I)),
    # --- unreachable, where a timeout happened while connecting: the callee never took the call
    # httpx.ConnectTimeout; Java "connect timed out"; urllib3 "(connect timeout=3)";
    # Go "dial tcp 10.0.0.1:443: i/o timeout"; Node "connect ETIMEDOUT 10.0.0.1:443".
    ("unreachable", re.compile(r"ConnectTimeout|connect timed out|connect timeout=", _I)),
    ("unreachable", re.compile(r"dial tcp[^:]*(:\d+)?: i/o timeout|connect ETIMEDOUT", _I)),
    ("unreachable", re.compile(r"ConnectTimeoutException|HttpConnectTimeoutException", _I)),
    # --- unreachable: refused, reset, name resolution, routing, a dropped connection
    ("unreachable", re.compile(r"refused|ECONNREFUSED", _I)),
    ("unreachable", re.compile(r"connection reset|reset by peer|ECONNRESET|socket hang up", _I)),
    ("unreachable", re.compile(r"broken pipe|\bEPIPE\b", _I)),
    (
        "unreachable",
        re.compile(
            r"no such host|ENOTFOUND|EAI_AGAIN|Name or service not known|nodename nor servname"
            r"|name resolution|UnknownHostException|could not translate host name"
            r"|getaddrinfo failed|NameResolutionError|gaierror",
            _I,
        ),
    ),
    (
        "unreachable",
        re.compile(
            r"no route to host|EHOSTUNREACH|network is unreachable|ENETUNREACH"
            r"|host unreachable|NoRouteToHost",
            _I,
        ),
    ),
    # httpx/httpcore: RemoteProtocolError "Server disconnected without sending a response.",
    # ConnectError, ReadError; psycopg "server closed the connection unexpectedly";
    # requests ConnectionError "Failed to establish a new connection"; MySQL Connector/J.
    (
        "unreachable",
        re.compile(
            r"Server disconnected|server closed the connection|RemoteProtocolError"
            r"|Failed to establish a new connection|NewConnectionError"
            r"|Communications link failure|All connection attempts failed",
            _I,
        ),
    ),
    ("unreachable", re.compile(r"\b(ConnectError|ConnectException|ConnectionError)\b", _I)),
    ("unreachable", re.compile(r"\bhttpx\.(ReadError|WriteError|CloseError)\b")),
    # gRPC UNAVAILABLE; HTTP 502 and 503 (a gateway with no healthy upstream)
    ("unreachable", re.compile(r"\bUNAVAILABLE\b|code = Unavailable")),
    ("unreachable", re.compile(r"Bad Gateway|Service Unavailable", _I)),
    # --- timeout: the call was taken and not answered in time
    # requests/urllib3 "Read timed out. (read timeout=5)"; Java SocketTimeoutException
    # "Read timed out"; builtins "TimeoutError: timed out"; httpx.ReadTimeout/WriteTimeout.
    ("timeout", re.compile(r"timed out|time-?out|TimeoutError|TimeoutException", _I)),
    # Go "context deadline exceeded", "Client.Timeout exceeded", "read tcp ...: i/o timeout";
    # gRPC DEADLINE_EXCEEDED; Node ETIMEDOUT/ESOCKETTIMEDOUT; psycopg statement timeout.
    ("timeout", re.compile(r"deadline exceeded|DEADLINE_EXCEEDED|DeadlineExceeded", _I)),
    ("timeout", re.compile(r"i/o timeout|\bE(SOCKET)?TIMEDOUT\b|statement timeout", _I)),
    ("timeout", re.compile(r"Gateway Time-?out", _I)),
]

# gRPC status codes (grpc.StatusCode numbering) that name a class.
GRPC_CLASSES: Final[dict[int, FaultClass]] = {
    4: "timeout",  # DEADLINE_EXCEEDED
    8: "saturation",  # RESOURCE_EXHAUSTED
    14: "unreachable",  # UNAVAILABLE
}
# HTTP status codes that name a class; any other 5xx is the service's own error.
HTTP_CLASSES: Final[dict[int, FaultClass]] = {
    429: "saturation",  # Too Many Requests
    502: "unreachable",  # Bad Gateway: the proxy could not reach its upstream
    503: "unreachable",  # Service Unavailable: nobody to serve it
    504: "timeout",  # Gateway Timeout: the upstream did not answer in time
}
_STATUS_IN_TEXT = re.compile(r"\b(?:HTTP|status(?: code)?|code)[ :=]*([1-5]\d\d)\b", _I)

# Exceptions that are a program's own mistake whatever their message says (a
# ``KeyError: 'timeout'`` is a missing key, not a timeout).
_OWN_MISTAKES: Final[frozenset[str]] = frozenset(
    {
        "KeyError",
        "IndexError",
        "TypeError",
        "ValueError",
        "AttributeError",
        "NameError",
        "ZeroDivisionError",
        "AssertionError",
        "NotImplementedError",
        "UnboundLocalError",
        "NullPointerException",
        "IllegalArgumentException",
        "IllegalStateException",
        "ClassCastException",
        "ArrayIndexOutOfBoundsException",
        "IndexOutOfBoundsException",
        "NumberFormatException",
        "UnsupportedOperationException",
        "ReferenceError",
        "RangeError",
        "SyntaxError",
    }
)


def classify_message(text: str) -> FaultClass | None:
    """The class a failure's text names (``"type: message"`` or either), or None."""
    if not text:
        return None
    text = CONTROL_BUT_TAB_NEWLINE.sub(" ", text)
    for fault, pattern in _CATALOGUE:
        if pattern.search(text):
            return fault
    status = _STATUS_IN_TEXT.search(text)
    if status:
        return classify_status(http=int(status.group(1)))
    return None


def classify_exception(exc_type: str, message: str = "") -> FaultClass:
    """The class of a recorded exception (``exception.type``, ``exception.message``).

    A program's own mistakes (``KeyError``, ``NullPointerException``...) are
    ``error`` whatever their message; anything the catalogue does not know too.
    """
    if _own(exc_type):
        return "error"
    text = f"{exc_type}: {message}" if exc_type and message else (exc_type or message)
    return classify_message(text) or "error"


def classify_status(*, http: int | None = None, grpc: int | None = None) -> FaultClass | None:
    """The class a gRPC or HTTP status code names: specific codes, then any 5xx as error."""
    if grpc is not None and grpc in GRPC_CLASSES:
        return GRPC_CLASSES[grpc]
    if http is not None:
        if http in HTTP_CLASSES:
            return HTTP_CLASSES[http]
        if http >= 500:
            return "error"
    if grpc is not None and grpc not in (0, 5):  # 5 NOT_FOUND is the caller's business
        return "error"
    return None


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def exceptions(span: Span) -> list[tuple[str, str]]:
    """The span's recorded exceptions: (``exception.type``, ``exception.message``)."""
    out: list[tuple[str, str]] = []
    for ev in span.events:
        if ev.name == "exception":
            typ = str(ev.attributes.get("exception.type", "") or "")
            msg = str(ev.attributes.get("exception.message", "") or "")
            if typ or msg:
                out.append((typ, msg))
    return out


def failure_texts(span: Span) -> list[str]:
    """What a span says about its failure besides its exceptions: error.type, status message."""
    texts: list[str] = []
    error_type = span.attributes.get("error.type")
    if error_type and str(error_type) != "_OTHER":
        texts.append(str(error_type))
    if span.status_message:
        texts.append(span.status_message)
    return [t for t in texts if t]


def classify_span(span: Span) -> FaultClass | None:
    """The fault class a span's own failure shows, or None when it shows none.

    The first recorded exception the catalogue recognises decides (a
    program's own mistake, such as ``KeyError``, is ``error``); then
    ``error.type`` or the status message; then a gRPC or HTTP status code;
    then a failed span is the service's own ``error``.
    """
    for typ, msg in exceptions(span):
        if _own(typ):
            return "error"
        fault = classify_message(f"{typ}: {msg}" if typ and msg else (typ or msg))
        if fault is not None:
            return fault
    for text in failure_texts(span):
        fault = classify_message(text)
        if fault is not None:
            return fault
    attrs = span.attributes
    http = _int(attrs.get("http.response.status_code", attrs.get("http.status_code")))
    grpc = _int(attrs.get("rpc.grpc.status_code"))
    error_type = _int(attrs.get("error.type"))
    if http is None and error_type is not None and 100 <= error_type <= 599:
        http = error_type
    fault = classify_status(http=http, grpc=grpc)
    if fault is not None:
        return fault
    if span.error or (http is not None and http >= 400):
        return "error"
    return None


def _own(exc_type: str) -> bool:
    return exc_type.rsplit(".", 1)[-1].rsplit("$", 1)[-1] in _OWN_MISTAKES
