"""What every command module shares: output helpers (the running mind's address is
``localapi.mind_port``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from sre_space.safe_text import TEXT_LIMIT, printable

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def out(doc: Any) -> None:
    """JSON is data: printed as it is (``json.dumps`` escapes control characters itself)."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def say(line: str = "", limit: int | None = TEXT_LIMIT) -> None:
    """One line for a person. It may quote outside text, so it is escaped (safe_text)."""
    sys.stdout.write(printable(line, limit) + "\n")


def err(message: str) -> None:
    """One line on stderr; it may quote outside text, so escaped as well."""
    sys.stderr.write(printable(message, TEXT_LIMIT) + "\n")
