"""The delivery worker: a thread of the mind that sends what the outbox owes.

Each look (every half second, and at once when the mind's incident log
wakes it) fans new events out to the sinks and makes one attempt at each
due row, the oldest first per (incident, sink). After an attempt:

- 2xx: ``sent``; never sent again.
- 429: again after ``Retry-After`` (else the backoff), honoured to the second.
- 5xx, 408, 425, no answer (refused, timed out, DNS): again after an
  exponential backoff (1 s, 2 s, 4 s ... at most 5 min) with jitter (each
  wait drawn between half and all of it), so sinks that came back are not
  hit by every sender at once.
- any other 4xx (400, 401, 403, 404, 410, 413, 422 ...): the message or the
  sink's configuration is wrong and will stay wrong: ``failed`` at once, with
  the sink's answer.
- a row a day old (``GIVE_UP_S``) is ``failed`` with its last answer.

Each sink takes at most ``rate_limit`` attempts a minute (a sliding window
in memory: after a restart the window starts empty). Sent and failed rows
count in ``sre_space_notifications_sent_total`` / ``_failed_total``.

A crash between a sink's 2xx and the row's update is the one place a message
can go twice (nothing can tell the two apart); PagerDuty folds a repeat into
the same alert by its ``dedup_key``, and a webhook receiver can by the
``Idempotency-Key`` header (the ``notification.id``). Whatever was recorded
sent is never sent again; whatever was not is sent by the next mind.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sre_space.notify.config import SinkConfig
from sre_space.notify.outbox import FAILED, PENDING, SENT, Outbox, Row
from sre_space.notify.sinks import Answer, Sink, build
from sre_space.state import Where, where

if TYPE_CHECKING:
    from sre_space.config import Settings
    from sre_space.metrics import Metrics

log = logging.getLogger(__name__)

TICK_S = 0.5
BACKOFF_BASE_S = 1.0
# A page waits at most this long after its sink is back (benchmarks/notify.py:
# with 300 s, a 60 s outage already delayed it 53 s after the recovery), and a
# sink that is down still gets a try a minute at most, well within its rate limit.
BACKOFF_CAP_S = 60.0
GIVE_UP_S = 86400.0
WINDOW_S = 60.0  # rate_limit is per minute

Say = Callable[[str, str], None]  # (incident id, line): the mind's squad terminal


class IncidentFeed(Protocol):
    """What the mind's notifier needs of its incident log (``incidents.IncidentLog``).

    A protocol, not an import: the incident log writes its notifications through
    this package's outbox, so this package never imports the incident log back.
    """

    notified: Callable[[], None] | None

    def emit(
        self, agent: str, message: str, *, incident_id: str | None = ..., kind: str = ...
    ) -> Any: ...


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """The wait before attempt ``attempts + 1``: exponential, capped, jittered."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))
    draw = (rng or random.Random()).random()
    return float(ceiling * (0.5 + 0.5 * draw))


class Notifier:
    def __init__(
        self,
        sinks: dict[str, SinkConfig],
        db: Where,
        metrics: Metrics | None = None,
        say: Say | None = None,
    ) -> None:
        self.configs = sinks
        self.sinks: dict[str, Sink] = {name: build(cfg) for name, cfg in sinks.items()}
        self._db_path = db
        self._outbox: Outbox | None = None
        self.metrics = metrics
        self._say = say
        self._sent_at: dict[str, collections.deque[float]] = {
            name: collections.deque() for name in sinks
        }
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether this mind sends: on a shared state_url only the leader does (a
        # standby's worker waits), so each row is sent by one mind, once.
        self.sending: Callable[[], bool] = lambda: True

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self._db_path)
        return self._outbox

    # --- the thread -----------------------------------------------------------------

    def start(self, stop: threading.Event) -> threading.Thread:
        self.outbox.prune(time.time())
        self._thread = threading.Thread(target=self._run, args=(stop,), name="notify", daemon=True)
        self._thread.start()
        return self._thread

    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next tick."""
        self._wake.set()

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                # Cleared before the look: a wake-up during it brings the next at once.
                self._wake.clear()
                try:
                    self.tick(time.time(), stop)
                except Exception:  # the loop must survive one bad look (a locked database)
                    log.exception("notification worker")
                self._wake.wait(TICK_S)
        finally:
            self.close()

    def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    # --- one look ---------------------------------------------------------------------

    def tick(self, now: float, stop: threading.Event | None = None) -> int:
        """Fan out what is new, make one attempt at each due row; how many attempts."""
        if not self.sending():
            return 0
        self.outbox.fan_out(self.sinks, now, GIVE_UP_S)
        attempts = 0
        for row in self.outbox.due(now):
            if stop is not None and stop.is_set():
                break
            if row.sink not in self.sinks:  # a sink taken out of the config since
                self._settle(row, FAILED, f"no sink {row.sink!r} is configured any more", now)
                continue
            if not self._within_rate(row.sink, time.time()):
                continue
            self._attempt(row)
            attempts += 1
        return attempts

    def _within_rate(self, sink: str, now: float) -> bool:
        window = self._sent_at[sink]
        while window and now - window[0] >= WINDOW_S:
            window.popleft()
        return len(window) < self.configs[sink].rate_limit

    def _attempt(self, row: Row) -> None:
        sink = self.sinks[row.sink]
        self._sent_at[row.sink].append(time.time())
        try:
            answer = sink.send(row.notification)
        except Exception as exc:  # a bug in an integration: retried, and said (redacted)
            log.error("notify %s: %s", row.sink, sink.config.redact(f"{type(exc).__name__}: {exc}"))
            answer = Answer(None, error=type(exc).__name__)
        now = time.time()
        what = f"{row.notification.event} to {row.sink} ({sink.config.where()})"
        if answer.ok:
            self._settle(row, SENT, answer.describe(), now)
            self._tell(row, f"notified {what}: {answer.describe()}", logging.INFO)
        elif not answer.retryable:
            self._settle(row, FAILED, answer.describe(), now)
            self._tell(row, f"notification of {what} refused: {answer.describe()}", logging.WARNING)
        elif now - row.created_at >= GIVE_UP_S:
            tries = row.attempts + 1
            self._settle(row, FAILED, f"gave up after {tries} attempts: {answer.describe()}", now)
            self._tell(row, f"notification of {what} given up: {answer.describe()}", logging.WARNING)
        else:
            wait = answer.retry_after_s if answer.retry_after_s is not None else backoff(row.attempts + 1)
            self.outbox.settle(row.id, PENDING, answer.describe(), now, next_at=now + wait)
            log.info("notify: %s: %s; again in %.1f s", what, answer.describe(), wait)

    def _settle(self, row: Row, state: str, answer: str, now: float) -> None:
        self.outbox.settle(row.id, state, answer, now)
        if self.metrics is not None:
            self.metrics.notification(state == SENT)

    def _tell(self, row: Row, line: str, level: int) -> None:
        log.log(level, "notify: [%s] %s", row.notification.incident_id, line)
        if self._say is not None:
            self._say(row.notification.incident_id, line)


def for_mind(settings: Settings, incidents: IncidentFeed, metrics: Metrics) -> Notifier:
    """The mind's notifier: the sinks of ``settings`` (a sink that cannot send refuses the
    start), its secrets redacted from every log record, woken by the mind's incident log, its
    deliveries said in the squad terminal."""
    from sre_space import logs
    from sre_space.notify.config import parse, ready

    sinks = ready(parse(settings.notify))
    logs.REDACTOR.watch(settings.home, [s for cfg in sinks.values() for s in cfg.secrets()])

    def say(incident_id: str, line: str) -> None:
        incidents.emit("notify", line, incident_id=incident_id or None, kind="notify")

    notifier = Notifier(sinks, where(settings), metrics, say)
    incidents.notified = notifier.wake
    return notifier
