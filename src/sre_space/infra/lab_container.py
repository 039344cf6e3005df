"""Entrypoint of a lab container: ``python -m sre_space.infra.lab_container NAME``.

On one machine the lab supervisor binds each service's listening socket and
hands it down by file descriptor (``sre_space.lab.runtime.FD_ENV``), then runs
``python -m sre_space.lab.service NAME``. A container has no supervisor, so
this does that one step for one service: bind ``127.0.0.1:<its port>`` (from
``SRE_SPACE_LAB_PORTS``), listen, and exec the service in its place, so the
service is the process Docker signals and restarts. ``loadgen`` needs no socket
and is exec'd as it is.
"""

from __future__ import annotations

import os
import socket
import sys

from sre_space.lab import runtime

BACKLOG = 256


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m sre_space.infra.lab_container NAME (a lab service, or loadgen)")
    name = argv[1]
    if name == "loadgen":
        os.execv(sys.executable, [sys.executable, "-m", "sre_space.lab.loadgen", *argv[2:]])
    ports = runtime.ports()
    if name not in ports:
        sys.exit(f"unknown lab service {name!r}; {runtime.PORTS_ENV} names: {', '.join(ports)}")
    sock = listen(ports[name])
    os.environ[runtime.FD_ENV] = str(sock.fileno())
    os.execv(sys.executable, [sys.executable, "-m", "sre_space.lab.service", name])


if __name__ == "__main__":
    main(sys.argv)
