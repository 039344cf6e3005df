"""A real PostgreSQL for the tests: the machine's (127.0.0.1:5432, user postgres), or
``SRE_SPACE_TEST_PG``. Each test gets a database of its own, created and dropped here,
with a unique name so tests run in parallel; without a server they skip and say why."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sre_space.state.url import StateUrl

ADMIN_URL = os.environ.get("SRE_SPACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin() -> Any:
    """An autocommit connection to the server's maintenance database, or a skip with the reason."""
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or ["no answer"])[0]
        pytest.skip(f"no PostgreSQL answers at {StateUrl.parse(ADMIN_URL).redacted}: {reason}")


@pytest.fixture
def pg_url() -> Iterator[StateUrl]:
    """A fresh, empty database on the test server; dropped afterwards (its sessions closed)."""
    name = f"sre_test_{uuid.uuid4().hex[:12]}"
    conn = admin()
    try:
        conn.execute(f'CREATE DATABASE "{name}"')
        yield StateUrl.parse(ADMIN_URL).with_database(name)
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def terminate(url: StateUrl, pattern: str) -> int:
    """Close, from the server side, every session on ``url``'s database whose
    ``application_name`` matches ``pattern`` (a LIKE pattern); how many."""
    conn = admin()
    try:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE %s AND pid <> pg_backend_pid()",
            (url.database, pattern),
        ).fetchall()
    finally:
        conn.close()
    return len(rows)
