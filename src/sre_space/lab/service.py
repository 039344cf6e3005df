"""One lab service process: ``python -m sre_space.lab.service NAME``.

frontend -> checkout -> payments; checkout -> inventory; checkout -> db (through
SQLAlchemy's pool). The shop's code (the ``labshop`` package) runs as a
Starlette app on uvicorn; OpenTelemetry's own instrumentations trace it
(ASGI server spans, httpx and SQLAlchemy client spans), exported over OTLP/HTTP.
This module only wires it up and serves the operator's token-protected
``/_admin`` routes, which are never traced.

A service starts from its DEFAULTS, over which ``SRE_SPACE_CFG_<KEY>``
environment variables set key ``<key>`` (the encoding the container actuators
use, actuators/changes.py), typed like the default: that is how a recreated
container comes back with a changed setting. A value that does not fit stops
the service at start with one line saying which variable and why.
"""

from __future__ import annotations

import hmac
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sre_space.lab import runtime
from sre_space.lab.faults import FAULT_PATH
from sre_space.lab.mechanisms import Faults
from sre_space.vocabulary import ENV_PREFIX

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import BaseRoute

    from labshop.app import Shop

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


ADMIN_PREFIX = "/_admin"
# Traces follow the current HTTP and database semantic conventions, and the
# older names beside them (the instrumentations' "dup" mode): what a user who
# is migrating sees, and readable by tools that know either.
SEMCONV = "http/dup,database/dup"
THREAD_STACK_BYTES = 512 * 1024


class Operator:
    """The runtime config and the faults of one process, behind ``/_admin``."""

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        from labshop.state import Conditions, limit_memory

        self.name = name
        # ``settings``: what settings_from_env read over the defaults, already checked.
        self.config: dict[str, Any] = {**DEFAULTS[name], **(settings or {})}
        self.lock = threading.Lock()
        self.conditions = Conditions()
        self.faults = Faults(self.conditions)
        self.shop: Shop | None = None
        self._limit_memory = limit_memory
        self._limit_memory(float(self.config.get("memory_limit_mb", 0)))

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
            if self.shop is not None and {"db_pool_size", "db_pool_timeout_ms"} & set(typed):
                self.shop.resize_pool()
            if "memory_limit_mb" in typed:
                self._limit_memory(float(self.config["memory_limit_mb"]))
        return previous

    # --- the /_admin routes (never traced: they are the operator's, not the users') ----------

    def authorized(self, request: Request) -> bool:
        expected = os.environ.get(runtime.TOKEN_ENV, "")
        given = request.headers.get("authorization", "")
        return bool(expected) and hmac.compare_digest(given, f"Bearer {expected}")

    async def _json(self, request: Request) -> Any:
        raw = await request.body()
        import json

        return json.loads(raw) if raw else {}

    async def config_route(self, request: Request) -> JSONResponse:
        from starlette.responses import JSONResponse

        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, 401)
        if request.method == "POST":
            try:
                previous = self.patch(await self._json(request))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse({"previous": previous, "current": dict(self.config)})
        return JSONResponse(dict(self.config))

    async def fault_route(self, request: Request) -> JSONResponse:
        from starlette.responses import JSONResponse

        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, 401)
        if request.method == "POST":
            try:
                doc = await self._json(request)
                self.faults.apply(str(doc.get("fault", "")), dict(doc.get("params") or {}))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": f"{self.name}: {exc}"}, 400)
        elif request.method == "DELETE":
            self.faults.clear(request.query_params.get("fault"))
        return JSONResponse(self.faults.snapshot())

    async def health_route(self, request: Request) -> JSONResponse:
        from starlette.responses import JSONResponse

        return JSONResponse({"ok": True, "service": self.name})

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        methods = ["GET", "POST", "DELETE"]
        return [
            Route("/healthz", self.health_route),
            Route(f"{ADMIN_PREFIX}/config", self.config_route, methods=methods),
            Route(FAULT_PATH, self.fault_route, methods=methods),
        ]


def serve(operator: Operator) -> None:
    """Instrument and run the shop's app on the socket the supervisor handed down."""
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", SEMCONV)
    import socket

    import uvicorn
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.starlette import _get_default_span_details

    from labshop.app import IngressWait, Shop, build

    # Thread stacks count against the memory limit (RLIMIT_DATA): keep them small.
    threading.stack_size(THREAD_STACK_BYTES)
    name, config = operator.name, operator.config
    provider = runtime.tracer_provider(name, str(config.get("release", "")))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    if name == "checkout":
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The instrumentation's declared range ends below the installed SQLAlchemy
        # 2.1, whose engine events it uses are unchanged: skip its version check.
        SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    shop = Shop(name, config, runtime.ports(), operator.conditions)
    operator.shop = shop
    app = build(shop, operator.routes())
    skip = ("/healthz", ADMIN_PREFIX)
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls="healthz,_admin/",
        default_span_details=_get_default_span_details,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
    )
    sock = socket.socket(fileno=int(os.environ[runtime.FD_ENV]))
    server = uvicorn.Server(
        uvicorn.Config(
            IngressWait(app, operator.conditions, skip),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
            backlog=256,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        provider.shutdown()


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
        from sre_space.lab.db import serve as serve_db

        serve_db()
        return
    serve(Operator(name, settings))


if __name__ == "__main__":
    main(sys.argv)


__all__ = ["Operator", "main"]
