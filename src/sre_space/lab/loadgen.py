"""The load generator: open-loop, a steady rate against the frontend, whatever the latency.

``python -m sre_space.lab.loadgen [--rate RPS]`` (default: ``SRE_SPACE_LAB_RATE`` or 50).
Open-loop matters: a closed loop slows down when the system does, and hides
saturation. It exports no spans; it plays the users.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sre_space.lab import runtime

WORKERS = 128  # enough that 50 rps at 2 s each still fits: slowness must not lower the rate
MAX_BACKLOG = 1000  # beyond this the users give up (a hung frontend must not eat memory)
CLIENT_TIMEOUT_S = 5.0

_pending = 0
_pending_lock = threading.Lock()


def _one(port: int) -> None:
    global _pending
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.request(
            "POST",
            "/api/checkout",
            body=json.dumps({"item": random.randint(1, 100)}),
            headers={"Content-Type": "application/json"},
        )
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # the failure is visible in the services' own telemetry
    finally:
        conn.close()
        with _pending_lock:
            _pending -= 1


def main(argv: list[str] | None = None) -> None:
    global _pending
    parser = argparse.ArgumentParser(prog="sre_space.lab.loadgen")
    parser.add_argument(
        "--rate", type=float, default=float(os.environ.get("SRE_SPACE_LAB_RATE") or 50)
    )
    args = parser.parse_args(argv)
    runtime.quiet_logging("loadgen")
    runtime.exit_with_supervisor()
    port = runtime.ports()["frontend"]
    interval = 1.0 / max(0.1, args.rate)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        next_at = time.monotonic()
        while True:
            with _pending_lock:
                send = _pending < MAX_BACKLOG
                _pending += send
            if send:
                pool.submit(_one, port)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                next_at = time.monotonic()  # fell far behind: don't burst to catch up


if __name__ == "__main__":
    main()
    sys.exit(0)
