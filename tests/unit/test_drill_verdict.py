"""Which incident a drill judges: the first its fault opened, not the first to end."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from sre_space.drill import _await_incident
from sre_space.incidents import Incident, IncidentLog


def test_a_drill_judges_the_first_incident_its_fault_opened(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    mind = SimpleNamespace(log=log)  # a drill reads only the mind's incident log
    injected = time.time() - 30
    log.save(Incident(id="INC-1", status="mitigating", detected_at=injected + 3))
    # The same trouble seen again while the first verifies: its action refused, it ends at once.
    log.save(Incident(id="INC-2", status="escalated", detected_at=injected + 9))
    log.save(Incident(id="INC-0", status="escalated", detected_at=injected - 60))  # before it

    still_verifying = _await_incident(mind, injected, timeout_s=0.6)
    assert (still_verifying.id, still_verifying.status) == ("INC-1", "mitigating")

    first = log.get("INC-1")
    assert first is not None
    first.status = "mitigated"
    log.save(first)
    judged = _await_incident(mind, injected, timeout_s=30)
    assert (judged.id, judged.status) == ("INC-1", "mitigated")
    log.close()


def test_a_drill_whose_fault_opened_nothing_has_no_incident(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    log.save(Incident(id="INC-0", status="escalated", detected_at=time.time() - 60))
    assert _await_incident(SimpleNamespace(log=log), time.time() - 1, timeout_s=0.3) is None
    log.close()
