"""Logging for headless runs: one escaped line on stderr, the details in a file, no secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sre_space import logs
from sre_space.config import Settings

from helpers import free_port, wait_until

BEARER = "Zm9vYmFyLXNlY3JldC10b2tlbg"  # what a hostile answer quotes after "Bearer"
OSC8 = "\x1b]8;;https://evil.example\x07pay\x1b]8;;\x07"  # a terminal hyperlink
CLEAR = "\x1b[2J"  # clears the operator's screen

# A "run-like" invocation: the real `sre-space run --json` (cli.main), plus one
# Python warning once the mind is up, as a library would raise it.
WARN_ONCE_UP = """
import sys, threading, time, warnings
from pathlib import Path
from sre_space import cli

def warn_when_up(token: Path) -> None:
    while not token.exists():
        time.sleep(0.1)
    warnings.warn("deprecated {clear}call; mind token " + token.read_text().strip()
                  + " header Authorization: Bearer {bearer}", RuntimeWarning)

threading.Thread(target=warn_when_up, args=(Path(sys.argv[1]) / "mind.token",), daemon=True).start()
sys.argv = ["sre-space", "run", "--json"]
cli.main()
"""


class _HostileJaeger(BaseHTTPRequestHandler):
    """A Jaeger query service whose error answers carry control codes and secrets."""

    home: Path

    def do_GET(self) -> None:
        token = self.home / "mind.token"
        mind = token.read_text().strip() if token.exists() else "not-yet"
        body = f"broken {OSC8} Authorization: Bearer {BEARER}; seen {mind}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[str]:
    handler = type("Handler", (_HostileJaeger,), {"home": tmp_path / "home"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_headless_run_logs_escaped_one_liners_and_keeps_secrets_out(
    tmp_path: Path, jaeger: str
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(home),
        "SRE_SPACE_OTLP_HTTP_PORT": str(free_port()),
        "SRE_SPACE_OTLP_GRPC_PORT": "-1",
        "SRE_SPACE_JAEGER_URL": jaeger,
        "SRE_SPACE_JAEGER_POLL_S": "0.5",
    }
    script = WARN_ONCE_UP.format(clear=CLEAR.encode("unicode_escape").decode(), bearer=BEARER)
    run = subprocess.Popen(
        [sys.executable, "-c", script, str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log_file = home / "logs" / "run.log"

    def logged() -> str:
        text = log_file.read_text() if log_file.exists() else ""
        # Both records, and the Jaeger one from after the mind wrote its token.
        done = "RuntimeWarning" in text and "seen <redacted>" in text
        return text if done or run.poll() is not None else ""

    try:
        text = wait_until(logged, 180, what="both warnings in run.log")
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            out, err = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            out, err = run.communicate()
    assert run.returncode == 0, err
    mind_token = (home / "mind.token").read_text().strip()

    # stdout: JSON lines alone.
    for line in out.splitlines():
        json.loads(line)
    # stderr: one escaped line per record, nothing a terminal would act on, no secret.
    for secret in (BEARER, mind_token):
        assert secret not in err and secret not in text
    assert "\x1b" not in err and "\x07" not in err and "\x1b" not in text
    warned = [line for line in err.splitlines() if "RuntimeWarning" in line]
    assert warned and warned[0].startswith("sre-space: warning: ")
    assert "deprecated ?[2Jcall; mind token <redacted> header Authorization: <redacted>" in warned[0]
    jaeger_lines = [line for line in err.splitlines() if "HTTP 500" in line]
    assert jaeger_lines, err
    assert jaeger_lines[-1].startswith("sre-space: warning: jaeger: ")
    assert "broken ?]8;;https://evil.example?pay?]8;;? Authorization: <redacted>" in jaeger_lines[-1]
    assert all(line.startswith("sre-space: ") for line in err.splitlines()), err
    # The file holds the same records, redacted and escaped, with their logger names.
    assert "py.warnings: " in text and "sre_space.telemetry.sources: jaeger: " in text
    assert "HTTP 500 broken ?]8;;https://evil.example?pay?]8;;? Authorization: <redacted>; seen <redacted>" in text


def test_the_file_keeps_the_traceback_and_stderr_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = root.handlers[:], root.level
    logs.to_stderr()
    try:
        with logs.to_file(Settings(home=tmp_path), "run") as path:
            try:
                raise ValueError(f"bad answer {CLEAR} password=hunter2hunter2")
            except ValueError:
                logging.getLogger("sre_space.test").exception("polling failed")
            logging.getLogger("sre_space.test").info("only in the file")
    finally:
        for handler in root.handlers[:]:
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert err == f"sre-space: error: polling failed (traceback in {path})\n"
    text = path.read_text()
    assert "Traceback (most recent call last)" in text
    assert "ValueError: bad answer ?[2J password=<redacted>" in text
    assert "hunter2" not in text and "only in the file" in text


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Authorization: Bearer abcdefgh123", "Authorization: <redacted>"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", "{'authorization': '<redacted>'}"),
        ("sent Bearer eyJhbGciOiJI.eyJzdWIi.c2lnbmF0dXJl", "sent Bearer <redacted>"),
        ("otlp_token=s3cr3t-value&x=1", "otlp_token=<redacted>&x=1"),
        ('{"api_key": "k-123456"}', '{"api_key": "<redacted>"}'),
        ("a basic check of the bearer token", "a basic check of the bearer token"),
        ("max_tokens=5 token_count=3", "max_tokens=5 token_count=3"),
    ],
)
def test_secrets_are_redacted_and_ordinary_words_are_not(said: str, shown: str) -> None:
    assert logs.Redactor().redact(said) == shown


def test_the_token_files_of_the_home_are_redacted_by_value(tmp_path: Path) -> None:
    redactor = logs.Redactor()
    redactor.watch(tmp_path)
    assert redactor.redact("x mind-token-value-1 y") == "x mind-token-value-1 y"
    (tmp_path / "mind.token").write_text("mind-token-value-1\n")
    assert redactor.redact("x mind-token-value-1 y") == "x <redacted> y"
