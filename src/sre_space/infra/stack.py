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
    bridge = host_gateway(env) if via == "otlp" else None
    return mind_settings(env, via="otlp" if via == "otlp" else "kafka", bridge_address=bridge)
