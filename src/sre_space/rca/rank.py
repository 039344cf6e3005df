"""Services ranked by how much of the window's trouble each explains, each with its evidence.

Each trace gives each service the strongest weight it earned there; services
are ranked by the Ochiai coefficient of those weighted traces, with the growth
of their p90 self time as a weak voice that orders what the evidence leaves
level (``docs/rca.md`` §4). The evidence of each candidate says what the
statistics showed; :func:`_fault_class` names the fault.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sre_space.rca.candidate import Candidate, calibrate
from sre_space.rca.judge import Judgement
from sre_space.rca.reference import HIGH_QUANTILE
from sre_space.rca.stats import median, quantile
from sre_space.rca.traces import END, START, OpKey, Step
from sre_space.safe_text import message_template

# A failed request is stronger evidence than a slow or reshaped one: when a
# fault shows both (a saturated pool makes requests queue, then time out), the
# place where the failures originate outranks the place where time was spent.
KIND_WEIGHT = {"error": 1.0, "latency": 0.5, "structure": 0.5}
MIN_SCORE = 0.001  # below this weighted share of the window's traces, a service is noise
EXEMPLARS = 3
# Growth of an operation's p90 self time, the naive ranking, as weak evidence:
# it cannot tell a cause from its effect, so it orders the services the other
# evidence leaves level, and tips a close call, but does not outvote it.
GROWTH_WEIGHT = 0.1
# Own work slower in at least this share of a service's operations (and at
# least this many): the whole process is slower, its CPU, not one piece of work.
CPU_SHARE = 0.5
CPU_MIN_OPERATIONS = 3
ERROR_CLASS_SHARE = 0.1  # errors name the fault class once they are this share of the evidence


def _heaviest(weights: dict[Any, float]) -> Any:
    return max(weights.items(), key=lambda kv: kv[1])[0]


@dataclass
class _Finding:
    weight: float = 0.0
    fault_classes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    sources: dict[tuple[OpKey, Step | None], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    messages: Counter[str] = field(default_factory=Counter)  # by template
    originals: dict[str, str] = field(default_factory=dict)  # template -> a message as it came

    def heaviest_source(self) -> tuple[OpKey, Step | None]:
        return max(self.sources.items(), key=lambda kv: kv[1])[0]


@dataclass
class _Suspect:
    score: float = 0.0  # sum over traces of the strongest weighted blame
    ochiai: float = 0.0
    traces: dict[str, float] = field(default_factory=dict)
    findings: dict[tuple[str, str], _Finding] = field(default_factory=lambda: defaultdict(_Finding))


def _step_name(key: OpKey) -> str:
    return {START: "start", END: "end"}.get(key, f"{key[0]} {key[1]}")


def _rate(hits: int, n: int) -> float:
    return round(hits / n, 4) if n else 0.0


def _signal(kind: str, origin: tuple[OpKey, Step | None], j: Judgement) -> dict[str, Any]:
    """What the statistics of one operation show, for the evidence."""
    source, step = origin
    st, ref = j.stats, j.ref
    # a structural finding's source is the operation as one caller uses it (step_key)
    n = st.calls[source] or st.step_from[source][START]
    doc: dict[str, Any] = {
        "kind": kind,
        "span": {"service": source[0], "name": source[1]},
        "calls": n,
    }
    if kind == "error":
        doc["errors"] = st.errors[source]
        doc["error_rate"] = _rate(st.errors[source], n)
        if ref is not None:
            doc["baseline_error_rate"] = _rate(*ref.errors.get(source, (0, 0)))
    elif kind == "latency" and source in j.own:
        shift = j.own[source]
        # the request's own time in its service, whatever spans it is spread over
        doc["self_time_p50_ms"] = round(shift.p50_ms, 2)
        doc["baseline_self_time_p50_ms"] = round(shift.baseline_p50_ms, 2)
        doc["own_time"] = {
            "visits": shift.visits,
            "p50_ms": round(shift.p50_ms, 2),
            "baseline_visits": shift.baseline_visits,
            "baseline_p50_ms": round(shift.baseline_p50_ms, 2),
            "z": round(shift.z, 2),
        }
        doc["hop"] = "own work"
    elif kind == "latency":
        doc["slow_calls"] = st.slow[source]
        doc["self_time_p50_ms"] = round(median(st.self_ms[source]), 2)
        doc["self_time_max_ms"] = round(max(st.self_ms[source], default=0.0), 1)
        stats = ref.ops.get(source) if ref is not None else None
        if ref is not None and stats is not None:
            doc["slow_rate"] = _rate(st.slow[source], n)
            doc["baseline_slow_rate"] = _rate(*ref.slow.get(source, (0, 0)))
            doc["baseline_self_time_p50_ms"] = round(stats.median_ms, 2)
        callee = st.callee.get(source) or (
            a[0] if ref is not None and (a := ref.answered_by(source)) else None
        )
        doc["hop"] = f"wait on {callee}" if callee else "own work"
    elif kind == "structure" and ref is not None and step is not None:
        doc["unusual_step"] = {
            "after": _step_name(step[0]),
            "next": _step_name(step[1]),
            "share": _rate(st.steps[source][step], st.step_from[source][step[0]]),
            "baseline_share": _rate(*ref.step_counts(source, step)),
        }
    return doc


def _growth(j: Judgement) -> dict[str, tuple[float, str]]:
    """Per service: the largest growth of one of its operations' p90 self time, and where.

    Against the reference when there is one; without, each operation's p90
    self time itself (the place where the most time is spent).
    """
    out: dict[str, tuple[float, str]] = {}
    for key, samples in j.stats.self_ms.items():
        if j.ref is not None:
            st = j.ref.known(key)
            if st is None:
                continue
            g = quantile(samples, HIGH_QUANTILE) - st.high_ms
        else:
            g = quantile(samples, HIGH_QUANTILE)
        if key[0] not in out or g > out[key[0]][0]:
            out[key[0]] = (g, key[1])
    return out


def _fault_class(service: str, main: _Finding, j: Judgement) -> str:
    """The class the main finding names; own work slower across the service reads as cpu."""
    fault = str(_heaviest(main.fault_classes))
    own_failures = j.stats.failure_classes[service]  # its own spans' failures, by class
    # Its own failures, however few, may name what the waits are: a pool that ran
    # out, or memory that did (collection pauses, then MemoryError), explains the
    # slowness and the callers' timeouts before the failures.
    if fault in ("latency", "timeout"):
        for named in ("memory", "saturation"):
            if own_failures[named]:
                return named
    # A process out of memory fails in whatever it does next, its span exporter
    # too: its callers' bare 5xx outnumber its own spans, which say MemoryError.
    # Where its own failures name memory more often than anything else, the
    # callers' unnamed errors are the same fault.
    if fault == "error" and own_failures["memory"] > own_failures["error"]:
        return "memory"
    # Callers that gave up waiting (timeout) on a service whose own work slowed
    # everywhere waited on its CPU: the slowness is the cause, the timeouts its effect.
    if fault not in ("latency", "timeout"):
        return fault
    keys = j.known.get(service, 0)
    shifted = len(j.shifted.get(service, ()))
    if keys >= CPU_MIN_OPERATIONS and shifted >= CPU_SHARE * keys:
        return "cpu"
    # Callers gave up on a service that still completes work, and that work of
    # its own is slower (or a call out whose answer came in time reached it
    # late): alive and starved, not hung. A hung service finishes nothing its
    # callers wait on and keeps the pace of the rest; calls out whose slow ones
    # went unanswered are a wait on someone else, not its own work.
    st = j.stats
    own = [
        op
        for op in j.shifted.get(service, ())
        if st.above_unanswered[(service, op)] < 0.5 * st.above[(service, op)]
    ]
    if fault == "timeout" and own:
        return "cpu"
    return fault


def rank(
    j: Judgement, n_traces: int, method: str, focus: frozenset[str] | None = None
) -> list[Candidate]:
    """Every service that took part, best first (see the module docstring).

    ``focus``: the kinds of evidence that order the services and make the
    confidence (None: all). A candidate's fault class and evidence still
    come from all of its evidence: a CPU-starved service whose callers time
    out is found by the timeouts and named by its slower work.
    """
    suspects: dict[str, _Suspect] = defaultdict(_Suspect)
    # The traces in trouble, each as much as its strongest blame, for the
    # confidence (see calibrate's ``dilution``).
    weighted = 0.0
    troubled = 0
    for trace_id, blames in j.blamed:
        best: dict[str, float] = {}
        for b in blames:
            w = b.weight * KIND_WEIGHT[b.kind]
            if w <= 0:
                continue
            if focus is None or b.kind in focus:
                best[b.service] = max(best.get(b.service, 0.0), w)
            finding = suspects[b.service].findings[(b.kind, b.operation)]
            finding.weight += w
            finding.fault_classes[b.fault_class] += w
            finding.sources[(b.source, b.step)] += w
            if b.message:
                template = message_template(b.message)
                finding.messages[template] += 1
                finding.originals.setdefault(template, b.message)
        for service, w in best.items():
            suspects[service].score += w
            suspects[service].traces[trace_id] = w
        weighted += max(best.values(), default=0.0)
        troubled += bool(best)
    # Ochiai: the weighted traces where the service is at fault, against both the
    # traces in trouble and the traces the service took part in.
    anomalous = len(j.blamed) if focus is None else troubled
    for service, sus in suspects.items():
        involved = len(j.stats.involved.get(service, set()) | set(sus.traces))
        # (involved is 0 for a service blamed only where its own spans are missing,
        # with no evidence of the kinds in focus)
        sus.ochiai = sus.score / math.sqrt(anomalous * involved) if anomalous * involved else 0.0
        if sus.score / max(1, n_traces) < MIN_SCORE:
            sus.ochiai = 0.0  # noise: ranked by growth alone, with the rest
    growth = _growth(j)
    top_growth = max((g for g, _ in growth.values()), default=0.0)

    def grown(service: str) -> float:
        g = growth.get(service, (0.0, ""))[0]
        return max(0.0, g) / top_growth if top_growth > 0 else 0.0

    services = set(j.stats.involved) | set(suspects)
    score = {s: suspects[s].ochiai + GROWTH_WEIGHT * grown(s) if s in suspects else
             GROWTH_WEIGHT * grown(s) for s in services}  # fmt: skip
    ranked = sorted(services, key=lambda s: (score[s], grown(s), s), reverse=True)
    out: list[Candidate] = []
    for service in ranked:
        if service not in suspects or suspects[service].ochiai <= 0:
            out.append(_unexplained(service, score[service], growth, j, method))
            continue
        sus = suspects[service]
        findings = sorted(sus.findings.items(), key=lambda kv: kv[1].weight, reverse=True)
        (_, operation), main = findings[0]
        # Failures carry a message, the most specific account of what went wrong
        # (a pool that ran out explains the waits as well as the timeouts): when
        # a real share of the service's evidence is errors, they name the class.
        total_weight = sum(f.weight for _, f in findings)
        failing = [f for (kind, _), f in findings if kind == "error"]
        if failing and failing[0].weight >= ERROR_CLASS_SHARE * total_weight:
            main = failing[0]
        evidence: dict[str, Any] = {
            "method": method,
            "trace_share": round(sus.score / max(1, n_traces), 4),
            "anomalous_traces": len(j.blamed),
            "explained_traces": len(sus.traces),
            "exemplar_trace_ids": sorted(sus.traces, key=sus.traces.__getitem__, reverse=True)[
                :EXEMPLARS
            ],
            "signals": [
                _signal(kind, f.heaviest_source(), j)
                | {"operation": op, "weight": round(f.weight / max(1, n_traces), 4)}
                for (kind, op), f in findings[:EXEMPLARS]
            ],
        }
        messages = Counter[str]()
        originals: dict[str, str] = {}
        for (kind, _), f in findings:
            if kind == "error":
                messages.update(f.messages)
                for template, original in f.originals.items():
                    originals.setdefault(template, original)
        if messages:
            template = messages.most_common(1)[0][0]
            evidence["exception"] = originals.get(template, template)
            evidence["exception_template"] = template
        out.append(
            Candidate(
                service=service,
                operation=operation,
                score=score[service],
                fault_class=_fault_class(service, main, j),
                evidence=evidence,
            )
        )
    calibrate(out, dilution=math.sqrt(anomalous / weighted) if weighted > 0 else 1.0)
    return out


def _unexplained(
    service: str, score: float, growth: dict[str, tuple[float, str]], j: Judgement, method: str
) -> Candidate:
    """A service that took part with no evidence against it (or too little to count)."""
    g, operation = growth.get(service, (0.0, ""))
    if not operation:
        ops = [k[1] for k in j.stats.calls if k[0] == service]
        operation = ops[0] if ops else ""
    evidence: dict[str, Any] = {
        "method": method,
        "anomalous_traces": len(j.blamed),
        "explained_traces": 0,
        "signals": [],
    }
    if g > 0:
        evidence["self_time_p90_growth_ms"] = round(g, 2)
    return Candidate(service, operation, score, "latency", evidence)
