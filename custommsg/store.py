"""Durable state in one SQLite file: the inbox, the outbox, the counters, acknowledged delivery.

WAL mode with ``synchronous=NORMAL``: a committed transaction survives the plugin
or lightningd being killed (only a power loss may take the last few). Every query
the RPCs make is served by an index, so their cost does not grow with the inbox.
The tables and row shapes are ``schema``'s; opening a file brings it up to
:data:`schema.SCHEMA_VERSION`, one migration at a time, each in its own transaction.

One connection is shared by the plugin's threads behind one lock; SQLite's own
locking covers other processes (a reader with the ``sqlite3`` shell, say).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from typing import Any

from .ackstore import AckTables
from .errors import StorageError
from .schema import (
    ALL,
    INBOX_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    CounterKey,
    CountsByPeerType,
    JsonRpcTag,
    Page,
    StoredMessage,
    group_counts,
    message_from_row,
)


class Store(AckTables):
    """The database; the outbox's queries are ``outboxstore``'s, acknowledged delivery's ``ackstore``'s."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        # Counter increments not yet written: flushed inside the next transaction, so
        # a write that fails (disk full) loses no count, and counting costs no commit.
        self._pending: Counter[CounterKey] = Counter()
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self.inbox_count = self._db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            self._close_quietly()
            raise StorageError(
                f"cannot open the custommsg database {path}: {exc}", {"path": path}
            ) from exc
        except StorageError:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    # -- plumbing -------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} has schema version {version}, newer than this custommsg "
                f"understands ({SCHEMA_VERSION}): upgrade the plugin",
                {"path": self.path},
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # SQLite may have rolled back already (disk full, I/O error); a second
        # ROLLBACK would fail and hide the real cause.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    flushed = self._flush_counters()
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                self._pending.subtract(flushed)
                self._pending = +self._pending  # drop the zeros
            except sqlite3.Error as exc:
                raise StorageError(
                    f"custommsg database {self.path}: {exc}", {"path": self.path}
                ) from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"custommsg database {self.path}: {exc}", {"path": self.path}) from exc

    def _flush_counters(self) -> Counter[CounterKey]:
        flushed = Counter(self._pending)
        if flushed:
            self._db.executemany(
                "INSERT INTO counters (peer_id, type, name, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (peer_id, type, name) DO UPDATE SET count = count + excluded.count",
                [(bytes.fromhex(p), t, n, c) for (p, t, n), c in flushed.items()],
            )
        return flushed

    def count(self, peer_id: str, msg_type: int, name: str, n: int = 1) -> None:
        """Add to a persistent counter; written with the next transaction."""
        with self._lock:
            self._pending[(peer_id, msg_type, name)] += n

    def flush(self) -> None:
        with self._transaction():
            pass

    def close(self) -> None:
        with self._lock:
            try:
                self.flush()
            except StorageError:
                pass
            self._db.close()

    # -- inbox ----------------------------------------------------------------

    def add_message(
        self, peer_id: str, payload: bytes, msg_type: int, received_at: float, inbox_max: int,
        rpc: JsonRpcTag | None = None, gate: Callable[[sqlite3.Connection], bool] | None = None,
    ) -> tuple[StoredMessage, list[tuple[str, int]]] | None:
        """Store one message, then drop the oldest beyond ``inbox_max``.

        Returns the stored message and the (peer, type) of each message dropped to
        make room, for the counters. ``gate`` runs first, in the same transaction: when it
        returns False nothing is stored (and None is returned); whatever it wrote commits or
        rolls back with the message (``ackstore``: the receiver's last seq per stream).
        """
        with self._transaction() as db:
            if gate is not None and not gate(db):
                return None
            cursor = db.execute(
                "INSERT INTO inbox (peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bytes.fromhex(peer_id), msg_type, payload, received_at, *(astuple(rpc) if rpc else (None,) * 3)),
            )
            created_index = cursor.lastrowid
            assert created_index is not None
            count = self.inbox_count + 1
            dropped: list[tuple[str, int]] = []
            if count > inbox_max:
                rows = db.execute(
                    "DELETE FROM inbox WHERE created_index IN "
                    "(SELECT created_index FROM inbox ORDER BY created_index LIMIT ?) "
                    "RETURNING peer_id, type",
                    (count - inbox_max,),
                ).fetchall()
                dropped = [(p.hex(), t) for p, t in rows]
                count -= len(dropped)
        self.inbox_count = count
        for p, t in dropped:
            self.count(p, t, "dropped_retention")
        return StoredMessage(created_index, peer_id, msg_type, payload, received_at, rpc), dropped

    def list_messages(
        self, peer_id: str | None = None, msg_type: int | None = None, page: Page = ALL, method: str | None = None
    ) -> list[StoredMessage]:
        where, args = self._filters(peer_id, type=msg_type, rpc_method=method)
        where = " AND ".join(filter(None, [where, "created_index >= ?"]))
        limit = -1 if page.limit is None else page.limit
        rows = self._read(
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE {where} ORDER BY created_index LIMIT ?",
            [*args, page.start, limit],
        )
        return [message_from_row(r) for r in rows]

    def first_message(
        self, min_index: int, peer_id: str | None = None, msg_type: int | None = None, method: str | None = None
    ) -> StoredMessage | None:
        found = self.list_messages(peer_id, msg_type, Page("created", min_index, 1), method)
        return found[0] if found else None

    def requests_with_id(self, rpc_id: str) -> list[StoredMessage]:
        """Stored bLIP-50 requests with this JSON-RPC id, from any peer."""
        rows = self._read(f"SELECT {INBOX_COLUMNS} FROM inbox WHERE rpc_id = ? AND rpc_kind = 'request'", (rpc_id,))
        return [message_from_row(r) for r in rows]

    def set_answered(self, created_index: int, answered_at: float | None) -> bool:
        """Mark a stored request answered (or, with ``None``, not answered after all).

        Marking succeeds once: False when it was already answered, so two answers cannot both go out.
        """
        with self._transaction() as db:
            guard = "answered_at IS NULL" if answered_at is not None else "answered_at IS NOT NULL"
            return db.execute(
                f"UPDATE inbox SET answered_at = ? WHERE created_index = ? AND {guard}", (answered_at, created_index)
            ).rowcount == 1

    def last_index(self) -> int:
        """The highest created_index ever given, deleted or not (0 for none)."""
        rows = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'")
        return rows[0][0] if rows else 0

    def delete_messages(self, created_index: int | None = None, up_to: int | None = None) -> int:
        with self._transaction() as db:
            if created_index is not None:
                deleted = db.execute("DELETE FROM inbox WHERE created_index = ?", (created_index,)).rowcount
            else:
                deleted = db.execute("DELETE FROM inbox WHERE created_index <= ?", (up_to,)).rowcount
        self.inbox_count -= deleted
        return deleted

    def counters(self, peer_id: str | None = None, msg_type: int | None = None) -> CountsByPeerType:
        """Totals per (peer, type), counts not yet written included.

        Reading needs no write, so this answers while the database cannot be
        written, which is when the storage-error counts matter most.
        """
        where, args = self._filters(peer_id, type=msg_type)
        with self._lock:
            rows = self._read(
                "SELECT peer_id, type, name, count FROM counters" + (f" WHERE {where}" if where else ""), args
            )
            pending = list(self._pending.items())
        written = group_counts((((p.hex(), t, name), count) for p, t, name, count in rows), None, None, {})
        return group_counts(pending, peer_id, msg_type, written)
