"""Drills: a chaos experiment with a verdict, in the spirit of Chaos Toolkit.

steady state -> inject -> expect detection, the right root cause, mitigation
-> revert -> steady state again. The journal records each step, TTD, time to
localise and TTM (AIOpsLab's terms) and the verdict; `deviated` means exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from sre_space.config import Settings
from sre_space.errors import UsageError
from sre_space.lab.faults import FAULTS
from sre_space.vocabulary import ESCALATED, MITIGATED, RESOLVED, UNCLEAR

TERMINAL = (MITIGATED, RESOLVED, ESCALATED)
# Busier than this over a drill, the host had no CPU to spare: the lab alone
# takes about half of two cores, so its timings were set by the queue for a CPU.
SATURATED = 0.9


def _cpu_times() -> tuple[int, int] | None:
    """All CPUs' jiffies since boot: (total, idle or waiting on I/O); None off Linux."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(values) < 5:
        return None
    return sum(values[:8]), values[3] + values[4]  # guest time is in user already


@dataclass
class DrillSpec:
    fault: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    replicas: str | None = None  # blast radius on a replicated service: one | all
    expect: dict[str, Any] = field(default_factory=dict)
    title: str = ""

    @classmethod
    def load(cls, name_or_file: str) -> DrillSpec:
        if name_or_file in FAULTS:
            spec = FAULTS[name_or_file]
            return cls(fault=spec.name, expect=spec.expectation(), title=f"drill {spec.name}")
        path = Path(name_or_file)
        if not path.exists():
            raise UsageError(
                f"{name_or_file!r} is neither a fault ({', '.join(FAULTS)}) nor a drill file"
            )
        import yaml

        try:
            text = path.read_text()
            doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read drill file {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict) or doc.get("fault") not in FAULTS:
            raise UsageError(f"drill file {path} must name a known fault ({', '.join(FAULTS)})")
        base = FAULTS[doc["fault"]]
        target, replicas = doc.get("target"), doc.get("replicas")
        if target is not None and target not in base.targets:
            raise UsageError(
                f"drill file {path}: {base.name} cannot target {target!r} "
                f"(targets: {', '.join(base.targets)})"
            )
        if replicas not in (None, "one", "all"):
            raise UsageError(f"drill file {path}: replicas must be one or all, not {replicas!r}")
        try:
            base.resolve_params(doc.get("params"))
        except ValueError as exc:
            raise UsageError(f"drill file {path}: {exc}") from None
        return cls(
            fault=doc["fault"],
            target=doc.get("target"),
            params=dict(doc.get("params") or {}),
            replicas=doc.get("replicas"),
            expect=expectation(base.expectation(target), doc.get("expect"), path),
            title=str(doc.get("title") or f"drill {doc['fault']}"),
        )


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def expectation(base: dict[str, Any], given: Any, path: Path) -> dict[str, Any]:
    """The catalogue's expectation for the target, with what a drill file's ``expect:`` says.

    ``root_cause``, ``fault_class`` and ``actions`` (or the older single ``action``)
    take one name or a list of acceptable ones.
    """
    if given is None:
        return dict(base)
    if not isinstance(given, dict):
        raise UsageError(f"drill file {path}: expect must be a mapping")
    doc = {**base, **{k: v for k, v in given.items() if k != "action"}}
    if "action" in given:
        doc["actions"] = _listed(given["action"])
    doc["root_cause"] = _listed(doc["root_cause"])
    doc["fault_class"] = _listed(doc.get("fault_class") or [])
    doc["actions"] = _listed(doc.get("actions") or [])
    return doc


class Journal:
    def __init__(self, spec: DrillSpec) -> None:
        self.doc: dict[str, Any] = {
            "title": spec.title,
            "fault": spec.fault,
            "expect": spec.expect,
            "status": "running",
            "deviated": False,
            "steady_states": {},
            "run": [],
            "rollbacks": [],
            "ttd_s": None,  # AIOpsLab's terms: time to detect, to localise, to mitigate
            "ttl_s": None,
            "ttm_s": None,
            "start": time.time(),
        }
        self._cpu = _cpu_times()
        self.injected_at: float | None = None

    def step(self, name: str, ok: bool, **detail: Any) -> None:
        self.doc["run"].append({"step": name, "ok": ok, "ts": time.time(), **detail})
        if not ok:
            self.doc["deviated"] = True

    def finish(self) -> dict[str, Any]:
        self.doc["end"] = time.time()
        self.doc["duration"] = round(self.doc["end"] - self.doc["start"], 2)
        self.doc["status"] = "deviated" if self.doc["deviated"] else "completed"
        # How busy the host was: a drill on a saturated host measures the queue for a CPU.
        host: dict[str, Any] = {"cpus": os.cpu_count()}
        end = _cpu_times()
        if self._cpu is not None and end is not None and end[0] > self._cpu[0]:
            total, idle = end[0] - self._cpu[0], end[1] - self._cpu[1]
            host["cpu_busy"] = round(1.0 - idle / total, 3)
        self.doc["host"] = host
        return self.doc


def _steady(mind: Any, settings: Settings, hold_s: float, timeout_s: float) -> dict[str, Any]:
    """Spans flow and no operation breaks the static rules for ``hold_s`` in a row."""
    deadline = time.time() + timeout_s
    calm_since: float | None = None
    while time.time() < deadline:
        flowing = mind.store.stats().spans_in > 0
        bad = mind.detector.anomalous(settings.error_rate_threshold, settings.min_requests)
        if flowing and not bad:
            calm_since = calm_since or time.time()
            if time.time() - calm_since >= hold_s:
                return {"ok": True, "held_s": hold_s}
        else:
            calm_since = None
        time.sleep(0.25)
    return {"ok": False, "reason": f"not steady within {timeout_s:.0f} s"}


def run(
    settings: Settings, spec: DrillSpec, timeout_s: float = 180.0, hold_s: float = 0.0
) -> dict[str, Any]:
    """One drill; with ``hold_s``, the fault stays on that long after the squad is done.

    The journal's ``incidents`` lists every incident opened from the injection
    to the steady state after it: one fault should be one incident.
    """
    from sre_space.infra.compose import running_stack
    from sre_space.lab.control import LabClient
    from sre_space.lab.launcher import read_lab_state, start_lab, stop_lab
    from sre_space.mind import Mind

    if running_stack(settings.home) is not None:
        raise UsageError(
            "drills break the embedded lab, and this home runs the Compose stack: "
            "`sre-space down` first, or use another SRE_SPACE_HOME"
        )
    journal = Journal(spec)
    # Whatever fails, everything this drill started is put back, newest first:
    # the fault reverted, the mind stopped, the lab stopped if the drill started it.
    with contextlib.ExitStack() as undo:
        if read_lab_state(settings) is None:
            undo.callback(stop_lab, settings)
            start_lab(settings)
        mind = Mind(settings).start()
        undo.callback(mind.stop)
        client = LabClient.from_settings(settings)
        before = _steady(mind, settings, hold_s=settings.detect_window_s / 2, timeout_s=60)
        journal.doc["steady_states"]["before"] = before
        journal.step("steady-state-before", before["ok"])
        if not before["ok"]:
            return journal.finish()
        undo.callback(_restore, journal, mind, client, settings, spec.fault)
        injected_at = journal.injected_at = time.time()
        client.inject(spec.fault, target=spec.target, params=spec.params, replicas=spec.replicas)
        journal.step(
            "inject",
            True,
            fault=spec.fault,
            target=spec.target,
            params=spec.params,
            replicas=spec.replicas,
        )
        incident = _await_incident(mind, injected_at, timeout_s)
        _judge(journal, spec, incident, injected_at, mind.log.events(0, limit=100_000))
        if hold_s > 0 and incident is not None:
            time.sleep(hold_s)  # the fault goes on, as it would until someone reverts it
    journal.doc["incidents"] = [
        {
            "id": i.id,
            "status": i.status,
            "root_cause": i.root_cause.get("service"),
            "recurs": i.recurs,
            "detected_s": round(i.detected_at - injected_at, 2),
        }
        for i in mind.log.since(injected_at)
    ]
    return journal.finish()


def _restore(journal: Journal, mind: Any, client: Any, settings: Settings, fault: str) -> None:
    """Revert the fault, then check the steady state came back.

    A workaround the Fixer put in (an open circuit, load shedding) is lifted by
    the squad's own half-open probe once the dependency answers again
    (squad/halfopen.py): the steady state is judged with that cleanup, not ours.
    """
    reverted = client.revert(fault)
    journal.doc["rollbacks"].append({"revert": reverted, "ts": time.time()})
    # Generous: a lifted workaround and a drained backlog take a starved host minutes.
    after = _steady(mind, settings, hold_s=settings.detect_window_s / 2, timeout_s=180)
    journal.doc["steady_states"]["after"] = after
    journal.step("steady-state-after", after["ok"])
    if after["ok"] and journal.injected_at is not None:
        # The fault is gone and the steady state held: the drill's incidents are
        # over. The mind would resolve them after resolve_quiet_s of quiet, but it
        # stops now; left open, the next mind in this home would watch them for
        # an hour and take the next drill's fault for theirs (no new incident).
        for incident in mind.log.since(journal.injected_at):
            if incident.status == RESOLVED:
                continue
            with contextlib.suppress(UsageError):  # the mind resolved it meanwhile
                mind.log.resolve(
                    incident.id, "drill", "the drill reverted its fault; the steady state held"
                )


def _await_incident(mind: Any, since: float, timeout_s: float) -> Any:
    """The first incident opened since the injection, once it has a verdict.

    The first, not the first to end: a later one (the same trouble seen again
    while the first was verifying, its action refused by the cooldown) ends at
    once, and is not how the squad coped with the fault. Every incident opened
    is in the journal's ``incidents``: one fault should be one.
    """
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        opened = mind.log.since(since)
        if opened and opened[0].status in TERMINAL:
            return opened[0]
        time.sleep(0.5)
    opened = mind.log.since(since)
    return opened[0] if opened else None


def _judge(
    journal: Journal, spec: DrillSpec, incident: Any, injected_at: float, events: list[Any]
) -> None:
    expect = spec.expect
    if incident is None:
        journal.step("detect", False, reason="no incident was opened")
        return
    journal.doc["incident"] = incident.to_json()
    ttd = round(incident.detected_at - injected_at, 2)
    journal.doc["ttd_s"] = ttd
    journal.step("detect", True, incident=incident.id, ttd_s=ttd)
    service = incident.root_cause.get("service")
    brain = [e for e in events if e.agent == "brain" and e.incident_id == incident.id]
    if brain:
        journal.doc["ttl_s"] = round(brain[0].ts - injected_at, 2)
    causes = expect.get("root_cause") or []
    journal.step(
        "localise",
        not causes or service in causes,
        root_cause=service,
        expected=causes,
        fault_in=expect.get("fault_in"),
    )
    classes = expect.get("fault_class") or []
    if classes:
        got_class = incident.root_cause.get("fault_class")
        journal.step("classify", got_class in classes, fault_class=got_class, expected=classes)
    wanted = expect.get("status", "mitigated")
    # A mitigated incident may already have resolved after its quiet period.
    status_ok = incident.status == wanted or (
        wanted == MITIGATED and incident.status == RESOLVED
    )
    outcome = incident.remediation.get("outcome")
    if wanted == MITIGATED and outcome == UNCLEAR:
        status_ok = False  # the SLO came back, but the squad's fix is not credited with it
    journal.step("mitigate", status_ok, status=incident.status, expected=wanted, outcome=outcome)
    action = incident.remediation.get("action")
    if expect.get("actions"):
        journal.step(
            "remediation",
            action in expect["actions"],
            action=action,
            expected=expect["actions"],
        )
    if incident.mitigated_at:
        journal.doc["ttm_s"] = round(incident.mitigated_at - injected_at, 2)
    for key in ("max_ttd_s", "max_ttm_s"):
        if key in expect:
            got = journal.doc.get(key[4:])
            journal.step(
                key, got is not None and got <= float(expect[key]), value=got, limit=expect[key]
            )


def junit(doc: dict[str, Any]) -> str:
    """JUnit XML: one testcase per drill step, a failure for each step that deviated."""
    cases = []
    for step in doc["run"]:
        body = "" if step["ok"] else f"<failure message={quoteattr(json.dumps(step))}/>"
        cases.append(
            f"  <testcase classname={quoteattr('sre-space.drill.' + doc['fault'])} "
            f"name={quoteattr(step['step'])}>{body}</testcase>"
        )
    failures = sum(not s["ok"] for s in doc["run"])
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(doc["title"])} tests="{len(doc["run"])}" '
        f'failures="{failures}" time="{doc.get("duration", 0)}">\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )
