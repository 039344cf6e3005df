"""The faults a service process carries out on itself (see ``faults.py``).

Each turns a knob of the shop's own code (``labshop.state``): a wait before a
request is taken up, handlers held until released, a cache that keeps every
response, busy threads, a release that reads a field callers never send. The
state lives here, never in the runtime config, so ``/status`` shows none of it;
and none of it has a name in the shop's telemetry.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labshop.state import Conditions


class Faults:
    KNOWN = ("latency", "http-errors", "hang", "memory-leak", "cpu-hog")

    def __init__(self, conditions: Conditions) -> None:
        self._lock = threading.Lock()
        self.active: dict[str, dict[str, Any]] = {}
        self._on = conditions

    def apply(self, name: str, params: dict[str, Any]) -> None:
        if name not in self.KNOWN:
            raise ValueError(f"this service has no mechanism for fault {name!r}")
        with self._lock:
            self.active[name] = dict(params)
            on = self._on
            if name == "latency":
                on.ingress_wait_s = float(params.get("delay_ms", 0)) / 1000
            elif name == "http-errors":
                on.defect = {
                    "release": str(params.get("release", "v2")),
                    "share": float(params.get("error_rate", 0)),
                }
            elif name == "hang":
                on.hold()
            elif name == "memory-leak":
                on.cache_kb = float(params.get("kb_per_request", 0))
            elif name == "cpu-hog":
                on.busy(int(params.get("threads", 1)))

    def clear(self, name: str | None) -> None:
        with self._lock:
            for key in [name] if name else list(self.active):
                self.active.pop(key, None)
                on = self._on
                if key == "latency":
                    on.ingress_wait_s = 0.0
                elif key == "http-errors":
                    on.defect = {}
                elif key == "hang":
                    on.let_go()
                elif key == "memory-leak":
                    on.cache_kb = 0.0  # what was kept stays kept, as in a real leak
                elif key == "cpu-hog":
                    on.idle()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.active.items()}
