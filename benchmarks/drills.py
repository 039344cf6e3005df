"""Every drill in the catalogue, one after another: verdict, TTD, TTL and TTM.

Each fault runs as ``sre-space drill FAULT --json`` in a fresh home with free
loopback ports (the drill starts and stops its own embedded lab), so one
drill's memory cannot help the next. Prints one line per fault, as the
README's catalogue table shows them.

Usage: ``python benchmarks/drills.py [FAULT ...] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sre_space.lab.faults import FAULTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drill(fault: str) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"sre-space-drill-{fault}-")) / "home"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(_free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(_free_port()),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "sre_space", "drill", fault, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return {"fault": fault, "exit": proc.returncode, "error": proc.stderr.strip()[-300:]}
    incident = doc.get("incident") or {}
    return {
        "fault": fault,
        "exit": proc.returncode,
        "status": doc.get("status"),
        "root_cause": (incident.get("root_cause") or {}).get("service"),
        "fault_class": (incident.get("root_cause") or {}).get("fault_class"),
        "action": (incident.get("remediation") or {}).get("action"),
        "ttd_s": doc.get("ttd_s"),
        "ttl_s": doc.get("ttl_s"),
        "ttm_s": doc.get("ttm_s"),
        "duration_s": doc.get("duration"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", default=list(FAULTS))
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    rows = []
    for fault in args.faults:
        row = drill(fault)
        rows.append(row)
        if not args.json:
            if "error" in row:
                print(f"{fault:<16} exit {row['exit']}: {row['error']}", flush=True)
                continue
            print(
                f"{fault:<16} {row['status']:<10} exit {row['exit']}  "
                f"root cause {row['root_cause']!s:<10} {row['fault_class']!s:<11} "
                f"{row['action'] or '-':<13} "
                f"TTD {row['ttd_s']} s  TTL {row['ttl_s']} s  TTM {row['ttm_s']} s  "
                f"({row['duration_s']} s)",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    sys.exit(0 if all(r["exit"] == 0 for r in rows) else 1)


if __name__ == "__main__":
    main()
