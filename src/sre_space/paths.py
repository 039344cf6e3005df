"""Every file sre-space keeps under its home directory, named in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def lab_dir(self) -> Path:
        return self.home / "lab"

    @property
    def lab_state(self) -> Path:
        """JSON written by the lab supervisor: pids, ports, control API."""
        return self.lab_dir / "lab.json"

    @property
    def control_token(self) -> Path:
        """Bearer token for the lab's control API (mode 0600)."""
        return self.lab_dir / "control.token"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def incidents_db(self) -> Path:
        return self.home / "incidents.db"

    @property
    def checkpoints_db(self) -> Path:
        return self.home / "checkpoints.db"

    @property
    def memory_dir(self) -> Path:
        return self.home / "memory"

    @property
    def mind_state(self) -> Path:
        """JSON written by a running mind: pid, receiver and API ports."""
        return self.home / "mind.json"

    @property
    def mind_token(self) -> Path:
        """Bearer token for the running mind's loopback API (mode 0600)."""
        return self.home / "mind.token"

    @property
    def otlp_token(self) -> Path:
        """Bearer token the Compose stack's Collector sends the mind's receiver (mode 0600)."""
        return self.home / "otlp.token"

    @property
    def mind_lock(self) -> Path:
        return self.home / "mind.lock"

    def ensure(self) -> Paths:
        for d in (self.home, self.lab_dir, self.logs_dir, self.memory_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        return self
