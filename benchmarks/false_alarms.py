"""False alarms: a healthy system under load, no fault, for N minutes, on two topologies.

- ``lab``: the embedded lab under its load generator;
- ``shop``: a 14-service shop (gateway, cache, database, async consumers)
  traced by the real OpenTelemetry SDK and exported over OTLP/HTTP
  (``benchmarks/otel_shop.py`` says what it is and why).

For each, starts a real mind (in this process, with its receivers on free
loopback ports, in a temporary home), waits until spans flow, then lets it
run for ``--minutes`` with no chaos and prints how many incidents were
opened, how many spans the mind judged, and each incident's first line if
any. A product that pages on a healthy system is not used for long: the
floor is zero on each. Exit 1 when any incident opened.

Run it on a quiet machine. The shop's generator shares this process and its
cores with the mind: when something else takes the CPU, the shop really sends
less, everywhere at once, and Scout rightly sees traffic drop. The run prints
how far the generator fell behind its schedule when that exceeds a second.

Usage: ``python benchmarks/false_alarms.py [--minutes 10] [--topology lab|shop|both] [--json]``
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.incidents import Incident
from sre_space.lab.launcher import start_lab, stop_lab
from sre_space.mind import Mind


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _opened(mind: Mind, incident: Incident) -> dict[str, Any]:
    """An incident as Scout opened it: what it saw, in its words, and the signals."""
    opening = next(
        (e for e in mind.log.events_of(incident.id) if e.message.startswith("incident opened")),
        None,
    )
    signals = (opening.data or {}).get("signals", []) if opening else []
    return {
        "id": incident.id,
        "status": incident.status,
        "root_cause": incident.root_cause.get("service"),
        "signature": incident.signature,
        # the first thing to read about a false alarm
        "why": opening.message if opening else "",
        "signals": [f"{s['service']} {s['operation']}: {s.get('reason', '')}" for s in signals],
    }


def run(minutes: float, topology: str = "lab") -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"sre-space-false-alarms-{topology}-")) / "home"
    settings = Settings(home=home, otlp_http_port=_free_port(), otlp_grpc_port=_free_port())
    shop: Any = None
    if topology == "lab":
        start_lab(settings)
    mind = Mind(settings).start()
    if topology == "shop":
        sys.path.insert(0, str(Path(__file__).parent))
        from otel_shop import Shop

        shop = Shop(f"http://127.0.0.1:{settings.otlp_http_port}").start()
    try:
        deadline = time.time() + 60
        while mind.store.stats().spans_in == 0 and time.time() < deadline:
            time.sleep(0.5)
        # A fault-free measurement starts from a steady state: a freshly started
        # system warms up (first connections, caches), which is not a false alarm.
        sys.path.insert(0, str(Path(__file__).parent))
        from sequence import steady

        steady(mind, settings)
        warmup_incidents = len(mind.log.list(limit=1000))
        started = time.time()
        spans_before = mind.store.stats().spans_in
        if shop is not None:
            shop.max_behind_s = 0.0  # the measurement's own, not the warm-up's
        time.sleep(minutes * 60)  # the measurement itself: a healthy system, left alone
        incidents = mind.log.since(started)
        return {
            "topology": topology,
            "warmup_incidents": warmup_incidents,
            "minutes": minutes,
            "incidents": len(incidents),
            "spans_judged": mind.store.stats().spans_in - spans_before,
            # the shop's generator behind its schedule at worst (None on the lab)
            "generator_behind_s": round(shop.max_behind_s, 2) if shop is not None else None,
            "opened": [_opened(mind, i) for i in incidents],
        }
    finally:
        if shop is not None:
            shop.stop()
        mind.stop()
        if topology == "lab":
            stop_lab(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--topology", choices=("lab", "shop", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    topologies = ("lab", "shop") if args.topology == "both" else (args.topology,)
    docs = []
    for topology in topologies:
        doc = run(args.minutes, topology)
        docs.append(doc)
        if args.json:
            continue
        print(
            f"{doc['topology']:<5} {doc['minutes']:g} min fault-free, {doc['spans_judged']:,} "
            f"spans judged: {doc['incidents']} incident(s) opened "
            f"({doc['warmup_incidents']} while it warmed up, not counted)",
            flush=True,
        )
        if (doc["generator_behind_s"] or 0) > 1:
            print(
                f"  the shop's generator fell {doc['generator_behind_s']} s behind its schedule "
                "at worst: the machine starved it, and its traffic really dropped"
            )
        for inc in doc["opened"]:
            print(f"  {inc['id']} {inc['status']} {inc['root_cause']} {inc['signature']}")
            print(f"    {inc['why'][:300]}")
            for line in inc["signals"][:8]:
                print(f"      {line[:200]}")
    if args.json:
        print(json.dumps(docs, indent=2))
    sys.exit(1 if any(d["incidents"] for d in docs) else 0)


if __name__ == "__main__":
    main()
