"""What every part of the cockpit shares: settings, the mind it may host, its sources.

Plain Python (no textual): the app builds one and hands it to the cockpit
screen and its controllers, so none of them imports the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from sre_space.config import Settings
from sre_space.tui.feed import Feed
from sre_space.tui.host import MindHost
from sre_space.tui.traces import SpanSource


@dataclass
class CockpitContext:
    settings: Settings
    readonly: bool
    host: MindHost  # the mind this cockpit hosts, or why it observes
    feed: Feed  # the incident log, read by a worker
    span_source: SpanSource  # trace id -> spans, for the waterfall
