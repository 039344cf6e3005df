"""The Compose stack, checked without an engine: its files, its rules, `compose config`.

The end-to-end test at the bottom runs only where a Docker engine answers and
``SRE_SPACE_COMPOSE_E2E=1`` is set; everything else reads the files, validates
them with the real `docker compose config` / `docker-compose config` when one is
installed, and drives ``compose_up``/``compose_down`` through a recorded runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from sre_space import __version__
from sre_space.errors import TimedOut, Unavailable, UsageError
from sre_space.infra import docker_engine
from sre_space.infra.compose import (
    build_env,
    compose_dir,
    compose_env,
    compose_file,
    endpoints,
    mind_settings,
    source_root,
)
from sre_space.infra.docker_engine import (
    Completed,
    Compose,
    compose_down,
    compose_up,
    engine_reachable,
)

COMPOSE = compose_file()
DIR = COMPOSE.parent
REQUIRED = {
    "jaeger",
    "otel-collector",
    "kafka",
    "chroma",
    "lab-net",
    "db",
    "payments",
    "inventory",
    "checkout",
    "frontend",
    "loadgen",
}
LAB = {"db", "payments", "inventory", "checkout", "frontend", "loadgen"}

# The Collector version the config is written for (compose/collector.Dockerfile).
CONTRIB_VERSION = "0.135.0"
# Component types in otelcol-contrib 0.135.0, checked against the release's
# build manifest (open-telemetry/opentelemetry-collector-releases,
# distributions/otelcol-contrib/manifest.yaml at 0.135.0: otlpreceiver,
# batchprocessor, memorylimiterprocessor, otlpexporter, otlphttpexporter,
# kafkaexporter, loadbalancingexporter, healthcheckextension) and each
# component's README/config.go (kafkaexporter: per-signal `traces::topic` and
# `traces::encoding` since v0.124.0, `partition_traces_by_id` top level).
KNOWN = {
    "receivers": {"otlp", "kafka"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"otlp", "otlphttp", "kafka", "loadbalancing", "debug"},
    "extensions": {"health_check"},
}
PINNED_TAG = re.compile(r"^\d+(\.\d+)+(-[a-z0-9.-]+)?$")


def _doc() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _services() -> dict[str, dict[str, Any]]:
    return dict(_doc()["services"])


def _collector() -> dict[str, Any]:
    return dict(yaml.safe_load((DIR / "otel-collector.yaml").read_text()))


def _froms(dockerfile: Path) -> list[str]:
    stages = set()
    images = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.IGNORECASE)
        if match:
            if match.group(1) not in stages:
                images.append(match.group(1))
            if match.group(2):
                stages.add(match.group(2))
    return images


def _published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host ip, container port) of each published port, short or long syntax."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append((str(entry.get("host_ip", "")), str(entry["target"])))
            continue
        # "127.0.0.1:${VAR:-4317}:4317" - interpolation may hold a colon: split from the right.
        text = re.sub(r"\$\{[^}]*\}", "VAR", str(entry))
        parts = text.split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        found.append((host_ip, parts[-1].split("/")[0]))
    return found


# --- the compose file ----------------------------------------------------------------


def test_compose_file_is_found_in_the_source_tree() -> None:
    assert COMPOSE.is_file()
    root = source_root()
    assert root is not None
    assert compose_dir() == root / "compose"


def test_has_the_required_services_each_with_a_healthcheck() -> None:
    services = _services()
    assert set(services) >= REQUIRED
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name


def test_every_image_is_pinned() -> None:
    images = []
    for name, service in _services().items():
        if "build" in service:
            build = service["build"]
            context = DIR / str(build["context"]).replace("${SRE_SPACE_BUILD_CONTEXT:-..}", "..")
            dockerfile = str(build.get("dockerfile", "Dockerfile")).replace(
                "${SRE_SPACE_DOCKERFILE:-compose/Dockerfile}", "compose/Dockerfile"
            )
            froms = _froms(context / dockerfile)
            assert froms, f"{name}: no FROM in {dockerfile}"
            images += froms
        else:
            images.append(service["image"])
    for image in images:
        assert ":" in image, f"{image} has no tag"
        name, tag = image.rsplit(":", 1)
        assert tag != "latest" and PINNED_TAG.match(tag), f"{image} is not pinned to a version"
    assert "jaegertracing/jaeger:2.14.1" in images  # Jaeger v2
    assert f"otel/opentelemetry-collector-contrib:{CONTRIB_VERSION}" in images
    assert any(i.startswith("apache/kafka:") for i in images)
    chroma = next(i for i in images if i.startswith("chromadb/chroma:"))
    assert chroma.split(":")[1].startswith("1.5."), "server must match the chromadb 1.5.x client"


def test_published_ports_are_loopback_and_only_the_collector_publishes_otlp() -> None:
    for name, service in _services().items():
        for host_ip, target in _published(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {target} beyond loopback"
            if target in ("4317", "4318"):
                assert name == "otel-collector", f"{name} publishes OTLP port {target}"
    collector = {t for _, t in _published(_services()["otel-collector"])}
    assert {"4317", "4318"} <= collector
    assert not _services()["jaeger"].get("expose")


def test_lab_services_share_one_network_namespace_and_the_project_image() -> None:
    services = _services()
    for name in LAB:
        assert services[name]["network_mode"] == "service:lab-net", name
        assert services[name]["image"] == services["lab-net"]["image"]
        env = services[name]["environment"]
        assert env["SRE_SPACE_LAB_OTLP"] == "http://otel-collector:4318/v1/traces"
        assert set(json.loads(env["SRE_SPACE_LAB_PORTS"])) == LAB - {"loadgen"}
    assert "network_mode" not in services["lab-net"]
    # Infrastructure carries no sre-space.actions label: the Fixer cannot touch it.
    for name in ("jaeger", "kafka", "chroma", "otel-collector", "lab-net"):
        assert "sre-space.actions" not in (services[name].get("labels") or {}), name


def test_lab_dockerfile_runs_a_lab_service_by_name() -> None:
    text = (DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "sre_space.infra.lab_container"]' in text
    assert "pip install" in text and "SRE_SPACE_PIP_SPEC" in text
    import sre_space.infra.lab_container
    import sre_space.lab.loadgen
    import sre_space.lab.service  # noqa: F401 - the modules the entrypoint execs

    root = source_root()
    assert root is not None
    ignored = (root / ".dockerignore").read_text().split()
    for needed in ("src", "pyproject.toml", "README.md", "compose"):
        assert needed not in ignored


def test_lab_container_entrypoint_binds_and_becomes_the_lab_service(tmp_path: Path) -> None:
    """The image's entrypoint, run here as a process: it must serve the service's port."""
    import sys

    from helpers import free_port, wait_until

    port = free_port()
    ports = {"frontend": free_port(), "checkout": free_port(), "payments": port,
             "inventory": free_port(), "db": free_port()}  # fmt: skip
    env = {
        **os.environ,
        "SRE_SPACE_LAB_PORTS": json.dumps(ports),
        "SRE_SPACE_LAB_OTLP": f"http://127.0.0.1:{free_port()}/v1/traces",
        "SRE_SPACE_LAB_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sre_space.infra.lab_container", "payments"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return bool(json.loads(r.read()).get("service") == "payments")
            except OSError:
                return False

        wait_until(healthy, 30, what="payments behind the container entrypoint")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"sre_space.lab.service" in cmdline  # exec'd in place: Docker signals the service
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run(
        [sys.executable, "-m", "sre_space.infra.lab_container", "nosuch"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "unknown lab service 'nosuch'" in bad.stderr


def test_kafka_is_kraft_single_broker_with_an_internal_and_a_loopback_listener() -> None:
    env = _services()["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    ):
        assert str(env[key]) == "1"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:9092" in advertised and "HOST://127.0.0.1:" in advertised


# --- the Collector's config ----------------------------------------------------------


def test_collector_components_exist_in_the_pinned_version_and_are_all_used() -> None:
    config = _collector()
    pipelines = config["service"]["pipelines"]
    used: dict[str, set[str]] = {kind: set() for kind in KNOWN}
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            used[kind] |= set(pipeline.get(kind, []))
    used["extensions"] = set(config["service"].get("extensions", []))
    for kind, known in KNOWN.items():
        defined = set(config.get(kind) or {})
        assert defined == used[kind], f"{kind}: defined {defined} but used {used[kind]}"
        for name in defined:
            assert name.split("/")[0] in known, f"{kind} {name} is not in contrib {CONTRIB_VERSION}"
    assert "batch" in used["processors"]
    assert {"otlp/jaeger", "kafka", "otlphttp/mind"} <= used["exporters"]


def test_collector_exports_to_jaeger_kafka_and_the_mind() -> None:
    config = _collector()
    otlp = config["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert otlp["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    kafka = config["exporters"]["kafka"]
    assert kafka["traces"] == {"topic": "otlp_spans", "encoding": "otlp_proto"}
    assert kafka["partition_traces_by_id"] is True
    assert "topic" not in kafka and "encoding" not in kafka  # deprecated top-level keys
    assert kafka["brokers"] == ["kafka:9092"]
    mind = config["exporters"]["otlphttp/mind"]["endpoint"]
    assert mind == "${env:SRE_SPACE_MIND_OTLP_ENDPOINT}"
    service = _services()["otel-collector"]
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
    endpoint = service["environment"]["SRE_SPACE_MIND_OTLP_ENDPOINT"]
    assert endpoint.startswith("http://host.docker.internal:${SRE_SPACE_MIND_OTLP_PORT:-")
    assert "4318}" not in endpoint  # must not collide with the Collector's published port
    # The mounted config is the one the command names.
    mounted = [v for v in service["volumes"] if v.startswith("./otel-collector.yaml:")]
    target = mounted[0].split(":")[1]
    assert f"--config={target}" in service["command"]


# --- the environment compose runs with -----------------------------------------------


def test_build_env_for_a_checkout_and_for_an_installed_wheel(tmp_path: Path) -> None:
    checkout = build_env(DIR)
    assert checkout["SRE_SPACE_PIP_SPEC"] == "."
    assert checkout["SRE_SPACE_DOCKERFILE"] == "compose/Dockerfile"
    assert Path(checkout["SRE_SPACE_BUILD_CONTEXT"]) == source_root()
    copied = tmp_path / "_compose"
    shutil.copytree(DIR, copied)
    wheel = build_env(copied)
    assert wheel["SRE_SPACE_PIP_SPEC"] == f"sre-space=={__version__}"
    assert wheel["SRE_SPACE_DOCKERFILE"] == "Dockerfile"
    assert Path(wheel["SRE_SPACE_BUILD_CONTEXT"]) == copied.resolve()


def test_endpoints_and_mind_settings_follow_the_port_knobs() -> None:
    env = {"SRE_SPACE_JAEGER_UI_PORT": "26686", "SRE_SPACE_KAFKA_HOST_PORT": "19094"}
    found = endpoints(env)
    assert found["jaeger"] == "http://127.0.0.1:26686"
    assert found["otlp_http"] == "http://127.0.0.1:4318"
    via_kafka = mind_settings(env)
    assert via_kafka["kafka_brokers"] == "127.0.0.1:19094"
    assert via_kafka["otlp_http_port"] == 4319 and via_kafka["otlp_grpc_port"] == -1
    via_otlp = mind_settings(env, via="otlp", bridge_address="172.17.0.1", otlp_token="t0ken")
    assert via_otlp["otlp_host"] == "172.17.0.1" and "kafka_brokers" not in via_otlp
    with pytest.raises(Unavailable):
        mind_settings(env, via="otlp")


# --- the real compose CLI, when installed --------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


COMPOSE_CLI = _compose_cli()
needs_compose_cli = pytest.mark.skipif(
    COMPOSE_CLI is None,
    reason="neither `docker compose` nor `docker-compose` is installed "
    "(.ci/run apt-gets Debian's docker-compose for this check)",
)


def _config(files: Sequence[Path], env: Mapping[str, str]) -> dict[str, Any]:
    assert COMPOSE_CLI is not None
    argv = [*COMPOSE_CLI, "-p", "sre-space-test"]
    for path in files:
        argv += ["-f", str(path)]
    done = subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


@needs_compose_cli
def test_compose_config_validates_the_stack() -> None:
    resolved = _config([COMPOSE], compose_env(DIR, lab_token="t0ken"))
    assert set(resolved["services"]) == set(_services())
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", name
    checkout = resolved["services"]["checkout"]
    assert checkout["environment"]["SRE_SPACE_LAB_TOKEN"] == "t0ken"
    assert Path(checkout["build"]["context"]).resolve() == source_root()


@needs_compose_cli
def test_compose_config_accepts_the_wheel_layout_and_the_actuators_override(
    tmp_path: Path,
) -> None:
    copied = tmp_path / "_compose"
    shutil.copytree(DIR, copied)
    override = tmp_path / "override.yml"
    override.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "checkout": {"scale": 1, "environment": {"SRE_SPACE_CFG_DB_POOL_SIZE": "100"}}
                }
            }
        )
    )
    resolved = _config([copied / "docker-compose.yml", override], compose_env(copied))
    checkout = resolved["services"]["checkout"]
    assert checkout["environment"]["SRE_SPACE_CFG_DB_POOL_SIZE"] == "100"
    assert checkout["environment"]["SRE_SPACE_CFG_DB_POOL_TIMEOUT_MS"] == "250"
    assert Path(checkout["build"]["context"]).resolve() == copied.resolve()


# --- compose_up / compose_down against a recorded runner -----------------------------


class RecordedRunner:
    """Answers like `docker compose` and `docker inspect` would, from a script of states."""

    def __init__(self, services: Sequence[str], rounds: Sequence[Mapping[str, str]]) -> None:
        self.services = list(services)
        self.rounds = list(rounds)
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], timeout: float | None
    ) -> Completed:
        self.calls.append(list(argv))
        self.envs.append(dict(env))
        if argv[:2] == ["docker", "inspect"]:
            states = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
            return Completed(0, json.dumps([_inspect(s, st) for s, st in states.items()]), "")
        if "config" in argv and "--services" in argv:
            return Completed(0, "\n".join(self.services) + "\n", "")
        if "ps" in argv:
            return Completed(0, "\n".join(f"id-{s}" for s in self.services) + "\n", "")
        return Completed(0, "", "")


def _inspect(service: str, state: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"Config": {"Labels": {docker_engine.SERVICE_LABEL: service}}}
    if state.startswith("exited"):
        doc["State"] = {"Status": "exited", "ExitCode": int(state[7:-1])}
    elif state in ("healthy", "starting", "unhealthy"):
        doc["State"] = {"Status": "running", "Health": {"Status": state}}
    else:
        doc["State"] = {"Status": state}
    return doc


def test_compose_up_builds_starts_and_waits_for_every_healthcheck() -> None:
    runner = RecordedRunner(
        ["kafka", "jaeger"],
        [
            {"kafka": "starting"},
            {"kafka": "starting", "jaeger": "healthy"},
            {"kafka": "healthy", "jaeger": "healthy"},
        ],
    )
    said: list[str] = []
    env = {"SRE_SPACE_JAEGER_UI_PORT": "26686"}
    result = compose_up(
        DIR, env, said.append, runner=runner, command=["docker", "compose"],
        check_engine=False, poll_s=0,
    )  # fmt: skip
    base = ["docker", "compose", "-p", "sre-space", "-f", str(COMPOSE)]
    assert runner.calls[0] == [*base, "build"]
    assert runner.calls[1] == [*base, "up", "-d", "--remove-orphans"]
    assert all(e == env for e in runner.envs)
    assert result["services"] == {"jaeger": "healthy", "kafka": "healthy"}
    assert result["endpoints"]["jaeger"] == "http://127.0.0.1:26686"
    assert any("kafka (starting)" in line for line in said)
    assert said[-1] == "all 2 services are healthy"


def test_compose_up_fails_fast_when_a_service_exits() -> None:
    runner = RecordedRunner(["kafka"], [{"kafka": "exited(1)"}])
    with pytest.raises(Unavailable, match=r"kafka stopped: exited\(1\).*logs kafka"):
        compose_up(DIR, {}, runner=runner, command=["docker-compose"], check_engine=False, poll_s=0)


def test_compose_up_times_out_naming_what_is_not_healthy() -> None:
    runner = RecordedRunner(["kafka", "chroma"], [{"kafka": "unhealthy", "chroma": "healthy"}])
    with pytest.raises(TimedOut, match=r"kafka \(unhealthy\)"):
        compose_up(
            DIR, {}, runner=runner, command=["docker-compose"], check_engine=False,
            timeout_s=0.05, poll_s=0.01, build=False,
        )  # fmt: skip
    assert ["docker-compose", "-p", "sre-space", "-f", str(COMPOSE), "up", "-d",
            "--remove-orphans", "--no-build"] in runner.calls  # fmt: skip


def test_compose_down_and_the_override_file(tmp_path: Path) -> None:
    runner = RecordedRunner([], [{}])
    override = tmp_path / "override.yml"
    compose_down(
        DIR, {}, runner=runner, command=["docker", "compose"], check_engine=False,
        override=override, volumes=True, project="sre-space-e2e",
    )  # fmt: skip
    assert runner.calls == [
        ["docker", "compose", "-p", "sre-space-e2e", "-f", str(COMPOSE), "down",
         "--remove-orphans", "--volumes"],
    ]  # fmt: skip
    override.write_text("services: {}\n")
    compose = Compose(DIR, override=override, command=["docker", "compose"], runner=runner)
    assert compose.argv("ps")[-3:] == ["-f", str(override), "ps"]


def test_compose_refuses_a_bad_project_name_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="project name"):
        Compose(DIR, project="Bad Name; rm -rf /", command=["docker", "compose"])
    with pytest.raises(Unavailable, match=r"no docker-compose\.yml"):
        Compose(tmp_path, command=["docker", "compose"])


def test_cli_docker_client_lists_and_restarts_through_argument_lists() -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], env: Mapping[str, str], timeout: float | None) -> Completed:
        calls.append(list(argv))
        if argv[1] == "ps":
            return Completed(0, "abc\n", "")
        if argv[1] == "inspect":
            doc = {
                "Id": "abc",
                "Name": "/sre-space-checkout-1",
                "State": {"Status": "running"},
                "Config": {"Labels": {"sre-space.actions": "restart"}, "Env": ["A=1"]},
            }
            return Completed(0, json.dumps([doc]), "")
        return Completed(0, "", "")

    client = docker_engine.CliDockerClient(runner=runner)
    found = client.containers.list(all=True, filters={"label": ["a=b", "c=d"]})
    assert calls[0] == ["docker", "ps", "-q", "--no-trunc", "--all", "--filter", "label=a=b",
                        "--filter", "label=c=d"]  # fmt: skip
    assert [c.name for c in found] == ["sre-space-checkout-1"]
    assert found[0].labels == {"sre-space.actions": "restart"}
    found[0].restart(timeout=7)
    assert calls[-1] == ["docker", "restart", "--time", "7", "abc"]


# --- is an engine there? -------------------------------------------------------------


class _PingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        elif path.endswith("/version"):
            body = json.dumps({"Version": "99.0.0", "ApiVersion": "1.45"}).encode()
            kind = "application/json"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Api-Version", "1.45")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        request, _ = super().get_request()
        return request, ("unix", 0)


@pytest.fixture
def fake_engine() -> Iterator[Path]:
    """A unix socket that answers /_ping and /version the way the Docker engine does."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sre-engine-"))
    path = folder / "docker.sock"
    server = _UnixHTTPServer(str(path), _PingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


def test_engine_reachable_over_the_socket_without_the_sdk(
    fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake_engine}")
    ok, why = docker_engine._ping_raw(2.0)
    assert ok, why
    assert "API 1.45" in why
    ok, why = engine_reachable(2.0)  # through the SDK when it is installed
    assert ok, why


def test_engine_unreachable_says_why_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    ok, why = docker_engine._ping_raw(1.0)
    assert not ok and "no such socket" in why
    ok, why = engine_reachable(1.0)
    assert not ok and "\n" not in why and why
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@somewhere")
    ok, why = docker_engine._ping_raw(1.0)
    assert not ok and "Docker SDK" in why


# --- the whole stack, where an engine runs -------------------------------------------

ENGINE_OK, ENGINE_WHY = engine_reachable()


@pytest.mark.e2e
@pytest.mark.skipif(
    os.environ.get("SRE_SPACE_COMPOSE_E2E") != "1",
    reason="set SRE_SPACE_COMPOSE_E2E=1 to build and start the Compose stack",
)
@pytest.mark.skipif(not ENGINE_OK, reason=f"no Docker engine reachable: {ENGINE_WHY}")
def test_compose_stack_end_to_end(tmp_path: Path) -> None:
    """Up, spans from the lab reach Jaeger through the Collector, Chroma answers, down."""
    from helpers import free_port

    overrides = {
        "SRE_SPACE_COLLECTOR_GRPC_PORT": str(free_port()),
        "SRE_SPACE_COLLECTOR_HTTP_PORT": str(free_port()),
        "SRE_SPACE_JAEGER_UI_PORT": str(free_port()),
        "SRE_SPACE_KAFKA_HOST_PORT": str(free_port()),
        "SRE_SPACE_CHROMA_PORT": str(free_port()),
    }
    env = compose_env(DIR, lab_token="e2e-token", overrides=overrides)
    project = "sre-space-e2e"
    try:
        result = compose_up(DIR, env, print, project=project, timeout_s=1500)
        assert set(result["services"]) == set(_services())
        jaeger = result["endpoints"]["jaeger"]
        deadline = time.monotonic() + 120
        services: list[str] = []
        while time.monotonic() < deadline and "checkout" not in services:
            with urllib.request.urlopen(f"{jaeger}/api/v3/services", timeout=5) as resp:
                services = json.loads(resp.read()).get("services", [])
            time.sleep(2)
        assert {"frontend", "checkout"} <= set(services)
        chroma = result["endpoints"]["chroma"]
        with urllib.request.urlopen(f"{chroma}/api/v2/heartbeat", timeout=5) as resp:
            assert resp.status == 200
    finally:
        compose_down(DIR, env, print, project=project, volumes=True)


def test_a_mind_on_a_compose_home_reads_the_stack(tmp_path: Path) -> None:
    """`run`/`watch` on a home where `up --compose` ran: Kafka, Jaeger, Chroma, Docker actuator."""
    from sre_space.config import Settings
    from sre_space.infra.compose import STACK_FILE
    from sre_space.infra.stack import mind_overrides
    from sre_space.mind import Mind

    assert mind_overrides(tmp_path, None) == {}  # the embedded lab: nothing to override
    (tmp_path / STACK_FILE).write_text('{"mode": "compose"}')
    overrides = mind_overrides(tmp_path, None)
    assert overrides["kafka_brokers"].startswith("127.0.0.1:")
    assert overrides["chroma_url"].startswith("http://127.0.0.1:")
    assert overrides["jaeger_url"].startswith("http://127.0.0.1:")
    assert overrides["otlp_grpc_port"] == -1  # the Collector holds 4317 on the host
    mind = Mind(Settings(home=tmp_path, **overrides))
    if ENGINE_OK:  # spoken to in knobs: the stack runs the lab's services
        assert type(mind._actuator().inner).__name__ == "DockerActuator"
    else:  # the Docker path was chosen, and says in one line why it cannot act
        from sre_space.errors import Unavailable

        with pytest.raises(Unavailable, match="no Docker engine reachable"):
            mind._actuator()
    (tmp_path / STACK_FILE).unlink()
    # No stack, no targets file: the targets router (the running lab's, else proposals).
    assert type(mind._actuator()).__name__ == "TargetActuator"


@pytest.mark.skipif(ENGINE_OK, reason="checks the answer when no Docker engine is reachable")
def test_collector_pushes_need_the_bridge_address(tmp_path: Path) -> None:
    from sre_space.errors import Unavailable
    from sre_space.infra.compose import STACK_FILE
    from sre_space.infra.stack import mind_overrides

    (tmp_path / STACK_FILE).write_text('{"mode": "compose"}')
    with pytest.raises(Unavailable, match="bridge"):
        mind_overrides(tmp_path, "otlp")


@pytest.mark.skipif(ENGINE_OK, reason="checks a mind that cannot reach the engine it needs")
def test_a_mind_that_cannot_start_leaves_nothing_behind(tmp_path: Path) -> None:
    from sre_space.config import Settings
    from sre_space.errors import Unavailable
    from sre_space.infra.compose import STACK_FILE
    from sre_space.mind import Mind

    from helpers import free_port

    (tmp_path / STACK_FILE).write_text('{"mode": "compose"}')
    settings = Settings(home=tmp_path, otlp_http_port=free_port(), otlp_grpc_port=free_port())
    with pytest.raises(Unavailable, match="no Docker engine reachable"):
        Mind(settings).start()
    # The lock, the receivers' ports and the state file were all released.
    assert not (tmp_path / "mind.json").exists()
    (tmp_path / STACK_FILE).unlink()
    mind = Mind(settings).start()
    mind.stop()
