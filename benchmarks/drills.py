"""Every drill in the catalogue, one after another: verdict, TTD, TTL and TTM.

Each fault runs as ``sre-space drill FAULT --json`` in a fresh home with free
loopback ports (the drill starts and stops its own embedded lab), so one
drill's memory cannot help the next. Prints one line per fault, as the
README's catalogue table shows them.

With ``--state-url URL`` (a PostgreSQL server; its own database is not
touched) each fault runs twice, one after the other: on the home's SQLite,
then with the incident log and checkpoints in a database created for that
drill and dropped after it. The last line compares the medians of TTD and
TTM, PostgreSQL against SQLite in the same run (issue 25: within 10%).

Usage: ``python benchmarks/drills.py [FAULT ...] [--state-url URL] [--json]``
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
import uuid
from pathlib import Path
from typing import Any

from sre_space.errors import UsageError
from sre_space.lab.faults import FAULTS
from sre_space.state.url import StateUrl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drill(fault: str, state_url: str | None = None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"sre-space-drill-{fault}-")) / "home"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(_free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": str(_free_port()),
    }
    env.pop("SRE_SPACE_STATE_URL", None)
    if state_url is not None:
        env["SRE_SPACE_STATE_URL"] = state_url
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
        return {
            "fault": fault,
            "state": "postgresql" if state_url else "sqlite",
            "exit": proc.returncode,
            "error": proc.stderr.strip()[-300:],
        }
    incident = doc.get("incident") or {}
    return {
        "fault": fault,
        "state": "postgresql" if state_url else "sqlite",
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


def on_postgres(server: StateUrl, fault: str) -> dict[str, Any]:
    """``drill(fault)`` with its state in a database of its own, dropped afterwards."""
    import psycopg

    name = f"sre_drill_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            return drill(fault, server.with_database(name).url)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def compare(rows: list[dict[str, Any]]) -> str:
    """The medians of TTD and TTM on each state, and PostgreSQL's against SQLite's."""
    parts = []
    for key in ("ttd_s", "ttm_s"):
        medians = {}
        for state in ("sqlite", "postgresql"):
            values = [r[key] for r in rows if r.get("state") == state and r.get(key) is not None]
            medians[state] = statistics.median(values) if values else None
        sq, pg = medians["sqlite"], medians["postgresql"]
        ratio = f"{pg / sq:.2f}x" if sq and pg is not None else "n/a"
        parts.append(f"{key[:3].upper()} median sqlite {sq} s, postgresql {pg} s ({ratio})")
    return "state: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", default=list(FAULTS))
    parser.add_argument(
        "--state-url",
        help="a PostgreSQL server: each drill also runs with its state there (see above)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    server = None
    if args.state_url:
        try:
            server = StateUrl.parse(args.state_url)
        except UsageError as exc:
            sys.exit(f"drills: {exc}")
    rows = []
    for fault in args.faults:
        runs = [drill(fault)]
        if server is not None:
            runs.append(on_postgres(server, fault))
        rows.extend(runs)
        for row in runs if not args.json else ():
            state = f"{row['state']:<10} " if server is not None else ""
            if "error" in row:
                print(f"{fault:<16} {state}exit {row['exit']}: {row['error']}", flush=True)
                continue
            print(
                f"{fault:<16} {state}{row['status']:<10} exit {row['exit']}  "
                f"root cause {row['root_cause']!s:<10} {row['fault_class']!s:<11} "
                f"{row['action'] or '-':<13} "
                f"TTD {row['ttd_s']} s  TTL {row['ttl_s']} s  TTM {row['ttm_s']} s  "
                f"({row['duration_s']} s)",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif server is not None:
        print(compare(rows))
    sys.exit(0 if all(r["exit"] == 0 for r in rows) else 1)


if __name__ == "__main__":
    main()
