"""Fixtures every tier shares: the PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import pg


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a real PostgreSQL server for this session (skips, or fails under CI, without one)."""
    with pg.server() as (url, _directory):
        yield url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[str, str | None]]:
    """(URL, tools/pgserver directory or None when CUSTOMMSG_PG_URL named the server): for the tests that
    stop and start it."""
    with pg.server() as found:
        yield found
