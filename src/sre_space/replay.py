"""Replay: the whole squad on recorded traces (``sre-space replay``).

Files are read by the same reader as ``analyze`` (:func:`sre_space.rca.offline.read_traces`)
and played in the order given, each right after the one before: a fault-free
recording first, the incident after it. Every span keeps its place and its
gaps, moved so that the recording starts now.

The mind that judges them is the real one (:class:`sre_space.mind.Mind`: its
intake, Scout's detector and tracker, the Brain, the Fixer), hosted in a
scratch home on a free loopback port, with one difference: its
:class:`ReplayClock`. Each time the mind waits, the clock plays the next
stretch of the recording into the mind's intake and moves the mind's time on
by as much, so Scout's windows hold recorded seconds however fast the
recording plays. Unpaced, a replay runs as fast as the mind keeps up;
``--speed X`` holds it to at most X recorded seconds per second.

Nothing acts: the Fixer plans under ``dry-run`` (or asks under ``approve``,
and nobody answers a replay) through an actuator that reads no configuration
and refuses to act. Memory is the home's, read only.

The clock is in :mod:`sre_space.replay_clock` (re-exported here, with
``SOURCE`` and ``TAIL_S``); this module loads the files, hosts the mind,
reports what it did and judges it against expectations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.errors import TimedOut, Unavailable, UsageError
from sre_space.incidents import Event, Incident
from sre_space.mind import Mind
from sre_space.replay_clock import SOURCE as SOURCE
from sre_space.replay_clock import TAIL_S as TAIL_S
from sre_space.replay_clock import ReplayClock
from sre_space.telemetry.model import Span
from sre_space.vocabulary import AWAITING_APPROVAL

POLICIES = ("dry-run", "approve")  # never auto (see check_policy)
EXPECTATIONS = ("root_cause", "fault_class", "action", "status", "max_ttd_s", "max_incidents")


@dataclass
class Segment:
    """One file as played: its recorded span of time and where it was moved to."""

    path: str
    spans: int
    start_ns: int  # as recorded
    end_ns: int
    offset_ns: int  # added to recorded times to play them

    @property
    def played_start(self) -> float:
        return (self.start_ns + self.offset_ns) / 1e9

    @property
    def played_end(self) -> float:
        return (self.end_ns + self.offset_ns) / 1e9

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "spans": self.spans,
            "start": _iso(self.start_ns / 1e9),
            "duration_s": round((self.end_ns - self.start_ns) / 1e9, 3),
        }


def where(segments: Sequence[Segment], played_at: float) -> tuple[Segment, float]:
    """The file playing at ``played_at`` and the recorded time it stands for."""
    for seg in segments:
        if played_at <= seg.played_end:
            return seg, played_at - seg.offset_ns / 1e9
    seg = segments[-1]
    return seg, played_at - seg.offset_ns / 1e9


def load(files: Sequence[str], start: float) -> tuple[list[Segment], list[Span]]:
    """The files' spans moved to play from ``start``, one file after another, by end time."""
    from sre_space.rca.offline import read_traces

    if not files:
        raise UsageError("give at least one trace file")
    if list(files).count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    segments: list[Segment] = []
    played: list[Span] = []
    cursor_ns = int(start * 1e9)
    for path in files:
        traces, _, _ = read_traces([path])
        spans = [s for t in traces for s in t]
        if not spans:
            raise UsageError(f"no spans in {path}")
        first = min(s.start_ns for s in spans)
        last = max(s.end_ns for s in spans)
        offset = cursor_ns - first
        for span in spans:
            span.start_ns += offset
            span.end_ns += offset
        segments.append(Segment(path, len(spans), first, last, offset))
        played.extend(spans)
        cursor_ns = last + offset + 1
    # Exporters send a span when it ends: that is when it reaches the mind.
    played.sort(key=lambda s: s.end_ns)
    return segments, played


class ReplayActuator:
    """Hands that know nothing of the recorded system and touch nothing."""

    def config(self, service: str) -> dict[str, Any]:
        return {}  # nothing is known of a recorded system's settings: the runbook plans without

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        raise Unavailable(f"a replay does not act: {action} {service} was not carried out")

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        return None


class ReplayMind(Mind):
    """The real mind, acting on nothing, remembering with the home's memory (read only)."""

    def __init__(
        self, settings: Settings, *, clock: ReplayClock, memory_settings: Settings
    ) -> None:
        super().__init__(settings, clock=clock)
        self._memory_settings = memory_settings
        self.memory_note = ""

    def _open_memory(self) -> Any:
        from sre_space.memory.store import MemoryStore

        try:
            return MemoryStore(self._memory_settings, read_only=True)
        except Unavailable as exc:  # a running mind holds it: replay without recall
            self.memory_note = f"memory not read: {exc}"
            return MemoryStore(self.settings, read_only=True)  # the scratch home's: empty

    def _actuator(self) -> Any:
        return ReplayActuator()


def check_policy(policy: str) -> None:
    if policy == "auto":
        # Acting is pointless as well as risky here: the fix would be verified on
        # the recording, which goes on failing, so it would always be undone.
        raise UsageError(
            "replay --policy auto would act on real targets while the recording, not the "
            "system, shows whether it worked; use dry-run (the default) or approve"
        )
    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}; use {' or '.join(POLICIES)}")


@dataclass
class ReplayResult:
    segments: list[Segment]
    spans: int
    played: int
    speed: float | None
    wall_s: float
    incidents: list[Incident]
    events: list[Event] = field(default_factory=list)
    memory_note: str = ""

    @property
    def duration_s(self) -> float:
        if not self.segments:
            return 0.0
        return round(self.segments[-1].played_end - self.segments[0].played_start, 3)

    def where(self, played_at: float) -> tuple[Segment, float]:
        return where(self.segments, played_at)

    def recording(self, incident: Incident) -> dict[str, Any]:
        """When the incident was detected, in the recording's own time."""
        seg, recorded = self.where(incident.detected_at)
        return {
            "file": seg.path,
            "detected_at": _iso(recorded),
            "into_file_s": round(recorded - seg.start_ns / 1e9, 2),
        }

    def in_last_file(self) -> list[Incident]:
        """Incidents detected while the last file (the incident recording) played."""
        last = self.segments[-1]
        return [i for i in self.incidents if i.detected_at >= last.played_start]

    def to_json(self) -> dict[str, Any]:
        return {
            "incidents": [{**i.to_json(), "recording": self.recording(i)} for i in self.incidents],
            "replay": {
                "files": [s.to_json() for s in self.segments],
                "spans": self.played,
                "duration_s": self.duration_s,
                "speed": self.speed,
                "wall_s": round(self.wall_s, 2),
            },
        }

    def summary(self) -> list[str]:
        """For a terminal (raw: the caller escapes what came from outside)."""
        pace = f"at {self.speed:g}x" if self.speed else "as fast as the mind kept up"
        lines = [
            f"replayed {self.played} spans from {len(self.segments)} file(s): "
            f"{self.duration_s:.1f} s of recording in {self.wall_s:.1f} s ({pace})"
        ]
        if self.memory_note:
            lines.append(self.memory_note)
        if not self.incidents:
            lines.append("no incident was opened")
        for incident in self.incidents:
            lines.extend(_describe(incident, self.recording(incident)))
        return lines


def _describe(incident: Incident, rec: dict[str, Any]) -> list[str]:
    rc, rem = incident.root_cause, incident.remediation
    ttd = f", TTD {incident.ttd_s:.1f} s" if incident.ttd_s is not None else ""
    lines = [
        "",
        f"{incident.id}  {incident.status}",
        f"  detected at  {rec['detected_at']}, {rec['into_file_s']:.1f} s into {rec['file']}{ttd}",
    ]
    if rc:
        lines.append(
            f"  root cause   {rc.get('service')} {rc.get('operation')} "
            f"({rc.get('fault_class')}, confidence {float(rc.get('confidence') or 0):.2f})"
        )
    else:
        lines.append("  root cause   none found")
    if rem.get("action"):
        outcome = rem.get("outcome")
        if outcome == AWAITING_APPROVAL:
            outcome = "awaiting approval: nobody answers a replay"
        lines.append(
            f"  plan         {rem['action']} {rem.get('service')} {rem.get('params') or {}} "
            f"({rem.get('source')}; {outcome})"
        )
    else:
        lines.append("  plan         none: escalated to a human")
    hits = incident.memory_hits
    if not hits:
        lines.append("  memory       nothing similar recalled")
    for hit in hits:
        fix = hit.get("remediation") or {}
        lines.append(
            f"  memory       {hit.get('id')} score {float(hit.get('score') or 0):.2f}: "
            f"{fix.get('action', '-')} {fix.get('service', '')} -> {hit.get('outcome')}"
        )
    return lines


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(
    settings: Settings,
    files: Sequence[str],
    *,
    speed: float | None = None,
    policy: str = "dry-run",
    timeout_s: float = 900.0,
    on_event: Callable[[Event], None] | None = None,
) -> ReplayResult:
    """Play ``files`` through a real mind; :class:`TimedOut` past ``timeout_s`` of wall time."""
    check_policy(policy)
    if speed is not None and not speed > 0:
        raise UsageError(f"--speed must be above 0, not {speed:g}")
    # On a whole second: Scout's one-second buckets then fall the same way on every run,
    # so a recording replays to the same incidents at any speed.
    start = float(int(time.time()))
    segments, spans = load(files, start)
    wall0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sre-space-replay-") as scratch:
        mind_settings = settings.model_copy(
            update={
                "home": Path(scratch),
                "policy": policy,
                "otlp_host": "127.0.0.1",
                "otlp_http_port": 0,  # a free port: nothing is expected to send to it
                "otlp_grpc_port": -1,
                "kafka_brokers": None,
                "jaeger_url": None,
                "jaeger_poll_s": 0.0,
                "notify": {},  # a replay's incidents are not news: nobody is told
            }
        )
        clock = ReplayClock(spans, start, speed)
        mind = ReplayMind(mind_settings, clock=clock, memory_settings=settings)
        clock.attach(mind.senses.intake)
        events: list[Event] = []

        def drain() -> None:
            after = events[-1].seq if events else 0
            for event in mind.log.events(after, limit=100_000):
                # Said at the recording's time: the squad's lines read as on the day.
                _, recorded = where(segments, clock.played_at(event.ts))
                events.append(dataclasses.replace(event, ts=recorded))
                if on_event is not None and not event.message.startswith("listening"):
                    on_event(events[-1])

        mind.start()
        timed_out = False
        try:
            deadline = time.monotonic() + timeout_s
            while not clock.done.wait(0.2):
                drain()
                if time.monotonic() > deadline:
                    timed_out = True
                    break
            # Incidents opened at the very end are the squad's still: let it finish them.
            timed_out = timed_out or not mind.finish(max(1.0, deadline - time.monotonic()))
        finally:
            mind.stop()
        drain()
        incidents = sorted(mind.log.list(limit=100_000), key=lambda i: i.detected_at)
        with contextlib.suppress(Exception):
            mind.log.close()
    if timed_out:
        raise TimedOut(
            f"replay did not finish within {timeout_s:.0f} s "
            f"({clock.played} of {len(spans)} spans played)"
        )
    return ReplayResult(
        segments,
        len(spans),
        clock.played,
        speed,
        time.monotonic() - wall0,
        incidents,
        events,
        mind.memory_note,
    )


# --- expectations (drill-style files) -----------------------------------------------


def load_expectations(path: Path) -> tuple[str, dict[str, Any]]:
    """(title, expectations) from a YAML or JSON file: a drill file's ``expect``, or a bare one."""
    import json

    import yaml

    try:
        text = path.read_text()
        doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UsageError(
            f"cannot read expectation file {path}: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(doc, dict):
        raise UsageError(f"expectation file {path} must hold a mapping")
    expect = doc.get("expect", doc)
    if not isinstance(expect, dict) or not expect:
        raise UsageError(f"expectation file {path} names no expectation")
    unknown = sorted(set(expect) - set(EXPECTATIONS))
    if unknown:
        raise UsageError(
            f"expectation file {path}: a replay cannot check {', '.join(unknown)} "
            f"(it checks {', '.join(EXPECTATIONS)})"
        )
    for key in ("max_ttd_s", "max_incidents"):
        if key in expect and not isinstance(expect[key], int | float):
            raise UsageError(f"expectation file {path}: {key} must be a number")
    return str(doc.get("title") or f"replay {path.name}"), expect


def judge(result: ReplayResult, expect: dict[str, Any]) -> list[dict[str, Any]]:
    """One step per expectation (drill-style: ``step``, ``ok``, what was found and wanted).

    The incident judged is the first one opened while the last file played;
    its time to detect counts from the start of that file.
    """
    found = result.in_last_file()
    incident = found[0] if found else None
    steps: list[dict[str, Any]] = [
        {"step": "detect", "ok": incident is not None, "incident": incident and incident.id}
    ]
    if "max_incidents" in expect:
        n = len(result.incidents)
        steps.append(
            {
                "step": "max_incidents",
                "ok": n <= expect["max_incidents"],
                "value": n,
                "limit": expect["max_incidents"],
            }
        )
    checks: dict[str, Callable[[Incident], Any]] = {
        "root_cause": lambda i: i.root_cause.get("service"),
        "fault_class": lambda i: i.root_cause.get("fault_class"),
        "action": lambda i: i.remediation.get("action"),
        "status": lambda i: i.status,
    }
    for key, read in checks.items():
        if key in expect:
            got = read(incident) if incident else None
            steps.append(
                {"step": key, "ok": got == expect[key], "value": got, "expected": expect[key]}
            )
    if "max_ttd_s" in expect:
        ttd = result.recording(incident)["into_file_s"] if incident else None
        ok = ttd is not None and ttd <= float(expect["max_ttd_s"])
        steps.append({"step": "max_ttd_s", "ok": ok, "value": ttd, "limit": expect["max_ttd_s"]})
    return steps


def junit(title: str, steps: list[dict[str, Any]], seconds: float) -> str:
    """JUnit XML: one testcase per expectation, a failure for each that was not met."""
    import json
    from xml.sax.saxutils import quoteattr

    cases = []
    for step in steps:
        body = "" if step["ok"] else f"<failure message={quoteattr(json.dumps(step))}/>"
        cases.append(
            f'  <testcase classname="sre-space.replay" name={quoteattr(step["step"])}>'
            f"{body}</testcase>"
        )
    failures = sum(not s["ok"] for s in steps)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(title)} tests="{len(steps)}" failures="{failures}" '
        f'time="{seconds:.2f}">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )
