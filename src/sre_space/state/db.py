"""The seam between the incident log (and the outbox) and the engine under it.

Both engines are spoken to in one SQL subset: ``?`` placeholders, ``INSERT
... ON CONFLICT``, ``RETURNING``, and ``json_extract(doc, '$.a.b')`` (SQLite's
own; PostgreSQL's migration 1 defines the same function over a text column).
What differs is behind :class:`Db`: how a connection is opened, how the
schema comes to be, and how a write transaction takes the writers' lock
(SQLite's ``BEGIN IMMEDIATE``, a transaction-scoped advisory lock in
PostgreSQL), so the log's read-modify-write never loses another process's change.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from sre_space.errors import Unavailable, UsageError
from sre_space.state.url import StateUrl

if TYPE_CHECKING:
    import psycopg

WRITERS_LOCK = 0x5E5E_0001  # the advisory lock a PostgreSQL write transaction takes first
CONNECT_TIMEOUT_S = 5


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    """What the incident log and the outbox need of a database."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def immediate(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction that first takes the writers' lock (other writers wait)."""
        ...

    def __enter__(self) -> Db: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def close(self) -> None: ...


class SqliteDb:
    """A SQLite file (WAL), its schema created by the scripts it is given."""

    dialect = "sqlite"

    def __init__(self, path: Path, schema: Sequence[str] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        for script in schema:
            self._db.executescript(script)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(sql, tuple(params))

    @contextlib.contextmanager
    def immediate(self) -> Iterator[None]:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield

    def __enter__(self) -> SqliteDb:
        self._db.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.__exit__(kind, exc, tb)

    def close(self) -> None:
        self._db.close()


def _translate(sql: str) -> str:
    """The shared subset to psycopg's placeholders (no statement here has a ``?`` in a literal)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgDb:
    """A PostgreSQL connection (autocommit outside transactions), reopened when it breaks.

    A connection closed from the server side (a restart, ``pg_terminate_backend``)
    fails the statement it was running; the next one opens a new connection.
    """

    dialect = "postgresql"

    def __init__(self, url: StateUrl, *, purpose: str = "state") -> None:
        self.url = url
        self._purpose = purpose
        self._conn = connect(url, purpose)
        self._tx: list[Any] = []
        self._lock = threading.RLock()

    def _live(self) -> psycopg.Connection[Any]:
        if self._conn.closed or self._conn.broken:
            self._conn = connect(self.url, self._purpose)
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with self._lock:
            if self._tx:
                return self._run(self._conn, sql, params)
            try:
                return self._run(self._live(), sql, params)
            except driver().OperationalError:
                if not self._conn.broken:
                    raise
                # The server closed the connection under it (a restart, a terminated
                # session): outside a transaction the statement is tried once more, anew.
                return self._run(self._live(), sql, params)

    @staticmethod
    def _run(conn: Any, sql: str, params: Sequence[Any]) -> Cursor:
        if not params:  # as written: psycopg reads placeholders only when given values
            return conn.execute(sql)  # type: ignore[no-any-return]
        return conn.execute(_translate(sql), tuple(params))  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def immediate(self) -> Iterator[None]:
        with self:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK,))
            yield

    def __enter__(self) -> PgDb:
        self._lock.acquire()
        try:
            tx = self._live().transaction()
            tx.__enter__()
        except BaseException:
            self._lock.release()
            raise
        self._tx.append(tx)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx = self._tx.pop()
        try:
            tx.__exit__(kind, exc, tb)
        finally:
            self._lock.release()

    def close(self) -> None:
        self._conn.close()


def driver() -> Any:
    """psycopg, or :class:`UsageError` saying which extra brings it."""
    try:
        import psycopg
    except ImportError:
        raise UsageError(
            "state_url needs the PostgreSQL drivers: pip install 'sre-space[postgres]'"
        ) from None
    return psycopg


def app_name(purpose: str) -> str:
    """``application_name`` of this process's connections (``pg_stat_activity`` shows it)."""
    return f"sre-space {purpose} {os.getpid()}"


def connect(url: StateUrl, purpose: str = "state", **options: Any) -> psycopg.Connection[Any]:
    """An autocommit connection; :class:`Unavailable` (exit 3) with the password left out."""
    pg = driver()
    try:
        conn: psycopg.Connection[Any] = pg.connect(
            url.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=app_name(purpose),
            **options,
        )
    except pg.Error as exc:
        raise Unavailable(f"cannot reach the state database {url.redacted}: {reason(url, exc)}") from None
    return conn


def reason(url: StateUrl, exc: BaseException) -> str:
    """A driver error's first meaningful line, without the password."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return url.hide(text)


def open_db(place: Path | StateUrl, sqlite_schema: Sequence[str] = ()) -> Db:
    """The database at ``place``: SQLite with ``sqlite_schema``, or PostgreSQL migrated."""
    if isinstance(place, StateUrl):
        from sre_space.state.migrations import migrate

        db = PgDb(place)
        migrate(db)
        return db
    return SqliteDb(place, sqlite_schema)
