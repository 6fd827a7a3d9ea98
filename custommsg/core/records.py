"""What custommsg keeps, as values: stored messages, outbox entries and their statuses, counters, pages.

A row the store reads becomes a frozen dataclass here, and its ``to_json`` is what the
RPC methods and the ``custommsg_stored`` notification return. The outbox's state
machine is :data:`OUTBOX_MOVES`, which the store checks on every move. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from typing import Any

from . import strictjson
from .wire import message_body


@dataclass(frozen=True)
class Page:
    """A page of a list command, as lightningd's list commands take it (see ``validate.parse_page``)."""

    index: str  # "created" or "updated"
    start: int
    limit: int | None



ALL = Page("created", 0, None)

# What the counters count, per peer and type: messages, and beside each its bytes (type included) as
# ``<name>_bytes``. A message dropped is counted under its cause.
COUNTED = (
    "sent", "received", "stored", "dropped_rate", "dropped_peer_budget", "dropped_global_budget",
    "dropped_retention", "dropped_storage", "dropped_malformed", "dropped_unanswered",
)
BYTES_SUFFIX = "_bytes"
COUNTER_NAMES = COUNTED + tuple(name + BYTES_SUFFIX for name in COUNTED)
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

# The outbox's state machine: every move an entry may make. Each entry leaves ``queued``
# exactly once (a cancelled message is never sent afterwards, a sent one never expires);
# ``sending`` lasts one ``sendcustommsg`` call, and goes back to ``queued`` when the peer or
# lightningd was gone, or after a crash mid-hand-off. The moves marked "ack" are for
# entries sent with ack=true, which wait at ``sent`` for the peer's acknowledgement.
OUTBOX_MOVES: frozenset[tuple[str, str]] = frozenset({
    (QUEUED, EXPIRED),  # ttl passed first
    (QUEUED, CANCELLED),  # custommsg-cancel
    (QUEUED, SENDING),  # its turn, the peer connected (ack: it said hello, and the entry gets its seq)
    (SENDING, SENT),  # lightningd took it
    (SENDING, FAILED),  # lightningd refused it for good
    (SENDING, QUEUED),  # the peer (or lightningd) was gone: try later
    (QUEUED, DELIVERED), (SENDING, DELIVERED), (SENT, DELIVERED),  # ack: the peer's acknowledgement
    (SENT, EXPIRED),  # ack: ttl passed unacknowledged
    (QUEUED, FAILED), (SENT, FAILED),  # ack: the peer does not speak it, or an earlier seq was given up
})


def check_move(from_status: str, to_status: str) -> None:
    """ValueError for a move the state machine does not have: a bug, never a peer's doing."""
    if (from_status, to_status) not in OUTBOX_MOVES:
        raise ValueError(f"the outbox has no move from {from_status} to {to_status}")


@dataclass(frozen=True)
class JsonRpcTag:
    """What a bLIP-50 message is: ``kind`` (request, response, error, notification), its
    method (requests and notifications) and its JSON-RPC id (requests and responses)."""

    kind: str
    method: str | None = None
    rpc_id: str | None = None


@dataclass
class Decoded:
    """A registered protocol's reading of a message (``core.protocols``): its name, and its fields or why
    they could not be read."""

    name: str
    fields: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Incoming:
    """A message to store, as a peer sent it: ``rpc`` if it is a bLIP-50 frame, ``decoded`` if a
    registered protocol read it (its name and fields, or why they could not be read)."""

    peer_id: str
    payload: bytes
    msg_type: int
    received_at: float
    rpc: JsonRpcTag | None = None
    decoded: Decoded | None = None

    def _reading(self) -> tuple[str | None, dict[str, Any] | None, str | None]:
        """The protocol's name, fields and decode error (all None for a message no protocol read)."""
        decoded = self.decoded
        return (None, None, None) if decoded is None else (decoded.name, decoded.fields, decoded.error)

    def row(self) -> tuple[object, ...]:
        name, fields, error = self._reading()
        stored_fields = None if fields is None else json.dumps(fields, separators=(",", ":"))
        rpc = astuple(self.rpc) if self.rpc else (None,) * 3
        return (bytes.fromhex(self.peer_id), self.msg_type, self.payload, self.received_at, *rpc,
                name, stored_fields, error)

    def stored(self, created_index: int) -> StoredMessage:
        return StoredMessage(
            created_index, self.peer_id, self.msg_type, self.payload, self.received_at, self.rpc, None,
            *self._reading(),
        )


@dataclass(frozen=True)
class StoredMessage:
    created_index: int
    peer_id: str
    type: int
    payload: bytes  # type prefix included, as the hook gives it
    received_at: float
    rpc: JsonRpcTag | None = None
    answered_at: float | None = None  # a bLIP-50 request we answered
    # A registered protocol's message (core.protocols): its name, and its fields or why they could not be read.
    name: str | None = None
    fields: dict[str, Any] | None = None
    decode_error: str | None = None

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
        if self.name is not None:
            entry["name"] = self.name
            if self.fields is not None:
                entry["fields"] = self.fields
            if self.decode_error is not None:
                entry["decode_error"] = self.decode_error
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
