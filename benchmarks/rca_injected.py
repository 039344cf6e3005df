"""A network delay injected into real recorded traces: is it found at the service it is at?

Real recordings carry what a generator cannot: their systems' real shapes,
real noise and, in rca-tt, a baseline recorded at another time of day, so
load and data have drifted between baseline and incident. This benchmark
takes the first incident of each labelled set, and for each service in at
least ``MIN_SHARE`` of its traces, re-times every trace as if that service's
outgoing packets waited ``--delay-ms`` (netem on its interface): its answers
reach its callers late and its own calls out leave late; its spans, and its
callees', keep their durations. Then ``localize`` (against the case's
baseline file) and the comparators rank the services, and the delayed one's
rank is counted.

A time ``T`` is inserted into a trace by moving every timestamp at or after
``T`` by the delay; ancestors still open at ``T`` grow by it. One insertion
at the end of each of the service's visits (the answer leaves late) and one
at the start of each span of another service that it called (the request
arrives late). Hosts' clocks differ: in rca-tt a quarter of the callees'
spans end after their caller's span for the call; there, the answer arrives
when the caller's span says, and the callee's spans keep their times.

The set's own fault is still in the incident (in rca-tt mostly invisible in
its traces; see ``rca_signal.py``): its service is no target, and the
delayed service's rank is counted among the others.

Usage: ``python benchmarks/rca_injected.py [SET_DIR ...] [--delay-ms 40 200]``;
ends with one ``rca-injected:`` line.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import defaultdict
from pathlib import Path

from comparators import COMPARATORS
from rca import DEFAULT_DATA, Traces, accuracy, label_sets, naive, ours, rank_of

from sre_space.rca.traces import group
from sre_space.telemetry.files import read_spans
from sre_space.telemetry.model import Span

MIN_SHARE = 0.1  # a service in fewer of the incident's traces than this is not a target
METHODS = {"localize": ours, "naive": naive, **COMPARATORS}


def delayed(traces: Traces, service: str, delay_ns: int) -> Traces:
    """The traces as if every packet leaving ``service`` waited ``delay_ns``."""
    out: Traces = []
    for trace in traces:
        spans = [copy.copy(s) for s in trace]
        by_id = {s.span_id: s for s in spans}
        children: dict[str, list[Span]] = defaultdict(list)
        for s in spans:
            if s.parent_id:
                children[s.parent_id].append(s)
        # (when, spans that stay put): the caller's clock decides when an answer
        # arrives; where the callee's clock runs ahead (its span ends after the
        # caller's), the callee's spans keep their times
        points: list[tuple[int, set[str]]] = []
        for s in spans:
            parent = by_id.get(s.parent_id) if s.parent_id else None
            if parent is None:
                continue
            if s.service == service and parent.service != service:
                if s.end_ns <= parent.end_ns:
                    points.append((s.end_ns, set()))  # its answer leaves late
                else:
                    points.append((parent.end_ns, _subtree(s, children)))
            elif s.service != service and parent.service == service:
                points.append((max(s.start_ns, parent.start_ns + 1), set()))  # arrives late
        for t, exempt in sorted(points, key=lambda p: p[0], reverse=True):
            for s in spans:  # latest first: earlier points stay put
                if s.span_id in exempt:
                    continue
                if s.start_ns >= t:
                    s.start_ns += delay_ns
                if s.end_ns >= t:
                    s.end_ns += delay_ns
        out.append(spans)
    return out


def _subtree(root: Span, children: dict[str, list[Span]]) -> set[str]:
    out, todo = set(), [root]
    while todo:
        s = todo.pop()
        out.add(s.span_id)
        todo.extend(children.get(s.span_id, ()))
    return out


def targets(traces: Traces) -> list[str]:
    seen: dict[str, int] = defaultdict(int)
    for trace in traces:
        for service in {s.service for s in trace}:
            seen[service] += 1
    return sorted(s for s, n in seen.items() if n >= MIN_SHARE * len(traces))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=Path, default=[DEFAULT_DATA])
    parser.add_argument("--delay-ms", nargs="+", type=float, default=[40.0, 200.0])
    args = parser.parse_args()
    summary = []
    for set_dir in label_sets(args.sets):
        labels = json.loads((set_dir / "labels.json").read_text())
        case = next(iter(labels))
        incident = group(read_spans(set_dir / case / "incident.otlp.json.gz"))
        baseline = group(read_spans(set_dir / case / "baseline.otlp.json.gz"))
        recorded = labels[case]["service"]  # the case's own fault: not a target, not ranked
        services = [s for s in targets(incident) if s != recorded]
        print(f"{set_dir.name}: case {case}, {len(services)} target services")
        for delay in args.delay_ms:
            ranks: dict[str, list[int | None]] = defaultdict(list)
            for service in services:
                window = delayed(incident, service, int(delay * 1e6))
                cells = []
                for name, method in METHODS.items():
                    ranked = [s for s in method(window, baseline) if s != recorded]
                    rank = rank_of(ranked, service)
                    ranks[name].append(rank)
                    cells.append(f"{rank or '-':>3}")
                print(f"  {delay:>5.0f} ms at {service:<32} " + " ".join(cells))
            parts = []
            print(f"  {delay:.0f} ms, {len(services)} services:")
            for name, values in ranks.items():
                acc = accuracy(values)
                ac1, ac3 = acc["AC@1"], acc["AC@3"]
                print(f"    {name:<36} AC@1 {ac1:.3f}  AC@3 {ac3:.3f}")
                parts.append(f"{name.split(' ')[0]} {ac1:.2f}/{ac3:.2f}")
            summary.append(f"{set_dir.name} {delay:.0f} ms: " + ", ".join(parts))
        print()
    print("rca-injected: " + " | ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
