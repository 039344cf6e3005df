"""One supervised lab process (a service replica or the load generator) and its listener."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from typing import IO

from sre_space.lab import runtime
from sre_space.lab.balancer import listen

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this


class Child:
    """A process the supervisor starts, stops and watches.

    The supervisor binds the child's listening socket and hands it down by fd,
    so the port survives restarts. When the process dies the listener is
    closed (callers are refused, as with any dead server) and bound again, on
    the same port, when the process is started again.
    """

    def __init__(
        self,
        name: str,
        service: str,
        argv: list[str],
        env: dict[str, str],
        log: IO[bytes],
        listens: bool = True,
    ) -> None:
        self.name, self.service, self.argv, self.log = name, service, argv, log
        self.env = {**env, runtime.INSTANCE_ENV: name}
        self.sock: socket.socket | None = listen() if listens else None
        self.port = int(self.sock.getsockname()[1]) if self.sock else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.healthy = False
        self.held = False  # chaos crashed it: it stays down until someone restarts it
        self.next_restart_at = 0.0  # backoff: when a dead child may be started again

    def start(self) -> None:
        self.healthy = False
        self.held = False
        env = dict(self.env)
        if self.port and self.sock is None:
            self.sock = listen(self.port)  # the same port again; see close_listener
        if self.sock is not None:
            self.sock.set_inheritable(True)
            env[runtime.FD_ENV] = str(self.sock.fileno())
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(self.sock.fileno(),) if self.sock else (),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def reap(self, deadline: float) -> None:
        """Wait for the child until ``deadline``, then kill it; never leaves it running."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.terminate()
        self.reap(time.monotonic() + STOP_GRACE_S)

    def close_listener(self) -> None:
        """Nobody serves the port now: callers get 'connection refused', not a silent queue."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
            self.sock = None

    def release(self) -> None:
        """For good (scale in, shutdown): the process and the port."""
        self.stop()
        self.close_listener()
        self.port = 0
