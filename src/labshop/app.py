"""The shop's four HTTP services as Starlette apps.

frontend -> checkout -> payments, inventory; checkout -> the database through
SQLAlchemy's connection pool. Calls go out through one ``httpx.AsyncClient``;
tracing is added from outside by OpenTelemetry's instrumentations, so this code
reads like any service's and raises what any service's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from labshop.state import Conditions

if TYPE_CHECKING:
    import sqlalchemy

CLIENT_TIMEOUT_S = 2.0  # a caller gives up on a callee after this
WORKER_THREADS = 64  # blocking work (the database) runs on these; the pool, not they, is the limit


class Shop:
    """One service's handlers, its outgoing client and (checkout) its database engine."""

    def __init__(
        self, name: str, config: dict[str, Any], ports: dict[str, int], conditions: Conditions
    ) -> None:
        self.name = name
        self.config = config  # shared with the operator, who patches it at run time
        self.ports = ports
        self.conditions = conditions
        # No keep-alive: each call is its own connection, so a balancer in front of
        # replicas spreads calls one by one (and a restarted replica breaks none).
        self.client = httpx.AsyncClient(
            timeout=CLIENT_TIMEOUT_S,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        self.engine: sqlalchemy.engine.Engine | None = None
        if name == "checkout":
            self.engine = self.new_engine()

    # --- the database -------------------------------------------------------------------

    def new_engine(self) -> sqlalchemy.engine.Engine:
        # Only checkout talks to the database: the others never pay for the import.
        import sqlalchemy

        import labshop.wire  # noqa: F401  (registers the sqlite+wire dialect)

        # Looked up on the module each time: the instrumentation wraps create_engine.
        return sqlalchemy.create_engine(
            f"sqlite+wire://127.0.0.1:{self.ports['db']}/shop",
            pool_size=int(self.config["db_pool_size"]),
            max_overflow=0,
            pool_timeout=float(self.config["db_pool_timeout_ms"]) / 1000,
        )

    def resize_pool(self) -> None:
        """A new pool at the configured size; connections out on the old one finish there."""
        if self.engine is None:
            return
        old, self.engine = self.engine, self.new_engine()
        old.dispose(close=False)

    def place_order(self, item: int) -> int:
        import sqlalchemy

        assert self.engine is not None
        with self.engine.begin() as conn:
            result = conn.execute(
                sqlalchemy.text(
                    "INSERT INTO orders(item, at) SELECT item, :at FROM stock "
                    "WHERE item = :item AND quantity > 0"
                ),
                {"at": time.time(), "item": item},
            )
            return int(result.rowcount)

    # --- handlers ------------------------------------------------------------------------

    def url(self, peer: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[peer]}{path}"

    def shed(self) -> JSONResponse | None:
        if random.random() < float(self.config.get("shed_share", 0.0)):
            return JSONResponse({"error": "overloaded, try again later"}, 503, {"Retry-After": "1"})
        return None

    async def checkout_page(self, request: Request) -> JSONResponse:
        await self.conditions.admitted()
        self.conditions.remember()
        body = await request.json()
        resp = await self.client.post(self.url("checkout", "/checkout"), json=body)
        resp.raise_for_status()
        return JSONResponse(resp.json())

    async def checkout(self, request: Request) -> JSONResponse:
        await self.conditions.admitted()
        self.conditions.remember()
        body = await request.json()
        item = int(body.get("item", 1))
        deferred = []
        # An open circuit skips the dependency: the order goes through and the
        # reservation (or charge) is settled later, instead of waiting on it now.
        if self.config["circuit_inventory"] == "open":
            deferred.append("inventory")
        else:
            resp = await self.client.get(self.url("inventory", "/reserve"), params={"item": item})
            resp.raise_for_status()
        if self.config["circuit_payments"] == "open":
            deferred.append("payments")
        else:
            resp = await self.client.post(
                self.url("payments", "/charge"), json={"amount": 42, "item": item}
            )
            resp.raise_for_status()
        if deferred:
            trace.get_current_span().set_attribute("app.deferred", deferred)
        if not await run_in_threadpool(self.place_order, item):
            return JSONResponse({"error": f"item {item} is out of stock"}, 409)
        return JSONResponse({"ok": True})

    async def charge(self, request: Request) -> JSONResponse:
        await self.conditions.admitted()
        self.conditions.remember()
        body = await request.json()
        await asyncio.sleep(random.uniform(0.002, 0.008))  # the card processor's round trip
        defect = self.conditions.defect
        # This release prices some items in their own currency, a field callers never send.
        if (
            defect
            and defect.get("release") == self.config["release"]
            and int(body.get("item", 0)) % 100 < float(defect.get("share", 0)) * 100
        ):
            return JSONResponse({"charged": body.get("amount", 0), "in": body["currency"]})
        return JSONResponse({"charged": body.get("amount", 0)})

    async def reserve(self, request: Request) -> JSONResponse:
        await self.conditions.admitted()
        self.conditions.remember()
        await asyncio.sleep(random.uniform(0.001, 0.004))
        return JSONResponse({"reserved": True})

    def routes(self) -> list[BaseRoute]:
        handlers: dict[str, list[BaseRoute]] = {
            "frontend": [Route("/api/checkout", self.checkout_page, methods=["POST"])],
            "checkout": [Route("/checkout", self.checkout, methods=["POST"])],
            "payments": [Route("/charge", self.charge, methods=["POST"])],
            "inventory": [Route("/reserve", self.reserve, methods=["GET"])],
        }
        return handlers[self.name]

    def guarded(self, endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Any:
            return self.shed() or await endpoint(request)

        return run


def build(shop: Shop, extra_routes: list[BaseRoute]) -> Starlette:
    routes: list[BaseRoute] = []
    for route in shop.routes():
        assert isinstance(route, Route)
        routes.append(Route(route.path, shop.guarded(route.endpoint), methods=route.methods))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        yield
        await shop.client.aclose()

    return Starlette(routes=[*extra_routes, *routes], lifespan=lifespan)


class IngressWait:
    """ASGI wrapper outside the instrumented app: time a request waits before it is taken up."""

    def __init__(self, app: Any, conditions: Conditions, skip: tuple[str, ...]) -> None:
        self.app, self.conditions, self.skip = app, conditions, skip

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        wait = self.conditions.ingress_wait_s
        if wait and scope["type"] == "http" and not scope["path"].startswith(self.skip):
            await asyncio.sleep(wait)
        await self.app(scope, receive, send)
