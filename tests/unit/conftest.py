"""Fixtures shared by the unit tests of the store and what is built on it.

The store's tests run on both engines: a test that takes ``store`` or ``open_store`` (and
not ``db_path``, which means it reads the SQLite file itself) runs once on SQLite and once
on PostgreSQL (a real server, ``tests/pg.py``), each in a fresh file or schema.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from custommsg.store.database import Store

from .. import pg

ENGINES = ("sqlite", "postgres")
OpenStore = Callable[[], Store]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        sqlite_only = "db_path" in metafunc.fixturenames
        metafunc.parametrize("engine", ENGINES[:1] if sqlite_only else ENGINES)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "custommsg.sqlite3")


@pytest.fixture
def open_store(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OpenStore]:
    """Opens a Store on this test's database, as often as the test asks (a restart opens it again)."""
    if engine == "sqlite":
        yield functools.partial(Store, str(tmp_path / "custommsg.sqlite3"))
        return
    url = request.getfixturevalue("pg_url")
    schema = pg.fresh_schema()
    yield functools.partial(Store, url, schema)
    pg.drop_schema(url, schema)


@pytest.fixture
def store(open_store: OpenStore) -> Iterator[Store]:
    opened = open_store()
    yield opened
    opened.close()
