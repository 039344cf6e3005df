"""The lab's database: real SQL on a SQLite file, served over HTTP, one thread per connection.

It exports no spans, like a real database; callers emit CLIENT spans for it.
Its clients keep persistent connections (checkout's pool), so each pooled
connection is one server thread here, as with a real database's backends.

Faults live behind ``/_admin/fault`` and nowhere else: ``/_admin/config`` (what
``/status`` shows) never reveals them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from sre_space.lab import runtime

ITEMS = 100  # the shop's catalogue: item ids 1..ITEMS, each with stock

_local = threading.local()
_lock = threading.Lock()
_faults: dict[str, dict[str, Any]] = {}  # active fault name -> its params


def _slow_queries(params: dict[str, Any]) -> float:
    return float(params.get("latency_ms", 0))


# fault name -> extra milliseconds it puts on every query (the db's mechanisms)
MECHANISMS: dict[str, Callable[[dict[str, Any]], float]] = {"db-timeout": _slow_queries}


def _extra_latency_s() -> float:
    with _lock:
        return sum(MECHANISMS[name](params) for name, params in _faults.items()) / 1000


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(runtime.lab_dir() / "shop.db", timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a lab: durability is not what is measured
        _local.conn = conn
    return conn


def _init_schema() -> None:
    conn = sqlite3.connect(runtime.lab_dir() / "shop.db")
    with conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS stock (item INTEGER PRIMARY KEY, quantity INTEGER NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item INTEGER, at REAL)"
        )
        conn.executemany(
            "INSERT OR IGNORE INTO stock(item, quantity) VALUES (?, ?)",
            [(i, 1_000_000) for i in range(1, ITEMS + 1)],
        )
    conn.close()


class Handler(runtime.JsonHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/healthz":
            self.send_json(200, {"ok": True, "service": "db"})
        elif path == "/_admin/config":
            if self.authorized():
                self.send_json(200, {})  # nothing tunable; faults are not config
        elif path == "/_admin/fault":
            if self.authorized():
                with _lock:
                    self.send_json(200, {k: dict(v) for k, v in _faults.items()})
        else:
            self.send_json(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/query":
            self._query()
        elif path == "/_admin/config":
            if self.authorized():
                patch = self.read_json()
                if patch:
                    self.send_json(
                        400, {"error": f"unknown config key(s) for db: {', '.join(patch)}"}
                    )
                else:
                    self.send_json(200, {"previous": {}, "current": {}})
        elif path == "/_admin/fault":
            if self.authorized():
                doc = self.read_json()
                name = str(doc.get("fault", ""))
                if name not in MECHANISMS:
                    self.send_json(400, {"error": f"db has no mechanism for fault {name!r}"})
                    return
                with _lock:
                    _faults[name] = dict(doc.get("params") or {})
                self.send_json(200, {"active": sorted(_faults)})
        else:
            self.send_json(404, {"error": f"no route {path}"})

    def do_DELETE(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/_admin/fault":
            self.send_json(404, {"error": f"no route {url.path}"})
            return
        if self.authorized():
            name = dict(urllib.parse.parse_qsl(url.query)).get("fault")
            with _lock:
                for key in [name] if name else list(_faults):
                    _faults.pop(key, None)
                self.send_json(200, {"active": sorted(_faults)})

    def _query(self) -> None:
        doc = self.read_json()
        delay = _extra_latency_s()
        if delay:
            time.sleep(delay)  # the fault: a degraded disk, as seen by every query
        try:
            cur = _connection().execute(str(doc["sql"]), list(doc.get("params", [])))
            rows = cur.fetchall()
        except (sqlite3.Error, KeyError) as exc:
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self.send_json(200, {"rows": rows[:100], "rowcount": cur.rowcount})


def _prune_orders(keep_s: float = 600.0) -> None:
    """50 orders a second for days would fill the disk; the lab keeps the last ten minutes."""
    while True:
        time.sleep(60)
        with contextlib.suppress(sqlite3.Error):  # busy: next minute will do
            _connection().execute("DELETE FROM orders WHERE at < ?", [time.time() - keep_s])


def serve() -> None:
    _init_schema()
    threading.Thread(target=_prune_orders, name="prune", daemon=True).start()
    runtime.listening_server(Handler).serve_forever()
