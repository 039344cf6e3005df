"""Kubernetes targets, against recorded API payloads: no cluster runs on this machine.

The official ``kubernetes`` client talks real HTTP to a loopback server that
answers with payloads in the API server's shapes (a Deployment, its
ReplicaSets, a ConfigMap, as `kubectl get -o json` shows them) and records
every request, so the tests assert on what the driver sends: a server-side
dry run (``dryRun=All``) before each real change, the patch type, the body.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

kubernetes = pytest.importorskip("kubernetes")

from sre_space.actuators.changes import ActionRefused  # noqa: E402
from sre_space.actuators.driver import ActionFailed  # noqa: E402
from sre_space.actuators.kubernetes import RESTARTED_AT, KubernetesDriver  # noqa: E402
from sre_space.actuators.targets import parse  # noqa: E402

NS = "shop"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/inventory"
REPLICASETS = f"/apis/apps/v1/namespaces/{NS}/replicasets"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/inventory-config"


def _template(version: str) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {"app": "inventory", "app.kubernetes.io/version": version},
        },
        "spec": {
            "containers": [
                {
                    "name": "inventory",
                    "image": f"registry.example/inventory:{version}",
                    "env": [
                        {"name": "DB_POOL_SIZE", "value": "20"},
                        {"name": "CIRCUIT_PRICING", "value": "closed"},
                    ],
                }
            ]
        },
    }


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "inventory", "namespace": NS, "generation": 7},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "inventory"}},
            "template": _template("1.5.0"),
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3},
    }


def _replicaset(revision: int, version: str) -> dict[str, Any]:
    template = _template(version)
    template["metadata"]["labels"]["pod-template-hash"] = f"h{revision}"
    return {
        "metadata": {
            "name": f"inventory-h{revision}",
            "namespace": NS,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inventory", "uid": "u1"}
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "inventory"}},
            "template": template,
        },
    }


class Recorded(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    refuse_dry_run: bool = False


class Handler(BaseHTTPRequestHandler):
    server: Recorded

    def _answer(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> tuple[str, dict[str, list[str]], Any]:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "type": self.headers.get("Content-Type"),
                "body": body,
            }
        )
        return url.path, parse_qs(url.query), body

    def do_GET(self) -> None:
        path, query, _ = self._record()
        if path == DEPLOYMENT:
            self._answer(200, _deployment())
        elif path == REPLICASETS and query.get("labelSelector") == ["app=inventory"]:
            items = [_replicaset(2, "1.4.2"), _replicaset(3, "1.5.0")]
            self._answer(200, {"apiVersion": "apps/v1", "kind": "ReplicaSetList", "items": items})
        elif path == CONFIGMAP:
            self._answer(200, {"metadata": {"name": "inventory-config"}, "data": {"shed": "0"}})
        else:
            self._answer(404, {"kind": "Status", "message": f"{path} not found", "code": 404})

    def do_PATCH(self) -> None:
        path, query, body = self._record()
        if self.server.refuse_dry_run and query.get("dryRun") == ["All"]:
            message = 'admission webhook "policy.example" denied the request: replicas over quota'
            self._answer(403, {"kind": "Status", "message": message, "code": 403})
            return
        if path == DEPLOYMENT:
            doc = _deployment()
            doc["spec"].update(copy.deepcopy(body.get("spec", {})))
            self._answer(200, doc)
        elif path == CONFIGMAP:
            self._answer(200, {"metadata": {"name": "inventory-config"}, "data": body["data"]})
        else:
            self._answer(404, {"kind": "Status", "message": "not found", "code": 404})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorded]:
    srv = Recorded(("127.0.0.1", 0), Handler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


TARGETS = """\
[inventory]
kind = "kubernetes"
namespace = "shop"
knobs.pool_size = { env = "DB_POOL_SIZE" }
knobs.circuit = { env = "CIRCUIT_{dependency}" }
knobs.shed_share = { configmap = "inventory-config", key = "shed" }
"""


def _driver(server: Recorded) -> KubernetesDriver:
    from pathlib import Path

    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    [target] = parse(TARGETS, Path("targets.toml"))
    return KubernetesDriver(target, kubernetes.client.ApiClient(configuration))


def _changes(server: Recorded) -> list[tuple[str, str, list[str] | None]]:
    return [
        (r["method"], r["path"], r["query"].get("dryRun"))
        for r in server.requests
        if r["method"] == "PATCH"
    ]


def test_config_reads_knobs_release_and_replicas(server: Recorded) -> None:
    config = _driver(server).config("inventory")
    assert config == {
        "pool_size": 20,
        "circuits": {"pricing": "closed"},
        "release": "1.5.0",
        "replicas": 3,
        "_process": {"running": 2, "replicas": 3},
    }


def test_restart_is_a_rollout_dry_run_first(server: Recorded) -> None:
    _driver(server).apply("restart", "inventory", {"batch": 1, "replicas": 3})
    assert _changes(server) == [("PATCH", DEPLOYMENT, ["All"]), ("PATCH", DEPLOYMENT, None)]
    real = server.requests[-1]
    assert real["type"] == "application/strategic-merge-patch+json"
    annotations = real["body"]["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {RESTARTED_AT}


def test_scale_out_and_its_undo(server: Recorded) -> None:
    driver = _driver(server)
    applied = driver.apply("scale_out", "inventory", {"by": 1})
    assert applied["previous"] == {"replicas": 3}
    assert server.requests[-1]["body"] == {"spec": {"replicas": 4}}
    driver.undo("scale_out", "inventory", applied)
    assert server.requests[-1]["body"] == {"spec": {"replicas": 3}}


def test_a_knob_in_the_environment_is_patched_on_the_container(server: Recorded) -> None:
    driver = _driver(server)
    applied = driver.apply("open_circuit", "inventory", {"dependency": "pricing"})
    container = server.requests[-1]["body"]["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "inventory", "env": [{"name": "CIRCUIT_PRICING", "value": "open"}]}
    assert applied["previous"] == {"env": {"CIRCUIT_PRICING": "closed"}}


def test_a_knob_in_a_configmap_is_patched_then_rolled_out(server: Recorded) -> None:
    applied = _driver(server).apply("shed_load", "inventory", {"share": 0.3})
    assert _changes(server) == [
        ("PATCH", CONFIGMAP, ["All"]),
        ("PATCH", CONFIGMAP, None),
        ("PATCH", DEPLOYMENT, ["All"]),
        ("PATCH", DEPLOYMENT, None),
    ]
    assert applied["previous"] == {"configmap": "inventory-config", "data": {"shed": "0"}}


def test_rollback_goes_to_the_revision_that_ran_the_release(server: Recorded) -> None:
    driver = _driver(server)
    assert driver.releases("inventory") == [
        {"release": "1.5.0", "revision": 3},
        {"release": "1.4.2", "revision": 2},
    ]
    applied = driver.apply("rollback", "inventory", {"to": "1.4.2", "from": "1.5.0"})
    assert applied["previous"] == {"release": "1.5.0"}
    template = server.requests[-1]["body"]["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "registry.example/inventory:1.4.2"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    with pytest.raises(ActionRefused, match=r"no revision of inventory ran release 9\.9"):
        driver.apply("rollback", "inventory", {"to": "9.9"})


def test_a_change_the_dry_run_refuses_is_never_sent_for_real(server: Recorded) -> None:
    server.refuse_dry_run = True
    with pytest.raises(ActionFailed, match="403 admission webhook"):
        _driver(server).apply("scale_out", "inventory", {"by": 5})
    assert _changes(server) == [("PATCH", DEPLOYMENT, ["All"])]
