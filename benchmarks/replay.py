"""The whole squad on labelled real cases, replayed (every set in ``../shared/data`` by default).

For every case folder, replays ``baseline.otlp.json.gz`` (fault-free) then
``incident.otlp.json.gz`` through the real mind, exactly as ``sre-space
replay BASELINE INCIDENT`` does (dry-run, an empty memory in a fresh home),
and reports beside ``analyze INCIDENT --baseline BASELINE`` in the same run:

- detection rate: cases where an incident was opened while the incident file
  played;
- TTD in recording time: from the start of the incident file (the data set's
  injection time) to the first such incident;
- AC@1 and AC@3 of the live path: where the true service ranks among the
  Brain's candidates for that incident (a case with no incident is a miss);
- false alarms: incidents opened while the fault-free file played (floor: 0);
- cases where one fault opened more than one incident;
- AC@1 and AC@3 of ``analyze`` on the same files.

Ends with one line of figures per set: the live Brain beside ``analyze``.

Usage: ``python benchmarks/replay.py [SET_DIR ...] [--speed X] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def labelled_sets(paths: list[Path]) -> list[Path]:
    """The folders holding a labels.json: each path itself, or its subfolders."""
    found: list[Path] = []
    for path in paths:
        if (path / "labels.json").exists():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if (p / "labels.json").exists()))
    return found


def rank(services: list[str], truth: str) -> int | None:
    return services.index(truth) + 1 if truth in services else None


def one_case(case_dir: Path, truth: str, speed: float | None) -> dict[str, Any]:
    from sre_space.config import load
    from sre_space.rca.offline import analyze
    from sre_space.replay import replay

    base, inc = str(case_dir / "baseline.otlp.json.gz"), str(case_dir / "incident.otlp.json.gz")
    t0 = time.perf_counter()
    result = replay(load(), [base, inc], speed=speed)
    wall = time.perf_counter() - t0
    split = result.segments[1].played_start
    before = [i for i in result.incidents if i.detected_at < split]
    during = [i for i in result.incidents if i.detected_at >= split]
    row: dict[str, Any] = {
        "case": case_dir.name,
        "truth": truth,
        "false_alarms": len(before),
        "incidents": len(during),
        "still_open_from_before": sum(i.status in ("open", "diagnosing") for i in before),
        "wall_s": round(wall, 2),
    }
    if during:
        first = during[0]
        candidates = [c["service"] for c in first.root_cause.get("candidates", [])]
        row.update(
            ttd_s=result.recording(first)["into_file_s"],
            live_top=candidates,
            live_rank=rank(candidates, truth),
            fault_class=first.root_cause.get("fault_class"),
            plan=first.remediation.get("action"),
        )
    else:
        row.update(ttd_s=None, live_top=[], live_rank=None)
    offline = [c.service for c in analyze([inc], [base], top=5).candidates]
    row.update(analyze_top=offline[:3], analyze_rank=rank(offline, truth))
    return row


def ac(ranks: list[int | None], k: int) -> float:
    return round(sum(1 for r in ranks if r is not None and r <= k) / (len(ranks) or 1), 3)


def one_set(data: Path, speed: float | None, quiet: bool) -> dict[str, Any]:
    labels: dict[str, dict[str, Any]] = json.loads((data / "labels.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="sre-space-bench-") as home:
        os.environ["SRE_SPACE_HOME"] = home  # no user config, an empty memory
        for case, label in sorted(labels.items()):
            row = one_case(data / case, label["service"], speed)
            row["fault"] = label["fault"]
            rows.append(row)
            if not quiet:
                ttd = "-" if row["ttd_s"] is None else f"{row['ttd_s']:.1f} s"
                print(
                    f"{data.name} {case}  {label['fault']:<15} {label['service']:<22} "
                    f"false alarms {row['false_alarms']}  incidents {row['incidents']}  "
                    f"TTD {ttd:<7} live rank {row['live_rank'] or '-'} "
                    f"(top: {', '.join(row['live_top'][:3])})  analyze rank {row['analyze_rank'] or '-'}"
                    f"  {row['wall_s']:.1f} s",
                    file=sys.stderr,
                )
    n = len(rows) or 1
    ttds = [r["ttd_s"] for r in rows if r["ttd_s"] is not None]
    summary = {
        "cases": len(rows),
        "detection_rate": round(sum(r["incidents"] > 0 for r in rows) / n, 3),
        "ttd_s_median": round(statistics.median(ttds), 2) if ttds else None,
        "ttd_s_max": max(ttds) if ttds else None,
        "live_AC@1": ac([r["live_rank"] for r in rows], 1),
        "live_AC@3": ac([r["live_rank"] for r in rows], 3),
        "analyze_AC@1": ac([r["analyze_rank"] for r in rows], 1),
        "analyze_AC@3": ac([r["analyze_rank"] for r in rows], 3),
        "false_alarms": sum(r["false_alarms"] for r in rows),
        "cases_with_false_alarms": sum(r["false_alarms"] > 0 for r in rows),
        # one fault, one incident: more than one while the incident file played
        "cases_with_extra_incidents": sum(r["incidents"] > 1 for r in rows),
        "wall_s_per_case": round(sum(r["wall_s"] for r in rows) / n, 2),
        "speed": speed,
    }
    return {"cases": rows, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", type=Path, default=[DEFAULT_DATA])
    parser.add_argument("--speed", type=float, default=None, help="recorded seconds per second")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    sets = labelled_sets(args.data)
    if not sets:
        print(
            f"replay benchmark: no labels.json in {', '.join(map(str, args.data))}", file=sys.stderr
        )
        return 2
    results = {data.name: one_set(data, args.speed, args.json) for data in sets}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, result in results.items():
        print(f"\n{result['summary']['cases']} cases from {name}, replayed baseline then incident")
        for key, value in result["summary"].items():
            print(f"{key:<26} {value}")
    line = " | ".join(
        f"{name} live {r['summary']['live_AC@1']:.2f}/{r['summary']['live_AC@3']:.2f} "
        f"analyze {r['summary']['analyze_AC@1']:.2f}/{r['summary']['analyze_AC@3']:.2f} "
        f"detected {r['summary']['detection_rate']:.2f} "
        f"extra {r['summary']['cases_with_extra_incidents']}"
        for name, r in results.items()
    )
    print(f"\nreplay: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
