"""Where log records and warnings go: one setup for every command.

- stderr (``to_stderr``, from ``cli.main`` for every command): WARNING and up,
  one line each, ``sre-space: warning: ...``, escaped (safe_text): a record may
  quote telemetry, and a terminal must not take it as control codes.
- a rotating file ``$SRE_SPACE_HOME/logs/<command>.log`` (``to_file``, from the
  commands that run a mind: run, replay, drill): INFO and up, tracebacks
  included, every line escaped so ``tail -f`` is safe.
- the cockpit (``to_file(..., alone=True)``): the file alone, nothing over its screen.
- ``record_bug``: a squad bug's traceback in ``logs/squad-errors.log`` (documented)
  and one ERROR record naming that file.

Python warnings are captured into logging (logger ``py.warnings``). Before any
handler writes a record, ``Redactor`` removes secrets from it: bearer tokens,
Authorization headers, ``token=``/``password=`` values, and the values of the
home's token files (the mind's, the lab's, the Collector's).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sre_space.paths import Paths
from sre_space.safe_text import TEXT_LIMIT, printable, printable_lines

if TYPE_CHECKING:
    from sre_space.config import Settings

BUG_LOG = "squad-errors.log"
FILE_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
MAX_BYTES = 5 * 1024 * 1024  # per file; with BACKUPS, a bounded 20 MiB per command
BACKUPS = 3
REDACTED = "<redacted>"
_STDERR = "sre-space-stderr"  # our stderr handler's name, to replace it
_SHORTEST_SECRET = 8  # a shorter "secret" would redact ordinary words

# Authorization headers in any spelling a record may quote: `Authorization: x`,
# `'authorization': 'x'`, `Proxy-Authorization=x`; the value runs to a quote or a comma.
_AUTH_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]{8,}=*")
_NAMED = re.compile(
    r"(?i)\b([\w-]*(?:token|password|passwd|secret|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
)


class Redactor(logging.Filter):
    """Rewrites a record so that no handler writes a secret, whichever handler it reaches."""

    def __init__(self) -> None:
        super().__init__()
        self._files: list[Path] = []
        self._given: set[str] = set()
        self._read: dict[Path, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def watch(self, home: Path, secrets: Iterable[str] = ()) -> None:
        """Also redact the values of ``home``'s token files, and ``secrets``."""
        paths = Paths(home)
        with self._lock:
            for path in (paths.mind_token, paths.control_token, paths.otlp_token):
                if path not in self._files:
                    self._files.append(path)
            self._given.update(s for s in secrets if len(s) >= _SHORTEST_SECRET)

    def _known(self) -> set[str]:
        """The secrets by value; a token file is read again only when it changed."""
        with self._lock:
            known = set(self._given)
            for path in self._files:
                try:
                    stamp = path.stat().st_mtime
                except OSError:
                    continue
                cached = self._read.get(path)
                if cached is None or cached[0] != stamp:
                    try:
                        cached = (stamp, path.read_text(encoding="utf-8").strip())
                    except (OSError, UnicodeDecodeError):
                        continue
                    self._read[path] = cached
                if len(cached[1]) >= _SHORTEST_SECRET:
                    known.add(cached[1])
        return known

    def redact(self, text: str) -> str:
        for secret in self._known():
            text = text.replace(secret, REDACTED)
        text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
        text = _BEARER.sub(rf"\1\2{REDACTED}", text)
        return _NAMED.sub(rf"\1{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


REDACTOR = Redactor()


class EscapingFormatter(logging.Formatter):
    """Records quote telemetry (a span name, a server's answer): every line is escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record).rstrip())


class OneLineFormatter(logging.Formatter):
    """``sre-space: warning: <first line>``, escaped; a traceback stays in the file."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"sre-space: {record.levelname.lower()}: "
        line += record.getMessage().strip().split("\n", 1)[0]
        if (record.exc_info or record.exc_text) and _files:
            line += f" (traceback in {_files[-1]})"
        return printable(line, TEXT_LIMIT)


_files: list[Path] = []  # the log files open now, the newest last (for the stderr line)


def _replace(handler: logging.Handler) -> None:
    """Install ``handler`` on the root logger in place of an earlier one of ours by its name."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == handler.name]:
        root.removeHandler(old)
        old.close()
    handler.addFilter(REDACTOR)
    root.addHandler(handler)


def to_stderr() -> None:
    """Warnings and errors on stderr, one escaped line each; Python warnings included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.name = _STDERR
    handler.setLevel(logging.WARNING)
    handler.setFormatter(OneLineFormatter())
    _replace(handler)
    root = logging.getLogger()
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def _file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setLevel(logging.INFO)
    handler.setFormatter(EscapingFormatter(FILE_FORMAT))
    return handler


@contextmanager
def to_file(settings: Settings, command: str, alone: bool = False) -> Iterator[Path]:
    """While the command runs, keep records from INFO up in ``logs/<command>.log``; its path.

    ``alone``: the file is the only handler (a full-screen app: nothing over its screen).
    """
    token = settings.otlp_token.get_secret_value() if settings.otlp_token else ""
    REDACTOR.watch(settings.home, [token])
    path = Paths(settings.home).logs_dir / f"{command}.log"
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = _file_handler(path)
    handler.addFilter(REDACTOR)
    for h in saved_handlers if alone else ():
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    _files.append(path)
    try:
        yield path
    finally:
        _files.remove(path)
        root.removeHandler(handler)
        handler.close()
        for h in saved_handlers if alone else ():
            root.addHandler(h)
        root.setLevel(saved_level)
        # Warnings stay captured while our stderr handler is there to show them.
        logging.captureWarnings(any(h.name == _STDERR for h in root.handlers))


def record_bug(home: Path, where: str, exc: BaseException) -> Path:
    """Keep ``exc``'s traceback (redacted, escaped) in ``logs/squad-errors.log``; its path."""
    path = Paths(home).logs_dir / BUG_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    REDACTOR.watch(home)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = REDACTOR.redact(f"--- {stamp} {where}\n" + "".join(traceback.format_exception(exc)))
    with path.open("a", encoding="utf-8") as out:
        out.write(printable_lines(text.rstrip("\n")) + "\n")
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    logging.getLogger("sre_space.squad").error("%s: %s (traceback in %s)", where, summary, path)
    return path
