"""A small TCP balancer in front of a service's replicas, run by the supervisor.

Round-robin over the replicas' ports; a replica that refuses the connection is
skipped for the next (a dead process is routed around, as a real balancer's
connect failure would be). It knows nothing of HTTP: a replica that accepts and
then never answers (a hang) is not noticed. ``down()`` closes the listener so
callers are refused (the dependency-down fault); ``up()`` listens again on the
same port.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

CONNECT_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 30.0  # a connection with no byte either way for this long is dropped


def listen(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    return sock


def _reset(sock: socket.socket) -> None:
    """Close with RST: the caller learns at once that nobody is there."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Balancer:
    def __init__(self, name: str, sock: socket.socket, backends: Callable[[], list[int]]) -> None:
        self.name = name
        self.port = int(sock.getsockname()[1])
        self._sock: socket.socket | None = sock
        self._backends = backends  # read on every connection: replicas come and go
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"balancer-{self.name}", daemon=True
        )
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            sock = self._sock
            if sock is None:
                time.sleep(0.1)
                continue
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
                if not ready:
                    continue
                client, _ = sock.accept()
            except (OSError, ValueError):
                time.sleep(0.05)  # shut or swapped under us by down()/up()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        ports = self._backends()
        start = next(self._counter)
        for i in range(len(ports)):
            port = ports[(start + i) % len(ports)]
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
            except OSError:
                continue  # refused: that replica is down; try the next
        return None

    def _serve(self, client: socket.socket) -> None:
        backend = self._connect()
        if backend is None:
            _reset(client)  # no replica accepts: the caller is refused, not left waiting
            return
        pair = (client, backend)
        try:
            for s in pair:
                s.setblocking(True)
                s.settimeout(None)
            while True:
                ready, _, _ = select.select(pair, [], [], IDLE_TIMEOUT_S)
                if not ready:
                    return
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (backend if src is client else client).sendall(data)
        except OSError:
            return
        finally:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.close()

    def down(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def up(self) -> None:
        with self._lock:
            if self._sock is None:
                self._sock = listen(self.port)

    def stop(self) -> None:
        self._stopped.set()
        self.down()
