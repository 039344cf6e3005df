"""The one internal span model every source decodes into."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class SpanKind(IntEnum):
    """OTLP's span kinds (numbering of the proto enum)."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_id: str | None
    service: str
    name: str
    start_ns: int
    end_ns: int
    kind: SpanKind = SpanKind.INTERNAL
    error: bool = False
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def exception_message(self) -> str:
        """The recorded exception (OTel semantic conventions), else the status message."""
        for ev in self.events:
            if ev.name == "exception":
                typ = str(ev.attributes.get("exception.type", ""))
                msg = str(ev.attributes.get("exception.message", ""))
                return f"{typ}: {msg}" if typ and msg else (msg or typ)
        return self.status_message

    @property
    def http_status(self) -> int | None:
        for key in ("http.response.status_code", "http.status_code"):
            value = self.attributes.get(key)
            if value is not None:
                try:
                    return int(value)
                except (TypeError, ValueError):
                    return None
        return None
