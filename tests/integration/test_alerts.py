"""Alerts in: Alertmanager's and Grafana's webhooks on ``POST /api/alerts``.

Payloads (both shapes, repeats, what is refused and how) against a bare
receiver with an alert box; then a mind: an alert opens an incident that
the squad works through like one Scout opened, a second alert about the
same service joins it, a resolved one is noted, and a restarted mind still
knows a repeat.
"""

from __future__ import annotations

import copy
import gzip
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sre_space.alerts import SERVICE_LABELS, AlertBox, BadAlerts, parse, service_of
from sre_space.config import Settings
from sre_space.incident_view import render
from sre_space.incidents import ACTIVE, Incident
from sre_space.metrics import Metrics
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.store import TraceStore

from helpers import wait_until

# Alertmanager 0.25's webhook body (version 4), as its notify/webhook sends it.
ALERTMANAGER: dict[str, Any] = {
    "receiver": "sre-space",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "service": "checkout",
                "severity": "page",
                "job": "shop",
            },
            "annotations": {"summary": "checkout fails 23% of requests"},
            "startsAt": "2026-12-06T16:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.local/graph?g0.expr=x",
            "fingerprint": "c0ffee0123456789",
        }
    ],
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "service": "checkout"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.local:9093",
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
}

# Grafana's unified alerting webhook contact point: Alertmanager's shape and more.
GRAFANA: dict[str, Any] = {
    "receiver": "sre-space",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "PaymentsSlow", "grafana_folder": "shop", "app": "payments"},
            "annotations": {"description": "p95 over 2 s"},
            "startsAt": "2026-12-06T16:01:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana.local/alerting/grafana/abc/view",
            "fingerprint": "57f1a2b3c4d5e6f7",
            "silenceURL": "http://grafana.local/alerting/silence/new",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 2.3},
            "valueString": "[ var='B' labels={} value=2.3 ]",
        }
    ],
    "groupLabels": {"alertname": "PaymentsSlow"},
    "commonLabels": {"alertname": "PaymentsSlow", "app": "payments"},
    "commonAnnotations": {},
    "externalURL": "http://grafana.local/",
    "version": "1",
    "groupKey": '{}/{}:{alertname="PaymentsSlow"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] PaymentsSlow",
    "state": "alerting",
    "message": "**Firing** ...",
}


def body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def resolved(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["status"] = "resolved"
    for alert in out["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-12-06T16:10:00Z"
    return out


def second_alert(doc: dict[str, Any]) -> dict[str, Any]:
    """The same group with one more alert about the same service (a group change)."""
    out = copy.deepcopy(doc)
    extra = copy.deepcopy(out["alerts"][0])
    extra["labels"]["alertname"] = "CheckoutSlow"
    extra["fingerprint"] = "feed0123456789ab"
    out["alerts"].append(extra)
    return out


# --- parsing -------------------------------------------------------------------------


def test_both_shapes_parse_to_alerts_about_a_service() -> None:
    [am] = parse(body(ALERTMANAGER))
    assert (am.source, am.name, am.service, am.status) == (
        "alertmanager",
        "HighErrorRate",
        "checkout",
        "firing",
    )
    assert am.fingerprint == "c0ffee0123456789" and am.group_key.startswith("{}:")
    [gf] = parse(body(GRAFANA))
    assert (gf.source, gf.name, gf.service) == ("grafana", "PaymentsSlow", "payments")
    assert gf.annotations == {"description": "p95 over 2 s"}


def test_the_service_comes_from_the_first_well_known_label() -> None:
    assert SERVICE_LABELS[0] == "service"
    assert service_of({"job": "shop", "service": "checkout"}) == "checkout"
    assert service_of({"container": "c", "app_kubernetes_io_name": "k"}) == "k"
    assert service_of({"alertname": "X", "instance": "host:9100"}) == ""


def test_an_alert_without_a_fingerprint_gets_one_from_its_labels() -> None:
    doc = copy.deepcopy(ALERTMANAGER)
    del doc["alerts"][0]["fingerprint"]
    [a] = parse(body(doc))
    [b] = parse(body(doc))
    assert a.fingerprint and a.fingerprint == b.fingerprint and a.key == b.key
    assert a.key != parse(body(resolved(doc)))[0].key  # resolving is news


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"version": "4"}',
        b'{"alerts": {}}',
        b'{"version": "9", "alerts": []}',
        b'{"alerts": [1]}',
        b'{"alerts": [{"status": "pending", "labels": {"a": "b"}}]}',
        b'{"alerts": [{"status": "firing", "labels": {"a": 1}}]}',
        b'{"alerts": [{"status": "firing"}]}',
        b'{"alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": 5}]}',
    ],
)
def test_what_is_not_a_notification_is_refused(raw: bytes) -> None:
    with pytest.raises(BadAlerts):
        parse(raw)


# --- the box: durable, idempotent ------------------------------------------------------


def test_repeats_are_recognised_by_a_new_box_on_the_same_file(tmp_path: Path) -> None:
    metrics = Metrics()
    box = AlertBox(tmp_path / "alerts.db", metrics)
    assert box.receive(body(ALERTMANAGER)) == (202, {"status": "accepted", "alerts": 1, "new": 1})
    assert box.receive(body(ALERTMANAGER))[1]["new"] == 0  # repeat_interval
    assert box.receive(body(second_alert(ALERTMANAGER)))[1]["new"] == 1  # the group changed
    box.close()
    again = AlertBox(tmp_path / "alerts.db", metrics)  # a restarted mind
    assert again.receive(body(second_alert(ALERTMANAGER)))[1]["new"] == 0
    assert again.receive(body(resolved(ALERTMANAGER)))[1]["new"] == 1
    assert [a.status for _, a in again.pending()] == ["firing", "firing", "resolved"]
    code, doc = again.receive(b"{")
    assert code == 400 and set(doc) == {"error"}
    text = metrics.exposition()[0].decode()
    assert 'sre_space_alerts_total{outcome="accepted",source="alertmanager"} 3.0' in text
    assert 'sre_space_alerts_total{outcome="repeat",source="alertmanager"} 4.0' in text
    assert 'sre_space_alerts_total{outcome="refused",source="unknown"} 1.0' in text
    again.close()


def test_alerts_that_cannot_be_stored_are_a_5xx_to_retry(tmp_path: Path) -> None:
    metrics = Metrics()
    box = AlertBox(tmp_path / "alerts.db", metrics)
    box.close()  # the database is gone from under it
    code, doc = box.receive(body(ALERTMANAGER))
    assert code == 500 and set(doc) == {"error"}
    text = metrics.exposition()[0].decode()
    assert 'sre_space_alerts_total{outcome="failed",source="alertmanager"} 1.0' in text


# --- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[OtlpHttpReceiver, AlertBox]]:
    metrics = Metrics()
    box = AlertBox(tmp_path / "alerts.db", metrics)
    receiver = OtlpHttpReceiver(
        TraceStore(), "127.0.0.1", 0, 64 * 1024, token="s3cret", metrics=metrics, alerts=box
    ).start()
    try:
        yield receiver, box
    finally:
        receiver.stop()
        box.close()


def post(
    port: int,
    data: bytes,
    token: str | None = "s3cret",
    headers: dict[str, str] | None = None,
    path: str = "/api/alerts",
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        head = {"Content-Type": "application/json", **(headers or {})}
        if token:
            head["Authorization"] = f"Bearer {token}"
        conn.request("POST", path, body=data, headers=head)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_the_listener_takes_both_shapes_and_repeats_once(
    listener: tuple[OtlpHttpReceiver, AlertBox],
) -> None:
    receiver, box = listener
    status, raw, head = post(receiver.port, body(ALERTMANAGER))
    assert status == 202 and head["content-type"] == "application/json"
    assert json.loads(raw)["new"] == 1
    assert json.loads(post(receiver.port, body(ALERTMANAGER))[1])["new"] == 0
    gz = gzip.compress(body(GRAFANA))
    status, raw, _ = post(receiver.port, gz, headers={"Content-Encoding": "gzip"})
    assert status == 202 and json.loads(raw)["new"] == 1
    assert [a.source for _, a in box.pending()] == ["alertmanager", "grafana"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html>", 400),
        (b'{"status": "firing"}', 400),
        (b'{"alerts": [{"status": "firing", "labels": ["service"]}]}', 400),
    ],
)
def test_a_bad_payload_is_a_4xx_with_one_line_of_json(
    listener: tuple[OtlpHttpReceiver, AlertBox], data: bytes, code: int
) -> None:
    receiver, box = listener
    status, raw, head = post(receiver.port, data)
    assert status == code and head["content-type"] == "application/json"
    assert b"\n" not in raw and set(json.loads(raw)) == {"error"}
    assert box.pending() == []


def test_an_oversized_body_is_413_and_a_missing_token_401(
    listener: tuple[OtlpHttpReceiver, AlertBox],
) -> None:
    receiver, box = listener
    big = copy.deepcopy(ALERTMANAGER)
    big["alerts"][0]["annotations"]["description"] = "x" * (65 * 1024)
    status, raw, _ = post(receiver.port, body(big))
    assert status == 413 and "limit" in json.loads(raw)["error"]
    bomb = gzip.compress(body(big))  # small on the wire, too big inflated
    assert len(bomb) < 64 * 1024
    assert post(receiver.port, bomb, headers={"Content-Encoding": "gzip"})[0] == 413
    status, raw, head = post(receiver.port, body(ALERTMANAGER), token=None)
    assert status == 401 and head["www-authenticate"] == "Bearer"
    assert post(receiver.port, body(ALERTMANAGER), token="wrong")[0] == 401
    assert box.pending() == []
    text = receiver.metrics.exposition()[0].decode()
    assert 'sre_space_alerts_total{outcome="refused",source="unknown"} 2.0' in text


def test_a_receiver_without_a_mind_says_it_takes_no_alerts() -> None:
    receiver = OtlpHttpReceiver(TraceStore(), "127.0.0.1", 0, 64 * 1024).start()
    try:
        status, raw, _ = post(receiver.port, body(ALERTMANAGER), token=None)
        assert status == 404 and "error" in json.loads(raw)
    finally:
        receiver.stop()


# --- a mind ------------------------------------------------------------------------------


def start_mind(home: Path) -> Any:
    from sre_space.mind import Mind

    return Mind(Settings(home=home, otlp_http_port=0, otlp_grpc_port=-1, policy="auto")).start()


def journal(mind: Any) -> str:
    return "\n".join(f"{e.agent} {e.incident_id}: {e.message}" for e in mind.log.events(0))


def alert_steps(incident: Incident) -> list[dict[str, Any]]:
    return [a for a in incident.audit if a.get("step") == "alert"]


def test_an_alert_opens_an_incident_the_squad_works_through(tmp_path: Path) -> None:
    mind = start_mind(tmp_path)
    try:
        port = mind.senses.http.port
        hostile = copy.deepcopy(ALERTMANAGER)
        hostile["alerts"][0]["labels"]["severity"] = "\x1b]8;;http://x\x07[bold]page\u202e"
        assert post(port, body(hostile), token=None)[0] == 202

        def opened() -> Incident | None:
            found = mind.log.list(limit=5)
            return found[0] if found else None

        incident = wait_until(opened, 60, what="an incident opened by the alert")
        assert incident.source == "alert"
        # The squad works on it as on Scout's: no traces here, so the Brain
        # finds nothing, the Fixer looks again, escalates, and Jules closes the run.
        done = wait_until(
            lambda: (i := mind.log.get(incident.id)) and i.status not in ACTIVE and i,
            120,
            what="the squad done with the alert's incident\n" + journal(mind),
        )
        assert done.status == "escalated", journal(mind)
        # Jules closes the run after the status changes: wait for its line too.
        wait_until(
            lambda: (
                {"alerts", "brain", "fixer", "jules"}
                <= {e.agent for e in mind.log.events_of(incident.id)}
            ),
            60,
            what="every agent's line on the alert's incident\n" + journal(mind),
        )
        [step] = alert_steps(done)
        assert step["alert"] == "HighErrorRate" and step["service"] == "checkout"
        assert step["labels"]["severity"] == hostile["alerts"][0]["labels"]["severity"]
        assert done.to_json()["source"] == "alert"
        shown = render(done, mind.log.events_of(done.id))
        assert "source alert: HighErrorRate from alertmanager about checkout" in shown
        assert "\x1b" not in shown and "\u202e" not in shown and "<U+202E>" in shown

        # A repeat adds nothing; another alert about checkout joins; resolving is noted.
        assert json.loads(post(port, body(ALERTMANAGER), token=None)[1])["new"] == 0
        assert post(port, body(second_alert(ALERTMANAGER)), token=None)[0] == 202
        assert post(port, body(resolved(ALERTMANAGER)), token=None)[0] == 202
        wait_until(
            lambda: all(a["outcome"] for a in mind.alerts.outcomes()), 30, what="alerts taken"
        )
        assert [a["outcome"] for a in mind.alerts.outcomes()] == ["opened", "joined", "noted"]
        assert len(mind.log.list(limit=50)) == 1
        after = mind.log.get(incident.id)
        assert after is not None
        assert [(a["alert"], a["status"]) for a in alert_steps(after)] == [
            ("HighErrorRate", "firing"),
            ("CheckoutSlow", "firing"),
            ("HighErrorRate", "resolved"),
        ]
        assert not any(
            a.get("step") == "status" and a.get("by") == "alerts" and a.get("to") == "resolved"
            for a in after.audit
        )
        # Grafana's alert about another service: its own incident.
        assert post(port, body(GRAFANA), token=None)[0] == 202
        wait_until(lambda: len(mind.log.list(limit=50)) == 2, 30, what="Grafana's incident")
    finally:
        mind.stop()
    # A restarted mind still knows the repeats, and the incidents stay two.
    mind = start_mind(tmp_path)
    try:
        port = mind.senses.http.port
        for doc in (ALERTMANAGER, second_alert(ALERTMANAGER), resolved(ALERTMANAGER), GRAFANA):
            assert json.loads(post(port, body(doc), token=None)[1])["new"] == 0
        assert len(mind.log.list(limit=50)) == 2
        steps = alert_steps(mind.log.get(incident.id))  # type: ignore[arg-type]
        assert len(steps) == 3
    finally:
        mind.stop()
    # What people read: `incidents ID` and its JSON say an alert opened it.
    env = {**os.environ, "SRE_SPACE_HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "sre_space", "incidents", incident.id]
    text = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "source alert: HighErrorRate from alertmanager about checkout" in text.stdout
    assert "alert  CheckoutSlow firing from alertmanager" in text.stdout
    assert "\x1b" not in text.stdout and "<U+202E>" in text.stdout
    doc = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=60)
    shown = json.loads(doc.stdout)
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["source"] == "alert" and shown["status"]
    assert [a["alert"] for a in shown["audit"] if a["step"] == "alert"] == [
        "HighErrorRate",
        "CheckoutSlow",
        "HighErrorRate",
    ]


def test_an_alert_about_a_service_in_an_open_incident_joins_it(tmp_path: Path) -> None:
    from sre_space.detect.tracker import Tracked

    mind = start_mind(tmp_path)
    try:
        now = time.time()
        scout = Incident(id="INC-20261206-0001", status="diagnosing", detected_at=now)
        mind.log.save(scout, why="anomalous since db", by="scout")
        tracked = Tracked(1, "db", {"frontend", "checkout", "db"}, [], now, now)
        tracked.opened_at, tracked.ref = now, scout.id
        with mind._guard:
            mind.tracker.incidents.append(tracked)
        # checkout is one of its symptoms: the alert joins, no second incident.
        assert post(mind.senses.http.port, body(ALERTMANAGER), token=None)[0] == 202
        wait_until(lambda: mind.alerts.outcomes()[0]["outcome"], 30, what="the alert taken")
        assert mind.alerts.outcomes()[0]["outcome"] == "joined"
        assert [i.id for i in mind.log.list(limit=50)] == [scout.id]
        joined = mind.log.get(scout.id)
        assert joined is not None and joined.status == "diagnosing" and joined.source == "scout"
        [step] = alert_steps(joined)
        assert (
            step["reason"] == "alert HighErrorRate firing from alertmanager: "
            "about checkout, part of this incident"
        )
    finally:
        mind.stop()


def test_an_alert_before_the_traces_show_it_is_one_incident_through_the_whole_squad(
    tmp_path: Path,
) -> None:
    """The alert comes first; the fault then shows in the traces.

    Scout's anomalies at the alert's service join the alert's incident (no
    second one), the Brain names the cause from the traces, the Fixer restarts
    it through an exec target under the policy, verify judges it, Jules archives.
    """
    from rca_synth import Fault
    from test_concurrent_incidents import healthy, host, journal_on_failure

    from helpers import Shop

    (tmp_path / "gate").write_text("")  # the exec target's restart returns at once
    mind = host(tmp_path, verify_timeout_s=60.0, verify_window_s=2.0)
    try:
        with Shop(mind) as shop, journal_on_failure(mind):
            healthy(mind)
            start = time.time()
            doc = copy.deepcopy(ALERTMANAGER)
            doc["alerts"][0]["labels"] = {"alertname": "CatalogSaturated", "service": "catalog"}
            assert post(mind.senses.http.port, body(doc), token=None)[0] == 202
            first = wait_until(
                lambda: next(iter(mind.log.since(start)), None), 30, what="the alert's incident"
            )
            shop.fault = Fault(own_ms={"catalog": 1000.0})
            wait_until((tmp_path / "started").exists, 180, interval=0.2, what="the restart")
            shop.fault = Fault()  # the restart helped
            done = wait_until(
                lambda: (
                    (i := mind.log.get(first.id)) and i.status in ("mitigated", "resolved") and i
                ),
                180,
                what="the change verified",
            )
            assert [i.id for i in mind.log.since(start)] == [first.id]  # one incident
        assert done.source == "alert" and done.root_cause["service"] == "catalog"
        assert done.remediation["action"] == "restart" and done.remediation["service"] == "catalog"
        steps = [a["step"] for a in done.audit]
        assert steps.index("alert") < steps.index("applied") < steps.index("verified")
        wait_until(
            lambda: any(e.agent == "jules" for e in mind.log.events_of(first.id)),
            60,
            what="Jules archiving it",
        )
    finally:
        mind.stop()
