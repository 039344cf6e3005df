"""Errors and exit codes: the one place they are defined.

    SreSpaceError            one plain line for the user, an exit code
    ├── UsageError           2  the call's words are off (unknown fault, bad flag value)
    ├── CheckFailed          1  a drill deviated, a check did not pass
    ├── Unavailable          3  infrastructure is not there (no lab, port busy, server down)
    └── TimedOut             4  a wait ran past its deadline

The CLI turns any of these into ``sre-space: <message>`` on stderr and the code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    TIMED_OUT = 4
    INTERRUPTED = 130


class SreSpaceError(Exception):
    exit_code: ExitCode = ExitCode.CHECK_FAILED


class UsageError(SreSpaceError):
    exit_code = ExitCode.USAGE


class CheckFailed(SreSpaceError):
    exit_code = ExitCode.CHECK_FAILED


class Unavailable(SreSpaceError):
    exit_code = ExitCode.UNAVAILABLE


class TimedOut(SreSpaceError):
    exit_code = ExitCode.TIMED_OUT
