"""`sre-space targets check`: which actions the Fixer can take on each service, and how.

Reads ``$SRE_SPACE_HOME/targets.toml`` (or the ``[targets]`` table of
config.toml), checks every declaration, and lists for each service seen in
telemetry (the incident log, the running lab, ``--service``) the target that
answers for it and the actions it carries out. A service with no target gets
proposals only. Exit codes: 0 ok; 2 a bad declaration (the line says where).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sre_space.cli_common import JsonOpt, out
from sre_space.config import load
from sre_space.safe_text import printable

targets_app = typer.Typer(
    help="The targets the Fixer acts through (targets.toml).", no_args_is_help=True
)


def _seen(home_services: list[str]) -> list[str]:
    """Services seen in telemetry: root causes in the incident log, the lab's."""
    from sre_space import state
    from sre_space.incidents import IncidentLog
    from sre_space.lab.launcher import read_lab_state

    settings = load()
    found = set(home_services)
    db = state.where(settings)
    if state.exists(db):
        log = IncidentLog(db)
        try:
            for incident in log.since(0.0):
                if incident.root_cause.get("service"):
                    found.add(str(incident.root_cause["service"]))
        finally:
            log.close()
    lab = read_lab_state(settings)
    if lab is not None:
        found.update(lab.services)
    return sorted(found)


@targets_app.command("check")
def check(
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Also list this service (repeatable).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate the targets and say, per service, which actions are possible and through what."""
    from sre_space.actuators.targets import TargetActuator, TargetTable, capabilities, declared

    settings = load()
    targets, source = declared(settings.home)  # TargetError (exit 2) names the line
    actuator = TargetActuator(settings, TargetTable(targets, source))
    rows: list[dict[str, Any]] = []
    for name in _seen(list(service or [])):
        target = actuator.target(name)
        rows.append(
            {
                "service": name,
                "target": None if target is None else target.pattern,
                "kind": None if target is None else target.kind,
                "line": None if target is None else target.line,
                "actions": capabilities(target, name),
            }
        )
    doc = {
        "file": str(source) if source else None,
        "targets": [{"pattern": t.pattern, "kind": t.kind, "line": t.line} for t in targets],
        "services": rows,
    }
    if json_out:
        out(doc)
        return
    print(f"{source}: {len(targets)} target(s), valid" if source else "no targets declared")
    for row in rows:
        if row["kind"] is None:
            print(printable(f"{row['service']}: no target; the Fixer writes proposals only"))
            continue
        where = f" (line {row['line']})" if row["line"] else " (built-in)"
        print(printable(f"{row['service']}: {row['kind']} target {row['target']!r}{where}"))
        for action, how in row["actions"].items():
            print(printable(f"  {action:<13} {how}"))
