"""How long `sre-space up --embedded` takes until it returns with the lab healthy.

Each run uses a fresh home and free loopback ports, runs the real command
(``python -m sre_space up --embedded``), times it to its exit, then runs
``sre-space down``. Prints each run and the median.

Usage: ``python benchmarks/up.py [--runs N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run() -> float:
    home = Path(tempfile.mkdtemp(prefix="sre-space-up-")) / "home"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(_free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(_free_port()),
    }
    cmd = [sys.executable, "-m", "sre_space"]
    started = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "up", "--embedded"], env=env, capture_output=True, text=True, timeout=180
    )
    took = time.perf_counter() - started
    subprocess.run([*cmd, "down"], env=env, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"up failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times = [one_run() for _ in range(max(1, args.runs))]
    doc = {"runs": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2)}
    if args.json:
        print(json.dumps(doc))
        return
    for i, t in enumerate(times, 1):
        print(f"run {i}: up healthy in {t:.2f} s")
    print(
        f"median {doc['median_s']:.2f} s over {len(times)} run(s); load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
