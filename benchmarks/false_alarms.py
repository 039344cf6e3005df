"""False alarms: the embedded lab under its load generator, no fault, for N minutes.

Starts a fresh lab and a real mind (in this process, with its receivers on
free loopback ports, in a temporary home), waits until spans flow, then lets
both run for ``--minutes`` with no chaos and prints how many incidents were
opened, how many spans and requests the mind judged, and each incident's
first line if any. A product that pages on a healthy system is not used for
long: the figure to beat is zero.

Usage: ``python benchmarks/false_alarms.py [--minutes 10] [--json]``
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.lab.launcher import start_lab, stop_lab
from sre_space.mind import Mind


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(minutes: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="sre-space-false-alarms-")) / "home"
    settings = Settings(home=home, otlp_http_port=_free_port(), otlp_grpc_port=_free_port())
    start_lab(settings)
    mind = Mind(settings).start()
    try:
        deadline = time.time() + 60
        while mind.store.stats().spans_in == 0 and time.time() < deadline:
            time.sleep(0.5)
        started = time.time()
        spans_before = mind.store.stats().spans_in
        time.sleep(minutes * 60)  # the measurement itself: a healthy system, left alone
        incidents = mind.log.since(started)
        return {
            "minutes": minutes,
            "incidents": len(incidents),
            "spans_judged": mind.store.stats().spans_in - spans_before,
            "opened": [
                {
                    "id": i.id,
                    "status": i.status,
                    "root_cause": i.root_cause.get("service"),
                    "signature": i.signature,
                }
                for i in incidents
            ],
        }
    finally:
        mind.stop()
        stop_lab(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    doc = run(args.minutes)
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(
        f"{doc['minutes']:g} min fault-free, {doc['spans_judged']:,} spans judged: "
        f"{doc['incidents']} incident(s) opened"
    )
    for inc in doc["opened"]:
        print(f"  {inc['id']} {inc['status']} {inc['root_cause']} {inc['signature']}")


if __name__ == "__main__":
    main()
