"""`sre-space replay`: the real mind on recordings the test writes (rca_synth's small shop)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from rca_synth import Fault, to_otlp_json, window
from sre_space.replay import TAIL_S, ReplayClock, load
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import Span
from sre_space.telemetry.store import TraceStore

from helpers import CLI, cli_env, sre

START_MS = 1.7e12
LATER_MS = START_MS + 3_600_000  # the incident was recorded an hour after the quiet part


def write(path: Path, traces: list[list[Span]]) -> str:
    body = json.dumps(to_otlp_json(traces)).encode()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return str(path)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """60 s of a healthy shop at 10 requests/s, then 30 s in which payments fails."""
    d = tmp_path_factory.mktemp("recording")
    quiet = write(d / "quiet.otlp.json", window(600, seed=1, start_ms=START_MS))
    broken = write(
        d / "incident.otlp.json.gz",
        window(300, Fault(error="payments"), seed=2, start_ms=LATER_MS),
    )
    return quiet, broken


@pytest.fixture(scope="module")
def replayed(
    tmp_path_factory: pytest.TempPathFactory, recording: tuple[str, str]
) -> tuple[Path, dict[str, Any]]:
    """The recording replayed as fast as the mind keeps up: (home, the --json document)."""
    home = tmp_path_factory.mktemp("home")
    proc = sre(home, "replay", *recording, "--json")
    assert proc.returncode == 0, proc.stderr
    return home, json.loads(proc.stdout)  # JSON alone on stdout


def test_replay_finds_the_fault_after_a_quiet_recording_and_acts_on_nothing(
    replayed: tuple[Path, dict[str, Any]], recording: tuple[str, str]
) -> None:
    quiet, broken = recording
    home, doc = replayed
    assert set(doc) == {"incidents", "replay"}
    assert [f["path"] for f in doc["replay"]["files"]] == [quiet, broken]
    spans = sum(f["spans"] for f in doc["replay"]["files"])
    assert doc["replay"]["spans"] == spans > 0
    assert 89 <= doc["replay"]["duration_s"] <= 92 and doc["replay"]["speed"] is None
    # Nothing during the quiet minute; one incident once payments fails.
    assert len(doc["incidents"]) == 1, [i["root_cause"] for i in doc["incidents"]]
    incident = doc["incidents"][0]
    for key in ("id", "status", "signature", "root_cause", "remediation", "detected_at", "ttd_s"):
        assert key in incident
    assert incident["root_cause"]["service"] == "payments"
    assert incident["root_cause"]["fault_class"] == "error"
    assert incident["recording"]["file"] == broken
    # Detected in the recording's own time: a few seconds into the failure.
    assert 0 < incident["recording"]["into_file_s"] < 15
    assert incident["recording"]["detected_at"].startswith("2023-11-14T23:")
    # dry-run: a plan at most, never applied; a human takes it from there.
    assert incident["remediation"].get("outcome") in (None, "dry-run")
    assert not [a for a in incident["audit"] if a.get("step") == "applied"]
    assert incident["status"] == "escalated"
    # The replay's scratch state is gone: nothing was written to the user's home.
    assert not (home / "incidents.db").exists()


def test_the_same_recording_replays_to_the_same_incidents_at_any_speed(
    tmp_path: Path, replayed: tuple[Path, dict[str, Any]], recording: tuple[str, str]
) -> None:
    proc = sre(tmp_path, "replay", *recording, "--json", "--speed", "500")
    assert proc.returncode == 0, proc.stderr
    paced = json.loads(proc.stdout)
    assert paced["replay"]["speed"] == 500

    def seen(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (
                i["recording"]["detected_at"],
                i["ttd_s"],
                i["signature"],
                i["root_cause"]["confidence"],
            )
            for i in doc["incidents"]
        ]

    assert seen(paced) == seen(replayed[1])


def test_plain_output_shows_the_squad_then_a_summary(
    tmp_path: Path, recording: tuple[str, str]
) -> None:
    quiet, broken = recording
    env = cli_env(tmp_path)
    with open(broken, "rb") as stdin:  # the incident from stdin, gzip and all
        proc = subprocess.run(
            [*CLI, "replay", quiet, "-", "--speed", "1000"],
            env=env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    squad, _, summary = out.partition("\n---\n")
    assert " brain  [INC-" in squad and "incident opened" in squad
    # Lines carry the recording's time: the failure began at 23:13:20 UTC.
    assert re.search(r"^23:13:[23]\d scout  \[INC-\d{8}-0001\] incident opened", squad, re.M)
    assert re.search(r"incident opened: .* requests; \d+% errors \(normal 0%\)$", squad, re.M)
    assert "listening" not in squad  # the replay's mind listens for nobody
    assert "at 1000x" in summary.splitlines()[0]
    assert "root cause   payments Charge (error, confidence" in summary
    assert "s into -, TTD" in summary
    assert "memory       nothing similar recalled" in summary


def test_expectations_pass_fail_and_junit(tmp_path: Path, recording: tuple[str, str]) -> None:
    quiet, broken = recording
    good = tmp_path / "good.yaml"
    good.write_text(
        "title: payments failing is found\n"
        "fault: http-errors\n"
        "expect: {root_cause: payments, fault_class: error, max_ttd_s: 15, max_incidents: 1}\n"
    )
    report = tmp_path / "good.xml"
    proc = sre(tmp_path, "replay", quiet, broken, "--expect", str(good), "--junit", str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = ET.parse(report).getroot()
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == ["detect", "max_incidents", "root_cause", "fault_class", "max_ttd_s"]
    assert suite.get("failures") == "0"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"root_cause": "frontend", "max_ttd_s": 15}))
    report = tmp_path / "bad.xml"
    proc = sre(
        tmp_path, "replay", quiet, broken, "--expect", str(bad), "--junit", str(report), "--json"
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "sre-space: replay: expectation(s) not met: root_cause"
    steps = {s["step"]: s for s in json.loads(proc.stdout)["expectations"]}
    assert steps["root_cause"] == {
        "step": "root_cause",
        "ok": False,
        "value": "payments",
        "expected": "frontend",
    }
    failed = [c.get("name") for c in ET.parse(report).getroot().iter("testcase") if len(c)]
    assert failed == ["root_cause"]


def test_under_approve_the_replay_shows_the_request_and_still_ends(
    tmp_path: Path, recording: tuple[str, str]
) -> None:
    slow = write(
        tmp_path / "slow.json",
        window(300, Fault(own_ms={"payments": 1500}), seed=3, start_ms=LATER_MS),
    )
    proc = sre(tmp_path, "replay", recording[0], slow, "--policy", "approve")
    assert proc.returncode == 0, proc.stderr
    assert "fixer  [INC-" in proc.stdout and "awaiting approval: " in proc.stdout
    assert "root cause   payments Charge (latency" in proc.stdout
    assert "(runbook; awaiting approval: nobody answers a replay)" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing.json"], "cannot read missing.json"),
        (["{quiet}", "--policy", "auto"], "replay --policy auto would act on real targets"),
        (["{quiet}", "--policy", "yolo"], "unknown policy 'yolo'"),
        (["{quiet}", "--speed", "0"], "--speed must be above 0"),
        (["{quiet}", "--junit", "x.xml"], "--junit writes one test case per expectation"),
        (["{quiet}", "--expect", "{quiet}"], "a replay cannot check resourceSpans"),
        (["{empty}"], "no spans in"),
        (["{garbage}"], "cannot read"),
    ],
)
def test_bad_files_and_flags_are_one_line_and_exit_2(
    tmp_path: Path, recording: tuple[str, str], args: list[str], says: str
) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"resourceSpans": []}')
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not a trace")
    names = {"quiet": recording[0], "empty": str(empty), "garbage": str(garbage)}
    proc = sre(tmp_path, "replay", *[a.format(**names) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sre-space: ") and proc.stderr.count("\n") == 1
    assert says in proc.stderr
    assert proc.stdout == ""


def test_a_replay_past_its_timeout_exits_4(tmp_path: Path, recording: tuple[str, str]) -> None:
    # 90 s of recording at real speed cannot be played within one second.
    proc = sre(tmp_path, "replay", *recording, "--speed", "1", "--timeout", "1", "--json")
    assert proc.returncode == 4
    assert proc.stderr.startswith("sre-space: replay did not finish within 1 s")
    assert proc.stdout == ""


def test_the_clock_plays_each_stretch_into_the_intake_in_order(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", window(20, seed=1, start_ms=START_MS))  # 2 s
    second = write(tmp_path / "b.json", window(20, seed=2, start_ms=LATER_MS))
    segments, spans = load([first, second], start=1000.0)
    # Files follow one another, each keeping its own gaps; spans arrive by end time.
    assert segments[0].played_start == pytest.approx(1000.0)
    assert segments[1].played_start == pytest.approx(segments[0].played_end, abs=1e-6)
    assert [s.end_ns for s in spans] == sorted(s.end_ns for s in spans)
    store = TraceStore()
    intake = Intake(store).start()
    try:
        clock = ReplayClock(spans, start=1000.0)
        clock.attach(intake)
        stop = threading.Event()
        assert clock.wait(stop, 0.5) is False
        assert clock.time() == pytest.approx(1000.5)
        held = store.spans_since(0)
        assert held and all(s.end_ns <= 1000.5e9 for s in held)
        assert len(held) == sum(s.end_ns <= 1000.5e9 for s in spans) == clock.played
        while not clock.done.is_set():
            clock.sleep(0.5)
        assert clock.played == len(spans) == len(store.spans_since(0))
        assert clock.time() >= spans[-1].end_ns / 1e9 + TAIL_S
        assert clock.wait(stop, 0.5) is True  # played out: the mind's loop ends
    finally:
        intake.stop()


def test_a_remembered_fix_is_recalled_and_planned_from_the_homes_memory(
    tmp_path: Path, recording: tuple[str, str]
) -> None:
    from sre_space.config import Settings
    from sre_space.memory.store import KnowledgeEntry, MemoryStore

    quiet, broken = recording
    first = json.loads(sre(tmp_path, "replay", quiet, broken, "--json").stdout)["incidents"][0]
    remembered = KnowledgeEntry(
        id="INC-20230101-0001",
        signature=first["signature"],
        service="payments",
        operation="Charge",
        fault_class="error",
        exception="",
        summary="payments Charge error. Fixed by rollback on payments -> recovered.",
        remediation={"action": "rollback", "service": "payments", "params": {"to": "v1"}},
        outcome="recovered",
        confidence=0.9,
    )
    with MemoryStore(Settings(home=tmp_path)) as memory:  # the home's memory, as a mind left it
        memory.archive(remembered)
    proc = sre(tmp_path, "replay", quiet, broken, "--json")
    assert proc.returncode == 0, proc.stderr
    incident = json.loads(proc.stdout)["incidents"][0]
    assert [h["id"] for h in incident["memory_hits"]][:1] == ["INC-20230101-0001"]
    rem = incident["remediation"]
    assert (rem["action"], rem["source"], rem["outcome"]) == ("rollback", "memory", "dry-run")
    assert rem["params"] == {"to": "v1"}
    # Read only: the replay added nothing to the memory it recalled from.
    with MemoryStore(Settings(home=tmp_path), read_only=True) as memory:
        assert memory.count() == 1
