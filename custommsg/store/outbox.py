"""The outbox's queries: queue, list, and move entries through the state machine (``core.records``).

A ``db`` argument is a connection inside a transaction the caller holds
(``with store.transaction() as db``); every move is checked against the state machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.records import ALL, QUEUED, SENT, UNACKNOWLEDGED, OutboxEntry, Page, check_move
from .query import OUTBOX_COLUMNS as COLUMNS
from .query import Db, outbox_from_row, where

if TYPE_CHECKING:
    from .database import Store

class OutboxQueries:
    def __init__(self, store: Store):
        self.store = store

    def next_updated_index(self, db: Db) -> int:
        row = db.execute(
            "INSERT INTO vars (name, value) VALUES ('outbox_updated_index', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = vars.value + 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    def enqueue(
        self, peer_id: str, msg_type: int, payload: bytes, now: float, expires_at: float | None, per_peer_max: int,
        ack: bool = False,
    ) -> OutboxEntry | None:
        """Queue a message; ``None`` when the peer's queue already holds ``per_peer_max``: queued
        entries, and acknowledged ones handed over but not acknowledged yet."""
        with self.store.transaction() as db:
            peer = bytes.fromhex(peer_id)
            pending = db.execute(
                "SELECT (SELECT COUNT(*) FROM outbox WHERE peer_id = ? AND status = ?) + "
                "(SELECT COUNT(*) FROM outbox WHERE ack = 1 AND peer_id = ? AND status IN (?, ?))",
                (peer, QUEUED, peer, *UNACKNOWLEDGED[1:]),
            ).fetchone()[0]
            if pending >= per_peer_max:
                return None
            entry_id = db.insert(
                "INSERT INTO outbox (peer_id, type, payload, status, created_at, updated_at, expires_at, ack) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (bytes.fromhex(peer_id), msg_type, payload, QUEUED, now, now, expires_at, int(ack)),
            )
            return OutboxEntry(
                entry_id, peer_id, msg_type, payload, QUEUED, None, now, now, None, expires_at, None, ack
            )

    def outbox_entry(self, entry_id: int) -> OutboxEntry | None:
        rows = self.store.read(f"SELECT {COLUMNS} FROM outbox WHERE id = ?", (entry_id,))
        return outbox_from_row(rows[0]) if rows else None

    def list_outbox(
        self, peer_id: str | None = None, status: str | None = None, page: Page = ALL
    ) -> list[OutboxEntry]:
        column = "id" if page.index == "created" else "updated_index"
        rows = self.store.paged(COLUMNS, "outbox", where(peer_id, status=status), column, page)
        return [outbox_from_row(r) for r in rows]

    def queued_for(self, peer_id: str) -> list[OutboxEntry]:
        """The peer's queued messages, oldest first (FIFO)."""
        return self.list_outbox(peer_id, QUEUED)

    def peers_with_queued(self) -> list[str]:
        rows = self.store.read("SELECT DISTINCT peer_id FROM outbox WHERE status = ?", (QUEUED,))
        return [bytes(r[0]).hex() for r in rows]

    def transition(
        self, entry_id: int, to_status: str, now: float, reason: str | None = None, from_status: str = QUEUED,
        unsequenced: bool = False,
    ) -> OutboxEntry | None:
        """Move an entry from ``from_status`` to ``to_status``; ``None`` if it was not in it
        (or, with ``unsequenced``, if it has a seq: it may have reached the peer).

        Only queued entries move, so each entry leaves ``queued`` exactly once: a
        cancelled message is never sent afterwards, a sent one never expires.
        """
        with self.store.transaction() as db:
            return self.move(db, entry_id, to_status, now, reason, from_status, unsequenced)

    def move(
        self, db: Db, entry_id: int, to_status: str, now: float, reason: str | None = None,
        from_status: str = QUEUED, unsequenced: bool = False,
    ) -> OutboxEntry | None:
        """:meth:`transition`, inside a transaction the caller holds."""
        check_move(from_status, to_status)
        updated_index = self.next_updated_index(db)
        row = db.execute(
            "UPDATE outbox SET status = ?, reason = ?, updated_at = ?, updated_index = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
            f"WHERE id = ? AND status = ?{' AND seq IS NULL' if unsequenced else ''} RETURNING {COLUMNS}",
            (to_status, reason, now, updated_index, to_status, now, entry_id, from_status),
        ).fetchone()
        if row is None:
            # Nothing moved: give the updated_index back so the sequence has no gap.
            db.execute("UPDATE vars SET value = value - 1 WHERE name = 'outbox_updated_index'")
            return None
        return outbox_from_row(row)

    def ids_with_status(self, status: str) -> list[int]:
        return [r[0] for r in self.store.read("SELECT id FROM outbox WHERE status = ? ORDER BY id", (status,))]

    def expired_ids(self, now: float) -> list[int]:
        """Entries whose ttl passed: queued ones, and acknowledged ones sent but not acknowledged."""
        rows = self.store.read(
            "SELECT id FROM outbox WHERE (status = ? OR (ack = 1 AND status = ?)) "
            "AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id",
            (QUEUED, SENT, now),
        )
        return [r[0] for r in rows]
