"""One integration per sink kind behind one interface: ``takes`` and ``send``.

``send`` makes one attempt and returns the sink's :class:`Answer` (status code
and a short body, redacted); it never retries and never raises for what the
network or the sink did: the outbox's worker decides what to do next.

- Slack: an incoming webhook, through ``slack_sdk``'s ``WebhookClient`` (its
  retry handlers off: the outbox retries). Incoming webhooks cannot edit a
  message or reply in a thread (that takes a bot token and ``chat.update``),
  so each status change of interest is a message of its own, naming the
  incident in its header.
- PagerDuty: Events API v2 (``trigger`` / ``acknowledge`` / ``resolve``,
  ``dedup_key`` = the incident id), a small client on ``httpx``. PagerDuty's
  own Python client (``pagerduty``) retries inside the call: 429 without
  limit, with its own sleeps and no regard for ``Retry-After``, and 5xx
  several times; the outbox would lose count of what was sent, and the
  worker's thread would sleep where it should serve other sinks.
- webhook: the incident JSON plus ``event`` and ``notification`` {id, by,
  why, ts}, HMAC-SHA256 signed as the webhook target signs
  (``X-Sre-Space-Signature: sha256=<hex>``) when ``secret_env`` is set. For
  Microsoft Teams workflows, Opsgenie, in-house tools.
- apprise (``pip install 'sre-space[apprise]'``): a title and a plain body
  to any apprise URL. Apprise says only whether it worked, not what the
  service answered, so a failure is retried like a network error, and it
  cannot acknowledge or resolve anything.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from sre_space.actuators.webhook import sign
from sre_space.notify import message
from sre_space.notify.config import SinkConfig
from sre_space.notify.events import Notification
from sre_space.safe_text import printable

BODY_LIMIT = 200  # of a sink's answer, kept in the outbox and shown by `notify test`
MAX_RETRY_AFTER_S = 3600.0
TRIGGERS_SEEN = "trigger"

# slack_sdk logs the webhook URL at DEBUG on its logger; this one never writes.
_QUIET = logging.getLogger("sre_space.notify.quiet")
_QUIET.setLevel(logging.CRITICAL + 1)
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Answer:
    """What the sink said to one attempt (``status`` None: no HTTP answer at all)."""

    status: int | None
    body: str = ""
    retry_after_s: float | None = None
    error: str = ""  # the network's or the library's error, redacted

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """5xx, 408, 425, 429 and no answer at all may succeed later; any other refusal will not."""
        return self.status is None or self.status >= 500 or self.status in (408, 425, 429)

    def describe(self) -> str:
        if self.status is None:
            return f"unreachable: {self.error}" if self.error else "unreachable"
        return f"{self.status} {self.body}".rstrip()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "error": self.error or None}


class Sink(Protocol):
    config: SinkConfig

    def takes(self, n: Notification, earlier: set[str]) -> bool:
        """Whether this sink wants the change (``earlier``: the events it already has for it)."""
        ...

    def send(self, n: Notification) -> Answer:
        ...


class _Base:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def takes(self, n: Notification, earlier: set[str]) -> bool:
        return self.config.wants(n.event, message.severity(n.incident))

    def send(self, n: Notification) -> Answer:
        raise NotImplementedError

    def _answer(self, status: int, body: str, headers: Any) -> Answer:
        return Answer(
            status,
            printable(self.config.redact(body.strip()), BODY_LIMIT),
            retry_after(headers.get("Retry-After") if headers is not None else None),
        )

    def _failed(self, exc: BaseException) -> Answer:
        text = self.config.redact(f"{type(exc).__name__}: {exc}")
        return Answer(None, error=printable(text, BODY_LIMIT))


class SlackSink(_Base):
    def send(self, n: Notification) -> Answer:
        from slack_sdk.webhook import WebhookClient

        client = WebhookClient(
            self.config.url,
            timeout=max(1, round(self.config.timeout_s)),
            logger=_QUIET,
            retry_handlers=[],
        )
        payload = message.slack_payload(n)
        try:
            resp = client.send(text=payload["text"], blocks=payload["blocks"])
        except Exception as exc:  # urllib's errors, and slack_sdk's own
            return self._failed(exc)
        return self._answer(resp.status_code, str(resp.body or ""), resp.headers)


class PagerDutySink(_Base):
    def takes(self, n: Notification, earlier: set[str]) -> bool:
        """Triggers as ``statuses`` say; acknowledge and resolve follow a trigger, whatever they say."""
        action = message.pagerduty_action(n.event)
        if action is None:
            return False
        if action == TRIGGERS_SEEN:
            return super().takes(n, earlier)
        return any(message.pagerduty_action(e) == TRIGGERS_SEEN for e in earlier)

    def send(self, n: Notification, action: str | None = None) -> Answer:
        action = action or message.pagerduty_action(n.event) or "trigger"
        event = message.pagerduty_event(n, self.config.routing_key, action)
        try:
            with httpx.Client(timeout=self.config.timeout_s, follow_redirects=False) as client:
                resp = client.post(self.config.url, json=event, headers={"User-Agent": "sre-space"})
        except httpx.HTTPError as exc:
            return self._failed(exc)
        return self._answer(resp.status_code, resp.text, resp.headers)


class WebhookSink(_Base):
    def send(self, n: Notification) -> Answer:
        body = json.dumps(message.webhook_document(n), sort_keys=True, default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sre-space",
            "Idempotency-Key": n.key,  # the same on every retry of this notification
        }
        if self.config.secret:
            headers[self.config.header] = sign(self.config.secret.encode(), body)
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.config.timeout_s) as resp:
                return self._answer(resp.status, resp.read(4096).decode(errors="replace"), resp.headers)
        except urllib.error.HTTPError as exc:  # any answer but 2xx, a redirect included
            text = exc.read(4096).decode(errors="replace") if exc.fp is not None else ""
            return self._answer(exc.code, text, exc.headers)
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else exc
            return self._failed(reason)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timed out, garbled
            return self._failed(exc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it came (a 3xx, not retried): urllib would turn the POST
    into a GET without its body, and the signed document would never arrive."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class AppriseSink(_Base):
    def send(self, n: Notification) -> Answer:
        try:
            with warnings.catch_warnings():  # its own imports' deprecations are not ours to show
                warnings.simplefilter("ignore", DeprecationWarning)
                import apprise
        except ImportError:
            return Answer(None, error="apprise is not installed: pip install 'sre-space[apprise]'")
        title, body = message.plain(n)
        notifier = apprise.Apprise()
        try:
            with warnings.catch_warnings():  # its plugins load here, with their imports
                warnings.simplefilter("ignore", DeprecationWarning)
                known = notifier.add(self.config.url)
            if not known:
                return Answer(400, "apprise does not know this URL")
            done = notifier.notify(title=title, body=body)
        except Exception as exc:  # a plugin's own failure
            return self._failed(exc)
        return Answer(200, "ok") if done else Answer(None, error="apprise reported a failure")


def build(config: SinkConfig) -> Sink:
    kinds: dict[str, type[_Base]] = {
        "slack": SlackSink,
        "pagerduty": PagerDutySink,
        "webhook": WebhookSink,
        "apprise": AppriseSink,
    }
    sink: Sink = kinds[config.kind](config)
    return sink


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
