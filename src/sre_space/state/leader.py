"""Which mind acts: the home's lock file (SQLite), or the shared database's lease (PostgreSQL).

The mind asks the same five things of either: ``acquire`` when it starts,
``wait_leading`` before Scout and the squad begin (a standby waits here,
its receivers and detectors running), ``guard`` around the Fixer's hands (the
lease is checked in the database right before every ``apply`` and ``undo``),
``status`` for ``sre-space status``, and ``release``.

A leader that loses the lease (its connection fails, a renewal finds it
taken or expired) stops acting at once: the guard refuses every change from
then on, raising :class:`LeaseLost` (a ``BaseException``, so no ``except
Exception`` on the way turns it into a failed remediation written over the
new leader's work), and ``on_lost`` tells the mind, which stops. Run it
under a supervisor: it comes back as a standby.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sre_space.config import Settings
from sre_space.state.db import open_db
from sre_space.state.lease import Lease, LeaseError
from sre_space.state.url import StateUrl

log = logging.getLogger(__name__)

LEADER, STANDBY, SOLE, STOPPED = "leader", "standby", "sole", "stopped"


class LeaseLost(BaseException):
    """This mind no longer holds the lease: it must not change anything."""


class Lock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


class Hands(Protocol):
    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]: ...

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None: ...


class Exclusive:
    """SQLite: the home's lock file decides; whoever has it is the only mind (no standby)."""

    def __init__(self, lock: Lock) -> None:
        self._lock = lock

    def acquire(self) -> None:
        self._lock.acquire()  # Unavailable when another mind acts on this home

    def release(self) -> None:
        self._lock.release()

    def wait_leading(self, stop: threading.Event) -> bool:
        return not stop.is_set()

    def leading(self) -> bool:
        return True

    def guard(self, hands: Any) -> Any:
        return hands

    def when_leading(self, run: Callable[[threading.Event], Any]) -> Callable[[threading.Event], Any]:
        return run

    def status(self) -> dict[str, Any]:
        return {"role": SOLE}


class Leadership:
    """PostgreSQL: the lease, taken and renewed on a thread of its own."""

    def __init__(
        self,
        url: StateUrl,
        term_s: float,
        on_lost: Callable[[str], None] | None = None,
        home_lock: Lock | None = None,
    ) -> None:
        self.home_lock = home_lock  # the home's files are one mind's, whatever the database
        self.url = url
        self.term_s = term_s
        self.on_lost = on_lost
        self._lease: Lease | None = None
        self._leading = threading.Event()
        self._valid_until = 0.0  # monotonic: the term as this process counts it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = ""  # why the lease was lost, once it was
        self.taken_at = 0.0  # wall time this mind became the leader

    # --- the mind's side -----------------------------------------------------------

    def acquire(self) -> None:
        """Connect (Unavailable if the database does not answer) and start contending."""
        if self.home_lock is not None:
            self.home_lock.acquire()
        try:
            open_db(self.url).close()  # the schema, migrated, before the lease's table is used
            self._lease = Lease(self.url, self.term_s)
        except BaseException:
            if self.home_lock is not None:
                self.home_lock.release()
            raise
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.term_s)
        self._leading.clear()
        if self._lease is not None:
            self._lease.release()
            self._lease.close()
        if self.home_lock is not None:
            self.home_lock.release()

    def wait_leading(self, stop: threading.Event) -> bool:
        """Block until this mind leads (True) or ``stop`` is set / the lease was lost (False)."""
        while not stop.is_set() and not self._stop.is_set():
            if self._leading.wait(0.2):
                return True
        return False

    def leading(self) -> bool:
        """This process's own view: holding, and within the term since the last renewal."""
        return self._leading.is_set() and time.monotonic() < self._valid_until

    def check(self) -> bool:
        """Before a change: leading, and the database agrees this epoch holds it now."""
        if not self.leading() or self._lease is None:
            return False
        try:
            return self._lease.check()
        except LeaseError as exc:
            self._lose(f"the lease connection failed: {exc}")
            return False

    def guard(self, hands: Any) -> Any:
        return Guarded(hands, self)

    def when_leading(self, run: Callable[[threading.Event], Any]) -> Callable[[threading.Event], Any]:
        """``run(stop)`` once this mind leads (a loop that acts: the half-open probes)."""

        def leading_then(stop: threading.Event) -> Any:
            return run(stop) if self.wait_leading(stop) else None

        return leading_then

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"role": LEADER if self.leading() else STANDBY}
        if self.lost:
            doc = {"role": STOPPED, "lost": self.lost}
        lease = self._lease
        if lease is not None:
            doc.update(holder=lease.holder, epoch=lease.epoch or None, term_s=self.term_s)
            try:
                current = lease.current()
            except LeaseError as exc:
                current, doc["error"] = None, str(exc)
            if current is not None:
                doc["leader"] = {
                    "holder": current.holder,
                    "epoch": current.epoch,
                    "expires_in_s": current.expires_in_s,
                }
        return doc

    # --- the lease thread --------------------------------------------------------------

    def _run(self) -> None:
        lease = self._lease
        assert lease is not None
        every = self.term_s / 3
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self._leading.is_set():
                    if not lease.renew():
                        self._lose("the lease was taken or ran out before it was renewed")
                        return
                    self._valid_until = started + self.term_s
                elif lease.try_acquire():
                    self._valid_until = started + self.term_s
                    self.taken_at = time.time()
                    self._leading.set()
                    log.info("took the lease (epoch %s)", lease.epoch)
                    continue  # renew on schedule from here
            except LeaseError as exc:
                if self._leading.is_set():
                    self._lose(f"the lease connection failed: {exc}")
                    return
                log.warning("lease: %s", exc)  # a standby: try again on a new connection
                self._reconnect()
            # A standby looks at least every second: it takes over within a second of expiry.
            self._stop.wait(every if self._leading.is_set() else min(1.0, every))

    def _reconnect(self) -> None:
        try:
            assert self._lease is not None
            self._lease.close()
            self._lease = Lease(self.url, self.term_s, holder=self._lease.holder)
        except Exception as exc:
            log.warning("lease: %s", exc)

    def _lose(self, why: str) -> None:
        if self.lost:
            return
        self.lost = why
        self._leading.clear()
        self._stop.set()
        log.warning("lost the lease: %s", why)
        if self.on_lost is not None:
            self.on_lost(why)


class Guarded:
    """The Fixer's hands, each change made only while the lease is held (checked just before)."""

    def __init__(self, hands: Hands, leadership: Leadership) -> None:
        self._hands = hands
        self._leadership = leadership

    def __getattr__(self, name: str) -> Any:  # config() and the rest, read-only, pass through
        return getattr(self._hands, name)

    def _fence(self, what: str) -> int:
        if not self._leadership.check():
            if self._leadership.taken_at:  # it led, and no longer does: it stops
                self._leadership._lose(self._leadership.lost or f"not the leader at {what}")
            raise LeaseLost(f"{what} refused: this mind no longer holds the lease")
        lease = self._leadership._lease
        return lease.epoch if lease is not None else 0

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        epoch = self._fence(f"{action} {service}")
        result = self._hands.apply(action, service, params)
        return {**result, "lease_epoch": epoch}

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        self._fence(f"undo {action} {service}")
        self._hands.undo(action, service, applied)


def for_mind(settings: Settings, lock: Lock, on_lost: Callable[[str], None]) -> Exclusive | Leadership:
    """The lock file on SQLite; the lease with a ``state_url``."""
    if settings.state_url is None:
        return Exclusive(lock)
    return Leadership(
        StateUrl.parse(settings.state_url.get_secret_value()), settings.lease_term_s, on_lost, lock
    )
