"""What every target's driver shares: the ``Target`` it acts for, its protocol, its error.

A driver (actuators/command.py, kubernetes.py, webhook.py, lab.py) carries the
Fixer's actions out on one kind of platform, for one declared ``Target``.
actuators/targets.py reads the declarations and picks the driver; the drivers
import only this module, so nothing imports its way back to the picker.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sre_space.errors import Unavailable


class ActionFailed(Unavailable):
    """The target's platform did not carry the action out; the message says what it answered."""


class Driver(Protocol):
    kind: str

    def config(self, service: str) -> dict[str, Any]: ...

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]: ...

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None: ...

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Target:
    pattern: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    knobs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    actions: Mapping[str, list[str]] = field(default_factory=dict)
    undo: Mapping[str, list[str]] = field(default_factory=dict)
    timeout_s: float = 60.0
    line: int = 0

    def matches(self, service: str) -> bool:
        return fnmatch.fnmatchcase(service, self.pattern)

    def key_map(self, form: str) -> dict[str, str]:
        """Knob -> name, for knobs declared in this form (``env``, ``key``...)."""
        return {knob: spec[form] for knob, spec in self.knobs.items() if form in spec}
