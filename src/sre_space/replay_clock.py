"""The mind's clock in a replay (:class:`ReplayClock`): waiting plays the recording on.

Each time the mind waits, the clock plays the next stretch of the recorded
spans into the mind's intake (under ``SOURCE``) and moves the mind's time on by
as much, paced to ``speed`` recorded seconds per second when one is given;
``TAIL_S`` is played on after the last span. Moved out of
:mod:`sre_space.replay` (which hosts the mind that uses it), which re-exports
these names.
"""

from __future__ import annotations

import bisect
import threading
import time

from sre_space.mind import CONFIRM_S
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import Span
from sre_space.telemetry.otlp import Decoded

SOURCE = "replay"  # the intake counts the replayed spans under this source
# Played on after the last span, so a fault at the very end can be confirmed,
# and not so long that the recording's end reads as traffic that vanished.
TAIL_S = CONFIRM_S + 1.0


class ReplayClock:
    """The mind's clock in a replay: waiting plays the recording on (see the module docstring).

    Two threads use it. Scout's loop plays the recording on (``wait``); the
    squad only ever waits for played time (the Brain's second look, ``sleep``).
    While the squad works on an incident Scout handed it (``hold`` .. ``release``),
    Scout's ``wait`` blocks: the squad judges the recording as it stood when the
    incident opened, at any speed, so a replay gives the same incidents every
    time. While the squad sleeps, Scout plays on (and keeps judging) until the
    squad's time has come, then stands still again. With nothing handed over
    (one thread, as in a test), ``sleep`` plays on by itself.
    """

    def __init__(self, spans: list[Span], start: float, speed: float | None = None) -> None:
        self._spans = spans
        self._next = 0
        self._now = start
        self._start = start
        self._end = (spans[-1].end_ns / 1e9 if spans else start) + TAIL_S
        self.speed = speed
        self._wall0 = time.monotonic()
        self._intake: Intake | None = None
        self.played = 0
        # (wall time, played time) after each step: what the mind's time was when it spoke
        self._marks: list[tuple[float, float]] = [(time.time(), start)]
        self.done = threading.Event()  # the whole recording and its tail were played
        self._turn = threading.Condition()  # who may play on: see the class docstring
        self._held = 0  # incidents handed to the squad and not finished yet
        self._until: float | None = None  # the squad sleeps until this played time
        self._over = False  # Scout's loop stopped waiting: nobody plays on any more

    def attach(self, intake: Intake) -> None:
        self._intake = intake

    def time(self) -> float:
        return self._now

    def hold(self) -> None:
        with self._turn:
            self._held += 1

    def release(self) -> None:
        with self._turn:
            self._held = max(0, self._held - 1)
            self._turn.notify_all()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        with self._turn:
            while self._held and self._until is None and not self._finished(stop):
                self._turn.wait(0.2)  # the squad works on the recording as it stands
            if self._finished(stop):
                self._over = True  # played out (or stopped): the mind's loop ends
                self._turn.notify_all()
                return True
        self._advance(seconds)
        return stop.is_set()

    def _finished(self, stop: threading.Event) -> bool:
        return stop.is_set() or self.done.is_set()

    def sleep(self, seconds: float) -> None:
        with self._turn:
            if self._held:
                self._until = self._now + seconds
                self._turn.notify_all()
                while self._until is not None and not (self.done.is_set() or self._over):
                    self._turn.wait(0.2)
                self._until = None
                return
        self._advance(seconds)

    def _advance(self, seconds: float) -> None:
        target = self._now + seconds
        if self.speed:
            due = self._wall0 + (target - self._start) / self.speed - time.monotonic()
            if due > 0:
                time.sleep(due)
        limit = int(target * 1e9)
        first = self._next
        while self._next < len(self._spans) and self._spans[self._next].end_ns <= limit:
            self._next += 1
        self._now = target
        batch = self._spans[first : self._next]
        if batch and self._intake is not None:
            self._intake.put(Decoded(spans=batch), SOURCE)
            self._intake.flush(timeout=60.0)  # judged only once Scout has seen them
            self.played += len(batch)
        self._marks.append((time.time(), target))
        with self._turn:
            if self._next >= len(self._spans) and target >= self._end:
                self.done.set()
            if self._until is not None and (target >= self._until or self.done.is_set()):
                self._until = None  # the squad's time has come: it goes on, Scout waits
            self._turn.notify_all()

    def played_at(self, wall: float) -> float:
        """The mind's time at wall-clock ``wall`` (when an event was written, say)."""
        i = bisect.bisect_right(self._marks, (wall, float("inf"))) - 1
        return self._marks[max(0, i)][1]
