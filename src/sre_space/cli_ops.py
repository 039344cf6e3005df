"""Operations commands: approve, deny, review, drill."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from sre_space import logs, state
from sre_space.cli_common import JsonOpt, err, out, say
from sre_space.config import load
from sre_space.errors import CheckFailed, UsageError
from sre_space.incidents import IncidentLog
from sre_space.paths import Paths
from sre_space.vocabulary import AWAITING_APPROVAL


def _decide(incident_id: str, decision: str) -> None:
    place = state.where(load())
    if not state.exists(place):
        raise UsageError(f"no incident {incident_id!r}")
    log = IncidentLog(place)
    incident = log.get(incident_id)
    if incident is None:
        raise UsageError(f"no incident {incident_id!r}")
    if incident.remediation.get("outcome") != AWAITING_APPROVAL:
        raise UsageError(f"{incident_id} is not awaiting approval (status {incident.status})")
    log.decide(incident_id, decision, by="cli")
    say(f"{decision} recorded for {incident_id}; the mind resumes it")


def approve(
    incident_id: Annotated[str, typer.Argument(help="The incident awaiting approval.")],
) -> None:
    """Approve the remediation an incident is waiting on (policy: approve)."""
    _decide(incident_id, "approve")


def deny(
    incident_id: Annotated[str, typer.Argument(help="The incident awaiting approval.")],
) -> None:
    """Deny the remediation an incident is waiting on; it escalates to a human."""
    _decide(incident_id, "deny")


def review(
    since: Annotated[str, typer.Option(help="How far back: 24h, 90m, 7d.")] = "24h",
    json_out: JsonOpt = False,
    md: Annotated[
        bool, typer.Option("--md", help="Markdown (also what prints without --json).")
    ] = False,
) -> None:
    """The daily review: incidents, TTD and TTM, recurring signatures, open proposals."""
    from sre_space import review as rv

    try:
        since_s = rv.parse_since(since)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = load()
    Paths(settings.home).ensure()
    log = IncidentLog(state.where(settings))
    doc = rv.build(log, since_s)
    if json_out:
        out(doc)
    else:
        print(rv.markdown(doc), end="")  # every outside value in it is escaped
    _ = md  # markdown is also the human format


def drill(
    fault: Annotated[str, typer.Argument(help="A fault name or a drill file (YAML or JSON).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for mitigation.")] = 180.0,
    json_out: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    journal: Annotated[Path | None, typer.Option(help="Write the JSON journal here.")] = None,
    policy: Annotated[str | None, typer.Option(help="auto | approve | dry-run")] = None,
) -> None:
    """Run one fault as a resilience test: exit 0 when the squad coped, 1 when it deviated."""
    from sre_space import drill as dr

    spec = dr.DrillSpec.load(fault)
    for path in (journal, junit):  # before minutes of drill, not after
        if path is not None and not os.access(path.parent or Path("."), os.W_OK):
            raise UsageError(f"cannot write {path}: {path.parent} is not a writable directory")
    settings = load(policy=policy)
    # A drill stopped from outside (a CI job's timeout sends SIGTERM) puts back
    # what it changed, as on Ctrl-C: the fault reverted, the mind and the lab it
    # started stopped; then exit 130. Python's default would leave the lab broken.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with logs.to_file(settings, "drill"):
            doc = dr.run(settings, spec, timeout_s=timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        if journal:
            journal.write_text(json.dumps(doc, indent=2, default=str))
        if junit:
            junit.write_text(dr.junit(doc))
    except OSError as exc:
        raise UsageError(f"cannot write the drill's results: {exc}") from None
    if json_out:
        out(doc)
    else:
        for step in doc["run"]:
            mark = "ok " if step["ok"] else "FAIL"
            detail = {k: v for k, v in step.items() if k not in ("step", "ok", "ts")}
            err(f"{mark} {step['step']:<20} {json.dumps(detail, default=str)}")
        times = "  ".join(
            f"{name} {'-' if doc.get(key) is None else f'{doc[key]} s'}"
            for name, key in (("TTD", "ttd_s"), ("TTL", "ttl_s"), ("TTM", "ttm_s"))
        )
        say(f"{doc['title']}: {doc['status']}  {times}  ({doc['duration']} s)")
    if doc["deviated"]:
        busy = doc["host"].get("cpu_busy")
        why = (
            f" (the host's CPUs were {busy:.0%} busy over it: its timings are the queue's)"
            if busy is not None and busy >= dr.SATURATED
            else ""
        )
        raise CheckFailed(f"drill {spec.fault} deviated{why}")


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt
