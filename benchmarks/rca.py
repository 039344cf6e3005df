"""Root-cause localisation on labelled real cases (every set in ``../shared/data`` by default).

For every labelled set (a folder holding ``labels.json`` and case folders
with ``baseline.otlp.json.gz`` and ``incident.otlp.json.gz``), prints where
the true service ranks, then AC@1, AC@3 and Avg@5 (RCAEval's definitions:
AC@k is the share of cases whose true service is among the first k; Avg@5
the mean of AC@1..AC@5) and seconds per case, overall and per fault type, for:

1. ``localize`` with the baseline file as its reference (what ``sre-space
   analyze INCIDENT --baseline BASELINE`` runs);
2. ``localize`` on baseline and incident given as one window (the baseline
   moved in time to just before the incident): it must find the change point
   itself (what ``sre-space analyze FILE`` runs on a recording of normal
   traffic followed by the fault); the same window with the onset at the
   injection (the live Brain's path), and ranked on the failures alone where
   any stands out (the live Brain when Scout saw only failures);
3. the naive rankings, for comparison: services by growth of their self time
   per trace, or of one operation's p90 self time, against the baseline;
4. published trace-based methods, re-implemented in ``comparators.py``:
   MicroRank (WWW 2021), TraceRCA (IWQoS 2021), and a simple error-then-
   latency rule.

The same runs on the synthetic suite (``tests/rca_synth.py``). Each set's
figures say whether ``localize`` ranks below the best comparator; the last
line holds every set's figures.

Seconds per case (wall clock, and CPU time of this process, which a busy
machine does not inflate) count the analysis alone and, separately, reading
the two files.

Usage: ``python benchmarks/rca.py [SET_DIR ...] [--json]`` (a folder without a
``labels.json`` stands for the labelled sets inside it)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from comparators import COMPARATORS

from sre_space.config import LATENCY_MS
from sre_space.rca.localize import localize, paused_gc
from sre_space.rca.stats import quantile
from sre_space.rca.traces import group, views
from sre_space.squad.brain import failures_first
from sre_space.telemetry.files import read_spans
from sre_space.telemetry.model import Span

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
Traces = list[list[Span]]


def naive_p90(incident: Traces, baseline: Traces) -> list[str]:
    """Services by the largest growth of one of their operations' p90 self time."""

    def p90s(traces: Traces) -> dict[tuple[str, str], float]:
        samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        for v in views(traces):
            for c in v.calls:
                samples[c.key].append(c.self_ms)
        return {k: quantile(v, 0.9) for k, v in samples.items()}

    now, before = p90s(incident), p90s(baseline)
    growth: dict[str, float] = {}
    for key, p90 in now.items():
        g = p90 - before.get(key, 0.0)
        growth[key[0]] = max(growth.get(key[0], -math.inf), g)
    return sorted(growth, key=growth.__getitem__, reverse=True)


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


_confidence: list[float] = [0.0]  # the top candidate's confidence in the last run of ours
_fault_class: list[str] = [""]  # and its fault class


def ours(incident: Traces, baseline: Traces) -> list[str]:
    found = localize(incident, baseline=baseline)
    _confidence[0] = found[0].confidence if found else 0.0
    _fault_class[0] = found[0].fault_class if found else ""
    return [c.service for c in found[:5]]


def reliability(pairs: list[tuple[float, bool]]) -> list[dict[str, float]]:
    """Calibration: per band of the top candidate's confidence, how often it was right."""
    bands = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.8), (0.8, 1.01))
    out = []
    for lo, hi in bands:
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi]
        if inside:
            out.append(
                {
                    "band": f"{lo:.2f}-{min(hi, 1.0):.2f}",
                    "cases": len(inside),
                    "mean_confidence": round(sum(c for c, _ in inside) / len(inside), 3),
                    "right": round(sum(ok for _, ok in inside) / len(inside), 3),
                }
            )
    return out


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


def ours_at_onset(incident: Traces, baseline: Traces) -> list[str]:
    """The live Brain's path: one window, with the detector's onset (here the injection)."""
    window = shifted_before(baseline, incident) + incident
    onset = min(s.start_ns for t in incident for s in t)
    return [c.service for c in localize(window, top=5, onset_ns=onset)]


def ours_failures_alone(incident: Traces, baseline: Traces) -> list[str]:
    """The live Brain when Scout saw only failures: ranked on them, where any stands out.

    Every case is taken as if Scout had opened it on failed requests alone;
    a case whose failures explain nothing falls back to the whole ranking.
    """
    window = shifted_before(baseline, incident) + incident
    onset = min(s.start_ns for t in incident for s in t)
    found = failures_first(window, LATENCY_MS, onset, [{"kind": "error"}])
    return [c.service for c in found[:5]]


OURS = "localize (baseline file)"
METHODS: dict[str, Callable[[Traces, Traces], list[str]]] = {
    OURS: ours,
    "localize (one window, change point)": ours_one_window,
    "localize (one window, onset)": ours_at_onset,
    "localize (onset, failures alone)": ours_failures_alone,
    "naive op p90 self-time growth": naive_p90,
    "naive self-time growth": naive,
    **COMPARATORS,
}
# what localize is measured against: everything but localize itself
COMPARED = tuple(n for n in METHODS if not n.startswith("localize"))
SHORT = {
    OURS: "ours",
    "localize (one window, change point)": "ours 1-win",
    "localize (one window, onset)": "ours onset",
    "localize (onset, failures alone)": "ours fails",
    "naive op p90 self-time growth": "naive p90",
    "naive self-time growth": "naive",
    **{n: n.split(" ")[0].rstrip(":") for n in COMPARATORS},
}
SYNTHETIC_METHODS = (OURS, "naive op p90 self-time growth", *COMPARATORS)
SIZES = (5, 10, 20, 40)
SYNTHETIC_TRACES = 250  # per window: about 10,000 spans at 30 services


def accuracy(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    ac = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in range(1, 6)}
    return {"AC@1": ac[1], "AC@3": ac[3], "Avg@5": sum(ac.values()) / 5}


def rank_of(ranked: list[str], truth: str) -> int | None:
    """Where ``truth`` is in ``ranked``, from 1 (None: not there)."""
    return ranked.index(truth) + 1 if truth in ranked else None


def synthetic(per_cell: int, seed: int, quiet: bool) -> dict[str, Any]:
    """Generated systems (``tests/rca_synth.py``): every fault class at every size."""
    import random

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from rca_synth import (
        EXPECTED_CLASS,
        FAULT_KINDS,
        Style,
        SystemFault,
        random_system,
        system_window,
    )

    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = dict.fromkeys(SYNTHETIC_METHODS, 0.0)
    cpu: dict[str, float] = dict.fromkeys(SYNTHETIC_METHODS, 0.0)
    spans = 0
    for size in SIZES:
        for kind in FAULT_KINDS:
            for k in range(per_cell):
                rnd = random.Random(f"{seed}-{size}-{kind}-{k}")
                system = random_system(rnd, size)
                style = Style(
                    kinds=rnd.random() < 0.5, status=rnd.random() < 0.5, inner=rnd.random() < 0.7
                )
                # a fault no caller can see (the entry refusing or hanging) is no case
                first = 1 if kind in ("timeout", "unreachable") else 0
                target = rnd.choice(system.services[first:])
                # a wait on the way into the entry is before any span: no one sees it
                way_in = target != system.services[0] and rnd.random() < 0.5
                fault = SystemFault(
                    kind,
                    target,
                    rate=rnd.uniform(0.3, 0.8),
                    delay_ms=rnd.uniform(50.0, 500.0),
                    factor=rnd.uniform(1.5, 3.0),
                    on_the_way_in=way_in,
                    operation=rnd.choice(
                        [op.name for op in system.operations if op.service == target]
                    ),
                )
                with paused_gc():
                    baseline = system_window(rnd, system, SYNTHETIC_TRACES, style=style)
                    # the load is a little different by the time of the fault
                    later = replace(style, drift=rnd.uniform(0.95, 1.1))
                    incident = system_window(
                        rnd, system, SYNTHETIC_TRACES, start_ms=1.8e12, fault=fault, style=later
                    )
                spans += sum(map(len, incident))
                row: dict[str, Any] = {
                    "size": size,
                    "fault": kind,
                    "truth": target,
                    "style": vars(style),
                }
                for name in SYNTHETIC_METHODS:
                    t0, c0 = time.perf_counter(), time.process_time()
                    ranked = METHODS[name](incident, baseline)
                    seconds[name] += time.perf_counter() - t0
                    cpu[name] += time.process_time() - c0
                    row[name] = {"rank": rank_of(ranked, target), "top": ranked[:3]}
                    if name == SYNTHETIC_METHODS[0]:
                        row["confidence"] = _confidence[0]
                        row["fault_class"] = _fault_class[0]
                rows.append(row)
                if not quiet:
                    got = row[SYNTHETIC_METHODS[0]]
                    print(
                        f"synthetic {size:>2} {kind:<12} {target} rank {got['rank'] or '-'}"
                        f"  (top: {', '.join(got['top'])})  {style}",
                        file=sys.stderr,
                    )
    n = len(rows) or 1
    summary = {
        name: {
            **{k: round(x, 3) for k, x in accuracy([r[name]["rank"] for r in rows]).items()},
            "s_per_case": round(seconds[name] / n, 3),
            "cpu_s_per_case": round(cpu[name] / n, 3),
        }
        for name in SYNTHETIC_METHODS
    }
    return {
        "cases": rows,
        "by_fault": _by(rows, "fault", SYNTHETIC_METHODS, FAULT_KINDS),
        "by_size": _by(rows, "size", SYNTHETIC_METHODS),
        "summary": summary,
        "versus": verdict(summary),
        "spans_per_case": round(spans / n),
        "calibration": reliability(
            [(r["confidence"], r[SYNTHETIC_METHODS[0]]["rank"] == 1) for r in rows]
        ),
        # of the cases where the service is right, the share whose class is right too
        "class_right": {
            kind: round(
                sum(r["fault_class"] == EXPECTED_CLASS.get(kind, kind) for r in hit) / len(hit), 3
            )
            for kind in FAULT_KINDS
            if (
                hit := [
                    r for r in rows if r["fault"] == kind and r[SYNTHETIC_METHODS[0]]["rank"] == 1
                ]
            )
        },
    }


def _by(
    rows: list[dict[str, Any]],
    key: str,
    names: tuple[str, ...],
    order: tuple[str, ...] = (),
) -> dict[str, Any]:
    """AC@1, AC@3 and Avg@5 of each method per value of ``key`` (a fault type, a size)."""
    out: dict[str, Any] = {}
    seen = {str(r[key]) for r in rows}
    values = [v for v in order if v in seen] or sorted(seen, key=lambda v: (len(v), v))
    for value in values:
        inside = [r for r in rows if str(r[key]) == value]
        out[value] = {
            "cases": len(inside),
            **{
                name: {
                    k: round(x, 3) for k, x in accuracy([r[name]["rank"] for r in inside]).items()
                }
                for name in names
            },
        }
    return out


def verdict(summary: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Localize against the best comparator: the best by AC@1 (then AC@3), and any beating it."""
    compared = [n for n in COMPARED if n in summary]
    best = max(
        compared, key=lambda n: (summary[n]["AC@1"], summary[n]["AC@3"], summary[n]["Avg@5"])
    )
    mine = summary[OURS]
    below = [k for k in ("AC@1", "AC@3") if max(summary[n][k] for n in compared) > mine[k] + 1e-9]
    return {
        "ours": {k: mine[k] for k in ("AC@1", "AC@3")},
        "best_comparator": best,
        "best": {k: summary[best][k] for k in ("AC@1", "AC@3")},
        "best_ac3": max(summary[n]["AC@3"] for n in compared),
        "below_on": below,
    }


def real(data: Path, quiet: bool) -> dict[str, Any] | None:
    labels_path = data / "labels.json"
    if not labels_path.exists():
        print(f"rca benchmark: no labels.json in {data}; real cases skipped", file=sys.stderr)
        return None
    labels: dict[str, dict[str, Any]] = json.loads(labels_path.read_text())
    ranks: dict[str, list[int | None]] = {m: [] for m in METHODS}
    seconds: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    cpu: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    load_s = load_cpu = 0.0
    rows = []
    for case, label in sorted(labels.items()):
        t0, c0 = time.perf_counter(), time.process_time()
        with paused_gc():
            baseline = group(read_spans(data / case / "baseline.otlp.json.gz"))
            incident = group(read_spans(data / case / "incident.otlp.json.gz"))
        load_s += time.perf_counter() - t0
        load_cpu += time.process_time() - c0
        row: dict[str, Any] = {"case": case, "fault": label["fault"], "truth": label["service"]}
        for name, method in METHODS.items():
            t0, c0 = time.perf_counter(), time.process_time()
            ranked = method(incident, baseline)
            seconds[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            rank = rank_of(ranked, label["service"])
            ranks[name].append(rank)
            row[name] = {"rank": rank, "top": ranked[:3]}
            if method is ours:
                row["confidence"] = _confidence[0]
        rows.append(row)
        if not quiet:
            got = row[OURS]
            others = " ".join(f"{SHORT[n]} {row[n]['rank'] or '-'}" for n in COMPARATORS)
            print(
                f"{data.name} {case}  {label['fault']:<15} {label['service']:<22} "
                f"rank {got['rank'] or '-'}  (top: {', '.join(got['top'])})  [{others}]",
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
    return {
        "cases": rows,
        "summary": summary,
        "by_fault": _by(rows, "fault", tuple(METHODS)),
        "versus": verdict(summary),
        "n": len(labels),
        "calibration": reliability([(r["confidence"], r[OURS]["rank"] == 1) for r in rows]),
        "load_s_per_case": round(load_s / n, 3),
        "load_cpu_s_per_case": round(load_cpu / n, 3),
    }


def label_sets(paths: list[Path]) -> list[Path]:
    """The labelled sets named: a folder with ``labels.json``, or each such folder inside one."""
    out: list[Path] = []
    for path in paths:
        if (path / "labels.json").exists():
            out.append(path)
        elif path.is_dir():
            inside = sorted(d for d in path.iterdir() if (d / "labels.json").exists())
            if not inside:
                print(f"rca benchmark: no labelled sets in {path}", file=sys.stderr)
            out.extend(inside)
        else:
            print(f"rca benchmark: {path} not found; its cases skipped", file=sys.stderr)
    return out


def _print_table(title: str, summary: dict[str, dict[str, float]], width: int = 38) -> None:
    print(f"\n{title}")
    print(f"{'method':<{width}} {'AC@1':>6} {'AC@3':>6} {'Avg@5':>6} {'s/case':>7} {'cpu s':>6}")
    for name, s in summary.items():
        timing = f"{s['s_per_case']:>7.3f} {s['cpu_s_per_case']:>6.3f}" if "s_per_case" in s else ""
        print(f"{name:<{width}} {s['AC@1']:>6.3f} {s['AC@3']:>6.3f} {s['Avg@5']:>6.3f} {timing}")


def _print_by(title: str, table: dict[str, Any], names: tuple[str, ...]) -> None:
    print(f"\nby {title} (AC@1/AC@3)")
    print(f"{title:<16} {'cases':>5}" + "".join(f"{SHORT[n]:>11}" for n in names))
    for value, per in table.items():
        cells = "".join(f"{per[n]['AC@1']:>6.2f}/{per[n]['AC@3']:.2f}" for n in names)
        print(f"{value:<16} {per['cases']:>5}{cells}")


def _print_versus(v: dict[str, Any]) -> None:
    flag = f"  BELOW comparator on {' and '.join(v['below_on'])}" if v["below_on"] else ""
    print(
        f"\nlocalize {v['ours']['AC@1']:.3f}/{v['ours']['AC@3']:.3f} (AC@1/AC@3), best "
        f"comparator {v['best_comparator']} {v['best']['AC@1']:.3f}/{v['best']['AC@3']:.3f}"
        f" (best AC@3 of any {v['best_ac3']:.3f}){flag}"
    )


def _print_calibration(bands: list[dict[str, Any]]) -> None:
    print("\ncalibration of the top candidate's confidence (localize, baseline file)")
    for b in bands:
        print(
            f"  confidence {b['band']}: {b['cases']:>4} cases, mean {b['mean_confidence']:.2f}, "
            f"right {b['right']:.2f}"
        )


def _figures(name: str, v: dict[str, Any]) -> str:
    o, b = v["ours"], v["best"]
    below = " BELOW" if v["below_on"] else ""
    return (
        f"{name} ours {o['AC@1']:.2f}/{o['AC@3']:.2f} best-comparator "
        f"{b['AC@1']:.2f}/{b['AC@3']:.2f} ({SHORT[v['best_comparator']]}){below}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", nargs="*", type=Path, help=f"labelled sets (default: every set in {DEFAULT_DATA})"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--per-cell", type=int, default=4, help="synthetic cases per class x size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--no-real", action="store_true")
    args = parser.parse_args()
    synth = None if args.no_synthetic else synthetic(args.per_cell, args.seed, args.json)
    found: dict[str, dict[str, Any]] = {}
    if not args.no_real:
        for data in label_sets(args.data or [DEFAULT_DATA]):
            got = real(data, args.json)
            if got is not None:
                found[data.name] = {"path": str(data), **got}
    if args.json:
        print(json.dumps({"synthetic": synth, "real": found}, indent=2))
        return 0
    figures: list[str] = []
    for name, got in found.items():
        _print_table(f"{got['n']} real cases from {got['path']}", got["summary"])
        blank = f"{'':>6} {'':>6} {'':>6}"
        print(
            f"{'(reading the two files)':<38} {blank} {got['load_s_per_case']:>7.3f} "
            f"{got['load_cpu_s_per_case']:>6.3f}"
        )
        _print_by(f"{name} fault", got["by_fault"], tuple(METHODS))
        _print_calibration(got["calibration"])
        _print_versus(got["versus"])
        figures.append(_figures(name, got["versus"]))
    if synth is not None:
        print(
            f"\nsynthetic suite: {len(synth['cases'])} cases, ~{synth['spans_per_case']} spans each"
        )
        _print_table("all synthetic cases", synth["summary"])
        _print_by("fault class", synth["by_fault"], SYNTHETIC_METHODS)
        _print_by("services", synth["by_size"], SYNTHETIC_METHODS)
        _print_calibration(synth["calibration"])
        print("\nfault class right, where the service is right (localize)")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in synth["class_right"].items()))
        _print_versus(synth["versus"])
        figures.append(_figures("synthetic", synth["versus"]))
    print("\nrca: " + (" | ".join(figures) or "no cases run"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
