"""Which actuator the Fixer acts through, as the ``actuator`` setting says (see config.py)."""

from __future__ import annotations

from typing import Any

from sre_space.config import Settings


def for_settings(settings: Settings) -> Any:
    """The Fixer's hands.

    ``auto``: the targets the user declared (actuators/targets.py), else
    Docker for a Compose stack `up` started, else the running lab's own
    services and a written proposal for any other service. Each kind is
    imported only when chosen: Docker's and Kubernetes' clients are heavy.
    """
    from sre_space.actuators.knobs import KnobAdapter
    from sre_space.actuators.lab import LAB_KEYS
    from sre_space.actuators.targets import TargetActuator, declared
    from sre_space.infra.compose import running_stack

    choice = settings.actuator
    if choice == "auto":
        if declared(settings.home)[1] is not None:
            return TargetActuator(settings)
        if running_stack(settings.home) is None:
            return TargetActuator(settings)
        choice = "docker"
    # The shipped Compose stack runs the lab's services: their knobs are the lab's keys.
    if choice.startswith("plan-"):
        from sre_space.actuators.plan import PlanActuator

        style = choice.removeprefix("plan-")
        return KnobAdapter(PlanActuator.from_settings(settings, style=style), LAB_KEYS)
    if choice == "docker":
        from sre_space.actuators.docker import DockerActuator

        return KnobAdapter(DockerActuator.from_settings(settings), LAB_KEYS)
    from sre_space.actuators.lab import LabActuator

    return LabActuator(settings)
