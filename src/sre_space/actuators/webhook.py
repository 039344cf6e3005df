"""Webhook targets: the action as a JSON document POSTed to a URL.

The way Rundeck, AWX or StackStorm jobs are started. The document::

    {"id": "...", "action": "restart", "service": "checkout",
     "params": {"batch": 1, "replicas": 2}, "undo": false, "sent_at": 1764540000.0}

An undo POSTs the same action with ``"undo": true`` and what the first answer
returned under ``applied``. With ``secret_env`` naming an environment variable,
each request carries ``X-Sre-Space-Signature: sha256=<hex>``, the HMAC-SHA256
of the exact body under that secret (the receiver recomputes and compares).
A 2xx answer is success; a JSON object in it is kept (``previous`` for undo).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from sre_space.actuators.driver import ActionFailed, Target

SIGNATURE_HEADER = "X-Sre-Space-Signature"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookDriver:
    kind = "webhook"

    def __init__(self, target: Target) -> None:
        self.target = target
        self.url = str(target.options["url"])
        self.header = str(target.options.get("header") or SIGNATURE_HEADER)
        self.secret_env = target.options.get("secret_env")

    def _secret(self) -> bytes | None:
        if not self.secret_env:
            return None
        value = os.environ.get(str(self.secret_env))
        if not value:
            raise ActionFailed(f"the webhook's secret variable {self.secret_env} is not set")
        return value.encode()

    def _post(self, doc: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(doc, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "sre-space"}
        secret = self._secret()
        if secret is not None:
            headers[self.header] = sign(secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.target.timeout_s) as answer:
                text = answer.read(1 << 20)
        except urllib.error.HTTPError as exc:
            raise ActionFailed(f"the webhook answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ActionFailed(f"the webhook could not be reached: {reason}") from None
        try:
            found = json.loads(text) if text.strip() else {}
        except ValueError:
            found = {}
        return found if isinstance(found, dict) else {}

    def _document(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "action": action,
            "service": service,
            "params": params,
            "undo": False,
            "sent_at": round(time.time(), 3),
        }

    def config(self, service: str) -> dict[str, Any]:
        return {}  # a job runner reports no state; the runbook plans without it

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._document(action, service, params)
        return {"via": "webhook target", "post": self.url, "document": doc}

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._document(action, service, params)
        answer = self._post(doc)
        return {
            "ok": True,
            "id": doc["id"],
            "params": params,
            "answer": answer,
            "previous": answer.get("previous") or {},
        }

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        doc = self._document(action, service, dict(applied.get("params") or {}))
        doc["undo"] = True
        doc["applied"] = {k: applied.get(k) for k in ("id", "previous", "answer")}
        self._post(doc)
