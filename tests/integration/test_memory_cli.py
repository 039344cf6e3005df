"""`sre-space memory ...` through the real CLI (subprocesses, a temp SRE_SPACE_HOME)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import helpers
from helpers import cli_env, free_port, wait_until

FIXTURES = helpers.FIXTURES / "memory"
ENTRIES = FIXTURES / "entries.jsonl"


def sre(
    home: Path, *args: str, check: bool = True, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``sre-space memory ARGS`` on ``home``."""
    return helpers.sre(home, "memory", *args, check=check, stdin=stdin, **env)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.stderr.startswith("sre-space: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def assert_fixture_imported(exported: str) -> None:
    """The fixture is an export: the same after a trip through Chroma, marked imported."""
    for line, original in zip(exported.splitlines(), ENTRIES.read_text().splitlines(), strict=True):
        doc, given = json.loads(line), json.loads(original)
        assert {k: doc[k] for k in given} == given  # fields derived since may be added
        assert (doc["imported"], doc["trusted"]) == (True, False)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose memory holds the fixture entries (imported through the CLI)."""
    home = tmp_path_factory.mktemp("seeded")
    done = sre(home, "import", str(ENTRIES))
    n = sum(1 for line in ENTRIES.read_text().splitlines() if line.strip())
    assert f"imported {n} entries" in done.stdout
    return home


def test_export_import_round_trips_exactly(seeded: Path, tmp_path: Path) -> None:
    exported = tmp_path / "out.jsonl"
    summary = json.loads(sre(seeded, "export", str(exported), "--json").stdout)
    assert summary["exported"] == len(ENTRIES.read_text().splitlines())
    assert_fixture_imported(exported.read_text())
    fresh = tmp_path / "fresh"
    sre(fresh, "import", str(exported))
    again = sre(fresh, "export", "-").stdout
    assert again == exported.read_text()  # byte for byte


def test_import_keeps_the_good_lines_and_names_the_bad_ones(tmp_path: Path) -> None:
    lines = ENTRIES.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    missing_id = json.loads(lines[1])
    del missing_id["id"]
    bad.write_text("\n".join([lines[0], json.dumps(missing_id), "{not json", "", lines[2]]) + "\n")
    proc = sre(tmp_path / "home", "import", str(bad), "--json", check=False)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["imported"] == 2
    assert [r["line"] for r in doc["rejected"]] == [2, 3]
    error = one_error_line(proc)
    assert "line 2 (field 'id'" in error and "line 3 (not JSON" in error, error
    assert "2 good entries imported" in error
    listed = json.loads(sre(tmp_path / "home", "list", "--json").stdout)
    assert sorted(e["id"] for e in listed) == sorted(json.loads(lines[i])["id"] for i in (0, 2))


def test_imported_entries_say_so_and_trust_is_given_only_by_the_importer(tmp_path: Path) -> None:
    line = json.loads(ENTRIES.read_text().splitlines()[0])
    forged = tmp_path / "forged.jsonl"  # a file cannot vouch for itself
    forged.write_text(json.dumps({**line, "imported": False, "trusted": True}) + "\n")
    home = tmp_path / "home"
    assert "not applied automatically" in sre(home, "import", str(forged)).stdout
    shown = json.loads(sre(home, "show", line["id"], "--json").stdout)
    assert shown["imported"] is True and shown["trusted"] is False
    assert "imported, not verified here" in sre(home, "show", line["id"]).stdout
    assert "(imported)" in sre(home, "list").stdout
    hits = json.loads(sre(home, "search", line["summary"], "--json").stdout)
    assert hits[0]["imported"] is True and hits[0]["trusted"] is False
    assert "never applied automatically" in hits[0]["why"]
    assert "(imported, not verified here)" in sre(home, "search", line["summary"]).stdout
    done = json.loads(sre(home, "import", str(forged), "--trust", "--json").stdout)
    assert done["trusted"] is True
    shown = json.loads(sre(home, "show", line["id"], "--json").stdout)
    assert shown["imported"] is True and shown["trusted"] is True
    assert "imported, trusted" in sre(home, "show", line["id"]).stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**line, "imported": "yes"}) + "\n")
    proc = sre(home, "import", str(bad), check=False)
    assert proc.returncode == 2 and "field 'imported' must be true or false" in one_error_line(proc)


def test_import_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = sre(tmp_path, "import", str(tmp_path / "absent.jsonl"), check=False)
    assert proc.returncode == 2 and "cannot read" in one_error_line(proc)


def test_list_show_search_stats(seeded: Path) -> None:
    listed = json.loads(sre(seeded, "list", "--json", "--limit", "0").stdout)
    stamps = [e["created_at"] for e in listed]
    assert stamps == sorted(stamps, reverse=True)
    payments = json.loads(sre(seeded, "list", "--service", "payments", "--json").stdout)
    assert payments and {e["service"] for e in payments} == {"payments"}
    human = sre(seeded, "list").stdout.splitlines()
    assert human[0].split() == ["ID", "WHEN", "SERVICE", "FAULT", "FIX", "OUTCOME", "SEEN"]

    first = listed[0]
    shown = json.loads(sre(seeded, "show", first["id"], "--json").stdout)
    assert shown == first
    assert "signature" in sre(seeded, "show", first["id"]).stdout
    missing = sre(seeded, "show", "INC-NOPE", check=False)
    assert missing.returncode == 2 and "no memory with id 'INC-NOPE'" in one_error_line(missing)

    hits = json.loads(sre(seeded, "search", "db pool maxed out", "--json").stdout)
    assert 1 <= len(hits) <= 3
    for key in ("id", "score", "summary", "service", "remediation", "outcome", "why"):
        assert key in hits[0]
    assert hits[0]["fault_class"] == "saturation"
    text = sre(seeded, "search", "db pool maxed out", "--k", "2").stdout
    assert text.startswith("1. ") and "why: text similarity" in text and "\n2. " in text

    stats = json.loads(sre(seeded, "stats", "--json").stdout)
    assert stats["count"] == len(listed)
    assert sum(stats["by_service"].values()) == stats["count"]
    assert sum(stats["by_outcome"].values()) == stats["count"]
    assert stats["recurring"] and all(r["recurrences"] >= 1 for r in stats["recurring"])
    assert "recurring signatures:" in sre(seeded, "stats").stdout


def test_forget(tmp_path: Path) -> None:
    sre(tmp_path, "import", str(ENTRIES))
    victim = json.loads(ENTRIES.read_text().splitlines()[0])["id"]
    assert json.loads(sre(tmp_path, "forget", victim, "--json").stdout) == {"forgotten": victim}
    again = sre(tmp_path, "forget", victim, check=False)
    assert again.returncode == 2 and "no memory with id" in one_error_line(again)


def test_an_empty_memory_answers_politely(tmp_path: Path) -> None:
    assert json.loads(sre(tmp_path, "search", "anything", "--json").stdout) == []
    assert "no memories yet" in sre(tmp_path, "list").stdout
    assert json.loads(sre(tmp_path, "stats", "--json").stdout)["count"] == 0
    assert not (tmp_path / "memory").exists()  # reading created nothing


def test_a_chroma_server_that_is_down_is_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = sre(tmp_path, "search", "x", check=False, SRE_SPACE_CHROMA_URL=url)
    assert proc.returncode == 3 and "Chroma server" in one_error_line(proc)


# --- while a mind runs ------------------------------------------------------------------------

_MIND_API = r"""
import json, os, sys, time
from sre_space.config import Settings
from sre_space.localapi import LocalApi
from sre_space.memory.api import routes
from sre_space.memory.store import MemoryStore
from sre_space.paths import Paths

settings = Settings(home=sys.argv[1], chroma_url=None)
paths = Paths(settings.home)
store = MemoryStore(settings)  # the writer, for as long as it lives
api = LocalApi(routes(store), paths.mind_token).start()
paths.mind_state.write_text(json.dumps({"pid": os.getpid(), "api_port": api.port}))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Path]:
    """A home whose memory is held by a process serving sre_space.memory.api like a mind."""
    home = tmp_path / "home"
    sre(home, "import", str(ENTRIES))
    proc = subprocess.Popen(
        [sys.executable, "-c", _MIND_API, str(home)],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield home
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_reads_go_through_the_mind_and_writes_are_refused(serving: Path, tmp_path: Path) -> None:
    # Reading commands ask the process that owns the store (it holds the writer lock).
    hits = json.loads(sre(serving, "search", "pool saturation", "--json").stdout)
    assert hits and hits[0]["fault_class"] == "saturation"
    listed = json.loads(sre(serving, "list", "--json", "--limit", "0").stdout)
    assert len(listed) == len(ENTRIES.read_text().splitlines())
    assert json.loads(sre(serving, "show", listed[0]["id"], "--json").stdout) == listed[0]
    assert json.loads(sre(serving, "stats", "--json").stdout)["count"] == len(listed)
    out = tmp_path / "via-mind.jsonl"
    sre(serving, "export", str(out))
    assert_fixture_imported(out.read_text())
    missing = sre(serving, "show", "INC-NOPE", check=False)
    assert missing.returncode == 2
    # Writing commands refuse, one line, exit 3; nothing changed.
    for args in (["forget", listed[0]["id"]], ["import", str(ENTRIES)]):
        proc = sre(serving, *args, check=False)
        assert proc.returncode == 3, proc.stderr
        assert "a mind is running" in one_error_line(proc)
    assert len(json.loads(sre(serving, "list", "--json", "--limit", "0").stdout)) == len(listed)


def test_the_real_mind_serves_search_and_refuses_writes(tmp_path: Path) -> None:
    """`sre-space run` on the same home: memory search asks it; forget and import refuse."""
    home = tmp_path / "home"
    sre(home, "import", str(ENTRIES))
    env = cli_env(home, SRE_SPACE_OTLP_HTTP_PORT=str(free_port()), SRE_SPACE_OTLP_GRPC_PORT="-1")
    log = (tmp_path / "run.log").open("w")
    mind = subprocess.Popen(
        [sys.executable, "-m", "sre_space", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: (home / "mind.json").exists() or mind.poll() is not None,
            90,
            what="the mind to start",
        )
        assert mind.poll() is None, (tmp_path / "run.log").read_text()
        hits = json.loads(sre(home, "search", "pool saturation", "--json").stdout)
        assert hits and hits[0]["fault_class"] == "saturation"
        for args in (["forget", hits[0]["id"]], ["import", str(ENTRIES)]):
            proc = sre(home, *args, check=False)
            assert proc.returncode == 3 and "a mind is running" in one_error_line(proc)
    finally:
        mind.send_signal(signal.SIGTERM)
        try:
            mind.wait(timeout=30)
        except subprocess.TimeoutExpired:
            mind.kill()
            mind.wait()
        log.close()
