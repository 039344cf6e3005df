"""Where ingest time goes, per stage: a py-spy profile of the end-to-end run, summed.

Runs only the end-to-end part of ``ingest.py`` (receiver -> intake -> store
-> window detector) under ``py-spy record --gil`` (samples only the thread
holding the GIL: on one core that is where the CPU goes; threads waiting for
the GIL or a socket are not counted), then sums the samples by stage:

- ``http``: reading the request and writing the answer (socket, headers);
- ``parse``: upb's ``ParseFromString``;
- ``span model``: turning the parsed message into what the store keeps;
- ``intake``: the bounded queue (offer, take, wake-ups);
- ``store``: ``TraceStore.add`` itself (the trace index, eviction);
- ``detector``: ``WindowDetector.observe`` (windows, followed traces);
- ``gc`` and ``other``.

py-spy is a profiling tool, not a dependency: ``pip install py-spy``.

Usage::

    python benchmarks/ingest_stages.py [--seconds 6]          # record and summarise
    python benchmarks/ingest_stages.py --report FILE.raw      # summarise a recording
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# (stage, a substring of a frame) in order: the first stage whose marker appears
# in a stack, innermost frame first, takes the sample.
MARKERS: list[tuple[str, str]] = [
    ("detector", "WindowDetector."),
    ("store", "TraceStore."),
    ("parse", "ParseFromString"),
    ("parse", "decode_protobuf"),  # upb's C frames are charged to the calling line
    ("span model", "decode_request"),
    ("span model", "decode_batch"),
    ("span model", "otlp.py"),
    ("span model", "spans.py"),
    ("span model", "model.py"),
    ("intake", "intake.py"),
    ("http", "receiver.py"),
    ("http", "socketserver.py"),
    ("http", "http/server.py"),
    ("http", "socket.py"),
    ("http", "http/client.py"),
    ("http", "email/"),
]


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for stage, marker in MARKERS:
            if marker in frame:
                return stage
    if "gc" in stack.lower() and "collect" in stack:
        return "gc"
    return "other"


def summarise(path: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        # Only the server's threads: the load generators are other processes;
        # the main thread of this script only sleeps and polls.
        if "Thread._bootstrap" not in stack:
            continue
        counts[stage_of(stack)] += int(n)
    return dict(counts)


def report(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    order = ["http", "parse", "span model", "intake", "store", "detector", "gc", "other"]
    lines = [f"{'stage':<11} {'samples':>8} {'share':>6}"]
    for stage in order:
        n = counts.get(stage, 0)
        lines.append(f"{stage:<11} {n:>8} {n / total:>6.1%}")
    return "\n".join(lines)


def run(seconds: float) -> None:
    """The end-to-end part of ingest.py alone (the process py-spy records)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ingest

    from sre_space.telemetry.senses import tune_gc

    ingest.pin(ingest.SERVER_CORES)
    tune_gc()
    e2e = ingest.drive(2, seconds, 512, 10, 1_000_000, 256)
    print(f"end to end: {e2e['spans_per_s']:,.0f} spans/s (under the profiler)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--report", type=Path, help="summarise this py-spy raw recording")
    ap.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        run(args.seconds)
        return 0
    if args.report:
        print(report(summarise(args.report)))
        return 0
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "ingest.raw"
        cmd = [spy, "record", "--gil", "--rate", "250", "--format", "raw", "-o", str(raw), "--"]
        cmd += [sys.executable, __file__, "--run", "--seconds", str(args.seconds)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        print(report(summarise(raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
