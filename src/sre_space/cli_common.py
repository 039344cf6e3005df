"""What every command module shares: output helpers and the running mind's address."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from sre_space.paths import Paths
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


def mind_port(paths: Paths) -> int | None:
    """The API port of a live mind on this home, or None."""
    try:
        doc = json.loads(paths.mind_state.read_text())
        os.kill(int(doc["pid"]), 0)
        return int(doc["api_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
