"""Ingest speed: OTLP/HTTP receiver -> intake queue -> trace store (+ detector).

Prints, in one run:

1. ``bare parse``: spans/s of ``ExportTraceServiceRequest.ParseFromString`` on
   the same payload (upb; the ceiling for any Python decoder);
2. ``decode``: spans/s of our protobuf decoding (reduced schema, rows per
   request: what the store and the detectors read);
3. ``end to end``: spans/s accepted by the HTTP receiver, through the bounded
   intake queue, into the store with the window detector updating, with the
   server pinned to one core and the load generators (separate processes,
   keep-alive connections) on the other;
4. ``overload``: clients that ignore Retry-After hammer a server whose store
   cap (50,000 spans) and queue (8 batches) are small; the store stays within
   its cap, the receiver answers 503 with Retry-After, and the growth of
   resident memory stays near the store's own estimate.

The machine should be otherwise idle: the figures are CPU-bound. Each figure is
also given as a ratio against the bare parse measured in the same run, which
is steadier than spans/s on a shared machine; the last line has them all.
Where the time goes, stage by stage: ``benchmarks/ingest_stages.py``.

Usage: ``python benchmarks/ingest.py [--seconds 8] [--clients 2] [--json]``
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing as mp
import os
import random
import sys
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sre_space.detect.window import WindowDetector
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.otlp import decode_protobuf
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.senses import tune_gc
from sre_space.telemetry.store import TraceStore

SERVICES = ["frontend", "checkout", "payments", "inventory", "db"]


def make_payload(rnd: random.Random, spans: int = 512, attrs: int = 10) -> bytes:
    """One export request: spans in traces of 8, ``attrs`` attributes each."""
    req = ExportTraceServiceRequest()
    per_service = spans // len(SERVICES) + 1
    made = 0
    trace_id = rnd.randbytes(16)
    for service in SERVICES:
        rs = req.resource_spans.add()
        for key, value in (
            ("service.name", service),
            ("service.version", "1.4.2"),
            ("host.name", f"{service}-7d9f"),
            ("telemetry.sdk.language", "python"),
        ):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.flask", "0.49b0"
        for _ in range(min(per_service, spans - made)):
            if made % 8 == 0:
                trace_id = rnd.randbytes(16)
            s = ss.spans.add()
            s.trace_id, s.span_id = trace_id, rnd.randbytes(8)
            if made % 8:
                s.parent_span_id = rnd.randbytes(8)
            s.name = f"POST /api/{service}/{made % 7}"
            s.kind = 2 if made % 2 else 3
            start = time.time_ns() - rnd.randrange(10**9)
            s.start_time_unix_nano, s.end_time_unix_nano = start, start + rnd.randrange(10**8)
            if made % 50 == 0:
                s.status.code, s.status.message = 2, "upstream failed"
            for j in range(attrs):
                kv = s.attributes.add()
                if j == 0:
                    kv.key, kv.value.int_value = "http.response.status_code", 200
                elif j == 1:
                    kv.key, kv.value.string_value = "http.request.method", "POST"
                elif j % 3 == 0:
                    kv.key, kv.value.int_value = f"app.counter.{j}", rnd.randrange(10**6)
                else:
                    kv.key, kv.value.string_value = f"app.attribute.{j}", f"value-{rnd.randrange(10**6)}"
            made += 1
    return bytes(req.SerializeToString())


# --- in-process ceilings -----------------------------------------------------


def spans_per_s(fn: Any, body: bytes, spans: int, seconds: float = 2.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(body)
        n += 1
    return n * spans / (time.perf_counter() - t0)


def bare_parse(body: bytes) -> None:
    ExportTraceServiceRequest().ParseFromString(body)


# --- load generator (a separate process) --------------------------------------


CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CORES = set(CORES[:1])
CLIENT_CORES = set(CORES[1:]) or SERVER_CORES


def pin(cores: set[int]) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def client(
    port: int, seed: int, seconds: float, spans: int, attrs: int, cores: set[int], q: Any
) -> None:
    pin(cores)
    rnd = random.Random(seed)
    payloads = [make_payload(rnd, spans, attrs) for _ in range(16)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = refused = other = 0
    headers = {"Content-Type": "application/x-protobuf"}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        try:
            conn.request("POST", "/v1/traces", payloads[i % len(payloads)], headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            other += 1
            continue
        i += 1
        if resp.status == 200:
            ok += 1
        elif resp.status in (429, 503) and resp.getheader("Retry-After"):
            refused += 1
        else:
            other += 1
    q.put((ok, refused, other))


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def drive(
    clients: int,
    seconds: float,
    spans: int,
    attrs: int,
    store_cap: int,
    queue_batches: int,
    sample_rss: bool = False,
) -> dict[str, Any]:
    store = TraceStore(max_spans=store_cap)
    detector = WindowDetector(10.0, 800.0)
    store.subscribe(detector.observe)
    intake = Intake(store, max_batches=queue_batches, max_spans=queue_batches * spans).start()
    rx = OtlpHttpReceiver(intake, "127.0.0.1", 0, max_body_bytes=20 << 20).start()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=client, args=(rx.port, 1000 + i, seconds, spans, attrs, CLIENT_CORES, q)
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    # Let the clients build their payloads before the clock starts.
    while store.stats().spans_in == 0 and all(p.is_alive() for p in procs):
        time.sleep(0.01)
    rss0 = rss_bytes()
    samples: list[tuple[float, int]] = []
    in0, t0 = store.stats().spans_in, time.perf_counter()
    while any(p.is_alive() for p in procs):
        if sample_rss:
            samples.append((time.perf_counter() - t0, rss_bytes()))
        time.sleep(0.05)
    intake.flush(30)
    elapsed = time.perf_counter() - t0
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    st, ist = store.stats(), intake.stats()
    rx.stop()
    intake.stop()
    return {
        "spans_per_s": (st.spans_in - in0) / elapsed,
        "requests_ok": sum(r[0] for r in results),
        "requests_refused_503": sum(r[1] for r in results),
        "requests_other": sum(r[2] for r in results),
        "spans_held": st.spans_held,
        "store_cap_spans": store_cap,
        "store_bytes_estimate": st.bytes_held,
        "evicted_spans": st.evicted_spans,
        "refused_requests_counted": ist.refused_requests,
        # Every span the intake accepted (answered 200) reached the store.
        "accepted_not_stored": sum(ist.accepted.values()) - st.spans_in,
        "detector_signals": len(detector.signals()),
        # Peak growth over the first and the second half: bounded memory plateaus.
        "rss_growth_first_half": max(
            [r - rss0 for t, r in samples if t < elapsed / 2], default=0
        )
        if sample_rss
        else None,
        "rss_growth_bytes": max([r - rss0 for _, r in samples], default=0) if sample_rss else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--spans", type=int, default=512, help="spans per request")
    ap.add_argument("--attrs", type=int, default=10, help="attributes per span")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--default-gc", action="store_true", help="keep CPython's GC thresholds (the mind raises them)"
    )
    args = ap.parse_args()

    pin(SERVER_CORES)  # the server: one core; the load generators get the others
    if not args.default_gc:
        tune_gc()  # as the mind does (Senses.start)
    body = make_payload(random.Random(1), args.spans, args.attrs)
    bare = spans_per_s(bare_parse, body, args.spans)
    decode = spans_per_s(decode_protobuf, body, args.spans)
    # Overload first, while the heap is still small, so resident memory growth shows.
    over = drive(
        max(4, args.clients * 4), args.seconds, args.spans, args.attrs, 50_000, 8, True
    )
    e2e = drive(args.clients, args.seconds, args.spans, args.attrs, 1_000_000, 256)
    doc = {
        "payload": {"spans": args.spans, "attributes_per_span": args.attrs, "bytes": len(body)},
        "gc_thresholds": gc.get_threshold(),
        "bare_parse_spans_per_s": round(bare),
        "decode_spans_per_s": round(decode),
        "end_to_end": e2e,
        "decode_over_bare": round(decode / bare, 3),
        "end_to_end_over_bare": round(e2e["spans_per_s"] / bare, 3),
        "overload": over,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"payload: {args.spans} spans x {args.attrs} attributes, {len(body)} bytes")
    print(f"bare protobuf parse : {bare:>12,.0f} spans/s (ceiling, = 1)")
    print(f"decode to spans     : {decode:>12,.0f} spans/s = {decode / bare:.3f} of bare parse")
    print(
        f"end to end (1 core) : {e2e['spans_per_s']:>12,.0f} spans/s accepted "
        f"= {doc['end_to_end_over_bare']:.3f} of bare parse "
        f"({e2e['requests_ok']} ok, {e2e['requests_refused_503']} x 503)"
    )
    growth = over["rss_growth_bytes"] or 0
    half = over["rss_growth_first_half"] or 0
    print(
        f"overload            : {over['spans_per_s']:>12,.0f} spans/s accepted "
        f"= {over['spans_per_s'] / bare:.3f} of bare parse; "
        f"{over['requests_refused_503']} x 503 with Retry-After, "
        f"{over['requests_ok']} ok, {over['requests_other']} other; store held "
        f"{over['spans_held']:,} of cap {over['store_cap_spans']:,} spans "
        f"(~{over['store_bytes_estimate'] / 2**20:.0f} MiB est.), "
        f"RSS grew {half / 2**20:.0f} MiB in the first half, {growth / 2**20:.0f} MiB in all"
    )
    # One line of figures, each against the bare parse of this run.
    print(
        f"ingest: end-to-end {e2e['spans_per_s']:,.0f} spans/s = "
        f"{doc['end_to_end_over_bare']:.3f} of bare parse ({bare:,.0f} spans/s); "
        f"decode {decode / bare:.3f} of bare parse; overload: "
        f"{over['requests_refused_503']} x 503 + Retry-After, "
        f"{over['requests_other']} other, store {over['spans_held']:,}/{over['store_cap_spans']:,} spans; "
        f"accepted but not stored: {e2e['accepted_not_stored'] + over['accepted_not_stored']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
