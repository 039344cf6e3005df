"""Notifications out, on real parts: how fast an escalation reaches a sink, and that it does once.

The sink is a webhook receiver on 127.0.0.1 in this process (a real HTTP
server that records every request and answers as each part needs). Every
escalation is the squad's own: an Alertmanager alert about a service nobody
watches is POSTed to the mind's ``/api/alerts``; with no traces and no
target, the Fixer looks again twice and escalates (about 8 s each, one at a
time), and the mind's outbox and worker deliver it.

1. Latency: a real ``Mind`` in this process, ``--n`` alerts at once; for each
   escalation, from its status change's time (``notification.ts`` in the
   webhook's document, the audit entry's time) to the sink reading the request.
   Median and p95 (nearest rank). Floor (issue 24): median <= 2 s.
2. SIGKILL: ``sre-space run`` in a subprocess, killed with SIGKILL after the
   escalation and before delivery, then started again on the same home, the
   sink healthy. Two kinds, ``--runs`` each: the sink down (it answers 503
   until the kill), and the message in flight (the sink has read it and holds
   its 200 until the kill: the one window the worker documents as sent twice,
   with the same ``Idempotency-Key``). Counted per run: the 2xx the sink gave
   for the notification (0 lost, 2 or more doubled). Floor: sink down, lost 0
   and doubled 0; in flight, lost 0 (its doubles are said, with their keys).
3. Outage: the sink answers 500 for ``--outage-s`` from the first attempt, then
   200; the escalation delivered exactly once, and how long after the recovery.

Usage: ``python benchmarks/notify.py [--n 20] [--runs 5] [--outage-s 60] [--json]``
Exit 1 below a floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.mind import Mind
from sre_space.notify.outbox import Outbox
from sre_space.paths import Paths

DOWN, IN_FLIGHT = "down", "in-flight"
SETTLE_S = 3.0  # after a delivery: six of the worker's looks, for a double to show


@dataclass
class Got:
    at: float  # time.time() once the request was read
    key: str  # the Idempotency-Key header
    doc: dict[str, Any]
    status: int  # what the sink answered (or would have, for a held request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a held request's answer to a killed mind: nobody is there to read it


class Sink:
    """A webhook receiver on 127.0.0.1 that records what it gets and answers as ``mode`` says.

    ``ok``: 200. ``down``: 503. ``hold``: 200, sent only once ``release`` is set.
    With ``outage_s``, the first request starts an outage: 500 for that long.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.outage_s = 0.0
        self.recovers_at = 0.0
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[Got] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = Got(time.time(), self.headers.get("Idempotency-Key", ""), json.loads(body), 0)
                got.status, hold = sink.answer(got.at)
                with sink.lock:
                    sink.requests.append(got)
                if hold:
                    sink.release.wait(120)
                try:
                    self.send_response(got.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the mind was killed while we held its request
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, at: float) -> tuple[int, bool]:
        with self.lock:
            if self.outage_s and not self.recovers_at:
                self.recovers_at = at + self.outage_s
            if at < self.recovers_at:
                return 500, False
            return {"ok": (200, False), "down": (503, False), "hold": (200, True)}[self.mode]

    def of(self, service: str, status_class: int | None = None) -> list[Got]:
        """The requests about the incident an alert about ``service`` opened."""
        with self.lock:
            found = [g for g in self.requests if _service(g.doc) == service]
        return [g for g in found if status_class is None or g.status // 100 == status_class]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _service(doc: dict[str, Any]) -> str:
    return next(
        (str(a.get("service")) for a in doc.get("audit", []) if a.get("step") == "alert"), ""
    )


def make_home(path: Path, sink: Sink) -> Path:
    Paths(path).ensure()
    (path / "config.toml").write_text(
        f'[notify.hook]\nkind = "webhook"\nurl = "{sink.url}"\nstatuses = ["escalated"]\n'
    )
    return path


def alert(port: int, service: str) -> None:
    """An Alertmanager notification about ``service``: the mind opens an incident for the squad."""
    doc = {
        "version": "4",
        "status": "firing",
        "receiver": "sre-space",
        "groupKey": f'{{}}:{{service="{service}"}}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "service": service},
                "annotations": {"summary": f"{service} fails requests"},
            }
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/alerts",
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        if resp.status != 202:
            raise RuntimeError(f"the mind answered the alert {resp.status}")


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def outbox_counts(home: Path) -> dict[str, int]:
    outbox = Outbox(Paths(home).incidents_db)
    try:
        found = outbox.counts().get("hook", {})
    finally:
        outbox.close()
    return {s: found.get(s, 0) for s in ("pending", "sent", "failed")}


# --- 1 and 3: a mind in this process --------------------------------------------------


def latency_and_outage(
    work: Path, n: int, outage_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    sink = Sink()
    home = make_home(work / "home", sink)
    settings = Settings(home=home, otlp_http_port=0, otlp_grpc_port=-1, policy="auto")
    mind = Mind(settings).start()
    try:
        port = mind.senses.http.port
        services = [f"svc-{i:02d}" for i in range(n)]
        for service in services:
            alert(port, service)
        wait(lambda: all(sink.of(s) for s in services), 60 + 30 * n, f"{n} escalations delivered")
        time.sleep(SETTLE_S)
        seconds = [
            sink.of(s)[0].at - float(sink.of(s)[0].doc["notification"]["ts"]) for s in services
        ]
        latency = {
            "n": n,
            "median_s": round(statistics.median(seconds), 4),
            "p95_s": round(nearest_rank(seconds, 0.95), 4),
            "max_s": round(max(seconds), 4),
            "requests": sum(len(sink.of(s)) for s in services),
            "seconds": [round(s, 4) for s in seconds],
        }

        sink.outage_s = outage_s  # the next request starts the outage
        alert(port, "outage")
        wait(lambda: sink.of("outage", 2), 3 * outage_s + 180, "the delivery after the outage")
        time.sleep(SETTLE_S)
        got = sink.of("outage")
        ok = sink.of("outage", 2)
        outage = {
            "outage_s": outage_s,
            "refused": len(got) - len(ok),
            "delivered": len(ok),
            "keys": len({g.key for g in ok}),
            "after_recovery_s": round(ok[0].at - sink.recovers_at, 2),
            "pending_after": outbox_counts(home)["pending"],
        }
    finally:
        mind.stop()
        sink.close()
    return latency, outage


# --- 2: a mind in a subprocess, killed --------------------------------------------------


@dataclass
class KillRun:
    kind: str
    pending_at_kill: int  # outbox rows still owed once the first mind was dead
    delivered: int  # 2xx the sink gave for the notification, over both minds
    keys: int  # distinct Idempotency-Keys among them
    requests: int
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> bool:
        return self.delivered == 0

    @property
    def doubled(self) -> bool:
        return self.delivered > 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mind(home: Path, port: int, out: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_SPACE_")}
    env.update(
        SRE_SPACE_HOME=str(home),
        SRE_SPACE_OTLP_HTTP_PORT=str(port),
        SRE_SPACE_OTLP_GRPC_PORT="-1",
        NO_COLOR="1",
    )
    with out.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sre_space", "run"], env=env, stdout=fh, stderr=subprocess.STDOUT
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the mind exited {proc.returncode}: {out.read_text()[-1500:]}")
        try:
            return bool(json.loads((home / "mind.json").read_text())["pid"] == proc.pid)
        except (OSError, ValueError, KeyError):
            return False

    wait(up, 180, "the mind to start")
    return proc


def kill_run(work: Path, kind: str) -> KillRun:
    sink = Sink()
    sink.mode = "down" if kind == DOWN else "hold"
    home, port, out = make_home(work / "home", sink), free_port(), work / "mind.out"
    service = "checkout"
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        first = start_mind(home, port, out)
        alert(port, service)
        wait(lambda: sink.of(service), 120, "the escalation's first attempt")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        sink.mode = "ok"
        sink.release.set()  # a held request is answered now, to nobody
        pending = outbox_counts(home)["pending"]
        second = start_mind(home, port, out)
        notes: list[str] = []
        try:
            wait(lambda: outbox_counts(home)["sent"] >= 1, 120, "the second mind's delivery")
        except TimeoutError as exc:  # counted (lost, or a row left pending), not raised
            notes.append(str(exc))
        time.sleep(SETTLE_S)
        ok = sink.of(service, 2)
        run = KillRun(
            kind, pending, len(ok), len({g.key for g in ok}), len(sink.of(service)), notes
        )
        if outbox_counts(home)["pending"]:
            run.notes.append("a row still pending")
        return run
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        sink.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="escalations timed")
    parser.add_argument("--runs", type=int, default=5, help="SIGKILL runs of each kind")
    parser.add_argument(
        "--outage-s", type=float, default=60.0, help="how long the sink answers 500"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for name in [k for k in os.environ if k.startswith("SRE_SPACE_")]:
        del os.environ[name]  # the shell's settings (a state_url) are not this benchmark's
    with tempfile.TemporaryDirectory(prefix="notify-") as tmp:
        latency, outage = latency_and_outage(Path(tmp) / "latency", args.n, args.outage_s)
        print(
            f"latency: {args.n} escalations, median {latency['median_s']:.3f} s, "
            f"p95 {latency['p95_s']:.3f} s, max {latency['max_s']:.3f} s, "
            f"{latency['requests']} requests",
            file=sys.stderr,
            flush=True,
        )
        runs: list[KillRun] = []
        for i in range(args.runs * 2):
            kind = (DOWN, IN_FLIGHT)[i % 2]
            runs.append(kill_run(Path(tmp) / f"kill-{i}", kind))
            print(f"kill run {i + 1} ({kind}): {asdict(runs[-1])}", file=sys.stderr, flush=True)
    down = [r for r in runs if r.kind == DOWN]
    flight = [r for r in runs if r.kind == IN_FLIGHT]
    lost = sum(r.lost for r in down)
    doubled = sum(r.doubled for r in down)
    flight_lost = sum(r.lost for r in flight)
    flight_doubled = sum(r.doubled for r in flight)
    one_key = sum(r.keys == 1 for r in flight)
    if args.json:
        print(
            json.dumps(
                {
                    "latency": latency,
                    "kill": [asdict(r) for r in runs],
                    "outage": outage,
                }
            )
        )
    print(
        f"notify: latency median {latency['median_s']:.3f} s, p95 {latency['p95_s']:.3f} s "
        f"over {args.n} escalations (floor: median <= 2 s)\n"
        f"notify: SIGKILL with the sink down: {len(down)} runs, lost {lost}, doubled {doubled}\n"
        f"notify: SIGKILL with the message in flight: {len(flight)} runs, lost {flight_lost}, "
        f"doubled {flight_doubled} (one Idempotency-Key in {one_key})\n"
        f"notify: sink answering 500 for {args.outage_s:.0f} s: delivered {outage['delivered']} "
        f"time(s), {outage['after_recovery_s']:.1f} s after it recovered "
        f"({outage['refused']} attempts refused)"
    )
    ok = (
        latency["median_s"] <= 2.0
        and lost == doubled == flight_lost == 0
        and outage["delivered"] == 1
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
