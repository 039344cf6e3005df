"""Every lab fault one after another in ONE run: one fault, one incident, the right cause.

Starts a fresh lab and a real mind (in this process, free loopback ports, a
temporary home, the policy of ``--policy``), waits for spans, then injects
each fault of the catalogue ``--spacing`` seconds apart: each fault stays
until the squad is done with its incident (or ``--spacing`` passed), is
reverted (the squad lifts its own workarounds, an open circuit or load
shedding, by half-open probes), and the next fault follows at the next slot. Incidents are
attributed to the fault during whose slot they were detected.

Prints the timeline (every incident's status changes and the squad's key
steps) and one line per fault: incidents opened, root cause, TTD (detection
minus injection). Floor: one incident per fault, each with the fault's
expected root-cause service; TTD median <= 3 s. Exit 1 below the floor.

With ``--json``, the timeline holds each of the Brain's looks with its
diagnosis (evidence and candidates), so a wrong first look can be studied.

Usage: ``python benchmarks/sequence.py [--spacing 60] [--policy auto] [FAULT ...] [--json]``
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.errors import Unavailable
from sre_space.lab.control import LabClient
from sre_space.lab.faults import FAULTS
from sre_space.lab.launcher import start_lab, stop_lab
from sre_space.mind import Mind

DONE = ("mitigated", "degraded", "resolved", "escalated")
TTD_FLOOR_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steady(mind: Mind, settings: Settings, hold_s: float = 10.0, timeout_s: float = 180.0) -> bool:
    """Wait until the system has been healthy for ``hold_s`` (a freshly started lab warms up)."""
    deadline = time.time() + timeout_s
    calm_since: float | None = None
    while time.time() < deadline:
        bad = mind.detector.anomalous(settings.error_rate_threshold, settings.min_requests)
        # A mitigated incident is still watched: a fault at its cause now would be
        # its cause showing again (degraded), not a new incident. Start after it resolved.
        watched = ("open", "diagnosing", "mitigating", "mitigated", "degraded")
        busy = any(i.status in watched for i in mind.log.list(limit=50))
        if bad or busy:
            calm_since = None
        else:
            calm_since = calm_since or time.time()
            if time.time() - calm_since >= hold_s:
                return True
        time.sleep(0.5)
    print("  not steady before the faults; going on", file=sys.stderr)
    return False


def _revert(client: LabClient, fault: str) -> None:
    """Revert, retrying: on a loaded machine the control API may be slow to answer."""
    for attempt in range(5):
        try:
            client.revert(fault)
            return
        except Unavailable as exc:
            print(f"  revert {fault}: {exc} (attempt {attempt + 1})", file=sys.stderr)
            time.sleep(3)


def _slot(mind: Mind, client: LabClient, settings: Settings, fault: str, spacing: float) -> dict[str, Any]:
    spec = FAULTS[fault]
    asked_at = time.time()
    for attempt in range(3):
        try:
            client.inject(fault)
            break
        except Unavailable as exc:  # a loaded machine: the lab did not answer in time
            print(f"  inject {fault}: {exc} (attempt {attempt + 1})", file=sys.stderr)
            time.sleep(3)
    # A fault is on once the chaos API says so: a bad release is a deploy that
    # restarts processes first, which is not time the squad could see anything.
    injected_at = time.time()
    print(f"{datetime.now(UTC):%H:%M:%S} inject {fault}", file=sys.stderr, flush=True)
    # The fault stays until the squad is done with an incident of this slot.
    while time.time() < injected_at + spacing - 15:
        opened = mind.log.since(injected_at)
        if opened and all(i.status in DONE for i in opened):
            break
        time.sleep(0.5)
    _revert(client, fault)  # the squad lifts its own workarounds (half-open probes)
    reverted_at = time.time()
    while time.time() < injected_at + spacing:
        time.sleep(0.5)
    opened = mind.log.since(injected_at)
    first = opened[0] if opened else None
    return {
        "fault": fault,
        "injected_at": injected_at,
        "inject_s": round(injected_at - asked_at, 2),
        "reverted_at": reverted_at,
        "expected": spec.expect.get("root_cause"),
        "incidents": [i.id for i in opened],
        "root_cause": first.root_cause.get("service") if first else None,
        "expected_class": spec.fault_class,
        "fault_class": first.root_cause.get("fault_class") if first else None,
        "status": first.status if first else None,
        "action": first.remediation.get("action") if first else None,
        "ttd_s": round(first.detected_at - injected_at, 2) if first else None,
    }


def run(faults: list[str], spacing: float, policy: str) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="sre-space-sequence-")) / "home"
    settings = Settings(
        home=home, otlp_http_port=_free_port(), otlp_grpc_port=_free_port(), policy=policy
    )
    start_lab(settings)
    mind = Mind(settings).start()
    try:
        client = LabClient.from_settings(settings)
        deadline = time.time() + 60
        while mind.store.stats().spans_in == 0 and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3 * settings.detect_window_s)  # baselines learned, warm-up over
        steady(mind, settings)
        started = time.time()
        slots = []
        for fault in faults:
            # A slot's incidents are those detected before the next injection.
            slots.append(_slot(mind, client, settings, fault, spacing))
        time.sleep(5)
        incidents = mind.log.since(started)
        for slot, nxt in zip(slots, [*slots[1:], None], strict=True):
            until = nxt["injected_at"] if nxt else float("inf")
            mine = [i for i in incidents if slot["injected_at"] <= i.detected_at < until]
            slot["incidents"] = [i.id for i in mine]
        # Each of the Brain's looks with its diagnosis (evidence, candidates): a
        # first look that named the wrong service can be read afterwards.
        timeline = [
            {"ts": e.ts, "incident": e.incident_id, "agent": e.agent, "message": e.message}
            | ({"diagnosis": e.data["diagnosis"]} if "diagnosis" in e.data else {})
            for e in mind.log.events(0, limit=100_000)
            if e.ts >= started
            and e.incident_id
            and (e.kind == "status" or e.agent in ("brain",) or e.message.startswith("recurs"))
        ]
        return {
            "spacing_s": spacing,
            "policy": policy,
            "slots": slots,
            "incidents": [
                {
                    "id": i.id,
                    "status": i.status,
                    "root_cause": i.root_cause.get("service"),
                    "recurs": i.recurs,
                    "detected_at": i.detected_at,
                }
                for i in incidents
            ],
            "timeline": timeline,
        }
    finally:
        mind.stop()
        stop_lab(settings)


def _right(slot: dict[str, Any]) -> bool:
    expected = slot["expected"]
    wanted = expected if isinstance(expected, list) else [expected]
    return slot["root_cause"] in wanted


def verdict(doc: dict[str, Any]) -> dict[str, Any]:
    slots = doc["slots"]
    right = [s for s in slots if len(s["incidents"]) == 1 and _right(s)]
    classed = [s for s in right if s["fault_class"] == s["expected_class"]]
    ttds = [s["ttd_s"] for s in slots if s["ttd_s"] is not None]
    median = statistics.median(ttds) if ttds else None
    return {
        "faults": len(slots),
        "incidents": len(doc["incidents"]),
        "one_right_incident": len(right),
        "right_class": len(classed),
        "ttd_median_s": median,
        "floor_met": len(right) == len(slots)
        and len(doc["incidents"]) == len(slots)
        and median is not None
        and median <= TTD_FLOOR_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", default=list(FAULTS))
    parser.add_argument("--spacing", type=float, default=60.0, help="seconds between injections")
    parser.add_argument("--policy", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    doc = run(args.faults, args.spacing, args.policy)
    doc["verdict"] = verdict(doc)
    if args.json:
        print(json.dumps(doc, indent=2))
        sys.exit(0 if doc["verdict"]["floor_met"] else 1)
    print("timeline")
    for e in doc["timeline"]:
        print(f"  {datetime.fromtimestamp(e['ts'], UTC):%H:%M:%S} {e['incident']} {e['agent']:<6} {e['message'][:150]}")
    print("\nfaults")
    for s in doc["slots"]:
        mark = "ok " if len(s["incidents"]) == 1 and _right(s) else "BAD"
        print(
            f"  {mark} {s['fault']:<16} incidents {len(s['incidents'])}  root cause "
            f"{s['root_cause']} (expected {s['expected']})  class {s['fault_class']} "
            f"(expected {s['expected_class']})  {s['status']}  {s['action'] or '-'}  "
            f"TTD {s['ttd_s']} s (inject took {s['inject_s']} s)"
        )
    v = doc["verdict"]
    print(
        f"\n{v['faults']} faults, {v['incidents']} incidents, {v['one_right_incident']} with one "
        f"incident of the right cause ({v['right_class']} of the right class too); TTD median {v['ttd_median_s']} s "
        f"(floor: {v['faults']} right, median <= {TTD_FLOOR_S:g} s): "
        + ("met" if v["floor_met"] else "NOT met")
    )
    sys.exit(0 if v["floor_met"] else 1)


if __name__ == "__main__":
    main()
