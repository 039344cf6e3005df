"""A real Prometheus Alertmanager notifies the mind's ``POST /api/alerts``.

The test starts Debian's ``prometheus-alertmanager`` itself (a temporary
config and storage, loopback, clustering off) with a webhook receiver on the
mind's listener (bearer token included) and short group and repeat
intervals, posts two alert groups to its API, and waits until it has notified
the mind again and again: the mind has exactly one incident per group, each
alert once in its audit trail, whatever Alertmanager repeats. Resolving the
alerts at Alertmanager is noted in the incidents' audit trails.
Skips when the binary is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sre_space.config import Settings
from sre_space.incidents import Incident

from helpers import answers_ok, free_port, stop, wait_until

TOKEN = "alertmanager-test-token"


def _binary() -> str | None:
    for name in ("prometheus-alertmanager", "alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/prometheus-alertmanager" if Path("/usr/bin/prometheus-alertmanager").exists() else None


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@contextlib.contextmanager
def alertmanager(tmp_path: Path, webhook: str) -> Iterator[str]:
    """Alertmanager on a free loopback port, notifying ``webhook``; its base URL."""
    exe = _binary()
    if exe is None:
        pytest.skip(
            "prometheus-alertmanager is not installed "
            "(apt-get install --no-install-recommends prometheus-alertmanager)"
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: mind\n"
        "  group_by: [alertname, service]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 2s\n"
        "receivers:\n"
        "  - name: mind\n"
        "    webhook_configs:\n"
        f"      - url: {webhook}\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        f"          authorization: {{credentials: {TOKEN}}}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            return answers_ok(f"{url}/-/ready")

        wait_until(up, 60, what="Alertmanager ready")
        yield url
    finally:
        stop(proc, 20)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def notifications(url: str) -> tuple[float, float]:
    """Alertmanager's own count of webhook notifications: (sent, failed)."""
    text = _get(f"{url}/metrics")

    def value(name: str) -> float:
        m = re.search(rf'^{name}{{integration="webhook"}} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    return value("alertmanager_notifications_total"), value(
        "alertmanager_notifications_failed_total"
    )


GROUPS = [
    {"alertname": "HighErrorRate", "service": "checkout"},
    {"alertname": "PaymentsSlow", "service": "payments"},
]


def the_alerts(ends: datetime) -> list[dict[str, Any]]:
    """Three alerts in two groups: checkout's group has two instances."""
    now = datetime.now(UTC)
    out = []
    for labels, instances in ((GROUPS[0], ["a", "b"]), (GROUPS[1], ["a"])):
        for instance in instances:
            out.append(
                {
                    "labels": {**labels, "instance": instance, "severity": "page"},
                    "annotations": {"summary": f"{labels['service']} is in trouble"},
                    "startsAt": _iso(now - timedelta(seconds=30)),
                    "endsAt": _iso(ends),
                    "generatorURL": "http://prometheus.invalid/graph",
                }
            )
    return out


def alert_steps(incident: Incident) -> list[tuple[str, str, str]]:
    return [
        (str(a["alert"]), str(a["labels"].get("instance")), str(a["status"]))
        for a in incident.audit
        if a.get("step") == "alert"
    ]


def test_alertmanager_repeats_make_one_incident_per_group(tmp_path: Path) -> None:
    from sre_space.mind import Mind

    if _binary() is None:  # before the mind starts: nothing to clean up
        pytest.skip("prometheus-alertmanager is not installed")
    home = tmp_path / "home"
    mind = Mind(
        Settings(home=home, otlp_http_port=0, otlp_grpc_port=-1, otlp_token=TOKEN)
    ).start()
    try:
        webhook = f"http://127.0.0.1:{mind.senses.http.port}/api/alerts"
        with alertmanager(tmp_path, webhook) as am:
            post_alerts(am, the_alerts(datetime.now(UTC) + timedelta(hours=1)))

            def incidents() -> list[Incident]:
                return mind.log.list(limit=50)

            wait_until(lambda: len(incidents()) >= 2, 90, what="two incidents from two groups")
            sent, _ = notifications(am)
            # Alertmanager notifies each group again every repeat_interval: wait
            # for two more notifications after both incidents exist.
            wait_until(
                lambda: notifications(am)[0] >= sent + 2,
                90,
                what="Alertmanager notifying the mind again",
            )
            assert notifications(am)[1] == 0, "Alertmanager saw the webhook fail"
            found = incidents()
            assert len(found) == 2, [i.id for i in found]
            by_service = {
                next(a["service"] for a in i.audit if a.get("step") == "alert"): i for i in found
            }
            assert set(by_service) == {"checkout", "payments"}
            assert all(i.source == "alert" for i in found)
            checkout = mind.log.get(by_service["checkout"].id)
            payments = mind.log.get(by_service["payments"].id)
            assert checkout is not None and payments is not None
            assert sorted(alert_steps(checkout)) == [
                ("HighErrorRate", "a", "firing"),
                ("HighErrorRate", "b", "firing"),
            ]
            assert alert_steps(payments) == [("PaymentsSlow", "a", "firing")]
            scrape = urllib.request.Request(
                f"http://127.0.0.1:{mind.senses.http.port}/metrics",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            with urllib.request.urlopen(scrape, timeout=10) as resp:
                scraped = resp.read().decode()
            repeats = re.search(
                r'^sre_space_alerts_total\{outcome="repeat",source="alertmanager"\} (\S+)$',
                scraped,
                re.M,
            )
            assert repeats is not None and float(repeats.group(1)) >= 1, scraped

            # Resolved at Alertmanager: noted in each incident, not a close by itself.
            post_alerts(am, the_alerts(datetime.now(UTC) - timedelta(seconds=1)))

            def noted() -> bool:
                return all(
                    any(s[2] == "resolved" for s in alert_steps(mind.log.get(i.id)))  # type: ignore[arg-type]
                    for i in found
                )

            wait_until(noted, 90, what="the resolved notifications noted")
            wait_until(
                lambda: all(o["outcome"] for o in mind.alerts.outcomes()), 30, what="all taken"
            )
            assert len(incidents()) == 2
            after = mind.log.get(by_service["checkout"].id)
            assert after is not None
            assert sorted(alert_steps(after)) == [
                ("HighErrorRate", "a", "firing"),
                ("HighErrorRate", "a", "resolved"),
                ("HighErrorRate", "b", "firing"),
                ("HighErrorRate", "b", "resolved"),
            ]
            assert not any(
                a.get("step") == "status" and a.get("by") == "alerts" and a.get("to") == "resolved"
                for a in after.audit
            )
    finally:
        mind.stop()
