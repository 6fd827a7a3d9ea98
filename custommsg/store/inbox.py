"""The inbox's queries: store a message (and make room), list, find, answer, delete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from typing import TYPE_CHECKING

from ..core.records import ALL, JsonRpcTag, Page, StoredMessage
from .query import INBOX_COLUMNS as COLUMNS
from .query import Db, message_from_row, where

if TYPE_CHECKING:
    from .database import Store

class InboxQueries:
    def __init__(self, store: Store):
        self.store = store
        rows = store.read("SELECT COUNT(*) FROM inbox")
        self.count: int = rows[0][0]  # messages stored now, kept in step by add and delete

    def add_message(
        self, peer_id: str, payload: bytes, msg_type: int, received_at: float, inbox_max: int,
        rpc: JsonRpcTag | None = None, gate: Callable[[Db], bool] | None = None,
        counted: tuple[str, ...] = (),
    ) -> tuple[StoredMessage, list[tuple[str, int]]] | None:
        """Store one message, then drop the oldest beyond ``inbox_max``.

        Returns the stored message and the (peer, type) of each message dropped to
        make room. ``gate`` runs first, in the same transaction: when it
        returns False nothing is stored (and None is returned); whatever it wrote commits or
        rolls back with the message (``acked``: the receiver's last seq per stream). The
        message's ``counted`` counters and the drops' ``dropped_retention`` move in that
        transaction too: the totals never lag the rows.
        """
        with self.store.transaction() as db:
            if gate is not None and not gate(db):
                return None
            created_index = db.insert(
                "INSERT INTO inbox (peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bytes.fromhex(peer_id), msg_type, payload, received_at, *(astuple(rpc) if rpc else (None,) * 3)),
            )
            count = self.count + 1
            dropped: list[tuple[str, int]] = []
            if count > inbox_max:
                rows = db.execute(
                    "DELETE FROM inbox WHERE created_index IN "
                    "(SELECT created_index FROM inbox ORDER BY created_index LIMIT ?) "
                    "RETURNING peer_id, type",
                    (count - inbox_max,),
                ).fetchall()
                dropped = [(bytes(p).hex(), t) for p, t in rows]
                count -= len(dropped)
            for name in counted:
                self.store.counters.count_here(peer_id, msg_type, name)
            for p, t in dropped:
                self.store.counters.count_here(p, t, "dropped_retention")
        self.count = count
        return StoredMessage(created_index, peer_id, msg_type, payload, received_at, rpc), dropped

    def list_messages(
        self, peer_id: str | None = None, msg_type: int | None = None, page: Page = ALL, method: str | None = None
    ) -> list[StoredMessage]:
        filters = where(peer_id, type=msg_type, rpc_method=method)
        return [message_from_row(r) for r in self.store.paged(COLUMNS, "inbox", filters, "created_index", page)]

    def first_message(
        self, min_index: int, peer_id: str | None = None, msg_type: int | None = None, method: str | None = None
    ) -> StoredMessage | None:
        found = self.list_messages(peer_id, msg_type, Page("created", min_index, 1), method)
        return found[0] if found else None

    def requests_with_id(self, rpc_id: str) -> list[StoredMessage]:
        """Stored bLIP-50 requests with this JSON-RPC id, from any peer."""
        rows = self.store.read(f"SELECT {COLUMNS} FROM inbox WHERE rpc_id = ? AND rpc_kind = 'request'", (rpc_id,))
        return [message_from_row(r) for r in rows]

    def set_answered(self, created_index: int, answered_at: float | None) -> bool:
        """Mark a stored request answered (or, with ``None``, not answered after all).

        Marking succeeds once: False when it was already answered, so two answers cannot both go out.
        """
        with self.store.transaction() as db:
            guard = "answered_at IS NULL" if answered_at is not None else "answered_at IS NOT NULL"
            return bool(db.execute(
                f"UPDATE inbox SET answered_at = ? WHERE created_index = ? AND {guard}", (answered_at, created_index)
            ).rowcount == 1)

    def last_index(self) -> int:
        """The highest created_index ever given, deleted or not (0 for none)."""
        return self.store.last_inbox_index()

    def delete_messages(self, created_index: int | None = None, up_to: int | None = None) -> int:
        with self.store.transaction() as db:
            if created_index is not None:
                deleted = db.execute("DELETE FROM inbox WHERE created_index = ?", (created_index,)).rowcount
            else:
                deleted = db.execute("DELETE FROM inbox WHERE created_index <= ?", (up_to,)).rowcount
        self.count -= deleted
        return int(deleted)
