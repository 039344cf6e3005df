"""Kubernetes targets, through the official ``kubernetes`` client (the ``[kubernetes]`` extra).

A target names a namespace and a workload (``deployment/NAME`` or
``statefulset/NAME``; default ``deployment/<service>``). Every change is sent
twice: first as a server-side dry run (``dryRun=All``: admission and
validation run, nothing is stored), then for real, so a patch the API server
would refuse never half-applies.

- restart: the pod template's ``kubectl.kubernetes.io/restartedAt`` annotation,
  as ``kubectl rollout restart`` sets it (a rolling replacement);
- scale_out: ``spec.replicas`` up by ``by``;
- knobs: ``{ env = "NAME" }`` patches the container's environment (a rollout);
  ``{ configmap = "NAME", key = "KEY" }`` patches the ConfigMap, then restarts;
- rollback: the rollout history (the workload's ReplicaSets by revision): the
  pod template of the revision that ran release ``to`` (its ``version_label``,
  default ``app.kubernetes.io/version``, else its image tag) goes back in.

Over 300 lines on purpose: ``KubernetesDriver`` is one client of one API.
Every action shares the workload lookup, ``_call`` and ``_patch``, where
the dry run before the real change is enforced; split by action, that rule
would be written once per piece.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from sre_space.actuators.changes import ActionRefused
from sre_space.actuators.driver import ActionFailed, Target
from sre_space.actuators.knobs import per_dependency, setting_change

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
VERSION_LABEL = "app.kubernetes.io/version"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class KubernetesDriver:
    """One target's Deployment through the Kubernetes API (apps/v1, core/v1).

    Over 300 lines on purpose: every verb (describe, config, history, apply,
    undo) needs the same workload lookup, patch and API-error mapping; split,
    the parts would hand the client and the target back and forth.
    """

    kind = "kubernetes"

    def __init__(self, target: Target, api_client: Any = None) -> None:
        self.target = target
        self.namespace = str(target.options.get("namespace") or "default")
        self.version_label = str(target.options.get("version_label") or VERSION_LABEL)
        self._api_client = api_client

    # --- the client ---------------------------------------------------------------

    def _client(self) -> Any:
        if self._api_client is None:
            try:
                from kubernetes import client, config
            except ImportError:
                raise ActionFailed(
                    "kubernetes targets need the official client: pip install 'sre-space[kubernetes]'"
                ) from None
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                try:
                    config.load_kube_config(  # type: ignore[no-untyped-call]
                        context=self.target.options.get("context"),
                        client_configuration=configuration,
                    )
                except (config.ConfigException, OSError) as exc:
                    raise ActionFailed(f"no Kubernetes configuration: {exc}") from None
            self._api_client = client.ApiClient(configuration)
        return self._api_client

    def _apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self._client())

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client())

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            found = fn(*args, **kwargs)
        except ApiException as exc:
            message = ""
            with contextlib.suppress(ValueError):
                message = str(json.loads(exc.body or "{}").get("message") or "")
            raise ActionFailed(f"{what}: {exc.status} {message or exc.reason}") from None
        except OSError as exc:
            raise ActionFailed(f"{what}: the API server cannot be reached ({exc})") from None
        doc: dict[str, Any] = self._client().sanitize_for_serialization(found) or {}
        return doc

    def _workload(self, service: str) -> tuple[str, str]:
        kind, _, name = str(
            self.target.options.get("workload") or f"deployment/{service}"
        ).partition("/")
        if kind not in ("deployment", "statefulset") or not name:
            raise ActionRefused(f"workload {kind}/{name}: use deployment/NAME or statefulset/NAME")
        return kind, name

    def _read(self, service: str) -> dict[str, Any]:
        kind, name = self._workload(service)
        apps = self._apps()
        read = (
            apps.read_namespaced_deployment
            if kind == "deployment"
            else apps.read_namespaced_stateful_set
        )
        return self._call(f"read {kind}/{name}", read, name, self.namespace)

    def _patch(
        self, service: str, body: dict[str, Any], content_type: str = STRATEGIC
    ) -> dict[str, Any]:
        """Dry run on the server first; only if it passes, the real patch."""
        kind, name = self._workload(service)
        apps = self._apps()
        patch = (
            apps.patch_namespaced_deployment
            if kind == "deployment"
            else apps.patch_namespaced_stateful_set
        )
        what = f"patch {kind}/{name}"
        self._call(
            f"{what} (server-side dry run)",
            patch,
            name,
            self.namespace,
            body,
            dry_run="All",
            _content_type=content_type,
        )
        return self._call(what, patch, name, self.namespace, body, _content_type=content_type)

    # --- reading --------------------------------------------------------------------

    def _container(self, doc: dict[str, Any], service: str) -> dict[str, Any]:
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
        wanted = self.target.options.get("container") or service
        for container in containers:
            if container.get("name") == wanted:
                return dict(container)
        if len(containers) == 1:
            return dict(containers[0])
        raise ActionRefused(f'which container of {service}? name it: container = "..."')

    def _release_of(self, template: dict[str, Any], service: str) -> str:
        labels = template.get("metadata", {}).get("labels") or {}
        if labels.get(self.version_label):
            return str(labels[self.version_label])
        containers = template.get("spec", {}).get("containers") or []
        image = str(containers[0].get("image", "")) if containers else ""
        return image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""

    def config(self, service: str) -> dict[str, Any]:
        doc = self._read(service)
        env = {
            e["name"]: e.get("value")
            for e in self._container(doc, service).get("env") or []
            if "name" in e
        }
        found: dict[str, Any] = {}
        for knob, spec in self.target.knobs.items():
            if "env" not in spec:
                continue
            name = spec["env"]
            if "{dependency}" in name:
                circuits = {
                    dep.lower().replace("_", "-"): v
                    for dep, v in per_dependency(name, env).items()
                }
                if circuits:
                    found["circuits"] = circuits
            elif name in env:
                value = env[name]
                found[knob] = int(value) if str(value).isdigit() else value
        release = self._release_of(doc.get("spec", {}).get("template", {}), service)
        if release:
            found["release"] = release
        replicas = int(doc.get("spec", {}).get("replicas") or 1)
        ready = int(doc.get("status", {}).get("readyReplicas") or 0)
        found["replicas"] = replicas
        found["_process"] = {"running": ready, "replicas": replicas}
        return found

    def history(self, service: str) -> list[dict[str, Any]]:
        """The rollout history, newest revision first: revision, release, pod template."""
        kind, name = self._workload(service)
        if kind != "deployment":
            return []  # a StatefulSet keeps ControllerRevisions; not read here
        doc = self._read(service)
        labels = doc.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        found = self._call(
            "list replicasets",
            self._apps().list_namespaced_replica_set,
            self.namespace,
            label_selector=selector,
        )
        rows = []
        for rs in found.get("items") or []:
            meta = rs.get("metadata", {})
            owners = [o.get("name") for o in meta.get("ownerReferences") or []]
            if owners and name not in owners:
                continue
            template = rs.get("spec", {}).get("template", {})
            rows.append(
                {
                    "revision": int((meta.get("annotations") or {}).get(REVISION, 0)),
                    "release": self._release_of(template, service),
                    "template": template,
                }
            )
        return sorted(rows, key=lambda r: -r["revision"])

    def releases(self, service: str) -> list[dict[str, Any]]:
        return [{"release": r["release"], "revision": r["revision"]} for r in self.history(service)]

    # --- acting -------------------------------------------------------------------------

    def _env_patch(self, service: str, env: dict[str, Any]) -> dict[str, Any]:
        doc = self._read(service)
        container = self._container(doc, service)
        values = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
        return {
            "spec": {
                "template": {"spec": {"containers": [{"name": container["name"], "env": values}]}}
            }
        }

    def _settings(self, action: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(``env`` | ``configmap``, the change in that place's names) for a settings action."""
        envs = self.target.key_map("env")
        if action == "rollback":
            raise ActionRefused("rollback goes through the rollout history")
        if "dependency" in params:  # an environment variable's name: CIRCUIT_PRICING_API
            params = {**params, "dependency": str(params["dependency"]).upper().replace("-", "_")}
        try:
            return "env", setting_change(action, params, envs)
        except ActionRefused:
            keys = {
                k: s["key"] for k, s in self.target.knobs.items() if "configmap" in s and "key" in s
            }
            return "configmap", setting_change(action, params, keys)

    def _configmap_of(self, action: str, params: dict[str, Any]) -> str:
        knob = {
            "patch_config": next(iter(params), ""),
            "open_circuit": "circuit",
            "close_circuit": "circuit",
            "shed_load": "shed_share",
        }.get(action, "")
        return str(self.target.knobs.get(knob, {}).get("configmap", ""))

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        kind, name = self._workload(service)
        head = ["kubectl", "--namespace", self.namespace]
        if action == "restart":
            return {
                "via": "kubernetes target",
                "command": " ".join([*head, "rollout", "restart", f"{kind}/{name}"]),
            }
        if action == "scale_out":
            return {
                "via": "kubernetes target",
                "command": " ".join(
                    [
                        *head,
                        "scale",
                        f"{kind}/{name}",
                        f"--replicas=<current + {params.get('by', 1)}>",
                    ]
                ),
            }
        if action == "rollback":
            return {
                "via": "kubernetes target",
                "command": " ".join([*head, "rollout", "undo", f"{kind}/{name}"]),
                "to": params.get("to"),
            }
        try:
            where, change = self._settings(action, params)
        except ActionRefused as exc:
            return {"via": "kubernetes target", "missing": str(exc)}
        if where == "env":
            patch = {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": self.target.options.get("container") or service,
                                    "env": [
                                        {"name": k, "value": str(v)} for k, v in change.items()
                                    ],
                                }
                            ]
                        }
                    }
                }
            }
            return {
                "via": "kubernetes target",
                "patch": patch,
                "command": " ".join(
                    [
                        *head,
                        "patch",
                        f"{kind}/{name}",
                        "--type",
                        "strategic",
                        "-p",
                        json.dumps(patch),
                    ]
                ),
            }
        return {
            "via": "kubernetes target",
            "patch": {"data": {k: str(v) for k, v in change.items()}},
            "configmap": self._configmap_of(action, params),
        }

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "restart":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._patch(
                service,
                {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}},
            )
            return {"ok": True, "restarted_at": stamp, "previous": {}}
        if action == "scale_out":
            current = int(self._read(service).get("spec", {}).get("replicas") or 1)
            wanted = current + int(params.get("by", 1))
            self._patch(service, {"spec": {"replicas": wanted}}, MERGE)
            return {"ok": True, "replicas": wanted, "previous": {"replicas": current}}
        if action == "rollback":
            return self._rollback(service, str(params.get("to") or ""))
        where, change = self._settings(action, params)
        if where == "env":
            doc = self._read(service)
            env = {
                e["name"]: e.get("value") for e in self._container(doc, service).get("env") or []
            }
            self._patch(service, self._env_patch(service, change))
            return {"ok": True, "env": change, "previous": {"env": {k: env.get(k) for k in change}}}
        name = self._configmap_of(action, params)
        core = self._core()
        stored = self._call(
            f"read configmap {name}", core.read_namespaced_config_map, name, self.namespace
        )
        data = {k: str(v) for k, v in change.items()}
        self._call(
            f"patch configmap {name} (server-side dry run)",
            core.patch_namespaced_config_map,
            name,
            self.namespace,
            {"data": data},
            dry_run="All",
            _content_type=MERGE,
        )
        self._call(
            f"patch configmap {name}",
            core.patch_namespaced_config_map,
            name,
            self.namespace,
            {"data": data},
            _content_type=MERGE,
        )
        self.apply("restart", service, {})  # pods read a ConfigMap's values when they start
        old = stored.get("data") or {}
        return {
            "ok": True,
            "configmap": name,
            "previous": {"configmap": name, "data": {k: old.get(k) for k in data}},
        }

    def _rollback(self, service: str, to: str) -> dict[str, Any]:
        if not to:
            raise ActionRefused("rollback needs the release to go back to (to)")
        history = self.history(service)
        current = history[0]["release"] if history else ""
        match = next((r for r in history if r["release"] == to), None)
        if match is None:
            known = ", ".join(r["release"] or "?" for r in history) or "none"
            raise ActionRefused(f"no revision of {service} ran release {to} (history: {known})")
        template = json.loads(json.dumps(match["template"]))
        labels = template.get("metadata", {}).get("labels") or {}
        labels.pop("pod-template-hash", None)  # the ReplicaSet's own, not the template's
        self._patch(service, {"spec": {"template": template}}, MERGE)
        return {
            "ok": True,
            "release": to,
            "revision": match["revision"],
            "previous": {"release": current},
        }

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        previous = applied.get("previous") or {}
        if action == "restart" or not previous:
            return
        if action == "scale_out":
            self._patch(service, {"spec": {"replicas": int(previous["replicas"])}}, MERGE)
        elif action == "rollback":
            self._rollback(service, str(previous.get("release") or ""))
        elif "env" in previous:
            self._patch(
                service,
                self._env_patch(
                    service, {k: v if v is not None else "" for k, v in previous["env"].items()}
                ),
            )
        elif "configmap" in previous:
            core = self._core()
            name = str(previous["configmap"])
            self._call(
                f"patch configmap {name}",
                core.patch_namespaced_config_map,
                name,
                self.namespace,
                {"data": previous["data"]},
                _content_type=MERGE,
            )
            self.apply("restart", service, {})
