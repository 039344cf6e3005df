"""A small shop as a user would write it: Starlette, Flask, httpx, SQLAlchemy, OpenTelemetry.

One module, one service per process: ``python framework_shop_app.py NAME --port P
--otlp URL [--peer NAME=URL ...] [--db PATH]``. Nothing here knows who watches
the traces: each process names itself with a ``service.name`` resource and
exports OTLP/HTTP, and OpenTelemetry's own instrumentation libraries make the
spans (Flask, Starlette, httpx, SQLAlchemy).

- gateway (Starlette on uvicorn): ``/products`` asks catalog and pricing at once;
  ``/checkout`` asks pricing for a quote, orders for an order, payments for a charge.
- catalog (Flask on werkzeug): reads products from SQLite through a small QueuePool.
- pricing (Flask), orders (Starlette on uvicorn), payments (Flask).

Each service also has ``/admin/...`` routes for the operator (health and a few
knobs: a database delay, a stalled payment provider, which release runs). They
are left out of tracing (``OTEL_PYTHON_EXCLUDED_URLS``), as health checks often are.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from typing import Any

os.environ.setdefault("OTEL_PYTHON_EXCLUDED_URLS", "/admin/")

# The operator's knobs (set through /admin/config), read by the handlers.
knobs: dict[str, Any] = {"db_delay_s": 0.0, "stall": False, "release": "1.4.0"}
MAX_STALL_S = 60.0


def setup_tracing(name: str, otlp: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = OTLPSpanExporter(endpoint=f"{otlp.rstrip('/')}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    return provider


# --- Flask services -----------------------------------------------------------------


def flask_app(name: str, db: str | None) -> Any:
    from flask import Flask, jsonify, request
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = Flask(name)

    @app.get("/admin/health")
    def health() -> Any:
        return jsonify(ok=True, release=knobs["release"])

    @app.post("/admin/config")
    def config() -> Any:
        knobs.update(request.get_json(force=True) or {})
        return jsonify(knobs)

    if name == "catalog":
        assert db is not None, "catalog needs --db"
        catalog_routes(app, db)
    elif name == "pricing":

        @app.get("/prices")
        def prices() -> Any:
            return jsonify({str(i): round(9.5 + i * 1.25, 2) for i in range(1, 21)})

        @app.post("/quote")
        def quote() -> Any:
            items = (request.get_json(force=True) or {}).get("items", [])
            total = sum(round(9.5 + int(i) * 1.25, 2) for i in items)
            return jsonify(total=round(total, 2), currency="EUR")

    elif name == "payments":

        @app.post("/charge")
        def charge() -> Any:
            body = request.get_json(force=True) or {}
            # The card provider stops answering: the call waits until it comes back.
            began = time.time()
            while knobs["stall"] and time.time() - began < MAX_STALL_S:
                time.sleep(0.1)
            time.sleep(random.uniform(0.01, 0.03))
            return jsonify(charged=body.get("amount", 0), status="captured")

    FlaskInstrumentor().instrument_app(app, excluded_urls="/admin/")
    return app


def catalog_routes(app: Any, db: str) -> None:
    from flask import jsonify
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.pool import QueuePool

    engine = create_engine(
        f"sqlite:///{db}",
        poolclass=QueuePool,
        pool_size=2,
        max_overflow=0,
        pool_timeout=1.0,
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "before_cursor_execute")
    def _slow_disk(*_: Any) -> None:  # a slow disk under the database
        delay = float(knobs["db_delay_s"])
        if delay:
            time.sleep(delay)

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT, stock INTEGER)"))
        if not conn.execute(text("SELECT COUNT(*) FROM products")).scalar():
            for i in range(1, 21):
                conn.execute(
                    text("INSERT INTO products (id, name, stock) VALUES (:i, :n, :s)"),
                    {"i": i, "n": f"product {i}", "s": 10 + i},
                )
    SQLAlchemyInstrumentor().instrument(engine=engine)

    @app.get("/products")
    def products() -> Any:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name, stock FROM products ORDER BY id")).all()
        return jsonify([{"id": r.id, "name": r.name, "stock": r.stock} for r in rows])


def serve_flask(app: Any, port: int) -> None:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


# --- Starlette services -------------------------------------------------------------


def starlette_app(name: str, peers: dict[str, str]) -> Any:
    import httpx
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "release": knobs["release"]})

    async def config(request: Request) -> JSONResponse:
        knobs.update(await request.json())
        return JSONResponse(knobs)

    routes = [Route("/admin/health", health), Route("/admin/config", config, methods=["POST"])]

    if name == "gateway":
        client = httpx.AsyncClient(timeout=2.0)
        HTTPXClientInstrumentor.instrument_client(client)

        async def products(_: Request) -> JSONResponse:
            listing, prices = await asyncio.gather(
                client.get(f"{peers['catalog']}/products"), client.get(f"{peers['pricing']}/prices")
            )
            listing.raise_for_status()
            prices.raise_for_status()
            price = prices.json()
            return JSONResponse([{**p, "price": price.get(str(p["id"]))} for p in listing.json()])

        async def checkout(_: Request) -> JSONResponse:
            items = random.sample(range(1, 21), 3)
            quote = await client.post(f"{peers['pricing']}/quote", json={"items": items})
            quote.raise_for_status()
            order = await client.post(
                f"{peers['orders']}/orders",
                json={"items": items, "total": quote.json()["total"], "shipping": {"country": "FR"}},
            )
            order.raise_for_status()
            paid = await client.post(
                f"{peers['payments']}/charge",
                json={"order": order.json()["id"], "amount": quote.json()["total"]},
            )
            paid.raise_for_status()
            return JSONResponse({"order": order.json()["id"], "payment": paid.json()["status"]})

        routes += [Route("/products", products), Route("/checkout", checkout, methods=["POST"])]

    elif name == "orders":
        counter = {"n": 0}

        async def create(request: Request) -> JSONResponse:
            order = await request.json()
            counter["n"] += 1
            if knobs["release"] != "1.4.0" and random.random() < 0.5:
                # 1.5.0 reads the new shipping region field, which older carts do not send.
                order["region"] = order["shipping"]["region"]
            await asyncio.sleep(random.uniform(0.005, 0.02))
            return JSONResponse({"id": counter["n"], "items": order["items"]}, status_code=201)

        routes.append(Route("/orders", create, methods=["POST"]))

    app = Starlette(routes=routes)
    StarletteInstrumentor.instrument_app(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=("gateway", "catalog", "pricing", "orders", "payments"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--otlp", required=True, help="OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318")
    parser.add_argument("--peer", action="append", default=[], help="NAME=URL of a service called")
    parser.add_argument("--db", help="SQLite file (catalog)")
    args = parser.parse_args()
    peers = dict(p.split("=", 1) for p in args.peer)
    setup_tracing(args.name, args.otlp)
    if args.name in ("gateway", "orders"):
        import uvicorn

        app = starlette_app(args.name, peers)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    else:
        serve_flask(flask_app(args.name, args.db), args.port)


if __name__ == "__main__":
    main()
