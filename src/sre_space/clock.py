"""The time the mind judges by: the wall clock live, the recording's time in a replay.

Scout's windows, the incident tracker's confirmation and the Brain's second
look all read or wait on one :class:`Clock`. Live, that is :data:`SYSTEM`;
``sre-space replay`` passes a clock whose waits play the next stretch of the
recording into the intake (:mod:`sre_space.replay`), so windows stay correct
however fast the recording is played.

Scout and the squad run on two threads. ``hold``/``release`` bracket work
Scout hands to the squad: live they do nothing; a replay's clock stands still
while the squad works on what it was handed (see :class:`sre_space.replay_clock.ReplayClock`).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch, as the mind should see them."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Let ``seconds`` pass unless ``stop`` is set first; True when it is set."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...

    def hold(self) -> None:
        """Work was handed to the squad: it must see the time it was handed at."""
        ...

    def release(self) -> None:
        """The squad is done with one piece of work it was handed."""
        ...


class SystemClock:
    """The wall clock."""

    def time(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(seconds)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def hold(self) -> None:
        return None  # live, time does not wait for anyone

    def release(self) -> None:
        return None


SYSTEM: Clock = SystemClock()
