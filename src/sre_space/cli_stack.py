"""`up` and `down`: the Compose stack where a Docker engine answers, else the embedded lab."""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Annotated, Any

import typer

from sre_space.cli_common import JsonOpt, err, out
from sre_space.config import Settings, load
from sre_space.errors import Unavailable
from sre_space.infra.compose import STACK_FILE
from sre_space.paths import Paths

EMBEDDED_TIMEOUT_S = 60.0
COMPOSE_TIMEOUT_S = 900.0


def _stack(settings: Settings) -> dict[str, Any] | None:
    from sre_space.infra.compose import running_stack

    return running_stack(settings.home)


def stack_mode(settings: Settings) -> str | None:
    """'compose' or 'embedded' for what `up` started on this home, None when down."""
    from sre_space.lab.launcher import read_lab_state

    if _stack(settings) is not None:
        return "compose"
    return "embedded" if read_lab_state(settings) else None


def up(
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait until healthy [default: 60 embedded, 900 Compose]."),
    ] = None,
    compose: Annotated[
        bool | None,
        typer.Option("--compose/--embedded", help="Force the Compose stack or the embedded lab."),
    ] = None,
    export_to: Annotated[
        list[str] | None,
        typer.Option(
            "--export-to",
            help="Embedded lab: also export OTLP to this mind's receiver (repeatable), "
            "e.g. a standby's on one state URL.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the infrastructure in the background; return once it is healthy."""
    from sre_space.infra.docker_engine import engine_reachable

    settings = load(export_to=export_to or None)
    reachable, reason = engine_reachable() if compose is not False else (False, "--embedded given")
    if compose and not reachable:
        raise Unavailable(f"--compose needs a Docker engine: {reason}")
    if reachable:
        # The first Compose start pulls and builds images: minutes, not seconds.
        _compose_up(settings, COMPOSE_TIMEOUT_S if timeout is None else timeout, json_out)
        return
    from sre_space.lab.launcher import start_lab

    if not json_out:
        err(f"using the embedded lab: {reason}")
    state = start_lab(settings, timeout_s=EMBEDDED_TIMEOUT_S if timeout is None else timeout)
    doc = {
        "mode": state.mode,
        "reason": reason,
        "already_running": state.already_running,
        "supervisor_pid": state.supervisor_pid,
        "services": state.services,
        "otlp_endpoint": settings.otlp_endpoint,
        "export_to": settings.export_to,
    }
    if json_out:
        out(doc)
        return
    if state.already_running:
        err(f"the lab is already up (supervisor pid {state.supervisor_pid})")
    names = ", ".join(f"{n}:{s.get('port')}" for n, s in state.services.items())
    to = ", ".join([settings.otlp_endpoint, *settings.export_to])
    print(f"lab up: {names}; exporting OTLP to {to}")


def _compose_up(settings: Settings, timeout_s: float, json_out: bool) -> None:
    from sre_space.infra.compose import (
        OTLP_TOKEN_ENV,
        compose_env,
        compose_file,
        endpoints,
        override_path,
    )
    from sre_space.infra.docker_engine import compose_up

    paths = Paths(settings.home).ensure()
    project_dir = compose_file().parent
    env = compose_env(
        project_dir, lab_token=secrets.token_urlsafe(24), otlp_token=secrets.token_urlsafe(24)
    )
    result = compose_up(
        project_dir,
        env,
        None if json_out else err,
        timeout_s=timeout_s,
        override=override_path(settings.home),
    )
    # The token stays in the home (0600), never in the marker's JSON.
    from sre_space.localapi import write_secret

    write_secret(paths.control_token, env["SRE_SPACE_LAB_TOKEN"])
    write_secret(paths.otlp_token, env[OTLP_TOKEN_ENV])
    (settings.home / STACK_FILE).write_text(
        json.dumps({"mode": "compose", "endpoints": endpoints(env)})
    )
    if json_out:
        out({"mode": "compose", **result})
    else:
        print("compose stack up: " + ", ".join(f"{k} {v}" for k, v in endpoints(env).items()))


def down(
    volumes: Annotated[bool, typer.Option(help="Compose: also remove volumes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop the infrastructure and every process it started."""
    settings = load()
    if _stack(settings) is not None:
        from sre_space.infra.compose import compose_env, compose_file, override_path
        from sre_space.infra.docker_engine import compose_down

        project_dir = compose_file().parent
        compose_down(
            project_dir,
            compose_env(project_dir),
            None if json_out else err,
            volumes=volumes,
            override=override_path(settings.home),
        )
        with contextlib.suppress(FileNotFoundError):
            (settings.home / STACK_FILE).unlink()
        stopped = True
    else:
        from sre_space.lab.launcher import stop_lab

        stopped = stop_lab(settings)
    if json_out:
        out({"stopped": stopped})
    else:
        print("lab stopped" if stopped else "no lab was running")
