"""Acting outside the cockpit: approve, deny, ack, resolve, inject a fault, revert.

Each asks first, but ack (it changes no status: a person says they have it).

Refused under ``--readonly``. The work (SQLite, the lab's API) runs in a
worker; ``ActionDone`` brings the outcome back for a notice and the terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from textual.notifications import SeverityLevel
from textual.screen import Screen

from sre_space import state
from sre_space.errors import UsageError
from sre_space.incidents import Incident, IncidentLog, person_from_env
from sre_space.safe_text import TEXT_LIMIT, printable
from sre_space.tui.context import CockpitContext
from sre_space.tui.controllers.incidents import IncidentsController, awaiting
from sre_space.tui.keys import ACTING
from sre_space.tui.messages import ActionDone
from sre_space.tui.screens import ConfirmScreen, FaultScreen
from sre_space.tui.widgets import SquadTerminal

log = logging.getLogger(__name__)


class ActionsController:
    def __init__(
        self,
        screen: Screen[None],
        ctx: CockpitContext,
        incidents: IncidentsController,
        terminal: SquadTerminal,
        after: Callable[[], None],
    ) -> None:
        self.screen = screen
        self.ctx = ctx
        self.incidents = incidents
        self.terminal = terminal
        self._after = after  # what to refresh once an action is done (the status line)

    def tell(self, text: str, severity: SeverityLevel = "information", timeout: float = 5) -> None:
        """A notification: it may quote outside text, so escaped and never read as markup."""
        self.screen.app.notify(
            printable(text, TEXT_LIMIT), severity=severity, timeout=timeout, markup=False
        )

    def _refused(self, action: str) -> bool:
        if self.ctx.readonly and action in ACTING:
            self.tell(f"readonly: {action} is disabled", severity="warning")
            return True
        return False

    def _run(self, work: Callable[[], ActionDone]) -> None:
        def run() -> None:
            self.screen.post_message(work())

        self.screen.run_worker(run, thread=True, group="act", exit_on_error=False)

    # --- approve and deny -------------------------------------------------------------------

    def decide(self, decision: str) -> None:
        if self._refused(decision):
            return
        incident = self.incidents.target
        if incident is None:
            self.tell("no incident selected", severity="warning")
            return
        rem = incident.remediation
        if not awaiting(incident):
            outcome = rem.get("outcome") or "no remediation yet"
            self.tell(f"{incident.id} is not awaiting approval ({outcome})", severity="warning")
            return
        params = " ".join(f"{k}={v}" for k, v in (rem.get("params") or {}).items())
        plan = f"{rem.get('action', '?')} {rem.get('service', '')} {params}".strip()
        question = f"{decision.capitalize()} {plan} for {incident.id}?"
        incident_id = incident.id

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(lambda: self._write_decision(incident_id, decision))

        self.screen.app.push_screen(
            ConfirmScreen(decision, question, yes=decision.capitalize()), answered
        )

    def _write_decision(self, incident_id: str, decision: str) -> ActionDone:
        try:
            mind = self.ctx.host.mind
            if mind is not None:
                mind.log.decide(incident_id, decision, by="watch")
            else:
                incident_log = IncidentLog(state.where(self.ctx.settings))
                try:
                    incident_log.decide(incident_id, decision, by="watch")
                finally:
                    incident_log.close()
        except Exception as exc:
            log.exception("recording a decision")
            return ActionDone(f"{decision} {incident_id} failed: {exc}", ok=False)
        return ActionDone(f"{decision} recorded for {incident_id}", ok=True)

    # --- people's answers: ack and resolve ---------------------------------------------------

    def answer(self, what: str) -> None:
        """Acknowledge (at once) or resolve (after a yes) the selected incident, as $USER."""
        if self._refused(what):
            return
        incident = self.incidents.target
        if incident is None:
            self.tell("no incident selected", severity="warning")
            return
        if incident.status == "resolved":
            self.tell(f"{incident.id} is already resolved", severity="warning")
            return
        incident_id, person = incident.id, person_from_env()
        if what == "ack":
            self._run(lambda: self._write_answer(incident_id, what, person))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(lambda: self._write_answer(incident_id, what, person))

        question = (
            f"Resolve {incident_id} ({incident.status}) as {person}?\n\n"
            "The mind keeps it resolved and stops watching it."
        )
        self.screen.app.push_screen(ConfirmScreen("resolve", question, yes="Resolve"), answered)

    def _write_answer(self, incident_id: str, what: str, person: str) -> ActionDone:
        def write(incident_log: IncidentLog) -> Incident:
            if what == "ack":
                return incident_log.acknowledge(incident_id, person)
            return incident_log.resolve(incident_id, person)

        try:
            mind = self.ctx.host.mind
            if mind is not None:
                write(mind.log)
            else:
                incident_log = IncidentLog(state.where(self.ctx.settings))
                try:
                    write(incident_log)
                finally:
                    incident_log.close()
        except UsageError as exc:  # resolved meanwhile, by someone else
            return ActionDone(str(exc), ok=False)
        except Exception as exc:
            log.exception("recording %s", what)
            return ActionDone(f"{what} {incident_id} failed: {exc}", ok=False)
        done = "acknowledged" if what == "ack" else "resolved"
        return ActionDone(f"{incident_id} {done} by {person}", ok=True)

    # --- chaos ---------------------------------------------------------------------------

    def chaos(self) -> None:
        if self._refused("chaos"):
            return
        from sre_space.lab.faults import FAULTS

        def chosen(name: str | None) -> None:
            if not name:
                return
            spec = FAULTS[name]

            def answered(yes: bool | None) -> None:
                if yes:
                    self._run(lambda: self._inject(name))

            question = f"Inject {name} into {spec.default_target}?\n\n{spec.description}"
            self.screen.app.push_screen(
                ConfirmScreen("inject a fault", question, yes="Inject"), answered
            )

        faults = {n: f.description for n, f in FAULTS.items()}
        self.screen.app.push_screen(FaultScreen(faults), chosen)

    def _inject(self, fault: str) -> ActionDone:
        try:
            from sre_space.lab.control import LabClient

            doc = LabClient.from_settings(self.ctx.settings).inject(fault)
        except Exception as exc:
            return ActionDone(f"inject {fault}: {exc}", ok=False)
        target = doc.get("target") or ""
        return ActionDone(f"injected {fault} {target}".strip(), ok=True)

    def revert(self) -> None:
        if self._refused("revert"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(self._revert)

        question = "Revert every fault active in the lab?"
        self.screen.app.push_screen(ConfirmScreen("revert chaos", question, yes="Revert"), answered)

    def _revert(self) -> ActionDone:
        try:
            from sre_space.lab.control import LabClient

            reverted = LabClient.from_settings(self.ctx.settings).revert(None)
        except Exception as exc:
            return ActionDone(f"revert: {exc}", ok=False)
        text = f"reverted {', '.join(reverted)}" if reverted else "no fault was active"
        return ActionDone(text, ok=True)

    def done(self, message: ActionDone) -> None:
        self.tell(message.text, severity="information" if message.ok else "error")
        self.terminal.note(message.text, style="" if message.ok else "red")
        self._after()
