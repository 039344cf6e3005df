"""One fault, one incident: incidents counted per fault, on the lab and on recorded cases.

- **Lab**: each of the eight lab faults, ``--runs`` times (5 by default), each
  run a drill (``sre_space.drill.run``) in a fresh home with free loopback
  ports, in a process of its own. The fault stays on for ``--hold`` seconds
  (30 by default) after the squad is done with its incident, as a fault does
  until someone reverts it, then it is reverted and the lab must be steady
  again. Every incident opened from the injection to that steady state is
  counted; more than one is an extra (the Scout line that opened it is shown).
- **Replays**: each recorded case of ``../shared/data`` (or ``--sets``),
  replayed through the live squad as ``benchmarks/replay.py`` does (the
  fault-free recording, then the incident one, dry-run, an empty memory):
  the incidents opened while the incident recording played. Incidents while
  the fault-free recording played are false alarms, counted apart.

Floors (issue 24): 0 extra incidents in 40 lab runs; at most one incident per
fault in >= 90% of replays. Ends with one line: ``duplicates: ...``.

Usage: ``python benchmarks/duplicates.py [--runs N] [--faults a,b] [--sets DIR,...]
[--hold S] [--no-lab] [--no-replay] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from replay import DEFAULT_DATA, labelled_sets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _brief(incident: dict[str, Any], at: str) -> str:
    return f"{incident['root_cause']}:{incident['status']}@{incident[at]}s"


# --- lab ------------------------------------------------------------------------------


def lab_child(fault: str, hold_s: float) -> None:
    """One drill in this process's home (the environment's), one JSON document on stdout."""
    from sre_space.config import load
    from sre_space.drill import DrillSpec, run
    from sre_space.incidents import IncidentLog
    from sre_space.paths import Paths

    settings = load()
    doc = run(settings, DrillSpec.load(fault), hold_s=hold_s)
    incidents = doc.get("incidents") or []
    injected = next((s["ts"] for s in doc["run"] if s["step"] == "inject"), None)
    log = IncidentLog(Paths(settings.home).incidents_db)
    try:
        events = log.events(0, limit=100_000)
        # Opened before the fault (the lab not steady yet, on a loaded machine): not its own.
        opened = log.list(limit=1000)
        before = [i.id for i in opened if injected is None or i.detected_at < injected]
    finally:
        log.close()
    for row in incidents[1:]:  # what Scout said when it opened each extra one
        row["said"] = [
            e.message for e in events if e.incident_id == row["id"] and e.agent == "scout"
        ][:3]
    print(
        json.dumps(
            {
                "fault": fault,
                "status": doc["status"],
                "steps": {s["step"]: s["ok"] for s in doc["run"]},
                "incidents": incidents,
                "before_inject": before,
                "duration_s": doc.get("duration"),
            }
        )
    )


def lab_run(fault: str, hold_s: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"sre-space-dup-{fault}-")) / "home"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(_free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(_free_port()),
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", fault, "--hold", str(hold_s)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {
            "fault": fault,
            "error": (proc.stderr.strip() or proc.stdout.strip())[-400:],
            "incidents": [],
            "home": str(home),
        }
    row["wall_s"] = round(time.monotonic() - t0, 1)
    row["home"] = str(home)
    return row


def lab(faults: list[str], runs: int, hold_s: float, quiet: bool) -> dict[str, Any]:
    rows = []
    for n in range(runs):
        for fault in faults:
            row = lab_run(fault, hold_s)
            row["run"] = n + 1
            rows.append(row)
            if quiet:
                continue
            if "error" in row:
                print(f"lab {fault:<16} run {n + 1}: error {row['error']}", file=sys.stderr)
                continue
            got = row["incidents"]
            early = bool(row["before_inject"])
            print(
                f"lab {fault:<16} run {n + 1}: {len(got)} incident(s) "
                f"{' '.join(_brief(i, 'detected_s') for i in got)}"
                f"  drill {row['status']}"
                + (f" (opened before the injection: {row['before_inject']})" * early)
                + f"  {row['wall_s']} s",
                file=sys.stderr,
            )
            for extra in got[1:]:
                print(f"    extra {extra['id']}: {' | '.join(extra['said'])}", file=sys.stderr)
    counted = [r for r in rows if "error" not in r]
    return {
        "runs": rows,
        "summary": {
            "runs": len(rows),
            "errors": len(rows) - len(counted),
            "extra_incidents": sum(max(0, len(r["incidents"]) - 1) for r in counted),
            "runs_with_extra": sum(len(r["incidents"]) > 1 for r in counted),
            "runs_without_incident": sum(not r["incidents"] for r in counted),
            "runs_with_incident_before_inject": sum(bool(r["before_inject"]) for r in counted),
            "drills_deviated": sum(r["status"] != "completed" for r in counted),
        },
    }


# --- replays --------------------------------------------------------------------------


def replay_case(case_dir: Path) -> dict[str, Any]:
    from sre_space.config import load
    from sre_space.replay import replay

    base, inc = str(case_dir / "baseline.otlp.json.gz"), str(case_dir / "incident.otlp.json.gz")
    t0 = time.monotonic()
    result = replay(load(), [base, inc])
    split = result.segments[1].played_start
    during = [i for i in result.incidents if i.detected_at >= split]
    said = {
        i.id: [e.message for e in result.events if e.incident_id == i.id and e.agent == "scout"][:3]
        for i in during[1:]
    }
    return {
        "false_alarms": sum(i.detected_at < split for i in result.incidents),
        "incidents": [
            {
                "id": i.id,
                "status": i.status,
                "root_cause": i.root_cause.get("service"),
                "into_file_s": result.recording(i)["into_file_s"],
                "said": said.get(i.id, []),
            }
            for i in during
        ],
        "wall_s": round(time.monotonic() - t0, 1),
    }


def replays(sets: list[Path], quiet: bool) -> dict[str, Any]:
    rows = []
    for data in sets:
        labels: dict[str, dict[str, Any]] = json.loads((data / "labels.json").read_text())
        with tempfile.TemporaryDirectory(prefix="sre-space-dup-replay-") as home:
            os.environ["SRE_SPACE_HOME"] = home  # no user config, an empty memory
            for case, label in sorted(labels.items()):
                row = {"set": data.name, "case": case, "truth": label["service"]}
                row.update(replay_case(data / case))
                rows.append(row)
                if quiet:
                    continue
                got = row["incidents"]
                print(
                    f"replay {data.name} {case} {label['fault']:<15} {label['service']:<20} "
                    f"{len(got)} incident(s) "
                    f"{' '.join(_brief(i, 'into_file_s') for i in got)}"
                    f"  false alarms {row['false_alarms']}  {row['wall_s']} s",
                    file=sys.stderr,
                )
                for extra in got[1:]:
                    print(f"    extra {extra['id']}: {' | '.join(extra['said'])}", file=sys.stderr)
    n = len(rows)
    at_most_one = sum(len(r["incidents"]) <= 1 for r in rows)
    return {
        "cases": rows,
        "summary": {
            "cases": n,
            "at_most_one": at_most_one,
            "share_at_most_one": round(at_most_one / n, 3) if n else None,
            "max_incidents": max((len(r["incidents"]) for r in rows), default=0),
            "extra_incidents": sum(max(0, len(r["incidents"]) - 1) for r in rows),
            "undetected": sum(not r["incidents"] for r in rows),
            "false_alarms": sum(r["false_alarms"] for r in rows),
        },
    }


# --- main -----------------------------------------------------------------------------


def _listed(text: str | None) -> list[str]:
    return [t for t in (text or "").split(",") if t]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="lab runs per fault (default 5)")
    parser.add_argument("--faults", help="comma-separated lab faults (default: all eight)")
    parser.add_argument(
        "--sets", help=f"comma-separated data sets or set folders (default: {DEFAULT_DATA})"
    )
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds the fault stays on after the squad"
    )
    parser.add_argument("--no-lab", action="store_true", help="replays only")
    parser.add_argument("--no-replay", action="store_true", help="lab runs only")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--child", metavar="FAULT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        lab_child(args.child, args.hold)
        return 0

    from sre_space.lab.faults import FAULTS

    faults = _listed(args.faults) or list(FAULTS)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        print(f"duplicates: unknown fault(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    sets: list[Path] = []
    if not args.no_replay:
        wanted = [Path(s) if "/" in s else DEFAULT_DATA / s for s in _listed(args.sets)]
        sets = labelled_sets(wanted or [DEFAULT_DATA])
        if not sets:
            print(f"duplicates: no labels.json under {wanted or DEFAULT_DATA}", file=sys.stderr)
            return 2
    doc: dict[str, Any] = {}
    if not args.no_lab and args.runs > 0:
        doc["lab"] = lab(faults, args.runs, args.hold, args.json)
    if sets:
        doc["replays"] = replays(sets, args.json)
    parts = []
    if "lab" in doc:
        s = doc["lab"]["summary"]
        parts.append(
            f"lab {s['extra_incidents']} extra incident(s) in {s['runs']} runs "
            f"({s['runs_with_extra']} runs with extras, {s['runs_without_incident']} without "
            f"an incident, {s['runs_with_incident_before_inject']} with one before the "
            f"injection, {s['errors']} errors; floor 0 extra)"
        )
    if "replays" in doc:
        s = doc["replays"]["summary"]
        share = s["share_at_most_one"] or 0.0
        parts.append(
            f"replays at most one incident per fault in {s['at_most_one']}/{s['cases']} "
            f"({share:.0%}; floor 90%), max {s['max_incidents']} for one fault, "
            f"{s['undetected']} undetected, {s['false_alarms']} false alarms"
        )
    if args.json:
        print(json.dumps(doc, indent=2))
    print(
        f"duplicates: {'; '.join(parts) or 'nothing run'}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
