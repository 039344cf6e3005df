"""Notifications out: incident status changes to Slack, PagerDuty, webhooks and apprise.

Shaped like Alertmanager's notifier: one integration per sink kind behind one
interface (:mod:`.sinks`), a durable outbox beside the incident log
(:mod:`.outbox`) written in the same SQLite transaction as the status change
that causes it, and a delivery worker in the mind (:mod:`.worker`) that
retries only what may succeed (5xx, 429, network errors), never a 4xx that
says the message is bad. The incident id is the dedup key end to end
(PagerDuty's ``dedup_key``, the webhook's ``id``).

Sinks are ``[notify.NAME]`` tables in ``$SRE_SPACE_HOME/config.toml``
(:mod:`.config`). Their secrets (a Slack or webhook URL, a routing key, an
HMAC secret) are never written to a log, the incident log, an error message
or a traceback: a sink is named by its kind and host at most.
"""
