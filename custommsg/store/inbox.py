"""The inbox's queries: store a message (and make room), list, find, answer, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.records import ALL, Decoded, Incoming, JsonRpcTag, Page, StoredMessage
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


_INSERT = (
    "INSERT INTO inbox (peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id, name, fields, "
    "decode_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        self.newest = self.last_index()  # the highest created_index this store has seen given

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
        message = Incoming(peer_id, payload, msg_type, received_at, rpc, decoded)
        with self.store.transaction() as db:
            if gate is not None and not gate(db):
                return None
            keys, dropped, count = self._add(db, [message], inbox_max, counted)
        self.count = count
        return self._given([message], keys())[0], dropped

    def add_messages(
        self, messages: list[Incoming], inbox_max: int, counted: tuple[str, ...] = (),
    ) -> tuple[list[StoredMessage], list[tuple[str, int, int]]]:
        """Store several messages in one transaction, in order, as :meth:`add_message` stores one: a round
        of hook calls from many peers, committed once. The statements go to the server together
        (``Store.transaction(pipelined=True)``): one round trip, unless room must be made. On PostgreSQL,
        when no room is needed, they are one statement (``Store.store_round``)."""
        if self.store.rounds_in_one_statement and self.count + len(messages) <= inbox_max:
            with self.store.lock:
                self._count_here(messages, counted)
                given = self.store.store_round([message.row() for message in messages])
            self.count += len(messages)
            return self._given(messages, given), []
        with self.store.transaction(pipelined=True) as db:
            keys, dropped, count = self._add(db, messages, inbox_max, counted)
        self.count = count
        return self._given(messages, keys()), dropped

    def _given(self, messages: list[Incoming], keys: list[int]) -> list[StoredMessage]:
        """Committed: ``messages`` as stored under ``keys`` (in order), which :attr:`newest` follows."""
        self.newest = max(self.newest, *keys)
        return [message.stored(key) for message, key in zip(messages, keys, strict=True)]

    def _add(
        self, db: Db, messages: list[Incoming], inbox_max: int, counted: tuple[str, ...],
    ) -> tuple[Callable[[], list[int]], list[tuple[str, int, int]], int]:
        """Inside a transaction: insert ``messages``, drop the oldest beyond ``inbox_max``, count both.
        Returns the new keys (to read once the transaction ended), the drops, and the count of messages."""
        keys = db.insert_many(_INSERT, [message.row() for message in messages])
        count = self.count + len(messages)
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
        self._count_here(messages, counted)
        for p, t, size in dropped:
            self.store.counters.count_here(p, t, "dropped_retention", size)
        return keys, dropped, count

    def _count_here(self, messages: list[Incoming], counted: tuple[str, ...]) -> None:
        """Inside the transaction that stores ``messages``: their ``counted`` counters, written by it."""
        for message in messages:
            for counter in counted:
                self.store.counters.count_here(message.peer_id, message.msg_type, counter, len(message.payload))

    def find_stored(self, messages: list[Incoming], after: int) -> list[StoredMessage]:
        """Those of ``messages`` stored after ``after`` (the :attr:`newest` when they were written), matched
        on peer, arrival time and bytes, in order: for a round whose commit went unanswered
        (``StorageError.unsure``). Counted in :attr:`count`."""
        found: list[StoredMessage] = []
        for message in messages:
            rows = self.store.read(
                f"SELECT {COLUMNS} FROM inbox WHERE peer_id = ? AND created_index > ? AND received_at = ? "
                "AND payload = ? ORDER BY created_index LIMIT 1",
                (bytes.fromhex(message.peer_id), after, message.received_at, message.payload),
            )
            found += [message_from_row(row) for row in rows]
        self.count += len(found)
        self.newest = max([self.newest, *(stored.created_index for stored in found)])
        return found

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
