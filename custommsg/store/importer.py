"""Moving a node's SQLite file into PostgreSQL: once, in one transaction, keys and all.

A node that moves its store to PostgreSQL (its wallet moved there, or ``custommsg-db``
names a URL) keeps what the SQLite file of its earlier runs holds: the inbox with its
``created_index`` values, the outbox with its ids, ``updated_index`` and acknowledged-
delivery streams, the receiver's ``last`` per stream, and the counters. Every row is
copied as it is, in the one transaction that also marks the schema imported (``vars``:
``imported_sqlite``), so an import that fails leaves nothing behind and is tried again
at the next start, and a finished one is never repeated. It happens only into a schema
that holds nothing yet: one the plugin has already stored into is left alone. The file
itself is left as it was.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .sqlite import SqliteEngine

if TYPE_CHECKING:
    from .database import Store

# Every table, parents first (none has a foreign key, but the order reads naturally).
TABLES = ("inbox", "counters", "outbox", "vars", "ack_out", "ack_in")
MARK = "imported_sqlite"
# The tables whose keys the database gives: their highest key ever given, in SQLite's own record.
KEYED = ("inbox", "outbox")


def wanted(store: Store, path: str) -> bool:
    """Whether to import ``path``: it exists, and the schema holds nothing and was never imported into."""
    if not os.path.isfile(path):
        return False
    for table in TABLES:
        if store.read(f"SELECT 1 FROM {table} LIMIT 1"):
            return False
    return True


def import_sqlite(store: Store, path: str) -> str:
    """Copy the SQLite file at ``path`` into the store (PostgreSQL), in one transaction; returns what
    was copied, for the log line."""
    # Opening it as a Store first brings an older file up to the newest schema, as a start on it would.
    type(store)(path).close()
    source = SqliteEngine(path)
    try:
        copied: dict[str, list[tuple[Any, ...]]] = {}
        columns: dict[str, list[str]] = {}
        for table in TABLES:
            columns[table] = [row[1] for row in source.execute(f"PRAGMA table_info({table})").fetchall()]
            copied[table] = [tuple(row) for row in source.execute(f"SELECT {', '.join(columns[table])} FROM {table}")]
        last_keys = {
            table: int(row[0])
            for table, row in ((t, source.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (t,)).fetchone())
                               for t in KEYED)
            if row is not None
        }
    finally:
        source.close()
    with store.transaction(f"cannot import {path} into {store.path}") as db:
        for table in TABLES:
            if copied[table]:
                names = ", ".join(columns[table])
                marks = ", ".join("?" for _ in columns[table])
                db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", copied[table])
        db.restart_keys(last_keys)
        db.execute("INSERT INTO vars (name, value) VALUES (?, 1)", (MARK,))
    return (f"{len(copied['inbox'])} messages, {len(copied['outbox'])} outbox entries, "
            f"{len(copied['ack_in'])} acknowledged-delivery streams received and {len(copied['counters'])} counters")
