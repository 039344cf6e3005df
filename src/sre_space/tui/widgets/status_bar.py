"""One line of state: who acts (hosting, observing, readonly), the lab, intake, incidents."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from sre_space.safe_text import NAME_LIMIT, printable

MODE_STYLES: dict[str, str] = {
    "hosting": "bold green",
    "observing": "bold cyan",
    "readonly": "bold cyan",
    "starting": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
}


# A mind's role on a shared state_url (state/leader.py); "sole" (the lock file) shows nothing.
ROLE_STYLES = {"leader": "bold green", "standby": "yellow", "stopped": "bold red"}


class StatusBar(Static):
    _shown: Text | None = None

    def show(
        self,
        *,
        mode: str,
        lab_up: bool | None,
        mind: dict[str, Any] | None,
        open_incidents: int,
        follow: str,
        error: str = "",
        chaos: list[str] | None = None,
        awaiting: list[str] | None = None,
        policy: str | None = None,
    ) -> None:
        parts: list[Text] = [Text.assemble("mind ", (mode, MODE_STYLES.get(mode, "")))]
        if lab_up is None:
            parts.append(Text("lab ?"))
        else:
            parts.append(Text.assemble("lab ", ("up", "green") if lab_up else ("down", "red")))
        if chaos:
            parts.append(
                Text.assemble("chaos ", (printable(",".join(chaos), NAME_LIMIT), "bold yellow"))
            )
        if mind is not None:
            store = mind.get("store") or {}
            rate = store.get("spans_per_s")
            if isinstance(rate, int | float):
                parts.append(Text(f"{rate:.0f} spans/s"))
            if mind.get("policy"):
                parts.append(Text(f"policy {printable(mind['policy'], NAME_LIMIT)}"))
            lead = mind.get("leadership") or {}
            role = str(lead.get("role") or "")
            if role in ROLE_STYLES:  # minds on a shared state_url: which one acts (not "sole")
                holder = str((lead.get("leader") or {}).get("holder") or "nobody")
                shown = role if role == "leader" else f"{role} (lease: {holder})"
                parts.append(Text(printable(shown, NAME_LIMIT * 2), style=ROLE_STYLES[role]))
        if policy and (mind is None or not mind.get("policy")):
            parts.append(Text(f"policy {policy}"))
        parts.append(
            Text.assemble("open ", (str(open_incidents), "bold red" if open_incidents else ""))
        )
        if awaiting:
            parts.append(
                Text.assemble(
                    ("awaiting approval ", "bold yellow"),
                    (printable(" ".join(awaiting), NAME_LIMIT), "bold"),
                )
            )
        parts.append(Text(follow, style="" if follow == "follow" else "yellow"))
        if error:
            parts.append(Text(f"log: {printable(error, NAME_LIMIT)}", style="red"))
        line = Text()
        for n, part in enumerate(parts):
            if n:
                line.append(" │ ", style="dim")
            line.append_text(part)
        if line != self._shown:  # a poll that changed nothing redraws nothing
            self._shown = line
            self.update(line, layout=False)  # one line, always: no layout needed
