"""Client of the lab's control API, for `sre-space chaos` and the Fixer's lab actuator."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

from sre_space.config import Settings
from sre_space.errors import Unavailable, UsageError
from sre_space.lab import runtime
from sre_space.paths import Paths

NO_LAB = "no lab is running; start it with `sre-space up`"
# An action answers once the service is healthy again: a rolling restart waits up
# to 30 s per replica in the supervisor, and a busy machine takes longer than a
# read of the lab's state. A client that gave up sooner would report a failure
# while the action goes on and succeeds.
ACT_TIMEOUT_S = 180.0


def pid_alive(pid: int) -> bool:
    """True for a live process; False for a gone one or a zombie (exited, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LabClient:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self._token = token

    @classmethod
    def from_settings(cls, settings: Settings) -> LabClient:
        paths = Paths(settings.home)
        try:
            state = json.loads(paths.lab_state.read_text())
            token = paths.control_token.read_text().strip()
            port, pid = int(state["control_port"]), int(state["supervisor_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            raise Unavailable(NO_LAB) from None
        # A stale lab.json's port may belong to someone else by now: never send them the token.
        if not pid_alive(pid):
            raise Unavailable(NO_LAB)
        return cls(port, token)

    def _call(self, method: str, path: str, doc: Any = None, timeout: float = 30.0) -> Any:
        try:
            code, body = runtime.call(
                self.port, method, path, doc, token=self._token, timeout=timeout
            )
        except TimeoutError:  # it runs, but is busy: not the same as no lab at all
            raise Unavailable(
                f"the lab's control API did not answer {method} {path} within {timeout:.0f} s"
            ) from None
        except OSError:
            raise Unavailable(NO_LAB) from None
        if code == 400:
            raise UsageError(str(body.get("error", "the lab refused the request")))
        if code == 401:
            raise Unavailable("the lab refused the control token; restart it with `sre-space up`")
        if code != 200:
            raise Unavailable(f"the lab's control API answered {code}: {body.get('error', '')}")
        return body

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", "/status"))

    def inject(
        self,
        fault: str,
        *,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        duration_s: float | None = None,
        replicas: str | None = None,
    ) -> dict[str, Any]:
        doc = {
            "fault": fault,
            "target": target,
            "params": params or {},
            "duration_s": duration_s,
            "replicas": replicas,
        }
        return dict(self._call("POST", "/chaos", doc))

    def revert(self, fault: str | None = None) -> list[str]:
        query = f"?{urllib.parse.urlencode({'fault': fault})}" if fault else ""
        return list(self._call("DELETE", f"/chaos{query}")["reverted"])

    def chaos_status(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/chaos"))

    def act(
        self,
        action: str,
        service: str,
        params: dict[str, Any] | None = None,
        timeout: float = ACT_TIMEOUT_S,
    ) -> dict[str, Any]:
        doc = {"action": action, "service": service, "params": params or {}}
        return dict(self._call("POST", "/actions", doc, timeout=timeout))

    def shutdown(self) -> None:
        self._call("POST", "/shutdown", {}, timeout=5)
