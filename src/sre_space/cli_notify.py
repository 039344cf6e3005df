"""`sre-space notify`: the sinks in config.toml and the outbox that feeds them.

``notify test SINK`` sends a test message now, bypassing the outbox, and
prints the sink's answer: exit 0 on 2xx, 1 when the sink refused it, 2 for a
sink that is not configured (or cannot be built: a variable not set), 3 when
it could not be reached. ``notify list`` shows the sinks (kind and host,
never a URL or key) and the outbox's pending, sent and failed counts.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Annotated, Any

import typer

from sre_space import logs, state
from sre_space.cli_common import JsonOpt, out, say
from sre_space.config import load
from sre_space.errors import CheckFailed, Unavailable, UsageError
from sre_space.localapi import mind_port
from sre_space.notify.config import SinkConfig, parse
from sre_space.notify.events import TEST_EVENT, Notification
from sre_space.notify.outbox import STATES, Outbox
from sre_space.paths import Paths

notify_app = typer.Typer(
    help="Notification sinks (notify.NAME tables in config.toml): test one, list them and the outbox.",
    no_args_is_help=True,
)


def _sinks() -> tuple[dict[str, SinkConfig], Paths]:
    settings = load()
    sinks = parse(settings.notify)
    logs.REDACTOR.watch(settings.home, [s for cfg in sinks.values() for s in cfg.secrets()])
    return sinks, Paths(settings.home)


def _test_notification() -> Notification:
    incident: dict[str, Any] = {
        "id": f"SRE-SPACE-TEST-{uuid.uuid4().hex[:8]}",
        "status": "escalated",
        "root_cause": {"service": "sre-space", "operation": "notify test"},
        "remediation": {},
        "detected_at": time.time(),
    }
    return Notification(incident["id"], TEST_EVENT, incident, why="a test: nothing is wrong")


@notify_app.command("test")
def test(
    sink: Annotated[str, typer.Argument(help="The sink's NAME, as in the notify.NAME table.")],
    json_out: JsonOpt = False,
) -> None:
    """Send a test message to one sink now (not through the outbox) and show its answer."""
    from sre_space.notify.sinks import PagerDutySink, build

    sinks, _ = _sinks()
    config = sinks.get(sink)
    if config is None:
        known = ", ".join(sorted(sinks)) or "none"
        raise UsageError(f"no sink {sink!r} in config.toml (configured: {known})")
    if config.problem:
        raise UsageError(f"notify.{sink}: {config.problem}")
    integration = build(config)
    n = _test_notification()
    answer = integration.send(n)
    doc: dict[str, Any] = {"sink": sink, "kind": config.kind, "where": config.where(), **answer.to_json()}
    if isinstance(integration, PagerDutySink) and answer.ok:
        # The test alert is resolved again at once: nobody is left paged by a test.
        closed = integration.send(n, action="resolve")
        doc["resolve"] = closed.to_json()
    if json_out:
        out(doc)
    else:
        say(f"{sink}: {config.where()} answered {answer.describe()}")
    if answer.ok:
        return
    if answer.status is None:
        raise Unavailable(f"notify.{sink}: {config.where()} {answer.describe()}")
    raise CheckFailed(f"notify.{sink}: {config.where()} refused the test message: {answer.describe()}")


@notify_app.command("list")
def list_sinks(json_out: JsonOpt = False) -> None:
    """The sinks (kind and host, never a secret) and the outbox: pending, sent, failed."""
    sinks, paths = _sinks()
    counts: dict[str, dict[str, int]] = {}
    recent: list[dict[str, Any]] = []
    place = state.where(load())
    if state.exists(place):
        try:
            outbox = Outbox(place)
            try:
                counts, recent = outbox.counts(), outbox.rows(10)
            finally:
                outbox.close()
        except sqlite3.Error as exc:  # locked past its timeout, unreadable
            raise Unavailable(f"cannot read the outbox in {place}: {exc}") from None
    empty = dict.fromkeys(STATES, 0)
    listed = [{**cfg.public(), "outbox": counts.get(name, empty)} for name, cfg in sinks.items()]
    # Rows for a sink no longer configured still count (the worker fails them).
    gone = [{"name": name, "kind": None, "outbox": c} for name, c in counts.items() if name not in sinks]
    total = {state: sum(c.get(state, 0) for c in counts.values()) for state in STATES}
    if json_out:
        out({"sinks": listed + gone, "outbox": total, "recent": recent})
        return
    if not listed and not gone:
        say("no sinks: add [notify.NAME] tables to config.toml (see the README's Notifications)")
    for item in listed + gone:
        o = item["outbox"]
        where = item.get("where") or "not configured any more"
        wants = ",".join(item.get("statuses") or [])
        problem = f"  PROBLEM: {item['problem']}" if item.get("problem") else ""
        say(
            f"{item['name']:<16} {where:<28} {wants:<40} "
            f"pending {o['pending']}, sent {o['sent']}, failed {o['failed']}{problem}"
        )
    say(f"outbox: pending {total['pending']}, sent {total['sent']}, failed {total['failed']}")
    if total["pending"] and mind_port(paths) is None:
        say("no mind runs on this home: what is pending is sent when one starts (sre-space run)")
