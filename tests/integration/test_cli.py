"""The command's contracts that need no lab: usage errors, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import Cli


def test_unknown_fault_is_a_usage_error_listing_the_faults(cli: Cli) -> None:
    proc = cli("chaos", "meteor-strike")
    assert proc.returncode == 2
    assert proc.stderr.startswith("sre-space: unknown fault 'meteor-strike'")
    assert "db-timeout" in proc.stderr


def test_chaos_without_a_lab_is_unavailable(cli: Cli) -> None:
    proc = cli("chaos", "db-timeout")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "sre-space up" in proc.stderr


def test_chaos_list_json(cli: Cli) -> None:
    proc = cli("chaos", "list", "--json")
    assert proc.returncode == 0
    assert "db-timeout" in [f["name"] for f in json.loads(proc.stdout)]


def test_incidents_json_is_empty_on_a_new_home(cli: Cli) -> None:
    proc = cli("incidents", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, sre_space.cli as c\n"
        "heavy = [m for m in ('chromadb', 'langgraph', 'textual', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_bad_setting_is_one_line_and_exit_2(home: Path, cli: Cli) -> None:
    """From the environment or the config file, never a traceback; credentials are not echoed."""
    proc = cli("status", SRE_SPACE_REVIEW_TZ="Mars/Olympus")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sre-space: bad setting review_tz: Value error, not a known time zone, "
        "e.g. Asia/Kolkata (got 'Mars/Olympus')"
    ]
    for text, says in (
        ('review_at = "9h30"\n', "bad setting review_at"),
        ("review_at = 09:30 oops\n", "cannot read"),  # not TOML at all
    ):
        (home / "config.toml").write_text(text)
        proc = cli("status")
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr


def test_escape_sequences_from_telemetry_never_reach_the_terminal() -> None:
    from sre_space.incidents import Event
    from sre_space.safe_text import printable, printable_lines

    hostile = "pool exhausted\x1b]0;pwned\x07\x1b[2J\rfake line\x9b31m"
    line = Event(1, "INC-1", 0.0, "brain", "step", f"root cause {hostile}", {}).line()
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line and "\x9b" not in line
    assert "pool exhausted" in line and "fake line" in line
    assert printable("a\tb") == "a b"  # one cell: columns stay put
    assert printable_lines("one\x1b[1m\ntwo") == "one?[1m\ntwo"
