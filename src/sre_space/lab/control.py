"""Client of the lab's control API, for `sre-space chaos` and the Fixer's lab actuator."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from sre_space.config import Settings
from sre_space.errors import Unavailable, UsageError
from sre_space.lab import runtime
from sre_space.paths import Paths

NO_LAB = "no lab is running; start it with `sre-space up`"


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
        except (OSError, ValueError):
            raise Unavailable(NO_LAB) from None
        return cls(int(state["control_port"]), token)

    def _call(self, method: str, path: str, doc: Any = None, timeout: float = 30.0) -> Any:
        try:
            code, body = runtime.call(
                self.port, method, path, doc, token=self._token, timeout=timeout
            )
        except OSError:
            raise Unavailable(NO_LAB) from None
        if code == 400:
            raise UsageError(str(body.get("error", "the lab refused the request")))
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
    ) -> dict[str, Any]:
        doc = {"fault": fault, "target": target, "params": params or {}, "duration_s": duration_s}
        return dict(self._call("POST", "/chaos", doc))

    def revert(self, fault: str | None = None) -> list[str]:
        query = f"?{urllib.parse.urlencode({'fault': fault})}" if fault else ""
        return list(self._call("DELETE", f"/chaos{query}")["reverted"])

    def chaos_status(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/chaos"))

    def act(
        self, action: str, service: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "POST", "/actions", {"action": action, "service": service, "params": params or {}}
            )
        )

    def shutdown(self) -> None:
        self._call("POST", "/shutdown", {}, timeout=5)
