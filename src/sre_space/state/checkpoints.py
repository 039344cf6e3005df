"""The squad's LangGraph checkpointer: SQLite under the home, or PostgreSQL's official saver.

With a shared database a standby that takes the lease resumes an incident
from the checkpoint the dead leader wrote (``squad/resume.py``), and one
paused for approval waits on it. The PostgreSQL saver keeps its own tables
and migrations (``checkpoint_migrations``); its ``setup`` runs under an
advisory lock so two minds starting at once do not race on them. Its
connections come from a small pool that checks each on the way out, so a
connection closed by the server is replaced rather than failing the squad.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sre_space.config import Settings
from sre_space.errors import Unavailable
from sre_space.paths import Paths
from sre_space.state.db import CONNECT_TIMEOUT_S, app_name, connect, driver, reason
from sre_space.state.url import StateUrl

SETUP_LOCK = 0x5E5E_0002
POOL_SIZE = 4
SETUP_WAIT_S = 60.0  # another mind's setup takes a second or two; longer, it is stuck


@dataclass
class Checkpoints:
    saver: Any  # a langgraph BaseCheckpointSaver
    _close: Any

    def close(self) -> None:
        self._close()


def open_checkpoints(settings: Settings) -> Checkpoints:
    """The checkpointer of these settings (the caller closes it)."""
    if settings.state_url is None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(Paths(settings.home).checkpoints_db, check_same_thread=False)
        return Checkpoints(SqliteSaver(conn), conn.close)
    return _postgres(StateUrl.parse(settings.state_url.get_secret_value()))


def _postgres(url: StateUrl) -> Checkpoints:
    driver()  # the postgres extra, or a one-line UsageError
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool: ConnectionPool[Any] = ConnectionPool(
        url.url,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "application_name": app_name("checkpoints"),
            "connect_timeout": CONNECT_TIMEOUT_S,
        },
        check=ConnectionPool.check_connection,
        open=False,
        name="sre-space-checkpoints",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except PoolTimeout as exc:
        pool.close()
        raise Unavailable(
            f"cannot reach the state database {url.redacted}: {reason(url, exc)}"
        ) from None
    saver = PostgresSaver(pool)
    lock = connect(url, "checkpoints-setup")
    try:
        # Tried, not waited on in a statement: the saver's migrations build indexes
        # CONCURRENTLY, which wait for every open transaction, a waiting lock's included,
        # and the server cannot see that cycle (it passes through this process).
        deadline = time.monotonic() + SETUP_WAIT_S
        while not _took(lock):
            if time.monotonic() > deadline:
                pool.close()
                raise Unavailable(
                    f"the checkpoint tables of {url.redacted} stayed locked by another"
                    f" session for {SETUP_WAIT_S:.0f} s"
                )
            time.sleep(0.1)
        saver.setup()
    finally:
        lock.close()  # the session's lock goes with it
    return Checkpoints(saver, pool.close)


def _took(conn: Any) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK,)).fetchone()
    return bool(row and row[0])
