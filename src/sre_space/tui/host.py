"""The mind the cockpit may host: start it, or learn why not; stop it once.

Plain Python (no textual) so the lifecycle is easy to reason about: ``start``
blocks and is called from a worker thread; ``stop`` returns at once and stops
the mind in its own thread, so quitting never waits on the UI thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from sre_space.config import Settings
from sre_space.errors import Unavailable

log = logging.getLogger(__name__)

Mode = Literal["starting", "hosting", "observing", "readonly", "stopping", "stopped"]


class MindHost:
    def __init__(self, settings: Settings, readonly: bool) -> None:
        self.settings = settings
        self.readonly = readonly
        self.mode: Mode = "readonly" if readonly else "starting"
        self.reason = ""  # why we observe rather than host, for the user
        self.mind: Any = None
        self._lock = threading.Lock()
        self._closing = False
        self._stopper: threading.Thread | None = None

    def start(self) -> Mode:
        """Host the mind, or fall back to observing. Blocks: call it from a thread."""
        if self.readonly:
            return self.mode
        from sre_space.mind import Mind

        mind: Any = None
        reason = ""
        try:
            mind = Mind(self.settings).start()
        except Unavailable as exc:  # another mind acts on this home, or its port is taken
            reason = str(exc)
        except Exception as exc:  # hosting failed: observing still shows the log
            log.exception("could not host the mind")
            reason = f"could not host the mind: {type(exc).__name__}: {exc}"
        with self._lock:
            if mind is not None and not self._closing:
                self.mind = mind
                self.mode = "hosting"
                return self.mode
            if mind is None:
                self.reason = reason
                self.mode = "observing" if not self._closing else "stopped"
                return self.mode
        # The user quit while the mind was starting: it must not outlive the app.
        mind.stop()
        self.mode = "stopped"
        return self.mode

    def stop(self) -> bool:
        """Begin stopping a hosted mind in a thread; True if there was one to stop."""
        with self._lock:
            self._closing = True
            if self._stopper is not None:
                return True
            mind, self.mind = self.mind, None
            if mind is None:
                return False
            self.mode = "stopping"
            self._stopper = threading.Thread(
                target=self._stop, args=(mind,), name="mind-stop", daemon=False
            )
            self._stopper.start()
            return True

    def _stop(self, mind: Any) -> None:
        try:
            mind.stop()
        except Exception:
            log.exception("stopping the mind")
        self.mode = "stopped"

    @property
    def stopped(self) -> bool:
        """No hosted mind is left running (or stopping)."""
        stopper = self._stopper
        return self.mind is None and (stopper is None or not stopper.is_alive())

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a stop in progress; True once nothing is left running."""
        stopper = self._stopper
        if stopper is not None:
            stopper.join(timeout)
        return self.stopped
