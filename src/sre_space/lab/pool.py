"""A real, bounded connection pool of keep-alive HTTP connections to the lab database."""

from __future__ import annotations

import http.client
import threading
import time


class DatabaseTimeout(Exception):
    """No connection could be had from the pool in time."""


class ConnectionPool:
    def __init__(self, port: int, size: int, timeout_ms: float) -> None:
        self.port = port
        self.size = size
        self.timeout_ms = timeout_ms
        self._idle: list[http.client.HTTPConnection] = []
        self._in_use = 0
        self._cond = threading.Condition()

    def resize(self, size: int) -> None:
        with self._cond:
            self.size = max(1, size)
            # Shrinking retires idle connections now and busy ones as they come back.
            while self._idle and self._in_use + len(self._idle) > self.size:
                self._idle.pop().close()
            self._cond.notify_all()

    def acquire(self) -> http.client.HTTPConnection:
        deadline = time.monotonic() + self.timeout_ms / 1000
        with self._cond:
            while self._in_use >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatabaseTimeout(
                        f"database connection timeout: pool exhausted "
                        f"({self._in_use}/{self.size} in use, waited {self.timeout_ms:.0f} ms)"
                    )
                self._cond.wait(left)
            self._in_use += 1
            if self._idle:
                return self._idle.pop()
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def release(self, conn: http.client.HTTPConnection, broken: bool = False) -> None:
        with self._cond:
            self._in_use -= 1
            if broken or self._in_use + len(self._idle) >= self.size:
                conn.close()
            else:
                self._idle.append(conn)
            self._cond.notify()

    @property
    def in_use(self) -> int:
        return self._in_use
