"""The user's whole sequence, through the real `sre-space` command, on real processes.

up -> run -> chaos db-timeout -> incidents -> memory search -> down, in a
temporary SRE_SPACE_HOME with a free OTLP port. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

CLI = [sys.executable, "-m", "sre_space"]


def sre(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"sre-space {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def sre_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(sre(env, *args, "--json").stdout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(tmp_path / "home"),
        "SRE_SPACE_OTLP_HTTP_PORT": str(free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(free_port()),
        "NO_COLOR": "1",
    }
    yield env
    sre(env, "down", check=False)


def test_db_timeout_is_detected_diagnosed_fixed_and_remembered(
    env: dict[str, str], tmp_path: Path
) -> None:
    up = sre(env, "up")
    assert "embedded lab" in up.stderr
    assert "already up" in sre(env, "up").stderr

    run_log = (tmp_path / "run.out").open("w")
    mind = subprocess.Popen(
        [*CLI, "run"], env=env, stdout=run_log, stderr=subprocess.STDOUT, text=True
    )
    try:
        home = Path(env["SRE_SPACE_HOME"])
        wait_until(lambda: (home / "mind.json").exists(), 60, what="the mind to start")
        # Steady state first: the lab's load flows and nothing is wrong.
        wait_until(
            lambda: (
                (sre_json(env, "status").get("mind") or {}).get("store", {}).get("spans_in", 0)
                > 200
            ),
            60,
            what="spans from the lab at the mind",
        )
        assert sre_json(env, "incidents") == []

        sre(env, "chaos", "db-timeout")

        def mitigated() -> dict[str, Any] | None:
            for inc in sre_json(env, "incidents"):
                if inc["status"] in ("mitigated", "resolved", "escalated"):
                    return dict(inc)
            return None

        incident = wait_until(mitigated, 150, interval=1.0, what="the incident to be mitigated")
        # The fault was never reverted: the fix, not the fault expiring, recovered the SLO.
        active = sre_json(env, "chaos", "status")
        assert [a["fault"] for a in active] == ["db-timeout"]

        incidents = sre_json(env, "incidents")
        assert len(incidents) == 1, incidents
        assert incident["status"] == "mitigated", incident
        assert incident["root_cause"]["service"] == "checkout"
        assert "QueuePool limit" in incident["root_cause"]["evidence"]["exception"]
        assert incident["root_cause"]["evidence"]["exemplar_trace_ids"]
        rem = incident["remediation"]
        assert (rem["action"], rem["params"], rem["outcome"]) == (
            "patch_config",
            {"pool_size": 100},  # the runbook's knob; the lab target's key is db_pool_size
            "recovered",
        )
        assert rem["source"] == "runbook"
        assert incident["ttd_s"] is not None and incident["ttm_s"] is not None
        assert incident["mitigated_at"] > incident["detected_at"]

        hits = sre_json(env, "memory", "search", "pool saturation")
        assert hits and hits[0]["id"] == incident["id"]
        assert hits[0]["outcome"] == "recovered"
        assert hits[0]["remediation"]["params"] == {"pool_size": 100}
    finally:
        mind.send_signal(signal.SIGTERM)
        assert mind.wait(timeout=30) == 0
        run_log.close()
    out = (tmp_path / "run.out").read_text()
    for agent in ("scout", "brain", "fixer", "jules"):
        assert agent in out, out

    lab = json.loads((Path(env["SRE_SPACE_HOME"]) / "lab" / "lab.json").read_text())
    pids = [
        lab["supervisor_pid"],
        lab["loadgen"]["pid"],
        *(s["pid"] for s in lab["services"].values()),
    ]
    assert "lab stopped" in sre(env, "down").stdout
    assert not [p for p in pids if alive(p)]
    # With no lab: chaos is refused with exit 3 and one line.
    proc = sre(env, "chaos", "db-timeout", check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("sre-space: ") and proc.stderr.count("\n") == 1
