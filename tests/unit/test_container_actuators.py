"""The Docker and plan-only actuators: which call for which action, and what they refuse.

The Docker client and the compose runner here are recorded fakes: this machine
has no Docker engine, so no real container can run. They answer the way the
Docker SDK (``client.containers.list(all=..., filters=...)``, ``container.restart``)
and `docker compose` are called, and record every call, so the tests assert on
the decisions and the exact commands. The real engine is exercised by the
Compose end-to-end test (tests/integration/test_compose.py), where one exists. The plan-only
actuator needs no engine and is tested against the shipped compose file.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from sre_space.actuators import Actuator
from sre_space.actuators.changes import ActionRefused, Limits, ServiceState, decide
from sre_space.actuators.docker import DockerActuator
from sre_space.actuators.knobs import KnobAdapter
from sre_space.actuators.lab import LAB_KEYS
from sre_space.actuators.plan import ComposeFileInventory, PlanActuator
from sre_space.infra.compose import compose_file
from sre_space.squad import runbook

PROJECT = "sre-space"


class FakeContainer:
    def __init__(
        self,
        service: str,
        number: int,
        *,
        actions: str | None,
        env: Mapping[str, str],
        status: str = "running",
        oneoff: bool = False,
    ) -> None:
        self.id = f"{service}-{number}-id"
        self.status = status
        self.labels = {
            "com.docker.compose.project": PROJECT,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "True" if oneoff else "False",
        }
        if actions is not None:
            self.labels["sre-space.actions"] = actions
        self.attrs = {"Config": {"Env": [f"{k}={v}" for k, v in env.items()]}}
        self.restarts: list[int] = []
        self.log: list[str] | None = None  # shared among containers: the order of restarts
        self.barrier: Any = None  # restarts that must overlap wait here for each other

    def restart(self, timeout: int = 10) -> None:
        self.restarts.append(timeout)
        if self.log is not None:
            self.log.append(f"stop {self.id}")
        if self.barrier is not None:
            self.barrier.wait()
        if self.log is not None:
            self.log.append(f"start {self.id}")


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = containers
        self.queries: list[dict[str, Any]] = []

    def list(self, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[Any]:
        self.queries.append({"all": all, "filters": dict(filters or {})})
        wanted = set((filters or {}).get("label", []))
        found = []
        for c in self.containers:
            labels = {f"{k}={v}" for k, v in c.labels.items()}
            if wanted <= labels and (all or c.status == "running"):
                found.append(c)
        return found


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


class FakeCompose:
    def __init__(self, override: Path) -> None:
        self.override: Path | None = override
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str, timeout_s: float | None = 600.0) -> str:
        self.calls.append(args)
        return ""


CHECKOUT_ENV = {
    "PATH": "/usr/local/bin",
    "SRE_SPACE_CFG_DB_POOL_SIZE": "20",
    "SRE_SPACE_CFG_DB_POOL_TIMEOUT_MS": "250",
    "SRE_SPACE_CFG_RELEASE": "v1",
}


def _stack(
    checkout_replicas: int = 1, checkout_actions: str = "restart,recreate,scale"
) -> list[FakeContainer]:
    containers = [
        FakeContainer("checkout", n, actions=checkout_actions, env=CHECKOUT_ENV)
        for n in range(1, checkout_replicas + 1)
    ]
    containers += [
        FakeContainer("frontend", 1, actions="restart", env={"SRE_SPACE_CFG_RELEASE": "v1"}),
        FakeContainer("kafka", 1, actions=None, env={"KAFKA_NODE_ID": "1"}),
        # A `compose run` one-off is not a replica.
        FakeContainer("checkout", 99, actions=checkout_actions, env=CHECKOUT_ENV, oneoff=True),
    ]
    return containers


@pytest.fixture
def override(tmp_path: Path) -> Path:
    return tmp_path / "state" / "compose" / "sre-space.override.yml"


def _actuator(
    override: Path, containers: list[FakeContainer], **options: Any
) -> tuple[DockerActuator, FakeClient, FakeCompose]:
    client, compose = FakeClient(containers), FakeCompose(override)
    return DockerActuator(client, compose, project=PROJECT, **options), client, compose


def test_docker_actuator_is_an_actuator(override: Path) -> None:
    actuator: Actuator = _actuator(override, _stack())[0]
    assert actuator.config("checkout") == {
        "db_pool_size": 20,
        "db_pool_timeout_ms": 250,
        "release": "v1",
        "replicas": 1,
        "_process": {"running": 1, "replicas": 1},
    }
    assert actuator.config("nope") == {}


def test_config_says_how_many_containers_run_of_how_many(override: Path) -> None:
    """From recorded container statuses (no engine here): a crashed one is expected, not running."""
    containers = _stack(checkout_replicas=3)
    containers[1].status = "exited"
    containers[2].status = "restarting"
    actuator, _, _ = _actuator(override, containers)
    config = actuator.config("checkout")
    assert config["_process"] == {"running": 1, "replicas": 3}
    # The runbook reads it (in knobs, through the adapter the mind puts around the
    # stack): fewer running than expected is a restart, a rolling one.
    knobs = KnobAdapter(actuator, LAB_KEYS)
    down = {"service": "checkout", "fault_class": "unreachable"}
    plan = runbook.plan_for(down, knobs.config("checkout"))
    assert plan["action"] == "restart"
    assert plan["params"] == {"batch": 1, "replicas": 3}
    assert plan["reason"] == "checkout: 1 of 3 process(es) running"
    applied = knobs.apply(plan["action"], plan["service"], plan["params"])
    assert [c.restarts for c in containers[:3]] == [[10], [10], [10]]
    assert applied["op"] == "restart"
    # Every replica runs yet callers are refused: a dependency, not a crash; not restarted.
    for c in containers:
        c.status = "running"
    running = knobs.config("checkout")
    assert running["_process"] == {"running": 3, "replicas": 3}
    refused = runbook.plan_for(
        {**down, "call_edge": "frontend -> checkout"}, running, lambda _: {}
    )
    assert refused["escalate"] is True  # frontend has no circuit for checkout: escalate


def test_from_settings_runs_compose_with_the_stacks_lab_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token `sre-space up` kept in the home goes into every compose run.

    No engine here: the Docker client is a fake, and what is checked is the
    environment the actuator hands to it and to `docker compose`.
    """
    from sre_space.actuators import docker
    from sre_space.config import Settings
    from sre_space.localapi import write_secret
    from sre_space.paths import Paths

    seen: list[dict[str, str]] = []

    def fake_client(env: Mapping[str, str] | None = None) -> FakeClient:
        seen.append(dict(env or {}))
        return FakeClient([])

    monkeypatch.setattr(docker, "docker_client", fake_client)
    settings = Settings(home=tmp_path)
    paths = Paths(tmp_path).ensure()
    write_secret(paths.control_token, "the-stacks-token")
    DockerActuator.from_settings(settings)
    assert seen[-1]["SRE_SPACE_LAB_TOKEN"] == "the-stacks-token"
    # No token kept (no `up` ran here): none is made up, the admin endpoints stay shut.
    paths.control_token.unlink()
    DockerActuator.from_settings(settings)
    assert "SRE_SPACE_LAB_TOKEN" not in seen[-1]


def test_observes_only_the_projects_containers_of_that_service(override: Path) -> None:
    actuator, client, _ = _actuator(override, _stack(checkout_replicas=3))
    state = actuator.state("checkout")
    assert state is not None and state.replicas == 3  # the one-off is not counted
    assert client.containers.queries[-1] == {
        "all": True,
        "filters": {
            "label": ["com.docker.compose.project=sre-space", "com.docker.compose.service=checkout"]
        },
    }


# --- restart --------------------------------------------------------------------------


def test_restart_restarts_each_container_in_turn(override: Path) -> None:
    containers = _stack(checkout_replicas=2)
    actuator, _, compose = _actuator(override, containers, restart_timeout_s=7)
    applied = actuator.apply("restart", "checkout", {})
    assert applied["op"] == "restart" and applied["previous"] == {}
    assert [c.restarts for c in containers[:2]] == [[7], [7]]
    assert containers[-1].restarts == []  # not the one-off
    assert compose.calls == []  # a restart needs no compose, and writes no override
    assert not override.exists()
    actuator.undo("restart", "checkout", applied)  # nothing to put back
    assert compose.calls == []


def test_the_runbooks_rolling_restart_is_carried_out_a_batch_at_a_time(override: Path) -> None:
    """The runbook's restart plan ({"batch": 1, "replicas": N}) on recorded fakes.

    No Docker engine here: the fake containers record the order of their
    restarts, which is what the batch decides.
    """
    log: list[str] = []
    containers = _stack(checkout_replicas=3)
    for c in containers:
        c.log = log
    actuator, _, compose = _actuator(override, containers)
    applied = actuator.apply("restart", "checkout", {"batch": 1, "replicas": 3})
    assert applied["summary"] == "restart checkout (3 containers, one at a time)"
    assert applied["change"]["batch"] == 1
    ids = [c.id for c in containers[:3]]
    assert log == [f"{step} {i}" for i in ids for step in ("stop", "start")]  # never two down
    assert compose.calls == [] and not override.exists()
    # replicas is what the runbook saw: informational, the containers decide what restarts.
    log.clear()
    actuator.apply("restart", "checkout", {"batch": 1, "replicas": 5})
    assert len(log) == 6


def test_a_restart_batch_goes_together_and_the_next_waits_for_it(override: Path) -> None:
    """Recorded fakes, no engine: a barrier proves a batch's restarts overlap."""
    import threading

    log: list[str] = []
    together = threading.Barrier(2, timeout=10)
    containers = _stack(checkout_replicas=3)
    for c in containers:
        c.log = log
    containers[0].barrier = containers[1].barrier = together
    actuator, _, _ = _actuator(override, containers)
    applied = actuator.apply("restart", "checkout", {"batch": 2})
    assert applied["summary"] == "restart checkout (3 containers, 2 at a time)"
    first, second = log[:4], log[4:]
    assert sorted(first) == sorted(f"{s} {c.id}" for c in containers[:2] for s in ("stop", "start"))
    assert second == [f"stop {containers[2].id}", f"start {containers[2].id}"]
    # A batch never takes every container down at once, unless there is only one.
    with pytest.raises(ActionRefused, match="all 3 containers down at once; at most 2"):
        actuator.apply("restart", "checkout", {"batch": 3})
    single, _, _ = _actuator(override, _stack(checkout_replicas=1))
    assert single.apply("restart", "checkout", {"batch": 4})["change"]["batch"] == 1


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "service", "params", "why"),
    [
        ("rollback", "checkout", {}, "not something a container actuator does"),
        ("shed_load", "checkout", {}, "not something a container actuator does"),
        ("restart", "ghost", {}, "unknown service 'ghost'"),
        ("restart", "kafka", {}, "not managed by sre-space"),
        ("scale_out", "frontend", {}, "allows only restart"),
        ("restart", "checkout", {"force": True}, "takes batch or replicas, not force"),
        ("restart", "checkout", {"batch": 0}, "batch must be at least 1"),
        ("restart", "checkout", {"batch": "1"}, "batch must be a whole number"),
        ("restart", "checkout", {"batch": 1, "replicas": "2"}, "replicas must be a whole number"),
        ("restart", "../etc", {}, "not a service name"),
        ("patch_config", "checkout", {"max_threads": 8}, "unknown setting"),
        ("patch_config", "checkout", {"PATH": "/tmp"}, "unknown setting"),
        ("patch_config", "checkout", {"db_pool_size": 20}, "already runs with"),
        ("patch_config", "checkout", {"release": "v2\nINJECTED=1"}, "one line"),
        ("patch_config", "checkout", {"release": {"nested": 1}}, "plain values"),
        ("patch_config", "checkout", {}, "at least one setting"),
        ("patch_config", "checkout", {"replicas": 3}, "use scale_out"),
        ("scale_out", "checkout", {"replicas": 1}, "not more than 1"),
        ("scale_out", "checkout", {"by": -1}, "not more than 1"),
        ("scale", "checkout", {"replicas": 0}, "at least 1 replica"),
        ("scale", "checkout", {"replicas": 11}, "over the limit of 10"),
        ("scale", "checkout", {"replicas": True}, "whole number"),
        ("scale", "checkout", {"replicas": "3"}, "whole number"),
        ("scale", "checkout", {"replicas": 2, "by": 1}, "not both"),
        ("scale", "checkout", {"count": 2}, "takes replicas or by"),
    ],
)
def test_refuses_and_touches_nothing(
    override: Path, action: str, service: str, params: dict[str, Any], why: str
) -> None:
    containers = _stack()
    actuator, _, compose = _actuator(override, containers)
    with pytest.raises(ActionRefused, match=why):
        actuator.apply(action, service, params)
    assert compose.calls == []
    assert all(c.restarts == [] for c in containers)
    assert not override.exists()


def test_a_bad_name_is_refused_before_it_reaches_the_docker_api(override: Path) -> None:
    actuator, client, _ = _actuator(override, _stack())
    for name in ("../etc", "a b", "x;rm -rf /", "", "-flag"):
        with pytest.raises(ActionRefused, match="not a service name"):
            actuator.apply("restart", name, {})
        assert actuator.config(name) == {}
    assert client.containers.queries == []


def test_an_allow_list_narrows_what_the_labels_allow(override: Path) -> None:
    actuator, client, _ = _actuator(override, _stack(), allowed={"frontend"})
    with pytest.raises(ActionRefused, match="not among the services"):
        actuator.apply("restart", "checkout", {})
    assert client.containers.queries == []  # refused before looking
    actuator.apply("restart", "frontend", {})


# --- scale ----------------------------------------------------------------------------


def test_scale_out_adds_one_replica_through_compose_and_records_it(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack(checkout_replicas=2))
    applied = actuator.apply("scale_out", "checkout", {})
    assert compose.calls == [
        (
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--no-build",
            "--scale",
            "checkout=3",
            "checkout",
        )
    ]
    assert applied["previous"] == {"replicas": 2} and applied["current"] == {"replicas": 3}
    assert yaml.safe_load(override.read_text()) == {"services": {"checkout": {"scale": 3}}}
    json.dumps(applied)  # the incident's audit stores it as JSON


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [(4, 2, True), (4, 1, False), (3, 2, True), (3, 1, False), (2, 1, True), (1, 0, False)],
)
def test_never_scales_down_more_than_the_share(
    override: Path, current: int, target: int, allowed: bool
) -> None:
    actuator, _, compose = _actuator(override, _stack(checkout_replicas=current))
    if allowed:
        actuator.apply("scale", "checkout", {"replicas": target})
        assert compose.calls[-1][-2:] == (f"checkout={target}", "checkout")
    else:
        with pytest.raises(ActionRefused):
            actuator.apply("scale", "checkout", {"replicas": target})
        assert compose.calls == []


def test_the_share_is_a_limit_of_its_own(override: Path) -> None:
    strict = Limits(max_replicas=4, max_scale_down_share=0.25)
    actuator, _, _ = _actuator(override, _stack(checkout_replicas=4), limits=strict)
    with pytest.raises(ActionRefused, match="at most 1"):
        actuator.apply("scale", "checkout", {"replicas": 2})
    with pytest.raises(ActionRefused, match="over the limit of 4"):
        actuator.apply("scale_out", "checkout", {"by": 1})
    actuator.apply("scale", "checkout", {"by": -1})


def test_undo_of_a_scale_goes_back_to_the_observed_count(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack(checkout_replicas=1))
    applied = actuator.apply("scale_out", "checkout", {"replicas": 4})
    actuator.undo("scale_out", "checkout", applied)
    # Back to 1 though that removes 3 of 4: undo restores what was running.
    assert compose.calls[-1] == (
        "up", "-d", "--no-deps", "--no-recreate", "--no-build", "--scale", "checkout=1", "checkout",
    )  # fmt: skip
    assert yaml.safe_load(override.read_text())["services"]["checkout"]["scale"] == 1


# --- recreate with new settings ---------------------------------------------------------


def test_patch_config_records_the_setting_and_recreates_the_service(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack())
    applied = actuator.apply("patch_config", "checkout", {"db_pool_size": 100})
    assert compose.calls == [
        ("up", "-d", "--no-deps", "--force-recreate", "--no-build", "checkout")
    ]
    assert applied["previous"] == {"db_pool_size": 20}
    assert applied["current"] == {"db_pool_size": 100}
    text = override.read_text()
    assert text.startswith("# Written by sre-space")
    assert yaml.safe_load(text) == {
        "services": {"checkout": {"environment": {"SRE_SPACE_CFG_DB_POOL_SIZE": "100"}}}
    }
    actuator.undo("patch_config", "checkout", applied)
    assert compose.calls[-1] == (
        "up",
        "-d",
        "--no-deps",
        "--force-recreate",
        "--no-build",
        "checkout",
    )
    assert yaml.safe_load(override.read_text())["services"]["checkout"]["environment"] == {
        "SRE_SPACE_CFG_DB_POOL_SIZE": "20"
    }


def test_the_override_keeps_earlier_changes(override: Path) -> None:
    actuator, _, _ = _actuator(override, _stack(checkout_replicas=2))
    actuator.apply("scale_out", "checkout", {})
    actuator.apply("patch_config", "checkout", {"release": "v2", "db_pool_timeout_ms": 500})
    assert yaml.safe_load(override.read_text()) == {
        "services": {
            "checkout": {
                "scale": 3,
                "environment": {
                    "SRE_SPACE_CFG_DB_POOL_TIMEOUT_MS": "500",
                    "SRE_SPACE_CFG_RELEASE": "v2",
                },
            }
        }
    }


def test_recreate_without_settings_is_a_plain_recreate(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack())
    applied = actuator.apply("recreate", "checkout", {})
    assert compose.calls == [
        ("up", "-d", "--no-deps", "--force-recreate", "--no-build", "checkout")
    ]
    assert not override.exists()
    actuator.undo("recreate", "checkout", applied)
    assert len(compose.calls) == 1


def test_undo_refuses_a_record_for_another_service(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack())
    applied = actuator.apply("scale_out", "checkout", {})
    with pytest.raises(ActionRefused, match="for checkout, not frontend"):
        actuator.undo("scale_out", "frontend", applied)
    actuator.undo("scale_out", "frontend", {"ok": True})  # nothing recorded: nothing to do
    assert len(compose.calls) == 1


def test_the_runbooks_pool_fix_goes_through_the_docker_actuator(override: Path) -> None:
    actuator, _, compose = _actuator(override, _stack())
    diagnosis = {
        "service": "checkout",
        "fault_class": "saturation",
        "exception": "DatabaseTimeout: database connection timeout: pool exhausted",
    }
    knobs = KnobAdapter(actuator, LAB_KEYS)
    assert knobs.config("checkout")["pool_size"] == 20
    plan = runbook.plan_for(diagnosis, knobs.config("checkout"))
    assert plan["params"] == {"pool_size": 100}
    applied = knobs.apply(plan["action"], plan["service"], plan["params"])
    assert applied["current"] == {"db_pool_size": 100}
    assert compose.calls[-1][-1] == "checkout"


# --- the decision alone -------------------------------------------------------------------


def test_decide_needs_no_client_at_all() -> None:
    state = ServiceState("api", replicas=6, actions=frozenset({"scale"}))
    change = decide("scale", "api", {"replicas": 3}, state)
    assert (change.previous_replicas, change.replicas) == (6, 3)
    with pytest.raises(ActionRefused, match="removes 4"):
        decide("scale", "api", {"replicas": 2}, state)


# --- plan-only ------------------------------------------------------------------------------


def _planner(tmp_path: Path, style: str = "compose", **options: Any) -> PlanActuator:
    inventory = ComposeFileInventory(compose_file(), tmp_path / "none.yml", environ={})
    return PlanActuator(
        tmp_path / "plans", inventory, style=style, clock=lambda: 1_700_000_000.0, **options
    )


def test_compose_inventory_reads_the_shipped_file(tmp_path: Path) -> None:
    inventory = ComposeFileInventory(compose_file(), environ={})
    checkout = inventory.state("checkout")
    assert checkout is not None
    assert checkout.actions == frozenset({"restart", "recreate"})
    assert checkout.env["SRE_SPACE_CFG_DB_POOL_SIZE"] == "20"
    assert checkout.env["SRE_SPACE_LAB_RATE"] == "20"  # ${SRE_SPACE_LAB_RATE:-20}
    kafka = inventory.state("kafka")
    assert kafka is not None and not kafka.actions
    assert inventory.state("nope") is None
    planner = _planner(tmp_path)
    assert planner.config("checkout")["db_pool_size"] == 20


def test_plan_writes_a_compose_override_instead_of_acting(tmp_path: Path) -> None:
    planner: Actuator = _planner(tmp_path)
    applied = planner.apply("patch_config", "checkout", {"db_pool_size": 100})
    assert applied["planned"] is True and applied["applied"] is False
    assert applied["previous"] == {"db_pool_size": 20}
    path = Path(applied["file"])
    assert path.name == "20231114T221320Z-checkout-recreate.override.yml"
    text = path.read_text()
    assert text.startswith("# sre-space plan, not applied: recreate checkout with db_pool_size=100")
    assert f"-f {path.name} up -d --no-deps checkout" in text
    assert yaml.safe_load(text) == {
        "services": {"checkout": {"environment": {"SRE_SPACE_CFG_DB_POOL_SIZE": "100"}}}
    }
    planner.undo("patch_config", "checkout", applied)
    undo = tmp_path / "plans" / "20231114T221320Z-checkout-recreate-undo.override.yml"
    assert yaml.safe_load(undo.read_text())["services"]["checkout"]["environment"] == {
        "SRE_SPACE_CFG_DB_POOL_SIZE": "20"
    }
    assert path.exists()  # a proposal is never deleted: someone may have merged it


def test_plan_restart_as_a_compose_label_and_files_do_not_collide(tmp_path: Path) -> None:
    planner = _planner(tmp_path)
    first = Path(planner.apply("restart", "frontend", {})["file"])
    second = Path(planner.apply("restart", "frontend", {})["file"])
    assert first != second and second.name.endswith("-2.override.yml")
    doc = yaml.safe_load(first.read_text())
    assert doc == {
        "services": {"frontend": {"labels": {"sre-space.restarted-at": "2023-11-14T22:13:20Z"}}}
    }


def test_plan_writes_kubectl_patches(tmp_path: Path) -> None:
    planner = _planner(tmp_path, style="kubectl", namespace="shop")
    applied = planner.apply("patch_config", "checkout", {"db_pool_size": 100})
    argv = shlex.split(applied["command"])
    assert argv[:6] == ["kubectl", "--namespace", "shop", "patch", "deployment/checkout", "--type"]
    assert json.loads(argv[-1]) == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "checkout",
                            "env": [{"name": "SRE_SPACE_CFG_DB_POOL_SIZE", "value": "100"}],
                        }
                    ]
                }
            }
        }
    }
    script = Path(applied["file"]).read_text()
    assert script.startswith("#!/bin/sh\n# sre-space plan, not applied:")
    assert applied["command"] in script
    restart = planner.apply("restart", "checkout", {})
    assert json.loads(shlex.split(restart["command"])[-1]) == {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2023-11-14T22:13:20Z"}
                }
            }
        }
    }


def test_plan_scale_in_both_styles(tmp_path: Path) -> None:
    state = ServiceState("api", replicas=2, actions=frozenset({"scale"}))

    class Fixed:
        def state(self, service: str) -> ServiceState | None:
            return state if service == "api" else None

    compose = PlanActuator(tmp_path / "c", Fixed(), clock=lambda: 0.0)
    doc = yaml.safe_load(Path(compose.apply("scale_out", "api", {})["file"]).read_text())
    assert doc == {"services": {"api": {"scale": 3}}}
    kube = PlanActuator(tmp_path / "k", Fixed(), style="kubectl", clock=lambda: 0.0)
    applied = kube.apply("scale_out", "api", {"replicas": 5})
    assert json.loads(shlex.split(applied["command"])[-1]) == {"spec": {"replicas": 5}}
    kube.undo("scale_out", "api", applied)
    undo = next((tmp_path / "k").glob("*-undo.sh")).read_text()
    assert '{"spec":{"replicas":2}}' in undo


def test_plan_refuses_what_the_docker_actuator_refuses(tmp_path: Path) -> None:
    planner = _planner(tmp_path)
    for action, service, params in [
        ("restart", "kafka", {}),
        ("restart", "nope", {}),
        ("scale_out", "checkout", {}),  # its label allows restart and recreate only
        ("patch_config", "checkout", {"unknown_key": 1}),
        ("open_circuit", "checkout", {}),
    ]:
        with pytest.raises(ActionRefused):
            planner.apply(action, service, params)
    assert not (tmp_path / "plans").exists()


def test_plan_kubectl_refuses_names_kubernetes_would_not_take(tmp_path: Path) -> None:
    state = ServiceState("Api_1", replicas=1, actions=frozenset({"restart"}), containers=("x",))

    class Fixed:
        def state(self, service: str) -> ServiceState | None:
            return state

    planner = PlanActuator(tmp_path, Fixed(), style="kubectl")
    with pytest.raises(ActionRefused, match="Kubernetes"):
        planner.apply("restart", "Api_1", {})
    with pytest.raises(Exception, match="namespace"):
        PlanActuator(tmp_path, Fixed(), style="kubectl", namespace="Bad NS")
    with pytest.raises(Exception, match="plan style"):
        PlanActuator(tmp_path, Fixed(), style="helm")
