"""What custommsg stores: the tables, their migrations, the outbox statuses and the row shapes.

The schema version lives in SQLite's ``PRAGMA user_version``; ``MIGRATIONS[n]``
brings a file from version ``n`` to ``n + 1``. A row read from a table becomes a
frozen dataclass here, and its ``to_json`` is what the RPC methods and the
``custommsg_stored`` notification return. ``store`` runs the SQL; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import strictjson
from .wire import message_body


@dataclass(frozen=True)
class Page:
    """A page of a list command, as lightningd's list commands take it (see ``validate.parse_page``)."""

    index: str  # "created" or "updated"
    start: int
    limit: int | None


MIGRATIONS: Sequence[str] = (
    # 1: the inbox and its counters
    """
    CREATE TABLE inbox (
        created_index INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        payload BLOB NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX inbox_by_peer ON inbox (peer_id, created_index);
    CREATE INDEX inbox_by_type ON inbox (type, created_index);
    CREATE INDEX inbox_by_peer_type ON inbox (peer_id, type, created_index);
    CREATE TABLE counters (
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (peer_id, type, name)
    ) WITHOUT ROWID;
    """,
    # 2: the outbox
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        payload BLOB NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        sent_at REAL,
        expires_at REAL,
        updated_index INTEGER
    );
    CREATE INDEX outbox_by_peer_status ON outbox (peer_id, status, id);
    CREATE INDEX outbox_by_status_expiry ON outbox (status, expires_at);
    CREATE UNIQUE INDEX outbox_by_updated ON outbox (updated_index);
    CREATE TABLE vars (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    """,
    # 3: JSON-RPC over custom messages (bLIP-50): what a message is, and when we answered a request
    """
    ALTER TABLE inbox ADD COLUMN rpc_kind TEXT;
    ALTER TABLE inbox ADD COLUMN rpc_method TEXT;
    ALTER TABLE inbox ADD COLUMN rpc_id TEXT;
    ALTER TABLE inbox ADD COLUMN answered_at REAL;
    CREATE INDEX inbox_by_method ON inbox (rpc_method, created_index) WHERE rpc_method IS NOT NULL;
    CREATE INDEX inbox_by_rpc_id ON inbox (rpc_id) WHERE rpc_id IS NOT NULL;
    """,
    # 4: acknowledged delivery. Outbox entries sent with ack=true carry our stream to that peer and their
    # seq (from their first hand-off on); ack_out holds, per peer, our current stream (8 random bytes), the
    # next seq, and whether we gave up on a message of it; ack_in holds, per (peer, stream), the highest
    # seq stored (``last``), written in the transaction that stores the message.
    """
    ALTER TABLE outbox ADD COLUMN ack INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN stream BLOB;
    ALTER TABLE outbox ADD COLUMN seq INTEGER;
    ALTER TABLE outbox ADD COLUMN delivered_at REAL;
    CREATE INDEX outbox_ack_by_stream ON outbox (peer_id, stream, status, seq) WHERE ack = 1;
    CREATE INDEX outbox_ack_by_peer ON outbox (peer_id, status, id) WHERE ack = 1;
    CREATE INDEX outbox_ack_by_status ON outbox (status, expires_at) WHERE ack = 1;
    CREATE TABLE ack_out (
        peer_id BLOB PRIMARY KEY,
        stream BLOB NOT NULL,
        next_seq INTEGER NOT NULL,
        broken INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE ack_in (
        peer_id BLOB NOT NULL,
        stream BLOB NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (peer_id, stream)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

ALL = Page("created", 0, None)

# What the counters count, per peer and type.
COUNTER_NAMES = (
    "sent", "received", "stored", "dropped_rate", "dropped_retention", "dropped_storage", "dropped_malformed",
)
CounterKey = tuple[str, int, str]  # (peer_id, type, one of COUNTER_NAMES)
CountsByPeerType = dict[tuple[str, int], Counter[str]]


def group_counts(
    counts: Iterable[tuple[CounterKey, int]], peer_id: str | None, msg_type: int | None, into: CountsByPeerType
) -> CountsByPeerType:
    """Add ``counts`` into ``into`` per (peer, type), keeping those that match the filters (``None``: any)."""
    for (p, t, name), count in counts:
        if (peer_id is None or p == peer_id) and (msg_type is None or t == msg_type):
            into.setdefault((p, t), Counter())[name] += count
    return into

QUEUED, SENDING, SENT, EXPIRED, CANCELLED, FAILED = "queued", "sending", "sent", "expired", "cancelled", "failed"
DELIVERED = "delivered"  # acknowledged entries only: the peer's plugin committed it to its inbox
OUTBOX_STATUSES = (QUEUED, SENDING, SENT, DELIVERED, EXPIRED, CANCELLED, FAILED)
# Where an entry stops: what custommsg-outbox-wait waits for. A plain entry also stops at sent.
FINAL_STATUSES = frozenset({DELIVERED, EXPIRED, CANCELLED, FAILED})
# Statuses of an acknowledged entry that still waits for the peer's acknowledgement.
UNACKNOWLEDGED = (QUEUED, SENDING, SENT)


@dataclass(frozen=True)
class JsonRpcTag:
    """What a bLIP-50 message is: ``kind`` (request, response, error, notification), its
    method (requests and notifications) and its JSON-RPC id (requests and responses)."""

    kind: str
    method: str | None = None
    rpc_id: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    created_index: int
    peer_id: str
    type: int
    payload: bytes  # type prefix included, as the hook gives it
    received_at: float
    rpc: JsonRpcTag | None = None
    answered_at: float | None = None  # a bLIP-50 request we answered

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "created_index": self.created_index,
            "peer_id": self.peer_id,
            "type": self.type,
            "payload": self.payload.hex(),
            "length": len(self.payload),
            "received_at": self.received_at,
        }
        try:
            entry["text"] = message_body(self.payload).decode("utf-8")
        except UnicodeDecodeError:
            pass
        if self.rpc is not None:
            entry["kind"] = self.rpc.kind
            try:  # checked at the door (blip50.parse_frame) before it was stored
                entry["json"] = strictjson.loads(entry["text"])
            except (strictjson.JsonRefused, KeyError):
                pass  # stored by an earlier version under looser rules: listed without "json"
            if self.rpc.method is not None:
                entry["method"] = self.rpc.method
            if self.answered_at is not None:
                entry["answered_at"] = self.answered_at
        return entry


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    peer_id: str
    type: int
    payload: bytes
    status: str
    reason: str | None
    created_at: float
    updated_at: float
    sent_at: float | None
    expires_at: float | None
    updated_index: int | None
    ack: bool = False  # sent with ack=true: it is delivered once the peer acknowledges it
    stream: int | None = None  # our stream to the peer, and the entry's seq in it (from its first hand-off on)
    seq: int | None = None
    delivered_at: float | None = None

    @property
    def settled(self) -> bool:
        """Whether the entry will not change any more: what custommsg-outbox-wait waits for."""
        return self.status in FINAL_STATUSES or (self.status == SENT and not self.ack)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id,
            "created_index": self.id,
            "peer_id": self.peer_id,
            "type": self.type,
            "length": len(self.payload),
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        optional = {
            "updated_index": self.updated_index,
            "reason": self.reason,
            "sent_at": self.sent_at,
            "expires_at": self.expires_at,
            "ack": True if self.ack else None,
            "seq": self.seq,
            "delivered_at": self.delivered_at,
        }
        entry.update({k: v for k, v in optional.items() if v is not None})
        return entry


INBOX_COLUMNS = "created_index, peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id, answered_at"


def message_from_row(row: tuple[Any, ...]) -> StoredMessage:
    rpc = None if row[5] is None else JsonRpcTag(row[5], row[6], row[7])
    return StoredMessage(row[0], row[1].hex(), row[2], row[3], row[4], rpc, row[8])


def outbox_from_row(row: tuple[Any, ...]) -> OutboxEntry:
    stream = None if row[12] is None else int.from_bytes(row[12], "big")
    return OutboxEntry(
        row[0], row[1].hex(), row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
        bool(row[11]), stream, row[13], row[14],
    )


OUTBOX_COLUMNS = (
    "id, peer_id, type, payload, status, reason, created_at, updated_at, sent_at, expires_at, updated_index, "
    "ack, stream, seq, delivered_at"
)
