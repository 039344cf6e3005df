"""Targets: the declarations, `targets check`, and exec and webhook targets acting for real.

exec targets run real programs (a Python script that records its argv); webhook
targets POST to a real HTTP server on loopback that checks the HMAC signature
itself. Kubernetes is in test_kubernetes_target.py (no cluster runs here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sre_space.actuators.changes import ActionRefused
from sre_space.actuators.driver import ActionFailed
from sre_space.actuators.targets import (
    NoTarget,
    TargetActuator,
    TargetError,
    TargetTable,
    declared,
    parse,
)
from sre_space.config import Settings

from helpers import sre

RECORDER = """\
import json, os, sys
with open(os.environ["RECORD"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "fail":
    sys.stderr.write("unit checkout.service not found\\n")
    sys.exit(5)
if sys.argv[1] == "config":
    print(json.dumps({"pool_size": 20, "_process": {"running": 2, "replicas": 2}}))
else:
    print(json.dumps({"previous": {"pool_size": 20}}))
"""

GOOD = """\
# the shop's targets
[checkout]
kind = "exec"
config = ["{python}", "{script}", "config", "{{service}}"]
actions.restart = ["{python}", "{script}", "restart", "{{service}}", "--batch={{batch}}"]
actions.patch_config = ["{python}", "{script}", "set", "{{service}}", "pool={{pool_size}}"]
undo.patch_config = ["{python}", "{script}", "set", "{{service}}", "pool={{previous_pool_size}}"]

["pay*"]
kind = "webhook"
url = "http://127.0.0.1:9/hooks/sre"
secret_env = "SHOP_HOOK_SECRET"

[inventory]
kind = "kubernetes"
namespace = "shop"
knobs.circuit = {{ env = "CIRCUIT_{{dependency}}" }}

["*"]
kind = "systemd"
"""


def _write(home: Path, text: str, name: str = "targets.toml") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / name
    path.write_text(text)
    return path


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "recorder.py"
    path.write_text(RECORDER)
    monkeypatch.setenv("RECORD", str(tmp_path / "calls.jsonl"))
    return path


def _calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _good(script: Path) -> str:
    return GOOD.format(python=sys.executable, script=script)


# --- declarations -------------------------------------------------------------------------


def test_a_good_file_is_read_and_exact_names_win_over_globs(tmp_path: Path, script: Path) -> None:
    _write(tmp_path, _good(script))
    targets, source = declared(tmp_path)
    assert source == tmp_path / "targets.toml"
    table = TargetTable(targets, source)
    assert [(t.pattern, t.kind, t.line) for t in targets] == [
        ("checkout", "exec", 2),
        ("pay*", "webhook", 9),
        ("inventory", "kubernetes", 14),
        ("*", "systemd", 19),
    ]
    assert table.find("checkout").kind == "exec"  # type: ignore[union-attr]
    assert table.find("payments").kind == "webhook"  # type: ignore[union-attr]
    assert table.find("frontend").kind == "systemd"  # type: ignore[union-attr]


def test_config_toml_may_hold_the_targets(tmp_path: Path) -> None:
    _write(tmp_path, 'policy = "auto"\n\n[targets.checkout]\nkind = "lab"\n', "config.toml")
    targets, source = declared(tmp_path)
    assert source == tmp_path / "config.toml"
    assert [(t.pattern, t.kind, t.line) for t in targets] == [("checkout", "lab", 3)]
    assert Settings(home=tmp_path).policy == "auto"  # the settings ignore the table


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[checkout]\nkind = "exec"\nactions.restart = [\n', 4, "Invalid value"),
        ('[checkout]\nkind = "lab"\n\n[payments]\nkind = "mainframe"\n', 5, "kind must be one of"),
        ('[checkout]\nkind = "exec"\n', 2, "exec targets need actions"),
        ('[checkout]\nkind = "webhook"\nurl = "ftp://x"\n', 3, "http://"),
        ('[a]\nkind = "kubernetes"\nknobs.pool = { env = "X" }\n', 3, "unknown knob 'pool'"),
        ('[a]\nkind = "exec"\nactions.restart = "systemctl restart a"\n', 3, "list of strings"),
        ('[a]\nkind = "docker"\nnamespace = "x"\n', 3, "not 'namespace'"),
    ],
)
def test_a_bad_file_names_its_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TargetError) as caught:
        parse(text, path)
    assert f"targets.toml:{line}:" in str(caught.value)
    assert words in str(caught.value)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sre(home, "targets", "check", *args)


def test_targets_check_lists_what_each_service_can_have_done(tmp_path: Path, script: Path) -> None:
    _write(tmp_path, _good(script))
    done = _cli(tmp_path, "--service", "checkout", "--service", "payments", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = {row["service"]: row for row in doc["services"]}
    assert rows["checkout"]["kind"] == "exec"
    assert set(rows["checkout"]["actions"]) == {"restart", "patch_config"}
    assert rows["payments"]["actions"]["rollback"] == "POST http://127.0.0.1:9/hooks/sre"
    text = _cli(tmp_path, "--service", "frontend")
    assert text.returncode == 0
    assert "frontend: systemd target '*' (line 19)" in text.stdout
    assert "systemctl restart frontend.service" in text.stdout


def test_targets_check_exits_2_on_a_bad_file_with_the_line(tmp_path: Path) -> None:
    _write(tmp_path, '[checkout]\nkind = "lab"\n\n["pay*"]\nkind = "exec"\n')
    done = _cli(tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("sre-space: ") and "targets.toml:5: exec targets need actions" in line


def test_without_a_file_or_a_lab_no_service_has_a_target(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--service", "catalog")
    assert done.returncode == 0
    assert "catalog: no target; the Fixer writes proposals only" in done.stdout
    actuator = TargetActuator(Settings(home=tmp_path))
    with pytest.raises(NoTarget, match="no target declared for catalog"):
        actuator.config("catalog")
    proposal = actuator.describe("restart", "catalog", {"batch": 1})
    assert proposal["commands"]["kubernetes"] == "kubectl rollout restart deployment/catalog"


# --- exec, for real -----------------------------------------------------------------------


def test_exec_runs_the_declared_argv_and_its_undo(tmp_path: Path, script: Path) -> None:
    _write(tmp_path, _good(script))
    actuator = TargetActuator(Settings(home=tmp_path))
    assert actuator.config("checkout") == {
        "pool_size": 20,
        "_process": {"running": 2, "replicas": 2},
    }
    applied = actuator.apply("patch_config", "checkout", {"pool_size": 100})
    assert applied["previous"] == {"pool_size": 20}
    actuator.undo("patch_config", "checkout", applied)
    actuator.apply("restart", "checkout", {"batch": 1, "replicas": 2})
    actuator.undo("restart", "checkout", {})  # nothing of a restart to put back: runs nothing
    assert _calls(tmp_path) == [
        ["config", "checkout"],
        ["set", "checkout", "pool=100"],
        ["set", "checkout", "pool=20"],
        ["restart", "checkout", "--batch=1"],
    ]


def test_exec_never_passes_words_from_telemetry_that_are_not_plain(
    tmp_path: Path, script: Path
) -> None:
    _write(tmp_path, _good(script))
    actuator = TargetActuator(Settings(home=tmp_path))
    with pytest.raises(ActionRefused, match="not a plain word"):
        actuator.apply("patch_config", "checkout", {"pool_size": "1; rm -rf /"})
    with pytest.raises(ActionRefused, match="declares no rollback"):
        actuator.apply("rollback", "checkout", {"to": "v1"})
    assert _calls(tmp_path) == []


def test_a_failing_program_is_a_failed_action_with_what_it_said(
    tmp_path: Path, script: Path
) -> None:
    _write(
        tmp_path,
        f'[checkout]\nkind = "exec"\nactions.restart = ["{sys.executable}", "{script}", "fail"]\n',
    )
    actuator = TargetActuator(Settings(home=tmp_path))
    with pytest.raises(ActionFailed, match=r"exited 5: unit checkout\.service not found"):
        actuator.apply("restart", "checkout", {})


# --- webhook, for real --------------------------------------------------------------------


class _Hooks(ThreadingHTTPServer):
    secret = b""
    received: list[dict[str, Any]]


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        want = "sha256=" + hmac.new(self.server.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, self.headers.get("X-Sre-Space-Signature", "")):
            self.send_response(401)
            self.end_headers()
            return
        doc = json.loads(body)
        self.server.received.append(doc)
        answer = json.dumps({"job": len(self.server.received), "previous": {"shed_share": 0.0}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[_Hooks]:
    server = _Hooks(("127.0.0.1", 0), _HookHandler)
    server.secret = b"s3cret-for-tests"
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_posts_a_signed_action_document(
    tmp_path: Path, hooks: _Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = hooks.server_address[1]
    _write(
        tmp_path,
        f'["pay*"]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/jobs"\n'
        'secret_env = "SHOP_HOOK_SECRET"\n',
    )
    monkeypatch.setenv("SHOP_HOOK_SECRET", "s3cret-for-tests")
    actuator = TargetActuator(Settings(home=tmp_path))
    applied = actuator.apply("shed_load", "payments", {"share": 0.3})
    assert applied["answer"]["job"] == 1 and applied["previous"] == {"shed_share": 0.0}
    actuator.undo("shed_load", "payments", applied)
    first, second = hooks.received
    assert (first["action"], first["service"], first["params"], first["undo"]) == (
        "shed_load",
        "payments",
        {"share": 0.3},
        False,
    )
    assert second["undo"] is True and second["applied"]["previous"] == {"shed_share": 0.0}
    # A wrong secret: the server refuses it, and the Fixer says so.
    monkeypatch.setenv("SHOP_HOOK_SECRET", "not-the-secret")
    with pytest.raises(ActionFailed, match="answered 401"):
        actuator.apply("restart", "payments", {})
    assert len(hooks.received) == 2


def test_a_running_lab_is_the_built_in_target_only_without_a_file(tmp_path: Path) -> None:
    """The lab target's knobs are the lab's keys; the squad never names them."""
    settings = Settings(home=tmp_path)
    lab_runs = TargetActuator(settings, lab_running=lambda _: True)
    assert lab_runs.target("checkout") is not None
    how = lab_runs.describe("patch_config", "checkout", {"pool_size": 100})
    assert how["request"] == {
        "action": "patch_config",
        "service": "checkout",
        "params": {"db_pool_size": 100},
    }
    circuit = lab_runs.describe("open_circuit", "checkout", {"dependency": "inventory"})
    assert circuit["request"]["params"] == {"circuit_inventory": "open"}
    # A fix remembered from before knobs (the lab's own key) still means the same change.
    old = lab_runs.describe("patch_config", "checkout", {"db_pool_size": 100})
    assert old["request"]["params"] == {"db_pool_size": 100}
    rollback = lab_runs.describe("rollback", "payments", {"to": "v1", "from": "v2"})
    assert rollback["request"]["params"] == {"release": "v1"}
    # A declared file is the whole truth: services it does not name get no target.
    _write(tmp_path, '[checkout]\nkind = "systemd"\n')
    declared_only = TargetActuator(settings, lab_running=lambda _: True)
    assert declared_only.target("payments") is None
    assert declared_only.target("checkout").kind == "systemd"  # type: ignore[union-attr]


FAKE_DOCKER = """\
#!{python}
# Stands in for the docker CLI (no engine runs here): records its argv, and
# answers `compose ps -q` with two container ids.
import json, os, sys
with open(os.environ["RECORD"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
if "ps" in sys.argv:
    print("c0ffee01\\nc0ffee02")
"""


def test_compose_targets_restart_and_scale_with_the_docker_cli(
    tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real program named docker on PATH stands in for the CLI (no Docker engine here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _write(tmp_path, '[search]\nkind = "compose"\nproject = "shop"\nservice = "search-api"\n')
    actuator = TargetActuator(Settings(home=tmp_path))
    actuator.apply("restart", "search", {"batch": 1})
    applied = actuator.apply("scale_out", "search", {"by": 1})
    assert applied["previous"] == {"replicas": 2} and applied["replicas"] == 3
    base = ["compose", "-p", "shop"]
    assert _calls(tmp_path) == [
        [*base, "restart", "search-api"],
        [*base, "ps", "-q", "search-api"],
        [*base, "up", "-d", "--no-deps", "--no-recreate", "--scale", "search-api=3", "search-api"],
    ]
