"""A mind on a home where `up --compose` ran: the settings it takes from the stack.

Above both ``compose`` (what the stack is: files, ports, endpoints) and
``docker_engine`` (what the engine says: the bridge's address), so neither of
those imports the other back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sre_space.infra.compose import compose_dir, compose_env, mind_settings, running_stack
from sre_space.infra.docker_engine import host_gateway
from sre_space.paths import Paths


def read_secret(path: Path) -> str | None:
    """A token file's content; None when it is missing or empty."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def mind_overrides(home: Path, source: str | None) -> dict[str, Any]:
    """Settings for a mind on this home: the Compose stack's endpoints when one runs.

    ``source`` is how spans arrive: ``kafka`` (the default with Compose) or
    ``otlp`` (the Collector's pushes to the mind's receiver). With the embedded
    lab there is nothing to override: its services push to the receivers.
    """
    if running_stack(home) is None:
        return {}
    via = source or "kafka"
    env = compose_env(compose_dir())
    if via != "otlp":
        return mind_settings(env, via="kafka")
    return mind_settings(
        env, via="otlp", bridge_address=host_gateway(env), otlp_token=read_secret(Paths(home).otlp_token)
    )
