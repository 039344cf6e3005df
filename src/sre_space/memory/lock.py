"""One writer or many readers on an embedded memory directory, across processes.

Chroma's PersistentClient is not safe with several processes writing, nor
with a reader open while another process writes. A writer holds an exclusive
``flock`` on a file in the memory directory for as long as its store is open;
readers hold a shared one. The kernel drops the lock when a process exits,
however it exits (SIGKILL included), so a dead writer never blocks the next.

Within one process any number of stores share one lock (counted), so the
mind and a test can both open the store they live in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sre_space.errors import Unavailable

LOCK_NAME = ".sre-space.lock"


@dataclass
class _Held:
    fd: int
    exclusive: bool
    refs: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def _try(fd: int, exclusive: bool, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    flag = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    while True:
        try:
            fcntl.flock(fd, flag | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _busy(directory: Path, exclusive: bool, wait_s: float) -> Unavailable:
    role = "write" if exclusive else "read"
    return Unavailable(
        f"memory at {directory} is in use by another process; cannot {role} it "
        f"(waited {wait_s:.0f} s): only one process writes it, and a running mind is that process"
    )


class DirLock:
    """A counted, process-wide shared or exclusive lock on ``directory``."""

    def __init__(self, directory: Path, *, exclusive: bool, wait_s: float) -> None:
        self.path = directory / LOCK_NAME
        self.exclusive = exclusive
        with _guard:
            held = _held.get(self.path)
            if held is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                if not _try(fd, exclusive, wait_s):
                    os.close(fd)
                    raise _busy(directory, exclusive, wait_s)
                _held[self.path] = _Held(fd, exclusive, 1)
            else:
                if exclusive and not held.exclusive:
                    # Upgrade: readers in this process become covered by the writer's lock.
                    if not _try(held.fd, True, wait_s):
                        raise _busy(directory, exclusive, wait_s)
                    held.exclusive = True
                held.refs += 1
        self._released = False

    def release(self) -> None:
        with _guard:
            if self._released:
                return
            self._released = True
            held = _held.get(self.path)
            if held is None:
                return
            held.refs -= 1
            if held.refs <= 0:
                del _held[self.path]
                with contextlib.suppress(OSError):
                    fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)
