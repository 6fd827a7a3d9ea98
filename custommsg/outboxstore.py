"""The outbox's queries: a part of :class:`store.Store`, split out by concern.

``Store`` inherits these methods; they run on its connection, behind its lock, through
the two methods :class:`Tables` names. A ``db`` argument is a connection inside a
transaction the caller holds (``with self._transaction() as db``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from .schema import (
    ALL,
    OUTBOX_COLUMNS,
    QUEUED,
    SENT,
    UNACKNOWLEDGED,
    OutboxEntry,
    Page,
    outbox_from_row,
)

Db = Any  # a sqlite3.Connection inside a transaction (sqlite3 itself is store's alone)


class Tables:
    """What the table mixins need from :class:`store.Store`, which provides it."""

    def _transaction(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @staticmethod
    def _filters(peer_id: str | None, **columns: Any) -> tuple[str, list[Any]]:
        """``WHERE`` clauses for the filters that are given (``None`` means any)."""
        given = {"peer_id": None if peer_id is None else bytes.fromhex(peer_id), **columns}
        given = {column: value for column, value in given.items() if value is not None}
        return " AND ".join(f"{column} = ?" for column in given), list(given.values())



class OutboxTables(Tables):
    def next_updated_index(self, db: Db) -> int:
        row = db.execute(
            "INSERT INTO vars (name, value) VALUES ('outbox_updated_index', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    def enqueue(
        self, peer_id: str, msg_type: int, payload: bytes, now: float, expires_at: float | None, per_peer_max: int,
        ack: bool = False,
    ) -> OutboxEntry | None:
        """Queue a message; ``None`` when the peer's queue already holds ``per_peer_max``: queued
        entries, and acknowledged ones handed over but not acknowledged yet."""
        with self._transaction() as db:
            peer = bytes.fromhex(peer_id)
            pending = db.execute(
                "SELECT (SELECT COUNT(*) FROM outbox WHERE peer_id = ? AND status = ?) + "
                "(SELECT COUNT(*) FROM outbox WHERE ack = 1 AND peer_id = ? AND status IN (?, ?))",
                (peer, QUEUED, peer, *UNACKNOWLEDGED[1:]),
            ).fetchone()[0]
            if pending >= per_peer_max:
                return None
            cursor = db.execute(
                "INSERT INTO outbox (peer_id, type, payload, status, created_at, updated_at, expires_at, ack) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (bytes.fromhex(peer_id), msg_type, payload, QUEUED, now, now, expires_at, int(ack)),
            )
            assert cursor.lastrowid is not None
            return OutboxEntry(
                cursor.lastrowid, peer_id, msg_type, payload, QUEUED, None, now, now, None, expires_at, None, ack
            )

    def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        rows = self._read(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (entry_id,))
        return outbox_from_row(rows[0]) if rows else None

    def list_outbox(
        self, peer_id: str | None = None, status: str | None = None, page: Page = ALL
    ) -> list[OutboxEntry]:
        where, args = self._filters(peer_id, status=status)
        column = "id" if page.index == "created" else "updated_index"
        where = " AND ".join(filter(None, [where, f"{column} >= ?"]))
        limit = -1 if page.limit is None else page.limit
        rows = self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {where} ORDER BY {column} LIMIT ?",
            [*args, page.start, limit],
        )
        return [outbox_from_row(r) for r in rows]

    def queued_for(self, peer_id: str) -> list[OutboxEntry]:
        """The peer's queued messages, oldest first (FIFO)."""
        return self.list_outbox(peer_id, QUEUED)

    def peers_with_queued(self) -> list[str]:
        rows = self._read("SELECT DISTINCT peer_id FROM outbox WHERE status = ?", (QUEUED,))
        return [r[0].hex() for r in rows]

    def transition(
        self, entry_id: int, to_status: str, now: float, reason: str | None = None, from_status: str = QUEUED,
        unsequenced: bool = False,
    ) -> OutboxEntry | None:
        """Move an entry from ``from_status`` to ``to_status``; ``None`` if it was not in it
        (or, with ``unsequenced``, if it has a seq: it may have reached the peer).

        Only queued entries move, so each entry leaves ``queued`` exactly once: a
        cancelled message is never sent afterwards, a sent one never expires.
        """
        with self._transaction() as db:
            return self.move(db, entry_id, to_status, now, reason, from_status, unsequenced)

    def move(
        self, db: Db, entry_id: int, to_status: str, now: float, reason: str | None = None,
        from_status: str = QUEUED, unsequenced: bool = False,
    ) -> OutboxEntry | None:
        """:meth:`transition`, inside a transaction the caller holds."""
        updated_index = self.next_updated_index(db)
        row = db.execute(
            "UPDATE outbox SET status = ?, reason = ?, updated_at = ?, updated_index = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
            f"WHERE id = ? AND status = ?{' AND seq IS NULL' if unsequenced else ''} RETURNING {OUTBOX_COLUMNS}",
            (to_status, reason, now, updated_index, to_status, now, entry_id, from_status),
        ).fetchone()
        if row is None:
            # Nothing moved: give the updated_index back so the sequence has no gap.
            db.execute("UPDATE vars SET value = value - 1 WHERE name = 'outbox_updated_index'")
            return None
        return outbox_from_row(row)

    def ids_with_status(self, status: str) -> list[int]:
        return [r[0] for r in self._read("SELECT id FROM outbox WHERE status = ? ORDER BY id", (status,))]

    def expired_ids(self, now: float) -> list[int]:
        """Entries whose ttl passed: queued ones, and acknowledged ones sent but not acknowledged."""
        rows = self._read(
            "SELECT id FROM outbox WHERE (status = ? OR (ack = 1 AND status = ?)) "
            "AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id",
            (QUEUED, SENT, now),
        )
        return [r[0] for r in rows]
