"""Acknowledged delivery's queries: our streams and seqs, acknowledgements, the receiver's ``last``.

The sender's side, per peer (table ``ack_out``): our current stream to it (8 random
bytes, made when the first acknowledged message to it is handed over), the next seq, and
whether the stream is *broken*. An acknowledged outbox entry gets its (stream, seq) at
its first hand-off, in the transaction that moves it to ``sending``, and keeps it for
good: every copy of it carries the same pair, so the receiver can tell a copy from a
new message. A queued entry that never got one can be cancelled or expire freely.

A broken stream: we gave up on an entry that has a seq (its ttl passed, or the peer does
not speak the protocol). The receiver may never have stored it, and would then refuse
every later seq of that stream as a gap; so the later entries of that stream that wait
for their acknowledgement fail with it, and the next entry to that peer starts a new
stream at seq 1, once no entry of the old one waits for its acknowledgement any more
(until then the new ones wait, so the peer still stores them after the old ones).

The receiver's side (table ``ack_in``): ``last`` per (peer, stream), read, decided on
and written in the transaction that stores the message (:class:`EnvelopeGate`). A peer
keeps at most MAX_STREAMS_PER_PEER streams there: a new stream past it makes the least
recently stored-into one go (module constant, below).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from ..core.envelope import U64_LEN, Decision, receive_decision
from ..core.records import DELIVERED, EXPIRED, FAILED, QUEUED, SENDING, SENT, UNACKNOWLEDGED, OutboxEntry
from .query import OUTBOX_COLUMNS as COLUMNS
from .query import Db, outbox_from_row

if TYPE_CHECKING:
    from .database import Store

# The largest signed 64-bit integer a column holds (SQLite's INTEGER, PostgreSQL's BIGINT): no seq
# we give will come near it, and a peer's larger one is capped before it is compared.
SEQ_MAX = 2**63 - 1
_IN = "(?, ?, ?)"  # UNACKNOWLEDGED, as SQL

# Streams remembered per peer on the receiving side. An honest sender has one at a time: it starts a
# new one only when its database was wiped or it gave up on a message, and only once nothing of the old
# one waits for an acknowledgement. Past the bound, the stream stored into least recently goes (its
# row, about 56 bytes); what the peer loses is that stream's exactly-once: a copy of one of its
# messages arriving afterwards is taken as the start of a new stream (seq 1 is stored again, any
# later seq is refused as a gap and never acknowledged, so the sender's entries expire).
MAX_STREAMS_PER_PEER = 32


def stream_bytes(stream: int) -> bytes:
    return stream.to_bytes(U64_LEN, "big")


class EnvelopeGate:
    """The receiver's rule for one envelope, run inside the transaction that would store it.

    Called with that transaction's connection: reads ``last`` for (peer, stream), decides,
    and on STORE writes the new ``last`` and returns True (the caller then stores the inner
    message, in the same transaction). ``decision`` and ``last`` say what happened.
    """

    def __init__(self, peer_id: str, stream: int, seq: int, max_streams: int = MAX_STREAMS_PER_PEER):
        self.key = (bytes.fromhex(peer_id), stream_bytes(stream))
        self.seq = seq
        self.max_streams = max_streams
        self.decision: Decision | None = None
        self.last = 0
        self.forgotten = 0  # streams of the peer that went to make room for this one

    def __call__(self, db: Db) -> bool:
        row = db.execute("SELECT last FROM ack_in WHERE peer_id = ? AND stream = ?", self.key).fetchone()
        self.last = 0 if row is None else int(row[0])
        self.decision = receive_decision(self.last, self.seq)
        if self.decision is not Decision.STORE:
            return False
        peer = self.key[0]
        if row is None:
            self.forgotten = db.execute(
                # touched grows per peer: keep its max_streams - 1 most recent streams, room for this one
                "DELETE FROM ack_in WHERE peer_id = ? AND touched <= (SELECT touched FROM ack_in WHERE peer_id = ? "
                "ORDER BY touched DESC LIMIT 1 OFFSET ?)",
                (peer, peer, self.max_streams - 1),
            ).rowcount
        db.execute(
            "INSERT INTO ack_in (peer_id, stream, last, touched) "
            "VALUES (?, ?, ?, (SELECT COALESCE(MAX(touched), 0) + 1 FROM ack_in WHERE peer_id = ?)) "
            "ON CONFLICT (peer_id, stream) DO UPDATE SET last = excluded.last, touched = excluded.touched",
            (*self.key, self.seq, peer),
        )
        self.last = self.seq
        return True


class AckQueries:
    def __init__(self, store: Store):
        self.store = store
    # -- the sender -----------------------------------------------------------

    def ack_start(self, entry_id: int, now: float) -> tuple[OutboxEntry | None, bool]:
        """Hand-off of an acknowledged entry: queued -> sending, with its (stream, seq).

        Returns (the entry now sending, False); (None, False) if it is not queued any more;
        (None, True) if it must wait: the peer's stream is broken and still has entries
        waiting for their acknowledgement.
        """
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT peer_id, seq FROM outbox WHERE id = ? AND status = ?", (entry_id, QUEUED)
            ).fetchone()
            if row is None:
                return None, False
            if row[1] is None:
                allocated = self._allocate(db, row[0])
                if allocated is None:
                    return None, True
                db.execute("UPDATE outbox SET stream = ?, seq = ? WHERE id = ?", (*allocated, entry_id))
            return self.store.outbox.move(db, entry_id, SENDING, now), False

    def enqueue_started(
        self, peer_id: str, msg_type: int, payload: bytes, now: float, expires_at: float | None, per_peer_max: int,
    ) -> OutboxEntry | None:
        """An acknowledged message to a peer that said hello, queued and started in one transaction:
        when none of the peer's entries waits queued before it (so every earlier send has its seq
        already; the caller makes sure none is being handed over either) and its stream gives a seq,
        the entry enters the outbox ``sent`` with its (stream, seq), and the caller hands it over;
        else it is ``queued``, as ``outbox.enqueue`` queues it. ``None``: the peer's queue is full."""
        return self.store.outbox.enqueue(
            peer_id, msg_type, payload, now, expires_at, per_peer_max, ack=True, sequence=self._allocate,
        )

    def _allocate(self, db: Db, peer: bytes) -> tuple[bytes, int] | None:
        # The common case in one statement: the peer's stream is whole, take its next seq.
        row = db.execute(
            "UPDATE ack_out SET next_seq = next_seq + 1 WHERE peer_id = ? AND broken = 0 RETURNING stream, next_seq",
            (peer,),
        ).fetchone()
        if row is not None:
            return bytes(row[0]), int(row[1]) - 1
        row = db.execute("SELECT stream, next_seq, broken FROM ack_out WHERE peer_id = ?", (peer,)).fetchone()
        if row is not None and row[2]:
            waiting = db.execute(
                f"SELECT 1 FROM outbox WHERE ack = 1 AND peer_id = ? AND stream = ? AND status IN {_IN} LIMIT 1",
                (peer, row[0], *UNACKNOWLEDGED),
            ).fetchone()
            if waiting is not None:
                return None
            row = None  # the broken stream is done with: a new one
        stream, seq = (secrets.token_bytes(U64_LEN), 1) if row is None else (row[0], int(row[1]))
        db.execute(
            "INSERT INTO ack_out (peer_id, stream, next_seq, broken) VALUES (?, ?, ?, 0) ON CONFLICT (peer_id) "
            "DO UPDATE SET stream = excluded.stream, next_seq = excluded.next_seq, broken = 0",
            (peer, stream, seq + 1),
        )
        return stream, seq

    def ack_delivered(self, peer_id: str, stream: int, seq: int, now: float) -> list[OutboxEntry] | None:
        """ack(stream, seq) from the peer: its entries of that stream up to seq that wait become delivered.

        None (the ack is ignored) when seq is beyond every seq we gave in that stream.
        """
        key = (bytes.fromhex(peer_id), stream_bytes(stream))
        with self.store.transaction() as db:
            # The current stream's highest seq is in ack_out; an older stream's, in its entries.
            row = db.execute("SELECT next_seq - 1 FROM ack_out WHERE peer_id = ? AND stream = ?", key).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT MAX(seq) FROM outbox WHERE ack = 1 AND peer_id = ? AND stream = ?", key
                ).fetchone()
            if row[0] is None or seq > row[0]:
                return None
            ids = [row[0] for row in db.execute(
                f"SELECT id FROM outbox WHERE ack = 1 AND peer_id = ? AND stream = ? AND status IN {_IN} AND seq <= ? "
                "ORDER BY seq",
                (*key, *UNACKNOWLEDGED, seq),
            ).fetchall()]
            if not ids:
                return []
            # One ack settles many entries (acks are cumulative and delayed): their updated_index values
            # are taken in one step, and the entries moved by one statement run for each.
            first = self.store.outbox.next_updated_index(db, len(ids)) - len(ids) + 1
            db.executemany(
                "UPDATE outbox SET status = ?, reason = NULL, updated_at = ?, updated_index = ?, delivered_at = ?, "
                "sent_at = COALESCE(sent_at, ?) WHERE id = ?",
                [(DELIVERED, now, first + n, now, now, entry_id) for n, entry_id in enumerate(ids)],
            )
            rows = db.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE updated_index >= ? AND updated_index < ? ORDER BY updated_index",
                (first, first + len(ids)),
            ).fetchall()
        return [outbox_from_row(row) for row in rows]

    def give_up(self, entry_id: int, to_status: str, now: float, reason: str, from_status: str) -> list[OutboxEntry]:
        """An entry expires or fails. If it has a seq, its stream breaks (module docstring): the later
        entries of that stream waiting for their acknowledgement fail with it. Returns all it moved."""
        with self.store.transaction() as db:
            moved = self.store.outbox.move(db, entry_id, to_status, now, reason, from_status)
            if moved is None or moved.stream is None or moved.seq is None:
                return [] if moved is None else [moved]
            key = (bytes.fromhex(moved.peer_id), stream_bytes(moved.stream))
            db.execute("UPDATE ack_out SET broken = 1 WHERE peer_id = ? AND stream = ?", key)
            later = db.execute(
                f"SELECT id, status FROM outbox WHERE ack = 1 AND peer_id = ? AND stream = ? AND status IN {_IN} "
                "AND seq > ? ORDER BY seq",
                (*key, *UNACKNOWLEDGED, moved.seq),
            ).fetchall()
            what = "expired" if to_status == EXPIRED else "failed"
            why = (f"outbox entry {entry_id}, sent before it to this peer, {what} unacknowledged: the peer could "
                   "not store this one after it in order (it may have stored both)")
            cascade = [self.store.outbox.move(db, later_id, FAILED, now, why, status) for later_id, status in later]
        return [moved, *(entry for entry in cascade if entry is not None)]

    def fail_unacknowledged(self, peer_id: str, now: float, reason: str) -> list[OutboxEntry]:
        """Every acknowledged entry to the peer not settled yet fails (the peer does not speak the protocol)."""
        peer = bytes.fromhex(peer_id)
        with self.store.transaction() as db:
            rows = db.execute(
                f"SELECT id, status, seq FROM outbox WHERE peer_id = ? AND ack = 1 AND status IN {_IN} ORDER BY id",
                (peer, *UNACKNOWLEDGED),
            ).fetchall()
            if any(seq is not None for _, _, seq in rows):
                db.execute("UPDATE ack_out SET broken = 1 WHERE peer_id = ?", (peer,))
            failed = [self.store.outbox.move(db, entry_id, FAILED, now, reason, status) for entry_id, status, _ in rows]
        return [entry for entry in failed if entry is not None]

    def has_unsettled(self, peer_id: str) -> bool:
        """Whether the peer has acknowledged entries queued or waiting for their acknowledgement."""
        rows = self.store.read(
            f"SELECT 1 FROM outbox WHERE ack = 1 AND peer_id = ? AND status IN {_IN} LIMIT 1",
            (bytes.fromhex(peer_id), *UNACKNOWLEDGED),
        )
        return bool(rows)

    def unacknowledged(self, peer_id: str) -> list[OutboxEntry]:
        """The peer's acknowledged entries handed over and not acknowledged, in the order they went."""
        rows = self.store.read(
            f"SELECT {COLUMNS} FROM outbox WHERE peer_id = ? AND ack = 1 AND status = ? ORDER BY id",
            (bytes.fromhex(peer_id), SENT),
        )
        return [outbox_from_row(r) for r in rows]

    def ack_counts(self) -> dict[str, dict[str, int]]:
        """Per peer, its acknowledged entries ``queued`` and ``unacknowledged`` (handed over, no ack yet)."""
        rows = self.store.read(
            f"SELECT peer_id, status, COUNT(*) FROM outbox WHERE ack = 1 AND status IN {_IN} GROUP BY peer_id, status",
            UNACKNOWLEDGED,
        )
        counts: dict[str, dict[str, int]] = {}
        for peer, status, count in rows:
            counted = counts.setdefault(bytes(peer).hex(), {"queued": 0, "unacknowledged": 0})
            counted["queued" if status == QUEUED else "unacknowledged"] += count
        return counts

    # -- the receiver ---------------------------------------------------------

    @staticmethod
    def envelope_gate(peer_id: str, stream: int, seq: int) -> EnvelopeGate:
        """What ``add_message(gate=...)`` runs for an envelope (see :class:`EnvelopeGate`)."""
        return EnvelopeGate(peer_id, stream, min(seq, SEQ_MAX))

    def streams_of(self, peer_id: str) -> int:
        """How many of the peer's streams the receiving side remembers."""
        return int(self.store.read("SELECT COUNT(*) FROM ack_in WHERE peer_id = ?", (bytes.fromhex(peer_id),))[0][0])
