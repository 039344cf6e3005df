"""What every command module shares: output helpers and the running mind's address."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from sre_space.paths import Paths

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def out(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def err(message: str) -> None:
    sys.stderr.write(message + "\n")


def mind_port(paths: Paths) -> int | None:
    """The API port of a live mind on this home, or None."""
    try:
        doc = json.loads(paths.mind_state.read_text())
        os.kill(int(doc["pid"]), 0)
        return int(doc["api_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
