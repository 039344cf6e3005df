"""A second topology for the benchmarks: a 14-service shop traced by the real OpenTelemetry SDK.

Not the lab: a different shape, on purpose, so Scout's figures are not tuned to
one system. A gateway in front of auth, catalog, search, recommendations, cart
and checkout; catalog and cart read through a cache (Redis client spans, as
``opentelemetry-instrumentation-redis`` records them); inventory, orders and
shipping query PostgreSQL (client spans); checkout calls payments and orders,
and orders publishes an event that notifications and shipping consume
asynchronously (PRODUCER -> CONSUMER, with queueing lag).

Why the SDK in one process rather than 14 real servers: the machine these
benchmarks run on has two shared cores, and 14 web processes under load would
measure the machine, not Scout. Each service has its own ``TracerProvider``
with its own ``service.name`` resource, its own ``BatchSpanProcessor`` and
OTLP/HTTP exporter to the mind's real receiver: the mind sees exactly what 14
instrumented services would send. Durations are drawn, not slept: lognormal
service times, cache hits and misses, rare GC pauses, a few ordinary errors
(a reset connection at payments, a timeout at search), 401s at auth (not
errors on a server span, per the HTTP semantic conventions), traffic that
swells and ebbs, and a rare admin path. A healthy system is noisy; that noise
is what a false alarm is made of.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICES = (
    "gateway",
    "auth",
    "catalog",
    "inventory",
    "search",
    "ranking",
    "recommendations",
    "cart",
    "pricing",
    "checkout",
    "payments",
    "orders",
    "notifications",
    "shipping",
)
MS = 1_000_000


class Shop:
    """Generates the shop's traffic at ``rate`` requests/s until stopped."""

    def __init__(self, endpoint: str, rate: float = 20.0, seed: int = 7) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.requests = 0
        # How far the generator fell behind its schedule, at worst: on a starved
        # machine the shop really sends less for that long (a traffic drop that
        # is the benchmark's, not a false alarm of Scout's).
        self.max_behind_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._providers: dict[str, TracerProvider] = {}
        self._tracers: dict[str, trace.Tracer] = {}
        for name in SERVICES:
            provider = TracerProvider(
                resource=Resource.create({"service.name": name, "service.version": "1.4.2"})
            )
            exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=2)
            provider.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=500, max_queue_size=8192)
            )
            self._providers[name] = provider
            self._tracers[name] = provider.get_tracer("otel-shop")

    # --- the shape of one request ---------------------------------------------------

    def _ms(self, median: float, sigma: float = 0.45) -> int:
        value = median * math.exp(self.rng.gauss(0, sigma))
        if self.rng.random() < 0.01:
            value *= 6  # a GC pause or a noisy neighbour
        return int(value * MS)

    def _server(
        self, service: str, route: str, method: str, start: int, parent: Context | None
    ) -> tuple[Any, Context]:
        span = self._tracers[service].start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.request.method": method, "http.route": route},
        )
        return span, trace.set_span_in_context(span)

    def _call(
        self, caller: str, callee: str, route: str, start: int, ctx: Context, method: str = "GET"
    ) -> int:
        """An HTTP call from ``caller`` to ``callee``: client span, server span, the callee's work."""
        client = self._tracers[caller].start_span(
            method,
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={"http.request.method": method, "server.address": callee},
        )
        net = int(0.4 * MS)
        server, inner = self._server(callee, route, method, start + net, trace.set_span_in_context(client))
        end, status, error = self._work(callee, route, start + net, inner)
        server.set_attribute("http.response.status_code", status)
        if error:
            server.set_status(Status(StatusCode.ERROR, error))
            server.record_exception(ConnectionResetError(error), timestamp=end)
        server.end(end_time=end)
        client.set_attribute("http.response.status_code", status)
        if status >= 400:
            client.set_status(Status(StatusCode.ERROR))
        client.end(end_time=end + net)
        return end + net

    def _client(self, service: str, system: str, op: str, start: int, ctx: Context, ms: float) -> int:
        """A cache or database call, as its client instrumentation records it."""
        end = start + self._ms(ms)
        span = self._tracers[service].start_span(
            op,
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={"db.system": system, "db.operation": op.split()[0]},
        )
        span.end(end_time=end)
        return end

    def _work(self, service: str, route: str, start: int, ctx: Context) -> tuple[int, int, str]:
        """The callee's own time and downstream calls: (end, HTTP status, error message)."""
        rng = self.rng
        t = start + self._ms(2)
        status, error = 200, ""
        if service == "auth":
            if rng.random() < 0.03:
                status = 401  # wrong passwords: a client's mistake, not the server's error
        elif service == "catalog":
            t = self._client(service, "redis", "GET product", t, ctx, 0.6)
            if rng.random() < 0.15:  # a cache miss
                t = self._call(service, "inventory", "/stock/{sku}", t, ctx)
                t = self._client(service, "redis", "SET product", t, ctx, 0.5)
        elif service == "inventory":
            t = self._client(service, "postgresql", "SELECT stock", t, ctx, 4)
        elif service == "search":
            t = self._call(service, "ranking", "/rank", t, ctx, "POST")
            t = self._call(service, "catalog", "/products/{id}", t, ctx)
            if rng.random() < 0.004:
                status, error = 504, "upstream request timeout"
        elif service == "ranking":
            t += self._ms(12)
        elif service == "recommendations":
            for _ in range(rng.randint(1, 3)):
                t = self._call(service, "catalog", "/products/{id}", t, ctx)
            if rng.random() < 0.002:  # a rare path: the admin's price preview
                t = self._call(service, "pricing", "/quote", t, ctx, "POST")
        elif service == "cart":
            t = self._client(service, "redis", "HGETALL cart", t, ctx, 0.7)
            t = self._call(service, "pricing", "/quote", t, ctx, "POST")
            t = self._client(service, "redis", "HSET cart", t, ctx, 0.6)
        elif service == "pricing":
            t += self._ms(3)
        elif service == "checkout":
            t = self._call(service, "cart", "/cart", t, ctx)
            t = self._call(service, "payments", "/charge", t, ctx, "POST")
            t = self._call(service, "orders", "/orders", t, ctx, "POST")
        elif service == "payments":
            t += self._ms(35)
            if rng.random() < 0.003:
                status, error = 502, "Connection reset by peer"
        elif service == "orders":
            t = self._client(service, "postgresql", "INSERT orders", t, ctx, 6)
            self._publish(t, ctx)
        return t + self._ms(1), status, error

    def _publish(self, start: int, ctx: Context) -> None:
        """orders publishes an event; notifications and shipping consume it later."""
        producer = self._tracers["orders"].start_span(
            "order-events publish",
            context=ctx,
            kind=SpanKind.PRODUCER,
            start_time=start,
            attributes={"messaging.system": "kafka", "messaging.destination.name": "order-events"},
        )
        end = start + self._ms(1)
        producer.end(end_time=end)
        pctx = trace.set_span_in_context(producer)
        for consumer in ("notifications", "shipping"):
            begin = end + self._ms(40, 0.8)  # queueing lag
            span = self._tracers[consumer].start_span(
                "order-events process",
                context=pctx,
                kind=SpanKind.CONSUMER,
                start_time=begin,
                attributes={"messaging.system": "kafka", "messaging.operation": "process"},
            )
            t = begin + self._ms(3)
            if consumer == "shipping":
                t = self._client(consumer, "postgresql", "INSERT shipments", t, trace.set_span_in_context(span), 5)
            span.end(end_time=t)

    ROUTES: tuple[tuple[float, str, str, tuple[str, ...]], ...] = (
        (0.38, "GET", "/products", ("catalog", "recommendations")),
        (0.2, "GET", "/search", ("search",)),
        (0.15, "POST", "/cart", ("auth", "cart")),
        (0.12, "POST", "/login", ("auth",)),
        (0.15, "POST", "/checkout", ("auth", "checkout")),
    )

    def request(self) -> None:
        r, acc = self.rng.random(), 0.0
        chosen = self.ROUTES[-1]
        for entry in self.ROUTES:
            acc += entry[0]
            if r <= acc:
                chosen = entry
                break
        _, method, route, callees = chosen
        start = time.time_ns()
        span, ctx = self._server("gateway", route, method, start, None)
        t = start + self._ms(1)
        status = 200
        for callee in callees:
            t = self._call("gateway", callee, route, t, ctx, method)
        span.set_attribute("http.response.status_code", status)
        span.end(end_time=t + self._ms(1))
        self.requests += 1

    # --- running -----------------------------------------------------------------------

    def _run(self) -> None:
        began = due = time.monotonic()
        while not self._stop.is_set():
            # Traffic swells and ebbs by a quarter over five minutes, as a day does faster.
            elapsed = due - began
            rate = self.rate * (1 + 0.25 * math.sin(2 * math.pi * elapsed / 300))
            due += self.rng.expovariate(rate)
            # On schedule, not after a sleep: a starved thread on a loaded machine
            # catches up instead of dropping traffic that clients would have sent.
            self._stop.wait(max(0.0, due - time.monotonic()))
            self.max_behind_s = max(self.max_behind_s, time.monotonic() - due)
            self.request()

    def start(self) -> Shop:
        self._thread = threading.Thread(target=self._run, name="otel-shop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for provider in self._providers.values():
            provider.shutdown()
