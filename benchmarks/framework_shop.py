"""Four faults on a shop built with ordinary frameworks, one after another: as an outside tester judges.

The shop (``benchmarks/framework_shop_app.py``) is user code: a Starlette
gateway in front of catalog (Flask, SQLAlchemy QueuePool on SQLite), pricing
(Flask), orders (Starlette) and payments (Flask), each its own process traced
by OpenTelemetry's own instrumentation libraries and exporting OTLP/HTTP to a
real mind started here (free loopback ports, a temporary home, ``--policy``,
dry-run by default). A load generator thread (plain httpx, not traced) sends
steady traffic to the gateway. Faults are set through each service's
``/admin/config`` route, which is not traced, so no fault name reaches telemetry:

- ``slow-db``: every query behind catalog's pool sleeps 600 ms (pool exhausted);
- ``payments-hang``: the payments handler blocks (the gateway's httpx times out);
- ``pricing-killed``: pricing gets SIGKILL (callers cannot connect);
- ``orders-bad-release``: orders runs a release that raises ``KeyError`` on half its requests.

Each fault stays ``--fault-s`` seconds, is reverted (pricing restarted), and
``--recovery`` seconds pass before the next. Incidents are attributed to the
fault during whose slot they were detected. Prints the timeline (Scout, Brain
and status lines) and one line per fault: incidents opened, root-cause
service, fault class, TTD. Floor: one incident per fault, with the right
service. Exit 1 below the floor.

Usage: ``python benchmarks/framework_shop.py [--faults slow-db,...] [--recovery 50] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from sre_space.config import Settings
from sre_space.mind import Mind
from sre_space.safe_text import printable

HERE = Path(__file__).resolve().parent
APP = HERE / "framework_shop_app.py"
SERVICES = ("catalog", "pricing", "orders", "payments", "gateway")
READY_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stamp(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%H:%M:%S}"


def _say(message: str) -> None:
    print(f"{_stamp(time.time())} {message}", file=sys.stderr, flush=True)


class Shop:
    """The five service processes: start, configure, kill, restart, stop."""

    def __init__(self, otlp: str, workdir: Path) -> None:
        self.otlp = otlp
        self.workdir = workdir
        self.ports = {name: _free_port() for name in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(timeout=5.0)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> Shop:
        for name in SERVICES:
            self.launch(name)
        for name in SERVICES:
            self.wait_ready(name)
        return self

    def launch(self, name: str) -> None:
        cmd = [sys.executable, str(APP), name, "--port", str(self.ports[name]), "--otlp", self.otlp]
        if name == "gateway":
            cmd += [f"--peer={p}={self.url(p)}" for p in SERVICES if p != "gateway"]
        if name == "catalog":
            cmd += ["--db", str(self.workdir / "catalog.db")]
        out = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()

    def wait_ready(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.workdir / (name + '.log')}")
            try:
                if self.http.get(f"{self.url(name)}/admin/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready after {timeout_s:g} s")

    def configure(self, name: str, **knobs: Any) -> None:
        """Set a service's knobs, retrying: on a loaded machine it may be slow to answer."""
        deadline = time.time() + 30
        while True:
            try:
                self.http.post(f"{self.url(name)}/admin/config", json=knobs).raise_for_status()
                return
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def restart(self, name: str) -> None:
        self.launch(name)
        self.wait_ready(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.http.close()


class Load:
    """Steady traffic to the gateway: ``rate`` requests/s, 60% /products, 40% /checkout."""

    def __init__(self, gateway: str, rate: float = 8.0) -> None:
        self.gateway = gateway
        self.rate = rate
        self.results: list[tuple[float, bool]] = []  # (sent at, answered 2xx)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="load")
        self._http = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=32))
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _one(self, n: int) -> None:
        sent = time.time()
        try:
            if n % 5 < 3:
                ok = self._http.get(f"{self.gateway}/products").is_success
            else:
                ok = self._http.post(f"{self.gateway}/checkout").is_success
        except httpx.HTTPError:
            ok = False
        self.results.append((sent, ok))

    def _run(self) -> None:
        n = 0
        next_at = time.time()
        while not self._stop.is_set():
            self._pool.submit(self._one, n)
            n += 1
            next_at += 1.0 / self.rate
            self._stop.wait(max(0.0, next_at - time.time()))

    def failed(self, start: float, end: float) -> tuple[int, int]:
        mine = [ok for ts, ok in list(self.results) if start <= ts < end]
        return sum(not ok for ok in mine), len(mine)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


@dataclass(frozen=True)
class Fault:
    service: str  # the expected root-cause service
    fault_class: str  # the expected class
    inject: Callable[[Shop], None]
    revert: Callable[[Shop], None]


FAULTS: dict[str, Fault] = {
    "slow-db": Fault(
        "catalog",
        "saturation",
        lambda shop: shop.configure("catalog", db_delay_s=0.6),
        lambda shop: shop.configure("catalog", db_delay_s=0.0),
    ),
    "payments-hang": Fault(
        "payments",
        "timeout",
        lambda shop: shop.configure("payments", stall=True),
        lambda shop: shop.configure("payments", stall=False),
    ),
    "pricing-killed": Fault(
        "pricing", "unreachable", lambda shop: shop.kill("pricing"), lambda shop: shop.restart("pricing")
    ),
    "orders-bad-release": Fault(
        "orders",
        "error",
        lambda shop: shop.configure("orders", release="1.5.0"),
        lambda shop: shop.configure("orders", release="1.4.0"),
    ),
}


def _wait_for_spans(mind: Mind, timeout_s: float = 120.0) -> None:
    """Until every service's spans arrived (all five exporters work)."""
    deadline = time.time() + timeout_s
    seen: set[str] = set()
    while time.time() < deadline:
        since = time.time_ns() - int(30e9)
        seen = {s.service for s in mind.store.spans_since(since)}
        if seen >= set(SERVICES):
            return
        time.sleep(1)
    _say(f"spans only from {sorted(seen)} so far; going on")


def _slot(shop: Shop, name: str, fault_s: float, recovery_s: float) -> dict[str, Any]:
    fault = FAULTS[name]
    fault.inject(shop)
    injected_at = time.time()
    _say(f"inject {name}")
    time.sleep(fault_s)  # the fault's length is the scenario, not a wait on the system
    fault.revert(shop)  # pricing: restarted, and answering again
    reverted_at = time.time()
    _say(f"revert {name}")
    time.sleep(recovery_s)
    return {
        "fault": name,
        "injected_at": injected_at,
        "reverted_at": reverted_at,
        "expected": fault.service,
        "expected_class": fault.fault_class,
    }


def _scored(mind: Mind, load: Load, slots: list[dict[str, Any]], end: float) -> None:
    """Each slot's incidents (detected between its injection and the next) and figures."""
    for slot, nxt in zip(slots, [*slots[1:], None], strict=True):
        until = nxt["injected_at"] if nxt else end
        mine = [i for i in mind.log.since(slot["injected_at"]) if i.detected_at < until]
        first = mine[0] if mine else None
        failed, sent = load.failed(slot["injected_at"], slot["reverted_at"])
        # Was the shop itself healthy again before the next fault (the last half of recovery)?
        calm_failed, calm_sent = load.failed((slot["reverted_at"] + until) / 2, until)
        slot.update(
            incidents=[i.id for i in mine],
            root_cause=first.root_cause.get("service") if first else None,
            candidates=[
                {k: c.get(k) for k in ("service", "operation", "fault_class", "confidence", "score")}
                for c in (first.root_cause.get("candidates") or [])[:5]
            ]
            if first
            else [],
            fault_class=first.root_cause.get("fault_class") if first else None,
            status=first.status if first else None,
            ttd_s=round(first.detected_at - slot["injected_at"], 2) if first else None,
            failed_requests=failed,
            requests=sent,
            recovered_failed_requests=calm_failed,
            recovered_requests=calm_sent,
        )


def run(faults: list[str], fault_s: float, recovery_s: float, policy: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="sre-space-framework-shop-"))
    settings = Settings(
        home=workdir / "home",
        otlp_http_port=_free_port(),
        otlp_grpc_port=_free_port(),
        policy=policy,
    )
    _say(f"work directory {workdir} (service logs, the mind's home)")
    mind = Mind(settings).start()
    shop: Shop | None = None
    load: Load | None = None
    try:
        shop = Shop(f"http://127.0.0.1:{settings.otlp_http_port}", workdir).start()
        load = Load(shop.url("gateway")).start()
        _wait_for_spans(mind)
        time.sleep(3 * settings.detect_window_s)  # baselines learned, warm-up over
        sys.path.insert(0, str(HERE))
        from sequence import steady

        steady(mind, settings)
        warmup = len(mind.log.list(limit=1000))
        started = time.time()
        slots = [_slot(shop, name, fault_s, recovery_s) for name in faults]
        end = time.time()
        _scored(mind, load, slots, end)
        incidents = mind.log.since(started)
        timeline = [
            {"ts": e.ts, "incident": e.incident_id, "agent": e.agent, "message": e.message}
            for e in mind.log.events(0, limit=100_000)
            if e.ts >= started and e.incident_id and (e.kind == "status" or e.agent in ("scout", "brain"))
        ]
        marks = [
            {"ts": s[key], "incident": None, "agent": "bench", "message": f"{what} {s['fault']}"}
            for s in slots
            for key, what in (("injected_at", "inject"), ("reverted_at", "revert"))
        ]
        return {
            "policy": policy,
            "fault_s": fault_s,
            "recovery_s": recovery_s,
            "workdir": str(workdir),
            "warmup_incidents": warmup,
            "slots": slots,
            "incidents": [
                {
                    "id": i.id,
                    "status": i.status,
                    "root_cause": i.root_cause.get("service"),
                    "fault_class": i.root_cause.get("fault_class"),
                    "recurs": i.recurs,
                    "detected_at": i.detected_at,
                    "events": [e.line() for e in mind.log.events_of(i.id)],
                }
                for i in incidents
            ],
            "timeline": sorted(timeline + marks, key=lambda e: e["ts"]),
        }
    finally:
        if load is not None:
            load.stop()
        if shop is not None:
            shop.stop()
        mind.stop()


def _right(slot: dict[str, Any]) -> bool:
    return len(slot["incidents"]) == 1 and slot["root_cause"] == slot["expected"]


def verdict(doc: dict[str, Any]) -> dict[str, Any]:
    slots = doc["slots"]
    right = [s for s in slots if _right(s)]
    ttds = sorted(s["ttd_s"] for s in slots if s["ttd_s"] is not None)
    return {
        "faults": len(slots),
        "incidents": len(doc["incidents"]),
        "one_right_incident": len(right),
        "right_class": sum(s["fault_class"] == s["expected_class"] for s in right),
        "ttd_median_s": round(statistics.median(ttds), 2) if ttds else None,
        "floor_met": len(right) == len(slots) and len(doc["incidents"]) == len(slots),
    }


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C: children killed in ``finally``


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset, in order")
    parser.add_argument("--recovery", type=float, default=50.0, help="seconds between revert and next fault")
    parser.add_argument("--fault-s", type=float, default=30.0, help="seconds each fault stays")
    parser.add_argument("--policy", default="dry-run")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        parser.error(f"unknown fault(s): {', '.join(unknown) or '(none)'}; known: {', '.join(FAULTS)}")
    signal.signal(signal.SIGTERM, _on_term)
    try:
        doc = run(faults, args.fault_s, args.recovery, args.policy)
    except KeyboardInterrupt:
        print("sre-space: interrupted", file=sys.stderr)
        sys.exit(130)
    doc["verdict"] = v = verdict(doc)
    if args.json:
        print(json.dumps(doc, indent=2))
        sys.exit(0 if v["floor_met"] else 1)
    print("timeline")
    for e in doc["timeline"]:
        print(f"  {_stamp(e['ts'])} {e['incident'] or '-':<20} {e['agent']:<6} {printable(e['message'])[:160]}")
    print("\nfaults")
    for s in doc["slots"]:
        print(
            f"  {'ok ' if _right(s) else 'BAD'} {s['fault']:<19} incidents {len(s['incidents'])}  "
            f"root cause {s['root_cause']} (expected {s['expected']})  class {s['fault_class']} "
            f"(expected {s['expected_class']})  {s['status']}  TTD {s['ttd_s']} s  "
            f"({s['failed_requests']} of {s['requests']} requests failed while it lasted, "
            f"{s['recovered_failed_requests']} of {s['recovered_requests']} late in recovery)"
        )
    print(
        f"\n{v['faults']} faults, {v['incidents']} incidents, {v['one_right_incident']} with one "
        f"incident of the right service ({v['right_class']} of the right class too); TTD median "
        f"{v['ttd_median_s']} s (floor: {v['faults']} incidents, each fault one of the right "
        "service): " + ("met" if v["floor_met"] else "NOT met")
    )
    sys.exit(0 if v["floor_met"] else 1)


if __name__ == "__main__":
    main()
