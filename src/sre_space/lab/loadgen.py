"""The load generator: open-loop, a steady rate against the frontend, whatever the latency.

Open-loop matters: a closed loop slows down when the system does, and hides
saturation. It exports no spans; it plays the users.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sre_space.lab import runtime


def _one(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST",
            "/api/checkout",
            body=json.dumps({"item": 1}),
            headers={"Content-Type": "application/json"},
        )
        conn.getresponse().read()
    except OSError:
        pass  # the failure is visible in the services' own telemetry
    finally:
        conn.close()


def main() -> None:
    runtime.quiet_logging("loadgen")
    rate = float(os.environ.get("SRE_SPACE_LAB_RATE", "50"))
    port = runtime.ports()["frontend"]
    interval = 1.0 / rate
    with ThreadPoolExecutor(max_workers=128) as pool:
        next_at = time.monotonic()
        while True:
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
