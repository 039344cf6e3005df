"""A state URL (``postgresql://user:password@host:port/database?options``), checked and redacted.

The password never reaches a message, a log line or a traceback: the URL is
kept in a :class:`pydantic.SecretStr` by the settings, and here only the
redacted form is ever printed (``repr`` included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from sre_space.errors import UsageError

SCHEMES = ("postgresql", "postgres")
EXAMPLE = "postgresql://USER@HOST:5432/DATABASE"


@dataclass(frozen=True)
class StateUrl:
    url: str = field(repr=False)
    database: str

    @classmethod
    def parse(cls, text: str) -> StateUrl:
        """:class:`UsageError` (exit 2) for anything that is not a PostgreSQL URL."""
        text = text.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise UsageError(f"state_url {redact(text)} is not a URL; use {EXAMPLE}") from None
        if parts.scheme not in SCHEMES:
            raise UsageError(
                f"state_url {redact(text)} is not a PostgreSQL URL; use {EXAMPLE} "
                "(unset it for SQLite under the home)"
            )
        database = parts.path.lstrip("/")
        if not database or "/" in database:
            raise UsageError(f"state_url {redact(text)} names no database; use {EXAMPLE}")
        return cls(text, database)

    @property
    def redacted(self) -> str:
        return redact(self.url)

    def with_database(self, database: str) -> StateUrl:
        """The same server and credentials, another database (tests, the benchmark)."""
        parts = urlsplit(self.url)
        return StateUrl(urlunsplit(parts._replace(path="/" + database)), database)

    def __str__(self) -> str:
        return self.redacted

    def hide(self, message: str) -> str:
        """``message`` with this URL's password taken out (a driver's error may echo it)."""
        password = urlsplit(self.url).password
        return message.replace(password, "***") if password else message


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@", re.I)
_PASSWORD_OPTION = re.compile(r"(password=)[^&\s]*", re.I)


def redact(text: str) -> str:
    """A URL with any password replaced by ``***`` (in the user info or a ``password=`` option)."""
    text = _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
    return _PASSWORD_OPTION.sub(r"\1***", text)
