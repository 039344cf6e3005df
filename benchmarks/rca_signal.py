"""Is the fault in the traces at all? A method-free check on labelled real cases.

For every case of a labelled set, every service gets one number: the largest
shift of any of its operations' span durations between the incident and a
reference (the Kolmogorov-Smirnov distance scaled by sqrt(n·m/(n+m)), so a
shift seen on more spans counts more). If the injected fault changed how the
true service's spans look, the true service should rank high on that number,
whatever a localiser does with it afterwards.

Two references, side by side:

- ``baseline``: the case's own fault-free file (what ``analyze --baseline``
  reads). In rca-tt every case shares one baseline recorded at another time
  of day, so workload drift shows as change everywhere.
- ``contemporaneous``: the incidents of the *other* cases recorded within two
  hours of this one whose true service is a different one. Drift largely
  cancels; what remains is what this case's fault changed. This reference
  uses the labels, so it is a diagnostic, never a method.

Beside it, ``localize`` and the naive ranking are run against the same
contemporaneous reference. When even that leaves the true service near
chance (1 / services), the traces do not carry the fault, and no trace-only
method can be expected to find it.

Last, failures that recur across cases: every operation whose requests fail
in a case's incident and never in its baseline, with the labels of the cases
where it does. One failing operation under many labels is trouble the
labels do not name (an earlier fault that outlived its case, or an
intermittent one): the traces show it, and no label asks for it.

Usage: ``python benchmarks/rca_signal.py [SET_DIR ...]`` (default: every set
in ``../shared/data``); ends with one ``rca-signal:`` line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from rca import DEFAULT_DATA, Traces, accuracy, label_sets, naive, rank_of

from sre_space.rca.localize import localize
from sre_space.rca.traces import ERROR_DISPATCH, failed, group, views
from sre_space.telemetry.files import read_spans

NEAR_HOURS = 2.0  # other cases this close in time make the contemporaneous reference
REFERENCE_TRACES = 400  # as many as an incident file holds at most
MIN_SPANS = 5  # fewer spans of an operation on either side: no opinion on it
RECURRING_CASES = 3  # a new failure in at least this many cases is listed


def ks_distance(a: list[int], b: list[int]) -> float:
    """The largest gap between the two samples' empirical distribution functions."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
        gap = max(gap, abs(i / len(a) - j / len(b)))
    return gap


def shift_ranking(incident: Traces, reference: Traces) -> list[str]:
    """Services by the largest duration shift of any of their operations."""

    def durations(traces: Traces) -> dict[tuple[str, str], list[int]]:
        out: dict[tuple[str, str], list[int]] = defaultdict(list)
        for v in views(traces):
            for c in v.calls:
                out[c.key].append(c.span.end_ns - c.span.start_ns)
        return out

    now, before = durations(incident), durations(reference)
    score: dict[str, float] = {}
    for key, values in now.items():
        ref = before.get(key, [])
        if len(values) < MIN_SPANS or len(ref) < MIN_SPANS:
            score.setdefault(key[0], 0.0)
            continue
        scale = (len(values) * len(ref) / (len(values) + len(ref))) ** 0.5
        score[key[0]] = max(score.get(key[0], 0.0), ks_distance(values, ref) * scale)
    return sorted(score, key=lambda s: (-score[s], s))


def failing_operations(traces: Traces) -> dict[tuple[str, str], int]:
    """(service, operation) -> how many of the traces saw it fail.

    A framework's error dispatch is the failure of the request it runs in.
    """
    out: dict[tuple[str, str], int] = defaultdict(int)
    for trace in traces:
        names = {s.span_id: s.name for s in trace}
        seen: set[tuple[str, str]] = set()
        for s in trace:
            if failed(s):
                name = names.get(s.parent_id or "", s.name) if s.name in ERROR_DISPATCH else s.name
                seen.add((s.service, name))
        for key in seen:
            out[key] += 1
    return out


def recurring(
    labels: dict[str, dict[str, str]], incidents: dict[str, Traces], baselines: dict[str, Traces]
) -> list[str]:
    """Lines, one per operation that newly fails in RECURRING_CASES or more cases."""
    cases: dict[tuple[str, str], list[str]] = defaultdict(list)
    for case in labels:
        before = failing_operations(baselines[case])
        for key in failing_operations(incidents[case]):
            if key not in before:
                cases[key].append(case)
    lines = []
    for (service, operation), where in sorted(cases.items(), key=lambda kv: -len(kv[1])):
        if len(where) < RECURRING_CASES:
            break
        under: dict[str, int] = defaultdict(int)
        for case in where:
            under[labels[case]["service"]] += 1
        named = ", ".join(f"{svc} {n}" for svc, n in sorted(under.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {service} {operation}: fails in {len(where)} cases, labelled {named}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=Path, default=[DEFAULT_DATA])
    args = parser.parse_args()
    summary = []
    for set_dir in label_sets(args.sets):
        labels = json.loads((set_dir / "labels.json").read_text())
        incidents = {c: group(read_spans(set_dir / c / "incident.otlp.json.gz")) for c in labels}
        baselines = {c: group(read_spans(set_dir / c / "baseline.otlp.json.gz")) for c in labels}
        when = {c: datetime.fromisoformat(v["inject_time"]) for c, v in labels.items()}
        ranks: dict[str, list[int | None]] = defaultdict(list)
        services: list[int] = []
        for case, label in labels.items():
            truth = label["service"]
            near = [
                t
                for other, lab in labels.items()
                if lab["service"] != truth
                and abs((when[other] - when[case]).total_seconds()) <= NEAR_HOURS * 3600
                for t in incidents[other]
            ]
            random.Random(case).shuffle(near)
            near = near[:REFERENCE_TRACES]
            incident, baseline = incidents[case], baselines[case]
            services.append(len({s.service for t in incident for s in t}))
            row = {
                "shift vs baseline": shift_ranking(incident, baseline),
                "shift vs contemporaneous": shift_ranking(incident, near) if near else [],
                "localize vs contemporaneous": (
                    [c.service for c in localize(incident, baseline=near)] if near else []
                ),
                "naive vs contemporaneous": naive(incident, near) if near else [],
            }
            cells = []
            for name, ranking in row.items():
                r = rank_of(ranking, truth)
                ranks[name].append(r)
                cells.append(f"{r or '-':>3}")
            print(f"{set_dir.name} {case} {label['fault']:<15} {truth:<30} " + " ".join(cells))
        chance = sum(1 / n for n in services if n) / len(services)
        print(f"\n{set_dir.name}: {len(labels)} cases, chance AC@1 {chance:.3f}")
        print(f"{'true service ranked by':<32} {'AC@1':>6} {'AC@3':>6}")
        parts = []
        for name, values in ranks.items():
            acc = accuracy(values)
            ac1, ac3 = acc["AC@1"], acc["AC@3"]
            print(f"{name:<32} {ac1:6.3f} {ac3:6.3f}")
            parts.append(f"{name} {ac1:.3f}/{ac3:.3f}")
        print(f"\nnew failures in {RECURRING_CASES} or more cases (absent from the baseline):")
        print("\n".join(recurring(labels, incidents, baselines)) or "  none")
        print()
        summary.append(f"{set_dir.name} (chance {chance:.3f}): " + ", ".join(parts))
    print("rca-signal: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
