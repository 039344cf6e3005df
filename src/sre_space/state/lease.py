"""One acting mind: a lease row in the shared database, with an expiry, held on its own connection.

The holder renews it every third of its term; a standby takes it once it has
expired (database time, so machines' clocks do not matter), and each taking
raises the ``epoch``, a fencing number the leader writes beside every change
it applies. The lease lives and dies with its connection as an advisory lock
would: a leader whose lease connection fails (a cut, ``pg_terminate_backend``)
holds nothing from that moment, and a paused one whose term ran out finds it
taken when it wakes and checks again, before it applies anything.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from sre_space.state.db import connect
from sre_space.state.url import StateUrl

NAME = "mind"  # one lease per database: one body (or shard of bodies) per state URL


def holder_id() -> str:
    """Who holds it, as ``status`` shows it: host, pid and a nonce (a reused pid is another)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Holder:
    holder: str
    epoch: int
    expires_in_s: float  # negative: expired, free to take


class LeaseError(Exception):
    """The lease connection failed: whatever was held is held no more."""


class Lease:
    """The row ``mind_lease[name]``, spoken to on a connection of its own."""

    def __init__(self, url: StateUrl, term_s: float, *, holder: str = "", name: str = NAME) -> None:
        self.url = url
        self.term_s = term_s
        self.holder = holder or holder_id()
        self.name = name
        self.epoch = 0  # the epoch this process holds; 0: none
        self._conn: Any = connect(url, "lease")

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._conn.closed or self._conn.broken:
            raise LeaseError("the lease connection is closed")
        try:
            rows: list[Any] = self._conn.execute(sql, params).fetchall()
        except Exception as exc:  # psycopg.Error, mostly: a closed or refused connection
            raise LeaseError(self.url.hide(str(exc).strip().splitlines()[0] if str(exc) else "")) from None
        return rows

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (or it has expired): a new epoch."""
        rows = self._query(
            "INSERT INTO mind_lease(name, holder, epoch, acquired_at, renewed_at, expires_at) "
            "VALUES (%s, %s, 1, now(), now(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
            "epoch = mind_lease.epoch + 1, acquired_at = now(), renewed_at = now(), "
            "expires_at = EXCLUDED.expires_at WHERE mind_lease.expires_at < now() "
            "RETURNING epoch",
            (self.name, self.holder, self.term_s),
        )
        self.epoch = int(rows[0][0]) if rows else 0
        return bool(rows)

    def renew(self) -> bool:
        """Extend the term, only if this epoch still holds it unexpired."""
        rows = self._query(
            "UPDATE mind_lease SET renewed_at = now(), expires_at = now() + make_interval(secs => %s) "
            "WHERE name = %s AND holder = %s AND epoch = %s AND expires_at > now() RETURNING epoch",
            (self.term_s, self.name, self.holder, self.epoch),
        )
        if not rows:
            self.epoch = 0
        return bool(rows)

    def check(self) -> bool:
        """Whether this epoch holds it now, asked of the database (before every apply)."""
        if not self.epoch:
            return False
        rows = self._query(
            "SELECT 1 FROM mind_lease WHERE name = %s AND holder = %s AND epoch = %s "
            "AND expires_at > now()",
            (self.name, self.holder, self.epoch),
        )
        return bool(rows)

    def current(self) -> Holder | None:
        """Who holds it (or held it last)."""
        rows = self._query(
            "SELECT holder, epoch, EXTRACT(EPOCH FROM expires_at - now()) FROM mind_lease "
            "WHERE name = %s",
            (self.name,),
        )
        if not rows:
            return None
        return Holder(str(rows[0][0]), int(rows[0][1]), round(float(rows[0][2]), 2))

    def release(self) -> None:
        """Give it up now (a clean stop): a standby need not wait for the term to end."""
        if self.epoch:
            with contextlib.suppress(LeaseError):  # else the term ends by itself
                self._query(
                    "UPDATE mind_lease SET expires_at = now() - interval '1 millisecond' "
                    "WHERE name = %s AND holder = %s AND epoch = %s RETURNING epoch",
                    (self.name, self.holder, self.epoch),
                )
        self.epoch = 0

    def close(self) -> None:
        self._conn.close()
