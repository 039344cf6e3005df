"""Every fault in the catalogue as a drill: `sre-space drill FAULT --json`, for real.

Each drill starts its own embedded lab in a fresh SRE_SPACE_HOME with free
ports, hosts a headless mind, injects the fault, and must exit 0: detected,
localised to an acceptable root cause, mitigated by an acceptable action while
the fault is still on, reverted, steady again. No lab process may outlive it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sre_space.lab.faults import FAULTS
from sre_space.paths import Paths
from sre_space.rca.classify import FAULT_CLASSES

from helpers import free_port, wait_until

pytestmark = pytest.mark.e2e


def _lab_pids(home: Path) -> list[int]:
    """Processes whose command line names this home's supervisor, or whose env does."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"sre_space.lab" not in cmdline:
                continue
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(home).encode() in cmdline or f"SRE_SPACE_LAB_DIR={home}".encode() in env:
            pids.append(int(proc.name))
    return pids


# The lab's services declared as targets, as a user who runs the lab would: the
# drills pass through this file exactly as through the built-in declaration.
LAB_TARGETS = """\
[frontend]
kind = "lab"
[checkout]
kind = "lab"
["pay*"]
kind = "lab"
[inventory]
kind = "lab"
[db]
kind = "lab"
"""
# Each fault is drilled once; these three through the file (a workaround, a rollback,
# a knob), the others through the built-in declaration: both paths, every fault.
DECLARED = ("latency", "http-errors", "db-timeout")


@pytest.mark.lab
@pytest.mark.parametrize(
    ("fault", "targets"),
    [(f, f in DECLARED) for f in FAULTS],
    ids=[f"{f}-targets.toml" if f in DECLARED else f for f in FAULTS],
)
def test_drill_passes(fault: str, targets: bool, tmp_path: Path) -> None:
    home = tmp_path / "home"
    if targets:
        home.mkdir()
        (home / "targets.toml").write_text(LAB_TARGETS)
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(free_port()),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "sre_space", "drill", fault, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no journal on stdout (exit {proc.returncode}): {proc.stderr[-2000:]}")
    failed = [s for s in doc["run"] if not s["ok"]]
    assert proc.returncode == 0, (failed, doc.get("incident"), proc.stderr[-2000:])
    expect = FAULTS[fault].expectation()
    incident = doc["incident"]
    assert incident["root_cause"]["service"] in expect["root_cause"]
    assert incident["remediation"]["action"] in expect["actions"]
    assert incident["root_cause"]["fault_class"] in expect["fault_class"]
    assert incident["remediation"]["outcome"] == "recovered"
    assert incident["status"] in ("mitigated", "resolved")
    for key in ("ttd_s", "ttl_s", "ttm_s"):
        assert isinstance(doc[key], (int, float)) and doc[key] > 0, (key, doc[key])
    assert doc["ttd_s"] <= doc["ttl_s"] <= doc["ttm_s"]
    # Its fault reverted and the steady state back, the drill's incidents are over:
    # the next mind in this home must not take the next drill's fault for theirs.
    assert doc["incidents"] and all(i["status"] == "resolved" for i in doc["incidents"])
    # The drill stopped the lab it started: nothing of it is left running.
    wait_until(lambda: not _lab_pids(home), 15, what=f"the {fault} drill's lab processes to exit")


# --- the runbook and the policy on known diagnoses (no lab) ---------------------------------


def _diag(service: str, fault: str, exception: str = "", **extra: object) -> dict[str, object]:
    return {"service": service, "fault_class": fault, "exception": exception, **extra}


def _proc(running: int, replicas: int, **config: object) -> dict[str, object]:
    return {**config, "_process": {"running": running, "replicas": replicas}}


def test_the_runbook_reads_only_the_diagnosis_and_the_platform() -> None:
    from sre_space.squad.runbook import plan_for

    edge = {"call_edge": "checkout -> inventory"}
    # Unreachable with a process down: restart it. Unreachable while all run: not ours to restart.
    assert plan_for(_diag("checkout", "unreachable"), _proc(0, 1))["action"] == "restart"
    down = plan_for(_diag("inventory", "unreachable", **edge), _proc(2, 2))
    assert down == {**down, "action": "open_circuit", "service": "checkout"}
    assert down["params"] == {"dependency": "inventory"} and "escalate" not in down
    hang = plan_for(_diag("payments", "timeout"), _proc(2, 2))
    assert hang["action"] == "restart" and hang["params"] == {"batch": 1, "replicas": 2}
    assert plan_for(_diag("inventory", "memory"), _proc(2, 2))["action"] == "restart"
    # A release came in at the onset and a good one served before it: roll back to that one.
    releases = {"releases": {"bad": "v2", "good": "v1"}}
    bad = plan_for(_diag("payments", "error", "KeyError", **releases), _proc(2, 2, release="v2"))
    assert bad["action"] == "rollback" and bad["params"] == {"to": "v1", "from": "v2"}
    # No release change in evidence: a proposal for a person, never an action.
    unknown = plan_for(_diag("payments", "error", "KeyError"), _proc(2, 2, release="v1"))
    assert unknown["escalate"] is True and "no release change" in unknown["reason"]
    assert unknown["action"] == "investigate" and unknown["params"] == {}  # not "rollback"
    waited_on = {"evidence": {"signals": [{"kind": "latency", "span": {"service": "checkout"}}]}}
    slow = plan_for(_diag("inventory", "latency", **waited_on), _proc(2, 2))
    assert slow["action"] == "open_circuit" and slow["service"] == "checkout"
    own = {"evidence": {"signals": [{"kind": "latency", "span": {"service": "checkout"}}]}}
    assert plan_for(_diag("checkout", "latency", **own), _proc(1, 1))["action"] == "restart"
    assert plan_for(_diag("checkout", "cpu"), _proc(1, 1))["action"] == "restart"
    assert plan_for(_diag("payments", "cpu"), _proc(3, 3))["action"] == "scale_out"
    # Saturation turns the pool-size knob where the target reports one, else scales out.
    pool = plan_for(_diag("checkout", "saturation"), _proc(1, 1, pool_size=20))
    assert pool["action"] == "patch_config" and pool["params"] == {"pool_size": 100}
    assert plan_for(_diag("checkout", "saturation"), _proc(1, 1))["action"] == "scale_out"
    # A datastore saturated behind its client's pool: the client's pool is the knob.
    pooled = {"checkout": {"pool_size": 20}}
    store = plan_for(
        _diag("db", "saturation", call_edge="checkout -> db"),
        _proc(1, 1),
        lambda s: pooled.get(s, {}),
    )
    assert (store["action"], store["service"], store["params"]) == (
        "patch_config",
        "checkout",
        {"pool_size": 100},
    )
    # The old word is not a class: a proposal, not a guess.
    assert plan_for(_diag("checkout", "crash"), _proc(1, 1))["escalate"] is True


def test_a_circuit_is_opened_only_where_the_caller_has_one() -> None:
    from sre_space.squad.runbook import plan_for

    waited_on = {"evidence": {"signals": [{"kind": "latency", "span": {"service": "checkout"}}]}}
    configs = {"checkout": {"circuits": {"inventory": "closed"}, "pool_size": 20}}

    def config_of(service: str) -> dict[str, object]:
        return dict(configs.get(service, {}))

    slow = plan_for(_diag("inventory", "latency", **waited_on), _proc(2, 2), config_of)
    assert slow["action"] == "open_circuit" and "escalate" not in slow
    # checkout waits on the database too, but has no breaker for it: a proposal, escalated.
    db = plan_for(_diag("db", "latency", **waited_on), _proc(1, 1), config_of)
    assert db["escalate"] is True and "no circuit breaker to db" in db["reason"]


@pytest.mark.lab
def test_drill_with_a_wrong_expectation_exits_1(tmp_path: Path) -> None:
    # Here, not beside a module's lab: two labs at once starve a 2-core machine,
    # and the drill's own fault then went undetected for three minutes.
    spec = tmp_path / "wrong.json"
    spec.write_text(json.dumps({"fault": "db-timeout", "expect": {"root_cause": "payments"}}))
    journal = tmp_path / "journal.json"
    junit = tmp_path / "junit.xml"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(tmp_path / "home"),
        "SRE_SPACE_OTLP_HTTP_PORT": str(free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(free_port()),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sre_space",
            "drill",
            str(spec),
            "--journal",
            str(journal),
            "--junit",
            str(junit),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(journal.read_text())
    assert doc["deviated"] is True and doc["status"] == "deviated"
    # A lab that cannot hold its steady state first deviates before any fault: say so.
    localise = next((s for s in doc["run"] if s["step"] == "localise"), None)
    assert localise is not None, doc["run"]
    assert localise == {**localise, "ok": False, "root_cause": "checkout", "expected": ["payments"]}
    assert doc["ttd_s"] is not None and doc["ttm_s"] is not None  # it was mitigated all the same
    assert 'failures="1"' in junit.read_text()


def test_policy_never_restarts_more_than_a_share_of_replicas_at_once() -> None:
    from sre_space.squad.policy import Policy

    policy = Policy()
    plan = {"action": "restart", "service": "payments"}
    assert policy.refuse({**plan, "params": {"batch": 1, "replicas": 2}}, 0) is None
    refusal = policy.refuse({**plan, "params": {"batch": 2, "replicas": 2}}, 0)
    assert refusal is not None and "2 of payments's 2 replicas" in refusal
    assert policy.refuse({**plan, "params": {"replicas": 4}}, 0) is not None  # all at once
    assert policy.refuse({**plan, "params": {"batch": 1, "replicas": 1}}, 0) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fault: crash\ntarget: frontend\n", "crash cannot target 'frontend'"),
        ("fault: hang\nreplicas: half\n", "replicas must be one or all"),
        ("fault: latency\nparams: {delay_ms: fast}\n", "must be a number"),
        ("fault: latency\nparams: {jitter_ms: 5}\n", "unknown parameter(s) for latency"),
        ("fault: [unclosed\n", "cannot read drill file"),
        ("fault: meteor\n", "must name a known fault"),
    ],
)
def test_a_bad_drill_file_is_refused_before_anything_starts(
    text: str, message: str, tmp_path: Path
) -> None:
    spec = tmp_path / "drill.yaml"
    spec.write_text(text)
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "sre_space", "drill", str(spec)],
        env={**os.environ, "SRE_SPACE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (home / "lab").exists()  # no lab was started for a drill that cannot run


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc/stat")
def test_the_journal_says_how_busy_the_host_was() -> None:
    from sre_space.drill import DrillSpec, Journal, _cpu_times

    journal = Journal(DrillSpec.load("crash"))
    before = _cpu_times()
    assert before is not None
    # Spin until the machine's own counters have moved: a reading, not a guess.
    while (now := _cpu_times()) is not None and now[0] - before[0] < 20:
        pass
    host = journal.finish()["host"]
    assert host["cpus"] == os.cpu_count()
    # This process was busy the whole time, so at least its share of the CPUs was.
    assert 1.0 / (os.cpu_count() or 1) - 0.2 <= host["cpu_busy"] <= 1.0


def test_junit_is_valid_xml_whatever_the_steps_say() -> None:
    import xml.dom.minidom

    from sre_space.drill import junit

    doc = {
        "title": 'drill "quoted" & <angled>',
        "fault": "db-timeout",
        "duration": 3.2,
        "run": [
            {"step": "localise", "ok": False, "root_cause": 'a"b<c>&', "expected": "checkout"},
            {"step": "mitigate", "ok": True},
        ],
    }
    suite = xml.dom.minidom.parseString(junit(doc)).documentElement
    assert suite.getAttribute("name") == doc["title"]
    assert suite.getAttribute("failures") == "1"
    [failure] = suite.getElementsByTagName("failure")
    assert json.loads(failure.getAttribute("message"))["root_cause"] == 'a"b<c>&'


def test_expectations_say_where_the_fault_is_and_what_is_acceptable(tmp_path: Path) -> None:
    from sre_space.drill import DrillSpec

    db = DrillSpec.load("db-timeout").expect
    assert db["fault_in"] == "db" and db["root_cause"] == ["db", "checkout"]
    assert "patch_config" in db["actions"] and db["status"] == "mitigated"
    for spec in FAULTS.values():  # every fault: where it is, who may be blamed, what may fix it
        expect = spec.expectation()
        assert expect["fault_in"] == spec.default_target == expect["root_cause"][0]
        assert expect["actions"]
        assert expect["fault_class"] == [spec.fault_class] and spec.fault_class in FAULT_CLASSES
    # A drill file may target elsewhere, and say one cause or action the older way.
    path = tmp_path / "bad-release.yaml"
    path.write_text("fault: http-errors\ntarget: inventory\nexpect: {action: rollback}\n")
    spec = DrillSpec.load(str(path))
    assert spec.expect["fault_in"] == "inventory" and spec.expect["root_cause"] == ["inventory"]
    assert spec.expect["actions"] == ["rollback"]
    assert spec.expect["fault_class"] == ["error"]  # the catalogue's, unless the file says
    path.write_text("fault: hang\nexpect: {fault_class: [timeout, cpu]}\n")
    assert DrillSpec.load(str(path)).expect["fault_class"] == ["timeout", "cpu"]


@pytest.mark.lab
def test_a_drill_stopped_by_sigterm_puts_back_what_it_changed(tmp_path: Path) -> None:
    """A CI job's timeout sends SIGTERM: the drill reverts, stops its lab and exits 130."""
    home = tmp_path / "home"
    otlp_port = free_port()
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(otlp_port),
        "SRE_SPACE_OTLP_GRPC_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sre_space", "drill", "hang", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The lab is up and the drill's mind listens: it is watching the steady state.
        wait_until(Paths(home).lab_state.exists, 120, what="the drill's lab to start")
        wait_until(lambda: _listens(otlp_port), 60, what="the drill's mind to listen")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    wait_until(lambda: not _lab_pids(home), 15, what="the stopped drill's lab processes to exit")


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
