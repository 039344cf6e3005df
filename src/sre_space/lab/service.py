"""One lab service process: ``python -m sre_space.lab.service NAME``.

frontend -> checkout -> payments; checkout -> inventory; checkout -> db (through
a pool). Every request is a SERVER span, every outgoing call a CLIENT span,
context carried in W3C traceparent headers, exported over OTLP/HTTP.

A service starts from its DEFAULTS, over which ``SRE_SPACE_CFG_<KEY>``
environment variables set key ``<key>`` (the encoding the container actuators
use, actuators/changes.py), typed like the default: that is how a recreated
container comes back with a changed setting. A value that does not fit stops
the service at start with one line saying which variable and why.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sre_space.actuators.changes import ENV_PREFIX
from sre_space.lab import runtime
from sre_space.lab.faults import FAULT_PATH
from sre_space.lab.mechanisms import Faults
from sre_space.lab.pool import ConnectionPool

CLIENT_TIMEOUT_S = 2.0  # a caller gives up on a callee after this (a hung callee must not hang it)
_COMMON = {"release": "v1", "previous_release": "", "memory_limit_mb": 256, "shed_share": 0.0}
DEFAULTS: dict[str, dict[str, Any]] = {
    "frontend": dict(_COMMON),
    # A circuit per dependency: "open" skips the call and degrades (reservation or
    # payment deferred) instead of waiting on a dependency that is not answering.
    "checkout": {
        "db_pool_size": 20,
        "db_pool_timeout_ms": 250,
        "circuit_inventory": "closed",
        "circuit_payments": "closed",
        **_COMMON,
    },
    "payments": dict(_COMMON),
    "inventory": dict(_COMMON),
    "db": {},  # nothing tunable; a fault is never config (see faults.py)
}
CIRCUIT_STATES = ("closed", "open")


def check_settings(typed: Mapping[str, Any]) -> None:
    """ValueError (one line) unless these already typed settings are values the service runs with."""
    if typed.get("db_pool_size", 1) < 1 or typed.get("db_pool_timeout_ms", 0) < 0:
        raise ValueError("db_pool_size must be at least 1 and db_pool_timeout_ms >= 0")
    for key, value in typed.items():
        if key.startswith("circuit_") and value not in CIRCUIT_STATES:
            raise ValueError(f"{key} must be one of {', '.join(CIRCUIT_STATES)}")
    if not 0.0 <= float(typed.get("shed_share", 0.0)) <= 1.0:
        raise ValueError("shed_share must be between 0 and 1")


def settings_from_env(
    name: str, environ: Mapping[str, str], prefix: str = ENV_PREFIX
) -> dict[str, Any]:
    """What ``<prefix><KEY>`` variables set over the service's DEFAULTS, typed like them.

    Only keys the service declares are read: one environment may carry other
    services' settings (the embedded lab's children share the supervisor's).
    A value that does not fit raises ValueError, one line naming the variable.
    """
    defaults = DEFAULTS[name]
    found: dict[str, Any] = {}
    for var, raw in sorted(environ.items()):
        key = var[len(prefix) :].lower()
        if not var.startswith(prefix) or key not in defaults:
            continue
        kind = type(defaults[key])
        try:
            value = kind(raw.strip()) if kind in (int, float) else raw
        except ValueError:
            raise ValueError(
                f"{var}={raw!r}: {key} takes {'a whole number' if kind is int else 'a number'}"
            ) from None
        try:
            check_settings({key: value})
        except ValueError as exc:
            raise ValueError(f"{var}={raw!r}: {exc}") from None
        found[key] = value
    return found


def _statement_name(sql: str) -> str:
    """A low-cardinality span name, e.g. ``INSERT orders`` or ``SELECT stock``."""
    words = sql.replace("(", " ").split()
    verb = words[0].upper() if words else "QUERY"
    upper = [w.upper() for w in words]
    for keyword in ("INTO", "FROM", "UPDATE"):
        if keyword in upper and upper.index(keyword) + 1 < len(words):
            return f"{verb} {words[upper.index(keyword) + 1]}"
    return verb


class UpstreamError(Exception):
    """A downstream call answered 5xx or could not be made."""


class Service:
    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.ports = runtime.ports()
        # ``settings``: what settings_from_env read over the defaults, already checked.
        self.config: dict[str, Any] = {**DEFAULTS[name], **(settings or {})}
        self.lock = threading.Lock()
        self.provider = runtime.tracer_provider(name)
        self.tracer = self.provider.get_tracer("sre-space-lab")
        self.faults = Faults()
        self.pool: ConnectionPool | None = None
        if name == "checkout":
            self.pool = ConnectionPool(
                self.ports["db"], self.config["db_pool_size"], self.config["db_pool_timeout_ms"]
            )

    def patch(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise TypeError("the config patch must be a JSON object")
        with self.lock:
            unknown = set(params) - set(self.config)
            if unknown:
                raise ValueError(
                    f"unknown config key(s) for {self.name}: {', '.join(sorted(unknown))}"
                )
            # Coerce to each key's type first, so a bad value changes nothing.
            typed = {k: type(DEFAULTS[self.name][k])(v) for k, v in params.items()}
            check_settings(typed)
            previous = {k: self.config[k] for k in params}
            self.config.update(typed)
            if self.pool is not None:
                self.pool.resize(int(self.config["db_pool_size"]))
                self.pool.timeout_ms = float(self.config["db_pool_timeout_ms"])
        return previous

    # --- outgoing calls ---------------------------------------------------------

    def call(self, peer: str, method: str, path: str, doc: Any = None) -> Any:
        port = self.ports[peer]
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "server.address": "127.0.0.1",
                "server.port": port,
                "peer.service": peer,
                "service.version": self.config["release"],
            },
            # A 5xx answer is a status, not an exception of ours: record only what we raise here.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            headers = {"Content-Type": "application/json"}
            propagate.inject(headers)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
            phase = "connect"  # which one failed tells a refused peer from a silent one
            try:
                conn.connect()
                phase = "answer"
                conn.request(method, path, body=json.dumps(doc or {}), headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                span.record_exception(exc)
                span.set_attribute("error.phase", phase)
                span.set_status(Status(StatusCode.ERROR, f"{peer} unreachable"))
                what = "no connection" if phase == "connect" else "no answer"
                raise UpstreamError(f"{peer} unreachable ({what}): {exc}") from exc
            finally:
                conn.close()
            span.set_attribute("http.response.status_code", resp.status)
            if resp.status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {resp.status}"))
                raise UpstreamError(f"{peer} answered HTTP {resp.status}")
            return json.loads(raw) if raw else {}

    def query(self, sql: str, params: list[Any]) -> Any:
        assert self.pool is not None
        conn = self.pool.acquire()
        broken = False
        try:
            with self.tracer.start_as_current_span(
                _statement_name(sql),
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "sqlite",
                    "db.statement": sql,
                    "server.address": "127.0.0.1",
                    "server.port": self.pool.port,
                    "peer.service": "db",
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    conn.request(
                        "POST",
                        "/query",
                        body=json.dumps({"sql": sql, "params": params}),
                        headers={"Content-Type": "application/json"},
                    )
                    resp = conn.getresponse()
                    raw = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    broken = True  # never hand a half-read connection to the next caller
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, "db unreachable"))
                    raise UpstreamError(f"db unreachable: {exc}") from exc
                if resp.status != 200:
                    span.set_status(Status(StatusCode.ERROR, f"db answered {resp.status}"))
                    raise UpstreamError(f"db answered HTTP {resp.status}")
                return json.loads(raw)
        finally:
            self.pool.release(conn, broken)

    # --- request handlers ---------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        route = (self.name, method, path)
        self.faults.on_request(str(self.config["release"]), float(self.config["memory_limit_mb"]))
        if route == ("frontend", "POST", "/api/checkout"):
            return 200, self.call("checkout", "POST", "/checkout", body)
        if route == ("checkout", "POST", "/checkout"):
            item = int(body.get("item", 1))
            deferred = []
            # An open circuit skips the dependency: the order goes through and the
            # reservation (or charge) is settled later, instead of waiting on it now.
            for peer, call in (
                ("inventory", ("GET", "/reserve", None)),
                ("payments", ("POST", "/charge", {"amount": 42})),
            ):
                if self.config[f"circuit_{peer}"] == "open":
                    deferred.append(peer)
                else:
                    self.call(peer, *call)
            if deferred:
                trace.get_current_span().set_attribute("app.deferred", deferred)
            # One round trip: the order row is written only if the item is in stock.
            result = self.query(
                "INSERT INTO orders(item, at) SELECT item, ? FROM stock "
                "WHERE item = ? AND quantity > 0",
                [time.time(), item],
            )
            if not result.get("rowcount"):
                return 409, {"error": f"item {item} is out of stock"}
            return 200, {"ok": True}
        if route == ("payments", "POST", "/charge"):
            time.sleep(random.uniform(0.002, 0.008))  # the card processor's round trip
            return 200, {"charged": body.get("amount", 0)}
        if route == ("inventory", "GET", "/reserve"):
            time.sleep(random.uniform(0.001, 0.004))
            return 200, {"reserved": True}
        return 404, {"error": f"no route {method} {path}"}


class Handler(runtime.JsonHandler):
    service: Service

    def _fault(self, method: str) -> None:
        if not self.authorized():
            return
        faults = self.service.faults
        if method == "POST":
            doc = self.read_json()
            try:
                faults.apply(str(doc.get("fault", "")), dict(doc.get("params") or {}))
            except (TypeError, ValueError) as exc:
                self.send_json(400, {"error": f"{self.service.name}: {exc}"})
                return
        elif method == "DELETE":
            query = urllib.parse.urlsplit(self.path).query
            faults.clear(dict(urllib.parse.parse_qsl(query)).get("fault"))
        self.send_json(200, faults.snapshot())

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?")[0]
        if path == FAULT_PATH:
            self._fault(method)
            return
        if path == "/_admin/config":
            if not self.authorized():
                return
            if method == "POST":
                try:
                    previous = self.service.patch(self.read_json())
                except (TypeError, ValueError) as exc:
                    self.send_json(400, {"error": str(exc)})
                    return
                self.send_json(200, {"previous": previous, "current": dict(self.service.config)})
            else:
                self.send_json(200, dict(self.service.config))
            return
        # On the way in, before any span: an ingress delay or a hang is time the
        # caller waits that this service's own spans never account for. (The admin
        # routes above are the control plane, like a kubelet's: they stay reachable.)
        self.service.faults.on_arrival()
        if path == "/healthz":
            self.send_json(200, {"ok": True, "service": self.service.name})
            return
        try:
            body = self.read_json() if method == "POST" else {}
        except ValueError:
            self.send_json(400, {"error": "the body is not JSON"})
            return
        # Header names arrive as the caller spelled them; the propagator asks in lower case.
        ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
        config = self.service.config
        with self.service.tracer.start_as_current_span(
            f"{method} {path}",
            context=ctx,
            kind=SpanKind.SERVER,
            # The resource is fixed at start; a deploy changes the version the spans carry.
            attributes={
                "http.request.method": method,
                "url.path": path,
                "service.version": str(config["release"]),
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                if random.random() < float(config["shed_share"]):
                    code, doc = 503, {"error": "load shed: try again later"}
                    span.set_attribute("app.shed", True)
                    span.set_status(Status(StatusCode.ERROR, "load shed"))
                else:
                    code, doc = self.service.handle(method, path, body)
            except UpstreamError as exc:
                code, doc = 502, {"error": str(exc)}
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            except Exception as exc:  # the service's own failure: recorded on its span
                code, doc = 500, {"error": f"{type(exc).__name__}: {exc}"}
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute("http.response.status_code", code)
        self.send_json(code, doc)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def main(argv: list[str]) -> None:
    name = argv[1]
    if name not in DEFAULTS:
        raise SystemExit(f"sre-space lab: no service {name!r}; services: {', '.join(DEFAULTS)}")
    try:  # before anything starts: a bad setting is one line on stderr and exit status 1
        settings = settings_from_env(name, os.environ)
    except ValueError as exc:
        raise SystemExit(f"sre-space lab {name}: {exc}") from None
    runtime.quiet_logging(name)
    runtime.exit_with_supervisor()
    if name == "db":
        from sre_space.lab.db import serve

        serve()
        return
    service = Service(name, settings)
    Handler.service = service
    server = runtime.listening_server(Handler)
    try:
        server.serve_forever()
    finally:
        service.provider.shutdown()


if __name__ == "__main__":
    main(sys.argv)


__all__ = ["Service", "main"]
