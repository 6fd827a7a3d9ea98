"""The inbox's queries: store a message (and make room), list, find, answer, delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import astuple
from typing import TYPE_CHECKING

from ..core.protocols import Decoded
from ..core.records import ALL, JsonRpcTag, Page, StoredMessage
from .query import INBOX_COLUMNS as COLUMNS
from .query import Db, message_from_row, where

if TYPE_CHECKING:
    from .database import Store

# Unanswered bLIP-50 requests kept per peer and in all (lightning-liquidity's service keeps 10 per peer
# and 1000 in all): a client waits for each answer, so an honest one has a handful open. Past either,
# the newest request is not stored (counted as dropped, cause ``unanswered``); the ones kept stay.
MAX_UNANSWERED_PER_PEER = 100
MAX_UNANSWERED = 1000
PER_PEER, IN_ALL = "lsps_requests_per_peer", "lsps_requests"


class RequestRoom:
    """The gate ``add_message`` runs for a bLIP-50 request: True if the peer, and the node, hold fewer
    unanswered requests than their bound; else ``full`` names the bound (PER_PEER or IN_ALL)."""

    def __init__(self, peer_id: str, per_peer_max: int = MAX_UNANSWERED_PER_PEER, total_max: int = MAX_UNANSWERED):
        self.peer = bytes.fromhex(peer_id)
        self.per_peer_max = per_peer_max
        self.total_max = total_max
        self.full: str | None = None

    def __call__(self, db: Db) -> bool:
        unanswered = "FROM inbox WHERE rpc_kind = 'request' AND answered_at IS NULL"
        peer_count = db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 {unanswered} AND peer_id = ? LIMIT ?) AS waiting",
            (self.peer, self.per_peer_max)
        ).fetchone()[0]
        if peer_count >= self.per_peer_max:
            self.full = PER_PEER
            return False
        total = db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 {unanswered} LIMIT ?) AS waiting", (self.total_max,)
        ).fetchone()[0]
        if total >= self.total_max:
            self.full = IN_ALL
            return False
        return True


class InboxQueries:
    def __init__(self, store: Store):
        self.store = store
        rows = store.read("SELECT COUNT(*) FROM inbox")
        self.count: int = rows[0][0]  # messages stored now, kept in step by add and delete

    def add_message(
        self, peer_id: str, payload: bytes, msg_type: int, received_at: float, inbox_max: int,
        rpc: JsonRpcTag | None = None, gate: Callable[[Db], bool] | None = None, decoded: Decoded | None = None,
        counted: tuple[str, ...] = (),
    ) -> tuple[StoredMessage, list[tuple[str, int, int]]] | None:
        """Store one message, then drop the oldest beyond ``inbox_max``.

        Returns the stored message and the (peer, type, size) of each message dropped to
        make room. ``gate`` runs first, in the same transaction: when it
        returns False nothing is stored (and None is returned); whatever it wrote commits or
        rolls back with the message (``acked``: the receiver's last seq per stream). The
        message's ``counted`` counters and the drops' ``dropped_retention`` move in that
        transaction too: the totals never lag the rows. ``decoded``: a registered protocol's
        name and fields (or decode error), stored beside the payload.
        """
        name = fields = error = None
        if decoded is not None:
            name, error = decoded.name, decoded.error
            fields = None if decoded.fields is None else json.dumps(decoded.fields, separators=(",", ":"))
        with self.store.transaction() as db:
            if gate is not None and not gate(db):
                return None
            created_index = db.insert(
                "INSERT INTO inbox (peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id, name, fields, "
                "decode_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (bytes.fromhex(peer_id), msg_type, payload, received_at, *(astuple(rpc) if rpc else (None,) * 3),
                 name, fields, error),
            )
            count = self.count + 1
            dropped: list[tuple[str, int, int]] = []
            if count > inbox_max:
                rows = db.execute(
                    "DELETE FROM inbox WHERE created_index IN "
                    "(SELECT created_index FROM inbox ORDER BY created_index LIMIT ?) "
                    "RETURNING peer_id, type, length(payload)",
                    (count - inbox_max,),
                ).fetchall()
                dropped = [(bytes(p).hex(), t, size) for p, t, size in rows]
                count -= len(dropped)
            for counter in counted:
                self.store.counters.count_here(peer_id, msg_type, counter, len(payload))
            for p, t, size in dropped:
                self.store.counters.count_here(p, t, "dropped_retention", size)
        self.count = count
        message = StoredMessage(
            created_index, peer_id, msg_type, payload, received_at, rpc, None, name,
            None if decoded is None else decoded.fields, error,
        )
        return message, dropped

    def list_messages(
        self, peer_id: str | None = None, msg_type: int | None = None, page: Page = ALL, method: str | None = None,
        name: str | None = None,
    ) -> list[StoredMessage]:
        filters = where(peer_id, type=msg_type, rpc_method=method, name=name)
        return [message_from_row(r) for r in self.store.paged(COLUMNS, "inbox", filters, "created_index", page)]

    def first_message(
        self, min_index: int, peer_id: str | None = None, msg_type: int | None = None, method: str | None = None,
        name: str | None = None,
    ) -> StoredMessage | None:
        found = self.list_messages(peer_id, msg_type, Page("created", min_index, 1), method, name)
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
