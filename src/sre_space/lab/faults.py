"""The chaos catalogue: each fault a real, reversible mechanism in the lab.

How a fault is applied depends on where it lives (``FaultSpec.layer``):

- ``process``: the supervisor POSTs ``{"fault": name, "params": {...}}`` to each
  targeted process's token-protected ``/_admin/fault`` endpoint and DELETEs
  ``/_admin/fault?fault=name`` to revert it (see ``mechanisms.py`` and ``db.py``).
- ``supervisor``: the supervisor does it itself (kills the process and keeps it
  down; closes a balancer's listener).

Faults never show in a service's runtime config or ``/status``: only the control
API's chaos endpoints list them, so the squad must find them from spans. (A bad
release shows as its ``release`` in the config and ``service.version`` on spans,
as any deploy would; that it is bad does not.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DURATION_S = 3600.0  # hard cap: no fault outlives an hour, whatever was asked
FAULT_PATH = "/_admin/fault"
BLAST = ("one", "all")


@dataclass(frozen=True)
class FaultSpec:
    name: str
    description: str
    default_target: str
    targets: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    # What a drill accepts of the squad (never what the squad is told): besides the
    # targeted service, which other services are a right root cause (the pool in
    # front of a database), and which remediations really mitigate the fault.
    also_causes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    # The fault class (rca/classify.py) a person would give it from what callers see.
    fault_class: str = ""
    # How the lab makes it real (for `chaos list` and the reader).
    mechanism: str = ""
    layer: str = "process"  # process | supervisor
    # A fault in a process's memory dies with the process; one in its
    # environment (disk, network, the deployed release) is there again after a restart.
    survives_restart: bool = True
    replicas: str = "all"  # default blast radius on a service with replicas

    def expectation(self, target: str | None = None) -> dict[str, Any]:
        """Where the fault lives, the acceptable root causes and actions, for a drill."""
        where = target or self.default_target
        return {
            "fault_in": where,
            "root_cause": [where, *(c for c in self.also_causes if c != where)],
            "fault_class": [self.fault_class] if self.fault_class else [],
            "actions": list(self.actions),
            "status": "mitigated",
        }

    @property
    def expect(self) -> dict[str, Any]:
        return self.expectation()

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with what was asked; unknown or non-numeric values are refused."""
        given = dict(given or {})
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for {self.name}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self.defaults) or 'none'}"
            )
        params = dict(self.defaults)
        for key, value in given.items():
            try:
                params[key] = type(self.defaults[key])(value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key} of {self.name} must be a number") from None
            if params[key] < 0:
                raise ValueError(f"parameter {key} of {self.name} must not be negative")
        return params


_CALLEES = ("checkout", "payments", "inventory")  # services with an instrumented caller

FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "db-timeout",
            "the database answers slowly; under load the checkout pool saturates and requests time out",
            "db",
            ("db",),
            {"latency_ms": 600},
            # The database is slow; the pool in front of it is where users' requests fail.
            # A bigger pool absorbs it; shedding load lowers the demand on it.
            also_causes=("checkout",),
            fault_class="saturation",
            actions=("patch_config", "shed_load"),
            mechanism="every SQL query in the db process waits latency_ms before it runs",
        ),
        FaultSpec(
            "latency",
            "requests to a service wait on its ingress before they are handled",
            "inventory",
            _CALLEES,
            {"delay_ms": 1200},
            fault_class="latency",
            actions=(
                "open_circuit",
            ),  # every replica and a restart are as slow: stop waiting on it
            mechanism="each request waits delay_ms after it is read and before the service "
            "handles it (its SERVER span starts after the wait: time lost on the way in)",
        ),
        FaultSpec(
            "http-errors",
            "a bad release: the target is deployed at v2, which fails a share of requests with 500",
            "payments",
            _CALLEES,
            {"error_rate": 0.5},
            fault_class="error",
            actions=("rollback", "open_circuit"),  # undo the deploy, or defer the charge
            mechanism="the supervisor deploys release v2 (config `release`; the restarted "
            "processes' resource says service.version v2); v2's handler reads a field callers "
            "never send and raises KeyError on error_rate of requests",
        ),
        FaultSpec(
            "crash",
            "the target process dies and stays down",
            "checkout",
            _CALLEES,
            {},
            fault_class="unreachable",
            actions=("restart",),
            mechanism="the supervisor SIGKILLs the process, closes its listener (callers are "
            "refused) and does not restart it on its own",
            layer="supervisor",
            survives_restart=False,
        ),
        FaultSpec(
            "hang",
            "the target accepts connections and never answers",
            "payments",
            _CALLEES,
            {},
            fault_class="timeout",
            actions=("restart", "open_circuit"),
            mechanism="every request handler waits forever once its request is read (its "
            "health check still answers); callers give up after their 2 s timeout",
            survives_restart=False,
            replicas="one",
        ),
        FaultSpec(
            "memory-leak",
            "the target keeps memory from every request until it is over its memory limit",
            "inventory",
            _CALLEES,
            {"kb_per_request": 1024},
            fault_class="memory",
            actions=(
                "restart",
                "open_circuit",
            ),  # a new process frees the memory, or stop calling it
            mechanism="each request retains kb_per_request of real memory; past the service's "
            "memory_limit_mb of mapped data (RLIMIT_DATA), allocations fail with MemoryError",
            survives_restart=False,
        ),
        FaultSpec(
            "cpu-hog",
            "threads in the target burn CPU and starve its request handling",
            "checkout",
            _CALLEES,
            {"threads": 8},
            fault_class="cpu",
            actions=("restart",),
            mechanism="`threads` busy threads spin in the target process; its request threads "
            "wait for the interpreter and the cores",
            survives_restart=False,
        ),
        FaultSpec(
            "dependency-down",
            "a downstream becomes unreachable from its callers while its processes keep running",
            "inventory",
            ("payments", "inventory"),
            {},
            fault_class="unreachable",
            actions=("open_circuit",),  # its processes are fine: restarting them changes nothing
            mechanism="the service's balancer stops listening: every connection is refused, "
            "its replicas run on, idle",
            layer="supervisor",
        ),
    )
}


def clamp_duration(duration_s: float | None) -> float:
    """A fault lasts what was asked, but never past the hard cap (and never 'forever')."""
    if duration_s is None or duration_s <= 0:
        return MAX_DURATION_S
    return min(float(duration_s), MAX_DURATION_S)
