"""The lab's database: real SQL on a SQLite file, served over HTTP, one thread per connection.

It exports no spans, like a real database; callers emit CLIENT spans for it.
The ``latency_ms`` setting (the db-timeout fault) slows every query, as a
degraded disk or a lock convoy would.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from sre_space.lab import runtime

_state: dict[str, Any] = {"latency_ms": 0.0}
_local = threading.local()


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(runtime.lab_dir() / "shop.db", timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        _local.conn = conn
    return conn


class Handler(runtime.JsonHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_json(200, {"ok": True, "service": "db"})
        elif self.path == "/_admin/config" and self.authorized():
            self.send_json(200, dict(_state))
        elif self.path != "/_admin/config":
            self.send_json(404, {"error": "no route"})

    def do_POST(self) -> None:
        if self.path == "/_admin/config":
            if self.authorized():
                patch = self.read_json()
                previous = {k: _state.get(k) for k in patch}
                _state.update({k: float(v) for k, v in patch.items() if k == "latency_ms"})
                self.send_json(200, {"previous": previous, "current": dict(_state)})
            return
        if self.path != "/query":
            self.send_json(404, {"error": "no route"})
            return
        doc = self.read_json()
        delay = float(_state["latency_ms"])
        if delay:
            time.sleep(delay / 1000)
        try:
            rows = _connection().execute(str(doc["sql"]), list(doc.get("params", []))).fetchall()
        except (sqlite3.Error, KeyError) as exc:
            self.send_json(500, {"error": str(exc)})
            return
        self.send_json(200, {"rows": rows[:100]})


def serve() -> None:
    init = sqlite3.connect(runtime.lab_dir() / "shop.db")
    init.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item INTEGER, at REAL)"
    )
    init.commit()
    init.close()
    server = runtime.LabServer(("127.0.0.1", runtime.ports()["db"]), Handler)
    server.serve_forever()
