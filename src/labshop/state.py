"""What can go wrong inside one shop process, set from outside by its operator.

Each is the real thing: a wait before a request is taken up, a handler held
until released, a cache that never evicts, busy threads, a release whose code
reads a field its callers do not send. Nothing here names itself in telemetry.
"""

from __future__ import annotations

import asyncio
import resource
import threading
from typing import Any


class Conditions:
    def __init__(self) -> None:
        self.ingress_wait_s = 0.0
        self.defect: dict[str, Any] = {}  # {"release": "v2", "share": 0.5}
        self.cache_kb = 0.0  # per request, kept for good
        self._cache: list[bytes] = []
        self._open = asyncio.Event()
        self._open.set()
        self._busy_stop = threading.Event()

    # --- set by the operator -------------------------------------------------------

    def hold(self) -> None:
        self._open.clear()

    def let_go(self) -> None:
        self._open.set()

    def busy(self, threads: int) -> None:
        self._busy_stop.set()
        self._busy_stop = threading.Event()
        for i in range(threads):
            threading.Thread(
                target=_work, args=(self._busy_stop,), name=f"worker-{i}", daemon=True
            ).start()

    def idle(self) -> None:
        self._busy_stop.set()

    # --- on the request path -----------------------------------------------------------

    async def admitted(self) -> None:
        await self._open.wait()

    def remember(self) -> None:
        if self.cache_kb > 0:
            # b"x" * n writes every page: resident memory, not just an address range.
            self._cache.append(b"x" * int(self.cache_kb * 1024))


def limit_memory(limit_mb: float) -> None:
    """Cap the memory the process may map (RLIMIT_DATA: heap and thread stacks).

    Past it an allocation fails and Python raises MemoryError where it happened.
    """
    soft = resource.RLIM_INFINITY if limit_mb <= 0 else int(limit_mb * 2**20)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _work(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10_000):  # pure bytecode: holds the interpreter as much as it can
            x = (x * 31 + 7) % 1_000_003
