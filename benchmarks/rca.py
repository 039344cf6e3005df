"""Root-cause localisation on labelled real cases (``../shared/data/rca-dev`` by default).

For every case folder (``baseline.otlp.json.gz``, ``incident.otlp.json.gz``,
the truth in ``labels.json``), prints where the true service ranks, then
AC@1, AC@3 and Avg@5 (RCAEval's definitions: AC@k is the share of cases whose
true service is among the first k; Avg@5 the mean of AC@1..AC@5) and seconds
per case, for:

1. ``localize`` with the baseline file as its reference (what ``sre-space
   analyze INCIDENT --baseline BASELINE`` runs);
2. ``localize`` on baseline and incident given as one window (the baseline
   moved in time to just before the incident): it must find the change point
   itself (what ``sre-space analyze FILE`` runs on a recording of normal
   traffic followed by the fault);
3. the naive ranking, for comparison: services by growth of their self time
   per trace against the baseline.

Seconds per case (wall clock, and CPU time of this process, which a busy
machine does not inflate) count the analysis alone and, separately, reading
the two files.

Usage: ``python benchmarks/rca.py [DATA_DIR] [--json]``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sre_space.rca.localize import localize, paused_gc
from sre_space.rca.traces import group, views
from sre_space.telemetry.files import read_spans
from sre_space.telemetry.model import Span

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "rca-dev"
Traces = list[list[Span]]


def naive(incident: Traces, baseline: Traces) -> list[str]:
    """Services by how much their self time per trace grew (the floor to beat)."""

    def per_trace(traces: Traces) -> dict[str, float]:
        vs = views(traces)
        total: dict[str, float] = defaultdict(float)
        for v in vs:
            for c in v.calls:
                total[c.service] += c.self_ms
        return {s: t / max(1, len(vs)) for s, t in total.items()}

    now, before = per_trace(incident), per_trace(baseline)
    return sorted(now, key=lambda s: now[s] - before.get(s, 0.0), reverse=True)


def ours(incident: Traces, baseline: Traces) -> list[str]:
    return [c.service for c in localize(incident, baseline=baseline, top=5)]


def shifted_before(baseline: Traces, incident: Traces) -> Traces:
    """The baseline's traces moved in time to end one second before the incident starts.

    (The data set recorded its fault-free window after the faults; a file
    holding normal traffic and then the fault is what this simulates.)
    """
    first = min(s.start_ns for t in incident for s in t)
    last = max(s.end_ns for t in baseline for s in t)
    delta = first - last - 1_000_000_000
    out = []
    for trace in baseline:
        moved = []
        for span in trace:
            span = copy.copy(span)
            span.start_ns += delta
            span.end_ns += delta
            moved.append(span)
        out.append(moved)
    return out


def ours_one_window(incident: Traces, baseline: Traces) -> list[str]:
    window = shifted_before(baseline, incident) + incident
    return [c.service for c in localize(window, top=5)]


METHODS: dict[str, Callable[[Traces, Traces], list[str]]] = {
    "localize (baseline file)": ours,
    "localize (one window, change point)": ours_one_window,
    "naive self-time growth": naive,
}


def accuracy(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    ac = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in range(1, 6)}
    return {"AC@1": ac[1], "AC@3": ac[3], "Avg@5": sum(ac.values()) / 5}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    labels_path = args.data / "labels.json"
    if not labels_path.exists():
        print(f"rca benchmark: no labels.json in {args.data}", file=sys.stderr)
        return 2
    labels: dict[str, dict[str, Any]] = json.loads(labels_path.read_text())
    ranks: dict[str, list[int | None]] = {m: [] for m in METHODS}
    seconds: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    cpu: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    load_s = load_cpu = 0.0
    rows = []
    for case, label in sorted(labels.items()):
        t0, c0 = time.perf_counter(), time.process_time()
        with paused_gc():
            baseline = group(read_spans(args.data / case / "baseline.otlp.json.gz"))
            incident = group(read_spans(args.data / case / "incident.otlp.json.gz"))
        load_s += time.perf_counter() - t0
        load_cpu += time.process_time() - c0
        row: dict[str, Any] = {"case": case, "fault": label["fault"], "truth": label["service"]}
        for name, method in METHODS.items():
            t0, c0 = time.perf_counter(), time.process_time()
            ranked = method(incident, baseline)
            seconds[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            rank = ranked.index(label["service"]) + 1 if label["service"] in ranked else None
            ranks[name].append(rank)
            row[name] = {"rank": rank, "top": ranked[:3]}
        rows.append(row)
        if not args.json:
            got = row["localize (baseline file)"]
            print(
                f"{case}  {label['fault']:<15} {label['service']:<22} rank {got['rank'] or '-'}"
                f"  (top: {', '.join(got['top'])})",
                file=sys.stderr,
            )
    n = len(labels) or 1
    summary = {
        name: {
            **{k: round(v, 3) for k, v in accuracy(ranks[name]).items()},
            "s_per_case": round(seconds[name] / n, 3),
            "cpu_s_per_case": round(cpu[name] / n, 3),
        }
        for name in METHODS
    }
    if args.json:
        doc = {
            "cases": rows,
            "summary": summary,
            "load_s_per_case": round(load_s / n, 3),
            "load_cpu_s_per_case": round(load_cpu / n, 3),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"\n{len(labels)} cases from {args.data}")
    print(f"{'method':<38} {'AC@1':>6} {'AC@3':>6} {'Avg@5':>6} {'s/case':>7} {'cpu s':>6}")
    for name, s in summary.items():
        print(
            f"{name:<38} {s['AC@1']:>6.3f} {s['AC@3']:>6.3f} {s['Avg@5']:>6.3f} "
            f"{s['s_per_case']:>7.3f} {s['cpu_s_per_case']:>6.3f}"
        )
    blank = f"{'':>6} {'':>6} {'':>6}"
    print(f"{'(reading the two files)':<38} {blank} {load_s / n:>7.3f} {load_cpu / n:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
