"""Fixtures shared by the unit tests of the store and what is built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from custommsg.store.database import Store


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "custommsg.sqlite3")


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    opened = Store(db_path)
    yield opened
    opened.close()
