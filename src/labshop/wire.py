"""A DB-API 2.0 driver for the shop's database server, and its SQLAlchemy dialect.

The database is SQLite in its own process, answering SQL over HTTP (one
server thread per connection, like a database backend). This driver gives
SQLAlchemy a connection per keep-alive HTTP connection, so the engine's
real ``QueuePool`` pools them and its instrumentation traces every statement.
URL: ``sqlite+wire://HOST:PORT/shop``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"
sqlite_version_info = (3, 40, 0)
sqlite_version = "3.40.0"
READ_TIMEOUT_S = 10.0


class Error(Exception):
    pass


class Warning(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class DataError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class Cursor:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rows: list[tuple[Any, ...]] = []
        self.rowcount = -1
        self.description: Any = None
        self.lastrowid: int | None = None
        self.arraysize = 1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        doc = self._conn.query(sql, list(params or ()))
        self._rows = [tuple(r) for r in doc.get("rows", [])]
        self.rowcount = int(doc.get("rowcount", -1))
        width = len(self._rows[0]) if self._rows else 0
        self.description = [
            (f"c{i}", None, None, None, None, None, None) for i in range(width)
        ] or None
        return self

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        for params in seq:
            self.execute(sql, params)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        n = size or self.arraysize
        out, self._rows = self._rows[:n], self._rows[n:]
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        out, self._rows = self._rows, []
        return out

    def close(self) -> None:
        self._rows = []


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self._http = http.client.HTTPConnection(host, port, timeout=READ_TIMEOUT_S)
        self.closed = False

    def query(self, sql: str, params: list[Any]) -> dict[str, Any]:
        if self.closed:
            raise InterfaceError("connection is closed")
        try:
            self._http.request(
                "POST",
                "/query",
                body=json.dumps({"sql": sql, "params": params}),
                headers={"Content-Type": "application/json"},
            )
            resp = self._http.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()  # half-read: never reused
            raise OperationalError(str(exc) or type(exc).__name__) from exc
        doc: dict[str, Any] = json.loads(raw) if raw else {}
        if resp.status != 200:
            raise OperationalError(str(doc.get("error", f"status {resp.status}")))
        return doc

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        """Every statement commits on the server (autocommit)."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._http.close()


def connect(host: str = "127.0.0.1", port: int = 0, **_: Any) -> Connection:
    conn = Connection(host, port)
    conn.query("SELECT 1", [])  # a connection is only handed out once the server answers
    return conn


class WireDialect(SQLiteDialect_pysqlite):
    """SQLite's SQL, spoken over this driver instead of a local file."""

    driver = "wire"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        import labshop.wire as module

        return module

    def create_connect_args(self, url: Any) -> Any:
        return [], {"host": url.host or "127.0.0.1", "port": int(url.port or 0)}

    def on_connect(self) -> Any:
        return None

    def get_isolation_level(self, dbapi_connection: Any) -> Any:
        return "SERIALIZABLE"

    def set_isolation_level(self, dbapi_connection: Any, level: Any) -> None:
        pass

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        return isinstance(e, OperationalError) and bool(getattr(connection, "closed", False))


registry.register("sqlite.wire", "labshop.wire", "WireDialect")
