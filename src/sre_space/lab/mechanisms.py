"""The faults a service process carries out on itself (see ``faults.py``).

Each is real: a delay on the way in, a defective release's handler, request
threads that block, memory that is really kept, threads that really spin.
The state lives here, never in the runtime config, so ``/status`` shows none of it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

HANG_CAP_S = 3600.0  # a hung request thread is let go at the latest with the fault's hard cap
PAGE = os.sysconf("SC_PAGE_SIZE")


class ReleaseDefect(Exception):
    """What a bad release's handler raises: a bug shipped in it."""


def rss_mb() -> float:
    """This process's resident memory, as the kernel counts it."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


class Faults:
    KNOWN = ("latency", "http-errors", "hang", "memory-leak", "cpu-hog")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: dict[str, dict[str, Any]] = {}
        self._released = threading.Event()  # set: hung threads may go
        self._released.set()
        self._kept: list[bytes] = []  # the leak
        self._spin_stop = threading.Event()

    # --- control ------------------------------------------------------------------

    def apply(self, name: str, params: dict[str, Any]) -> None:
        if name not in self.KNOWN:
            raise ValueError(f"this service has no mechanism for fault {name!r}")
        with self._lock:
            self.active[name] = dict(params)
            if name == "hang":
                self._released.clear()
            elif name == "cpu-hog":
                self._spin_stop.set()  # stop the spinners of an earlier injection
                self._spin_stop = threading.Event()
                for i in range(int(params.get("threads", 1))):
                    threading.Thread(
                        target=_spin, args=(self._spin_stop,), name=f"hog-{i}", daemon=True
                    ).start()

    def clear(self, name: str | None) -> None:
        with self._lock:
            for key in [name] if name else list(self.active):
                self.active.pop(key, None)
                if key == "hang":
                    self._released.set()
                elif key == "cpu-hog":
                    self._spin_stop.set()
                # memory-leak: what was kept stays kept, as in a real leak (a restart frees it).

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.active.items()}

    # --- on the request path ------------------------------------------------------------

    def on_arrival(self) -> None:
        """Before the SERVER span starts: the ingress delay and the hang."""
        latency = self.active.get("latency")
        if latency:
            time.sleep(float(latency.get("delay_ms", 0)) / 1000)
        if "hang" in self.active:
            self._released.wait(HANG_CAP_S)

    def on_request(self, release: str, memory_limit_mb: float) -> None:
        """Inside the SERVER span: the release's defect and the memory limit."""
        if memory_limit_mb > 0:
            rss = rss_mb()
            if rss > memory_limit_mb:
                raise MemoryError(
                    f"out of memory: resident {rss:.0f} MB over the {memory_limit_mb:.0f} MB limit"
                )
        leak = self.active.get("memory-leak")
        if leak:
            # b"x" * n writes every page: resident memory, not just an address range.
            self._kept.append(b"x" * int(float(leak.get("kb_per_request", 0)) * 1024))
        bad = self.active.get("http-errors")
        if (
            bad
            and release == str(bad.get("release", "v2"))
            and random.random() < float(bad.get("error_rate", 0))
        ):
            raise ReleaseDefect(f"KeyError: 'currency' in request handler (release {release})")


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10_000):  # pure bytecode: holds the interpreter as much as it can
            x = (x * 31 + 7) % 1_000_003
