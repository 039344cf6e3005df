"""Where the Compose files are, and the environment `docker compose` runs with.

The wheel ships the repository's ``compose/`` folder as ``sre_space/_compose``
(pyproject's force-include); a source checkout has it at ``<root>/compose``.
The lab's image is built from the source tree in a checkout, and from the
same released version on the package index when only the wheel is installed
(compose/Dockerfile explains the ``SRE_SPACE_PIP_SPEC`` build argument).

Every knob here is an environment variable that docker-compose.yml reads; none
of them is a field of ``Settings``, so the mind's own ``SRE_SPACE_*`` settings
(its receiver ports, for one) never move the infrastructure's ports by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from sre_space import __version__
from sre_space.config import LOOPBACK
from sre_space.errors import Unavailable

COMPOSE_FILE = "docker-compose.yml"
PROJECT = "sre-space"
PACKAGED_DIR = "_compose"
OVERRIDE_FILE = "sre-space.override.yml"

# Host ports, all published on 127.0.0.1: (environment variable, default).
PORTS: dict[str, tuple[str, int]] = {
    "otlp_grpc": ("SRE_SPACE_COLLECTOR_GRPC_PORT", 4317),
    "otlp_http": ("SRE_SPACE_COLLECTOR_HTTP_PORT", 4318),
    "jaeger_ui": ("SRE_SPACE_JAEGER_UI_PORT", 16686),
    "kafka": ("SRE_SPACE_KAFKA_HOST_PORT", 9094),
    "chroma": ("SRE_SPACE_CHROMA_PORT", 8000),
    # Not published: the port the mind listens on for the Collector's pushes.
    "mind_otlp": ("SRE_SPACE_MIND_OTLP_PORT", 4319),
}


OTLP_TOKEN_ENV = "SRE_SPACE_MIND_OTLP_TOKEN"  # the Collector's bearer token for the mind

def source_root() -> Path | None:
    """The repository root when this module runs from a source checkout, else ``None``."""
    root = Path(__file__).resolve().parents[3]  # src/sre_space/infra/compose.py -> root
    pyproject = root / "pyproject.toml"
    if not (root / "compose" / COMPOSE_FILE).is_file() or not pyproject.is_file():
        return None
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if 'name = "sre-space"' in text else None


def compose_dir() -> Path:
    """The folder holding docker-compose.yml: the installed copy first, then the source tree's."""
    packaged = Path(__file__).resolve().parents[1] / PACKAGED_DIR
    if (packaged / COMPOSE_FILE).is_file():
        return packaged
    root = source_root()
    if root is not None:
        return root / "compose"
    raise Unavailable(
        f"the Compose files are missing from this installation "
        f"(looked for sre_space/{PACKAGED_DIR}/{COMPOSE_FILE}); reinstall sre-space"
    )


def compose_file() -> Path:
    """docker-compose.yml, installed (``sre_space/_compose``) or in the source tree."""
    return compose_dir() / COMPOSE_FILE


def build_env(project_dir: Path | None = None) -> dict[str, str]:
    """The build knobs for the lab's image, for a checkout or for an installed wheel."""
    directory = (project_dir or compose_dir()).resolve()
    root = source_root()
    if root is not None and directory == (root / "compose").resolve():
        context, dockerfile, spec = root, "compose/Dockerfile", "."
    else:
        # No source tree beside these files: install the same release instead.
        context, dockerfile, spec = directory, "Dockerfile", f"sre-space=={__version__}"
    return {
        "SRE_SPACE_BUILD_CONTEXT": str(context),
        "SRE_SPACE_DOCKERFILE": dockerfile,
        "SRE_SPACE_PIP_SPEC": spec,
        "SRE_SPACE_VERSION": __version__,
    }


def compose_env(
    project_dir: Path | None = None,
    *,
    lab_token: str | None = None,
    otlp_token: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Everything `docker compose` needs beyond the caller's environment.

    ``lab_token`` opens the lab services' admin endpoints (none when omitted);
    ``otlp_token`` is the bearer token the Collector sends the mind's receiver;
    ``overrides`` sets any knob of docker-compose.yml (ports, partitions, rate).
    """
    env = build_env(project_dir)
    if lab_token:
        env["SRE_SPACE_LAB_TOKEN"] = lab_token
    if otlp_token:
        env[OTLP_TOKEN_ENV] = otlp_token
    env.update(overrides or {})
    return env


def port(env: Mapping[str, str], name: str) -> int:
    """A host port of the stack, as docker-compose.yml will resolve it."""
    var, default = PORTS[name]
    raw = env.get(var) or ""
    try:
        return int(raw) if raw else default
    except ValueError:
        raise Unavailable(f"{var}={raw!r} is not a port number") from None


def endpoints(env: Mapping[str, str]) -> dict[str, str]:
    """Where each part of the stack answers on this machine."""
    return {
        "otlp_grpc": f"{LOOPBACK}:{port(env, 'otlp_grpc')}",
        "otlp_http": f"http://{LOOPBACK}:{port(env, 'otlp_http')}",
        "jaeger": f"http://{LOOPBACK}:{port(env, 'jaeger_ui')}",
        "kafka": f"{LOOPBACK}:{port(env, 'kafka')}",
        "chroma": f"http://{LOOPBACK}:{port(env, 'chroma')}",
    }


def mind_settings(
    env: Mapping[str, str],
    *,
    via: Literal["otlp", "kafka"] = "kafka",
    bridge_address: str | None = None,
    otlp_token: str | None = None,
) -> dict[str, Any]:
    """Settings overrides for a mind that watches the Compose stack.

    ``via="kafka"`` reads spans from the ``otlp_spans`` topic on the host
    listener; ``via="otlp"`` takes the Collector's OTLP/HTTP pushes, which
    needs the mind's receiver on an address the containers can reach: the
    Docker bridge's gateway (``bridge_address``, see docker_engine.host_gateway),
    never 0.0.0.0, and only with the bearer token the Collector sends
    (``otlp_token``): off loopback, anything on the bridge could otherwise push
    spans that drive the Fixer's actions. Pick one: with both, every span would arrive twice.
    Either way the mind's own receivers move off 4317/4318, which the
    Collector holds on the host.
    """
    found = endpoints(env)
    settings: dict[str, Any] = {
        "jaeger_url": found["jaeger"],
        "chroma_url": found["chroma"],
        "otlp_http_port": port(env, "mind_otlp"),
        "otlp_grpc_port": -1,
    }
    if via == "kafka":
        settings["kafka_brokers"] = found["kafka"]
    else:
        if not bridge_address:
            raise Unavailable(
                "taking the Collector's pushes needs the Docker bridge's address "
                "(the mind listens there, not on 127.0.0.1)"
            )
        if not otlp_token:
            raise Unavailable(
                "taking the Collector's pushes needs the token `sre-space up` writes; "
                "run `sre-space down` and `sre-space up` again"
            )
        settings["otlp_host"] = bridge_address
        settings["otlp_token"] = otlp_token
    return settings


def load(path: Path) -> dict[str, Any]:
    """A YAML file (a compose file or an override) as a mapping; empty when absent."""
    import yaml

    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) else {}


def override_path(home: Path) -> Path:
    """The Compose override the Docker actuator keeps its changes in, under the state dir.

    `compose_up` should be given it too, so a restarted stack keeps what the
    Fixer changed (replicas, settings) instead of quietly undoing it.
    """
    return home / "compose" / OVERRIDE_FILE


STACK_FILE = "compose.json"  # under the home: marks a Compose stack that `up` started


def running_stack(home: Path) -> dict[str, Any] | None:
    """What `up --compose` recorded for this home (mode, endpoints), None when it did not."""
    import json

    try:
        doc = json.loads((home / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
