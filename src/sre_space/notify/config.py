"""``[notify.NAME]`` tables from config.toml, checked, with their secrets resolved.

A sink::

    [notify.oncall]
    kind = "pagerduty"                       # slack | pagerduty | webhook | apprise
    routing_key_env = "PD_ROUTING_KEY"       # or routing_key = "..." (kept in the file)
    # url = "http://127.0.0.1:9000/v2/enqueue"  # the Events API v2 endpoint, for tests
    statuses = ["escalated", "mitigated", "resolved", "acknowledged"]
    severities = ["critical", "error"]      # optional: only incidents this severe
    rate_limit = 20                          # messages per minute

``url`` / ``url_env`` for slack, webhook and apprise; ``secret_env`` (the
HMAC key) and ``header`` for webhook. A value given as ``*_env`` is read from
that environment variable when the sink is built. Every URL of a slack,
webhook or apprise sink is a secret (they carry their token in the path), as
are routing keys and HMAC secrets: :meth:`SinkConfig.where` names a sink by
kind and host only, and :meth:`SinkConfig.redact` takes the secrets out of
any text (a sink's answer, an exception) before it is shown or stored.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from sre_space.errors import UsageError
from sre_space.notify.events import ACKNOWLEDGED, NOTE
from sre_space.vocabulary import ESCALATED, MITIGATED, RESOLVED, SEVERITIES, STATUSES

KINDS = ("slack", "pagerduty", "webhook", "apprise")
# What a sink may ask for: a status the incident moved to, a person's ack, a note.
EVENTS = (*STATUSES, ACKNOWLEDGED, NOTE)
DEFAULT_STATUSES = (ESCALATED, MITIGATED, RESOLVED, ACKNOWLEDGED)
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_RATE_PER_MIN = 20.0  # Slack's incoming webhooks take about one a second
DEFAULT_TIMEOUT_S = 10.0
SIGNATURE_HEADER = "X-Sre-Space-Signature"  # the webhook target's header, the same scheme
REDACTED = "<redacted>"
_SHORTEST_SECRET = 6  # a shorter piece would redact ordinary words

_COMMON = {"kind", "statuses", "severities", "rate_limit", "timeout_s"}
_KEYS = {
    "slack": _COMMON | {"url", "url_env"},
    "webhook": _COMMON | {"url", "url_env", "secret_env", "header"},
    "apprise": _COMMON | {"url", "url_env"},
    "pagerduty": _COMMON | {"url", "routing_key", "routing_key_env"},
}


@dataclass(frozen=True)
class SinkConfig:
    name: str
    kind: str
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    severities: tuple[str, ...] | None = None
    rate_limit: float = DEFAULT_RATE_PER_MIN
    timeout_s: float = DEFAULT_TIMEOUT_S
    url: str = ""
    routing_key: str = ""
    secret: str = ""  # the webhook's HMAC key
    header: str = SIGNATURE_HEADER
    problem: str = ""  # why it cannot send (a variable not set); "" when ready
    _secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never the URL or a key, whatever prints it
        return f"SinkConfig({self.name!r}, {self.where()})"

    def where(self) -> str:
        """The sink for people and logs: its kind and host, nothing more."""
        host = urllib.parse.urlsplit(self.url).hostname if "://" in self.url else None
        return f"{self.kind} ({host})" if host else self.kind

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def wants(self, event: str, severity: str) -> bool:
        """Whether this sink takes ``event`` for an incident of ``severity``."""
        return event in self.statuses and (self.severities is None or severity in self.severities)

    def public(self) -> dict[str, Any]:
        """What ``notify list`` shows: never a secret."""
        return {
            "name": self.name,
            "kind": self.kind,
            "where": self.where(),
            "statuses": list(self.statuses),
            "severities": list(self.severities) if self.severities is not None else None,
            "rate_limit": self.rate_limit,
            "problem": self.problem or None,
        }


def parse(tables: dict[str, Any]) -> dict[str, SinkConfig]:
    """Every ``[notify.NAME]`` table as a :class:`SinkConfig`; :class:`UsageError` if one is malformed.

    A ``*_env`` variable that is not set does not raise: the sink's ``problem`` says so.
    """
    return {str(name): _one(str(name), table) for name, table in (tables or {}).items()}


def ready(sinks: dict[str, SinkConfig]) -> dict[str, SinkConfig]:
    """The sinks, or :class:`UsageError` naming the first that cannot send (the mind starts on it)."""
    for sink in sinks.values():
        if sink.problem:
            raise UsageError(f"notify.{sink.name}: {sink.problem}")
    return sinks


def _one(name: str, table: Any) -> SinkConfig:
    where = f"notify.{name}"
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table with a kind, e.g. kind = \"slack\"")
    kind = table.get("kind")
    if kind not in KINDS:
        raise UsageError(f"{where}: kind must be one of {', '.join(KINDS)}")
    unknown = sorted(set(table) - _KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_KEYS[kind]))
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (a {kind} sink takes {allowed})")
    statuses = _words(where, "statuses", table.get("statuses", DEFAULT_STATUSES), EVENTS)
    severities = table.get("severities")
    if severities is not None:
        severities = _words(where, "severities", severities, SEVERITIES)
    rate = _positive(where, "rate_limit", table.get("rate_limit", DEFAULT_RATE_PER_MIN))
    timeout = _positive(where, "timeout_s", table.get("timeout_s", DEFAULT_TIMEOUT_S))
    problems: list[str] = []
    secrets: list[str] = []
    routing_key = secret = ""
    if kind == "pagerduty":
        url = str(table.get("url") or PAGERDUTY_URL)  # a public endpoint, not a secret
        routing_key = _value(table, "routing_key", problems)
        secrets.append(routing_key)
    else:
        url = _value(table, "url", problems)
        secrets += [url, *_url_parts(url)]
    if kind == "webhook" and table.get("secret_env"):
        secret = _env(str(table["secret_env"]), "secret_env", problems)
        secrets.append(secret)
    if url and kind != "apprise" and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"{where}: url must be an http(s) URL")
    return SinkConfig(
        name=name,
        kind=kind,
        statuses=statuses,
        severities=severities,
        rate_limit=rate,
        timeout_s=timeout,
        url=url,
        routing_key=routing_key,
        secret=secret,
        header=str(table.get("header") or SIGNATURE_HEADER),
        problem="; ".join(problems),
        _secrets=tuple(sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)),
    )


def _value(table: dict[str, Any], key: str, problems: list[str]) -> str:
    """``key`` given in the file, or read from the variable ``key_env`` names."""
    if table.get(key):
        return str(table[key])
    if table.get(f"{key}_env"):
        return _env(str(table[f"{key}_env"]), f"{key}_env", problems)
    problems.append(f"give {key} or {key}_env")
    return ""


def _env(variable: str, key: str, problems: list[str]) -> str:
    value = os.environ.get(variable, "")
    if not value:
        problems.append(f"{key} names {variable}, which is not set")
    return value


def _url_parts(url: str) -> list[str]:
    """A URL's path and query: a message may quote them without the host (Slack's token)."""
    parts = urllib.parse.urlsplit(url) if url else None
    if parts is None:
        return []
    return [p for p in (parts.path.strip("/"), parts.query, parts.password or "") if p]


def _words(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of words")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise UsageError(f"{where}: unknown {key} {', '.join(bad)} (use {', '.join(allowed)})")
    return tuple(value)


def _positive(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise UsageError(f"{where}: {key} must be a number above 0")
    return float(value)
