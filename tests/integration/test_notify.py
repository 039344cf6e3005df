"""Notifications out, delivered once: real sinks' stand-ins on 127.0.0.1, the real outbox.

Each sink is a real HTTP server (``notify_helpers.recorder``) that records what it
got and answers as a test scripts it. The incident log, the outbox and the
delivery worker are the real ones over a temporary home's SQLite file; people
answer through the real CLI in its own process; the crash test kills a real
``sre-space run`` with SIGKILL and starts another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from notify_helpers import OK, Request, recorder, script
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.metrics import Metrics
from sre_space.notify.config import parse, ready
from sre_space.notify.outbox import Outbox
from sre_space.notify.worker import Notifier
from sre_space.paths import Paths

import helpers
from helpers import CLI, cli_env, free_port, wait_until

INC = "INC-20260101-0001"
SECRET_PATH = "services/T0SRE/B0SPACE/s3cr3t-webhook-token-4242"
ROUTING_KEY = "R0UTINGKEY-d00d-5ecret-7777"
HMAC_SECRET = "hmac-5ecret-value-9999"


def sre(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return helpers.sre(home, *args, **{"USER": "alice", **env})


def make_home(tmp_path: Path, config: str) -> Path:
    home = tmp_path / "home"
    Paths(home).ensure()
    (home / "config.toml").write_text(config)
    return home


def notifier_for(home: Path, metrics: Metrics | None = None) -> Notifier:
    sinks = ready(parse(Settings(home=home).notify))
    return Notifier(sinks, Paths(home).incidents_db, metrics)


@contextmanager
def running(notifier: Notifier) -> Iterator[Notifier]:
    """The worker's own thread, as the mind runs it."""
    stop = threading.Event()
    thread = notifier.start(stop)
    try:
        yield notifier
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def counts(home: Path) -> dict[str, int]:
    outbox = Outbox(Paths(home).incidents_db)
    try:
        found = outbox.counts()
    finally:
        outbox.close()
    return {s: sum(c[s] for c in found.values()) for s in ("pending", "sent", "failed")}


def escalate(log: IncidentLog, incident_id: str = INC, fault_class: str = "timeout") -> Incident:
    """An incident the squad could not act on: opened, diagnosed, a proposal, escalated."""
    incident = Incident(
        id=incident_id,
        status="open",
        detected_at=time.time(),
        root_cause={
            "service": "catalog",
            "operation": "GET /items/{id}",
            "fault_class": fault_class,
            "confidence": 0.82,
        },
    )
    log.save(incident, why="anomalous since catalog", by="scout")
    incident.status = "diagnosing"
    log.save(incident)
    incident.remediation = {
        "action": "restart",
        "service": "catalog",
        "params": {"batch": 1},
        "source": "runbook",
        "outcome": "proposed",
    }
    incident.status = "escalated"
    log.save(incident, why="no target for catalog: a proposal is written")
    return incident


def mitigate(log: IncidentLog, incident_id: str) -> Incident:
    incident = Incident(id=incident_id, status="open", detected_at=time.time())
    log.save(incident, why="anomalous since catalog", by="scout")
    incident.status = "mitigated"
    incident.mitigated_at = time.time()
    log.save(incident)
    return incident


def sample(metrics: Metrics, name: str) -> float:
    body, _ = metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return 0.0


# --- what each sink receives ------------------------------------------------------------


def test_slack_gets_one_block_kit_message_per_status_change_of_interest(tmp_path: Path) -> None:
    with recorder() as slack:
        home = make_home(
            tmp_path, f'[notify.team]\nkind = "slack"\nurl = "{slack.url}/{SECRET_PATH}"\n'
        )
        log = IncidentLog(Paths(home).incidents_db)
        with running(notifier_for(home)):
            escalate(log)
            for n in range(5):  # the squad's own lines are not notifications
                log.emit("scout", f"spreading: now catalog, frontend {n}", incident_id=INC)
            log.acknowledge(INC, "alice")
            log.resolve(INC, "bob", note="restarted by hand")
            wait_until(lambda: counts(home)["sent"] == 3, 60, what="three messages sent")
        got = slack.got()
    assert len(got) == 3  # escalated, acknowledged, resolved: not open, not diagnosing, no lines
    assert all(r.path == f"/{SECRET_PATH}" for r in got)
    first = got[0].json()
    blocks = first["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": f"{INC} escalated: catalog GET /items/{{id}} (timeout)",
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Service*\ncatalog GET /items/{id}",
        "*Class*\ntimeout",
        "*Confidence*\n0.82",
        "*Status*\nescalated",
    ]
    squad = blocks[2]["text"]["text"]
    assert "the squad proposes restart on catalog {'batch': 1}" in squad
    assert "Why: no target for catalog" in squad
    assert blocks[3]["elements"][0]["text"] == f"`sre-space incidents {INC}`"
    assert first["text"] == blocks[0]["text"]["text"]  # the notification's own line
    heads = [r.json()["blocks"][0]["text"]["text"] for r in got[1:]]
    assert heads[0].startswith(f"{INC} acknowledged by alice")
    assert heads[1].startswith(f"{INC} resolved by bob")
    assert "Why: restarted by hand" in got[2].json()["blocks"][2]["text"]["text"]


def test_pagerduty_trigger_acknowledge_resolve_share_the_incident_as_dedup_key(
    tmp_path: Path,
) -> None:
    accepted = (202, {"Content-Type": "application/json"}, b'{"status":"success","message":"Event processed"}')
    with recorder(script(then=accepted)) as pd:
        home = make_home(
            tmp_path,
            "[notify.oncall]\n"
            'kind = "pagerduty"\n'
            'routing_key_env = "TEST_PD_KEY"\n'
            f'url = "{pd.url}/v2/enqueue"\n',
        )
        os.environ["TEST_PD_KEY"] = ROUTING_KEY
        try:
            log = IncidentLog(Paths(home).incidents_db)
            with running(notifier_for(home)):
                escalate(log)
                mitigate(log, "INC-20260101-0002")  # the squad fixed it: nobody was paged
                # People answer from their own processes, through the CLI.
                assert sre(home, "ack", INC, "--by", "alice").returncode == 0
                proc = sre(home, "resolve", INC, "--note", "rolled back by hand", "--by", "bob")
                assert proc.returncode == 0, proc.stderr
                wait_until(lambda: counts(home)["sent"] == 3, 60, what="three events sent")
        finally:
            del os.environ["TEST_PD_KEY"]
        events = [r.json() for r in pd.got()]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {INC}
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    assert {r.path for r in pd.got()} == {"/v2/enqueue"}
    payload = events[0]["payload"]
    assert payload["severity"] == "error"  # a timeout: requests fail
    assert payload["source"] == "catalog" and payload["summary"].startswith(f"{INC} escalated")
    assert "payload" not in events[1] and "payload" not in events[2]


def test_the_webhook_posts_the_incident_json_signed_with_hmac_sha256(tmp_path: Path) -> None:
    with recorder() as hook:
        home = make_home(
            tmp_path,
            "[notify.tools]\n"
            'kind = "webhook"\n'
            f'url = "{hook.url}/hooks/sre"\n'
            'secret_env = "TEST_HOOK_SECRET"\n'
            'statuses = ["escalated"]\n',
        )
        os.environ["TEST_HOOK_SECRET"] = HMAC_SECRET
        try:
            log = IncidentLog(Paths(home).incidents_db)
            with running(notifier_for(home)):
                escalate(log)
                wait_until(lambda: counts(home)["sent"] == 1, 60, what="the escalation sent")
        finally:
            del os.environ["TEST_HOOK_SECRET"]
        (request,) = hook.got()
    signature = request.headers["X-Sre-Space-Signature"]
    expected = "sha256=" + hmac.new(HMAC_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    forged = "sha256=" + hmac.new(b"another secret", request.body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(signature, forged)
    doc = request.json()
    assert doc["event"] == "escalated"
    assert request.headers["Idempotency-Key"] == doc["notification"]["id"]
    shown = json.loads(sre(home, "incidents", INC, "--json").stdout)
    assert {k: v for k, v in doc.items() if k not in ("event", "notification")} == shown


def test_apprise_sends_title_and_body_to_a_local_json_endpoint(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # its own imports are deprecated in Python 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        pytest.importorskip("apprise")
    with recorder() as endpoint:
        port = endpoint.url.rsplit(":", 1)[1]
        home = make_home(
            tmp_path, f'[notify.anything]\nkind = "apprise"\nurl = "json://127.0.0.1:{port}/apprise"\n'
        )
        log = IncidentLog(Paths(home).incidents_db)
        with running(notifier_for(home)):
            escalate(log)
            wait_until(lambda: counts(home)["sent"] == 1, 60, what="the escalation sent")
        (request,) = endpoint.got()
    doc = request.json()
    assert request.path == "/apprise"
    assert doc["title"].startswith(f"{INC} escalated")
    assert f"sre-space incidents {INC}" in doc["message"]


# --- delivered once ---------------------------------------------------------------------


def _webhook_home(tmp_path: Path, url: str, extra: str = "") -> Path:
    return make_home(
        tmp_path,
        f'[notify.hook]\nkind = "webhook"\nurl = "{url}/in"\nstatuses = ["escalated"]\n{extra}',
    )


def test_a_sink_failing_with_5xx_for_a_while_gets_the_message_exactly_once(tmp_path: Path) -> None:
    failing = script((500, {}, b"oops"), (503, {}, b"busy"), (502, {}, b"bad gateway"))
    metrics = Metrics()
    with recorder(failing) as hook:
        home = _webhook_home(tmp_path, hook.url)
        log = IncidentLog(Paths(home).incidents_db)
        notifier = notifier_for(home, metrics)
        with running(notifier):
            escalate(log)
            wait_until(lambda: counts(home)["sent"] == 1, 90, what="the escalation sent")
        # However long after, nothing more goes out: what the sink took is done.
        assert notifier.tick(time.time() + 2 * 86400) == 0
        got = hook.got()
    assert [r.status for r in got] == [500, 503, 502, 200]
    assert len({r.body for r in got}) == 1  # the same message each time
    assert len(hook.answered(2)) == 1
    assert sample(metrics, "sre_space_notifications_sent_total") == 1
    assert sample(metrics, "sre_space_notifications_failed_total") == 0


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    with recorder(script((429, {"Retry-After": "2"}, b"rate limited"))) as hook:
        home = _webhook_home(tmp_path, hook.url)
        log = IncidentLog(Paths(home).incidents_db)
        with running(notifier_for(home)):
            escalate(log)
            wait_until(lambda: counts(home)["sent"] == 1, 60, what="the escalation sent")
        first, second = hook.got()
    assert (first.status, second.status) == (429, 200)
    # Not the backoff's first wait (at most 1 s): the sink's 2 s.
    assert second.at - first.at >= 2.0 - 0.01


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 302])
def test_a_refused_message_is_not_retried(tmp_path: Path, status: int) -> None:
    metrics = Metrics()
    with recorder(script((status, {}, b"invalid_payload"))) as hook:
        home = _webhook_home(tmp_path, hook.url)
        log = IncidentLog(Paths(home).incidents_db)
        notifier = notifier_for(home, metrics)
        with running(notifier):
            escalate(log)
            wait_until(lambda: counts(home)["failed"] == 1, 60, what="the refusal recorded")
        assert notifier.tick(time.time() + 2 * 86400) == 0  # a day later: still not retried
        assert len(hook.got()) == 1
    rows = Outbox(Paths(home).incidents_db).rows()
    assert rows[0]["state"] == "failed" and rows[0]["answer"] == f"{status} invalid_payload"
    assert sample(metrics, "sre_space_notifications_failed_total") == 1


def test_a_sink_takes_at_most_its_rate_limit_a_minute(tmp_path: Path) -> None:
    with recorder() as hook:
        home = _webhook_home(tmp_path, hook.url, "rate_limit = 2\n")
        log = IncidentLog(Paths(home).incidents_db)
        notifier = notifier_for(home)
        for n in range(3):
            escalate(log, f"INC-20260101-000{n + 1}")
        wait_until(
            lambda: notifier.tick(time.time()) >= 0 and len(hook.got()) == 2, 30, what="two sent"
        )
        for _ in range(5):  # within the minute, the third waits
            notifier.tick(time.time())
        assert len(hook.got()) == 2
        assert counts(home) == {"pending": 1, "sent": 2, "failed": 0}
        notifier.close()


def test_a_mind_killed_before_delivery_delivers_after_restart_exactly_once(tmp_path: Path) -> None:
    phase = {"n": 1}

    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        if phase["n"] == 1 and request.json()["event"] == "escalated":
            return (503, {}, b"down for maintenance")
        return OK

    with recorder(answer) as hook:
        home = make_home(
            tmp_path,
            "[notify.hook]\n"
            'kind = "webhook"\n'
            'url_env = "TEST_HOOK_URL"\n'
            'statuses = ["escalated", "mitigated"]\n',
        )
        secret_url = f"{hook.url}/{SECRET_PATH}"
        env = cli_env(
            home,
            SRE_SPACE_OTLP_HTTP_PORT=str(free_port()),
            SRE_SPACE_OTLP_GRPC_PORT="-1",
            TEST_HOOK_URL=secret_url,
        )
        outputs = [tmp_path / "mind1.out", tmp_path / "mind2.out"]

        def start(n: int) -> subprocess.Popen[bytes]:
            with outputs[n].open("wb") as out:
                mind = subprocess.Popen(
                    [*CLI, "run"], env=env, stdout=out, stderr=subprocess.STDOUT
                )

            def up() -> bool:
                assert mind.poll() is None, outputs[n].read_text()
                try:
                    return json.loads((home / "mind.json").read_text())["pid"] == mind.pid
                except (OSError, ValueError, KeyError):
                    return False

            wait_until(up, 120, what=f"mind {n + 1} to start")
            return mind

        def answered(incident_id: str, event: str, status_class: int = 2) -> int:
            return sum(
                1
                for r in hook.answered(status_class)
                if r.json()["id"] == incident_id and r.json()["event"] == event
            )

        first = start(0)
        try:
            log = IncidentLog(Paths(home).incidents_db)
            mitigate(log, "INC-20260101-0001")
            escalate(log, "INC-20260101-0002")
            wait_until(
                lambda: answered("INC-20260101-0001", "mitigated")
                and answered("INC-20260101-0002", "escalated", 5),
                60,
                what="the mitigation delivered and the escalation refused 503",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert counts(home) == {"pending": 1, "sent": 1, "failed": 0}

        phase["n"] = 2
        second = start(1)
        try:
            wait_until(
                lambda: counts(home)["sent"] == 2
                and any(
                    e.message.startswith("notified escalated to hook (webhook (127.0.0.1)): 200")
                    for e in log.events_of("INC-20260101-0002")
                ),
                90,
                what="the escalation delivered, and said in the squad terminal",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(60)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
    assert answered("INC-20260101-0001", "mitigated") == 1  # not again by the second mind
    assert answered("INC-20260101-0002", "escalated") == 1
    with sqlite3.connect(Paths(home).incidents_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    said = "\n".join(p.read_text() for p in outputs)
    # The URL is a secret: in no output, no log, no file of the home.
    assert SECRET_PATH not in said
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET_PATH.encode() not in path.read_bytes(), path


# --- secrets and the CLI ----------------------------------------------------------------


def test_notify_test_and_list_answer_with_exit_codes_and_never_a_secret(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with recorder(script((400, {}, b"invalid_payload"))) as refusing, recorder() as slack:
        home = make_home(
            tmp_path,
            "[notify.team]\n"
            'kind = "slack"\n'
            'url_env = "TEST_SLACK_URL"\n'
            "[notify.refusing]\n"
            'kind = "webhook"\n'
            f'url = "{refusing.url}/{SECRET_PATH}"\n'
            "[notify.gone]\n"
            'kind = "webhook"\n'
            f'url = "{closed}/{SECRET_PATH}"\n'
            "[notify.oncall]\n"
            'kind = "pagerduty"\n'
            'routing_key_env = "TEST_PD_KEY"\n'
            f'url = "{closed}/v2/enqueue"\n',
        )
        env = {"TEST_SLACK_URL": f"{slack.url}/{SECRET_PATH}", "TEST_PD_KEY": ROUTING_KEY}
        runs = {
            "ok": sre(home, "notify", "test", "team", "--json", **env),
            "refused": sre(home, "notify", "test", "refusing", **env),
            "unreachable": sre(home, "notify", "test", "gone", **env),
            "pd unreachable": sre(home, "notify", "test", "oncall", **env),
            "unknown": sre(home, "notify", "test", "nobody", **env),
            "list": sre(home, "notify", "list", **env),
            "list json": sre(home, "notify", "list", "--json", **env),
            "not set": sre(home, "notify", "test", "team"),
        }
        test_message = slack.got()[0].json()
    assert [runs[k].returncode for k in runs] == [0, 1, 3, 3, 2, 0, 0, 2]
    answer = json.loads(runs["ok"].stdout)
    assert answer["status"] == 200 and answer["body"] == "ok" and answer["where"] == "slack (127.0.0.1)"
    assert "test message from sre-space" in test_message["text"]
    assert "400 invalid_payload" in runs["refused"].stderr
    assert "unreachable" in runs["unreachable"].stderr
    assert "no sink 'nobody'" in runs["unknown"].stderr
    assert "TEST_SLACK_URL, which is not set" in runs["not set"].stderr
    listed = json.loads(runs["list json"].stdout)
    assert [s["name"] for s in listed["sinks"]] == ["team", "refusing", "gone", "oncall"]
    assert listed["sinks"][0]["where"] == "slack (127.0.0.1)"
    assert listed["outbox"] == {"pending": 0, "sent": 0, "failed": 0}
    for name, proc in runs.items():
        for secret in (SECRET_PATH, ROUTING_KEY):
            assert secret not in proc.stdout + proc.stderr, name


def test_a_malformed_sink_is_refused_without_echoing_its_values(tmp_path: Path) -> None:
    home = make_home(
        tmp_path,
        '[notify.team]\nkind = "slack"\nurl = "ftp://user:pa55word-secret@example.invalid/x"\n',
    )
    proc = sre(home, "notify", "list")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sre-space: notify.team: url must be an http(s) URL"
    home2 = make_home(tmp_path / "2", '[notify.x]\nkind = "carrier-pigeon"\n')
    proc = sre(home2, "notify", "list")
    assert proc.returncode == 2 and "kind must be one of slack, pagerduty" in proc.stderr


def test_a_resolve_waits_for_the_trigger_it_closes_and_each_change_is_enqueued_once(
    tmp_path: Path,
) -> None:
    from sre_space.notify import outbox as notify_outbox

    accepted = (202, {}, b'{"status":"success"}')
    with recorder(script((500, {}, b"oops"), then=accepted)) as pd:
        home = make_home(
            tmp_path,
            f'[notify.oncall]\nkind = "pagerduty"\nrouting_key = "{ROUTING_KEY}"\n'
            f'url = "{pd.url}/v2/enqueue"\n',
        )
        log = IncidentLog(Paths(home).incidents_db)
        incident = escalate(log)
        log.resolve(INC, "bob")
        # The same change recorded again (a retried save) is not a second notification.
        stored = log.get(INC)
        assert stored is not None
        with sqlite3.connect(Paths(home).incidents_db) as db:
            notify_outbox.enqueue(db, stored.to_json(), stored.audit[-1])
        notifier = notifier_for(home)
        assert notifier.tick(time.time()) == 1  # the trigger, answered 500; the resolve waits
        assert [r.json()["event_action"] for r in pd.got()] == ["trigger"]
        wait_until(
            lambda: notifier.tick(time.time() + 600) >= 0 and counts(home)["sent"] == 2,
            30,
            what="both sent",
        )
        notifier.close()
        actions = [r.json()["event_action"] for r in pd.got()]
    assert actions == ["trigger", "trigger", "resolve"]
    assert incident.id == INC
