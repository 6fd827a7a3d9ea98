"""Everything specific to SQLite: opening the file, its pragmas, its schema version, its errors.

WAL mode with ``synchronous=NORMAL``: a committed transaction survives the plugin or
lightningd being killed (only a power loss may take the last few). One connection is
shared by the plugin's threads behind the Store's lock; SQLite's own locking covers
other processes (a reader with the ``sqlite3`` shell, say). The SQL the query parts
write is the common subset of SQLite and PostgreSQL (``INSERT ... ON CONFLICT``,
``RETURNING``); what differs stands here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .migrations import MIGRATIONS

# What a failing call raises (OSError: the directory cannot be made): the Store turns it into StorageError.
ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)


class SqliteEngine:
    """One connection to one file, in autocommit mode: the Store says when a transaction begins.
    Queries take ``?`` placeholders."""

    NO_LIMIT = -1  # SQLite's LIMIT for "all rows"

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            self._db.close()
            raise

    def describe(self) -> str:
        return self.path

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def insert(self, sql: str, args: Sequence[Any]) -> int:
        """Run an INSERT into a table whose key is an AUTOINCREMENT rowid; return the new key.
        (SQLite's own lastrowid: a RETURNING clause costs a result row to fetch.)"""
        cursor = self._db.execute(sql, args)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> Callable[[], list[int]]:
        """:meth:`insert` for each row, in order; returns what gives their keys (already known here)."""
        keys = [self.insert(sql, row) for row in rows]
        return lambda: keys

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._db.executemany(sql, rows)

    def pipelined(self) -> AbstractContextManager[None]:
        """Statements go to the file as they come: nothing to gather."""
        return nullcontext()

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        # SQLite may have rolled back already (disk full, I/O error); a second
        # ROLLBACK would fail and hide the real cause.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrations(self) -> Sequence[str]:
        return MIGRATIONS

    def set_schema_version(self, version: int) -> None:
        """Inside the migration's own transaction: it commits or rolls back with it."""
        self._db.execute(f"PRAGMA user_version = {int(version)}")

    def last_inbox_index(self) -> int:
        """The highest created_index ever given, deleted or not (0 for none): AUTOINCREMENT's own record."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
