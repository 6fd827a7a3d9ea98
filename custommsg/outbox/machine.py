"""The outbox: a durable queue per peer, drained in order when the peer connects.

Its state machine is ``core.records.OUTBOX_MOVES`` (the store checks every move). An
entry leaves ``queued`` exactly once; ``sending`` lasts one ``sendcustommsg`` call and
keeps a message being handed over from being cancelled (or the other way round);
``sent`` means lightningd accepted the message for the peer's connection, not that the
peer has it. A message goes out again only if the plugin died during its hand-off (it
is ``sending`` at the next start, and queued again), so a peer can see a message twice
only after such a crash.

An entry sent with ack=true (acknowledged delivery, ``acked``) gets its stream and seq at
its first hand-off, waits at ``sent`` for the peer's acknowledgement (``delivered``), and
its copies go out again (``acked.delivery``) without changing its status. One with a seq
may have reached the peer, so it can no longer be cancelled. Every move to where an
entry stops (``settled``) is reported to ``on_settled``: custommsg-outbox-wait waits on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.envelope import Envelope
from ..core.errors import (
    OUTBOX_FULL,
    OUTBOX_NOT_FOUND,
    OUTBOX_NOT_QUEUED,
    CustomMsgError,
    OverBudget,
    TransientError,
)
from ..core.records import CANCELLED, EXPIRED, FAILED, QUEUED, SENDING, SENT, UNACKNOWLEDGED, OutboxEntry, Page
from ..core.wire import Message, message_body

if TYPE_CHECKING:
    from ..store.database import Store

# Hand one entry to lightningd for the peer now (an acknowledged one as its envelope). Raises
# TransientError when it may work later (the peer is not connected, lightningd did not
# answer, or OverBudget: the peer's send budget has no room yet): the entry stays queued,
# and so do those behind it; and CustomMsgError when lightningd refused the message
# itself (it will never go).
HandOver = Callable[[str, OutboxEntry], None]


@dataclass
class DeliveryReport:
    sent: list[OutboxEntry] = field(default_factory=list)
    expired: list[OutboxEntry] = field(default_factory=list)
    failed: list[OutboxEntry] = field(default_factory=list)
    interrupted: bool = False  # the peer went away before the queue was empty
    held: bool = False  # an acknowledged entry must wait (no hello yet, or its stream is being replaced)
    over_budget: bool = False  # the next entry does not fit the peer's send budget yet: the sweep tries again


def message_of(entry: OutboxEntry) -> Message:
    return Message(entry.type, message_body(entry.payload))


def envelope_of(entry: OutboxEntry) -> Envelope:
    """What goes to lightningd for an acknowledged entry with its seq: the envelope around its message."""
    assert entry.stream is not None and entry.seq is not None
    return Envelope(entry.stream, entry.seq, message_of(entry))


def _never(peer_id: str) -> bool:
    return False


class Outbox:
    def __init__(
        self, store: Store, per_peer_max: int, clock: Callable[[], float] = time.time,
        on_settled: Callable[[OutboxEntry], None] = lambda entry: None,
    ):
        self.store = store
        self.per_peer_max = per_peer_max
        self.on_settled = on_settled
        self.clock = clock

    def enqueue(
        self, peer_id: str, message: Message, ttl: float | None = None, ack: bool = False, start: bool = False,
    ) -> OutboxEntry:
        """Queue ``message``. With ``start`` (acknowledged, to a peer that said hello), the entry gets
        its seq in the same transaction and comes back ``sent`` when it is first in line
        (``store.acked.enqueue_started``): the caller hands it over, with no further write."""
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        if start:
            entry = self.store.acked.enqueue_started(
                peer_id, message.type, message.serialize(), now, expires_at, self.per_peer_max
            )
        else:
            entry = self.store.outbox.enqueue(
                peer_id, message.type, message.serialize(), now, expires_at, self.per_peer_max, ack
            )
        if entry is None:
            raise CustomMsgError(
                OUTBOX_FULL,
                f"the outbox for {peer_id} already holds {self.per_peer_max} messages queued or waiting for "
                "their acknowledgement (option custommsg-outbox-max)",
                {"peer_id": peer_id, "max": self.per_peer_max},
            )
        return entry

    def cancel(self, entry_id: int) -> OutboxEntry:
        moved = self.store.outbox.transition(entry_id, CANCELLED, self.clock(), unsequenced=True)
        if moved is not None:
            self.on_settled(moved)
            return moved
        entry = self.store.outbox.outbox_entry(entry_id)
        if entry is None:
            raise CustomMsgError(OUTBOX_NOT_FOUND, f"no outbox entry {entry_id}", {"id": entry_id})
        if entry.seq is not None and entry.status in UNACKNOWLEDGED:
            why = (f"outbox entry {entry_id} is {entry.status} with ack: it was handed to lightningd and may be "
                   "stored by the peer already, so it cannot be taken back; it is sent again until the peer "
                   "acknowledges it or its ttl passes")
        else:
            why = (f"outbox entry {entry_id} is {entry.status}, not queued: only queued messages can be cancelled"
                   + (" (it is being handed to lightningd right now)" if entry.status == SENDING else ""))
        raise CustomMsgError(OUTBOX_NOT_QUEUED, why, {"id": entry_id, "status": entry.status})

    def expire_due(self) -> list[OutboxEntry]:
        now = self.clock()
        return [moved for i in self.store.outbox.expired_ids(now) for moved in self._expire(i, now)]

    def _expire(self, entry_id: int, now: float) -> list[OutboxEntry]:
        """ttl passed: the entry, and, if it had a seq, the later ones of its stream (store.acked.give_up)."""
        entry = self.store.outbox.outbox_entry(entry_id)
        if entry is None or entry.status not in (QUEUED, SENT):
            return []
        return self._give_up(entry, EXPIRED, now, "ttl passed")

    def _give_up(self, entry: OutboxEntry, status: str, now: float, reason: str) -> list[OutboxEntry]:
        if entry.seq is None:
            moved = self.store.outbox.transition(entry.id, status, now, reason, from_status=entry.status)
            settled = [] if moved is None else [moved]
        else:
            settled = self.store.acked.give_up(entry.id, status, now, reason, entry.status)
        for each in settled:
            self.on_settled(each)
        return settled

    def fail(self, entry: OutboxEntry, reason: str) -> list[OutboxEntry]:
        """lightningd refused the entry for good: it fails (and, if it has a seq, the later ones of its stream)."""
        return self._give_up(entry, FAILED, self.clock(), reason)

    def fail_acknowledged(self, peer_id: str, reason: str) -> list[OutboxEntry]:
        """Every acknowledged entry to the peer that is not settled fails with ``reason``."""
        failed = self.store.acked.fail_unacknowledged(peer_id, self.clock(), reason)
        for entry in failed:
            self.on_settled(entry)
        return failed

    def settle(self, entries: list[OutboxEntry]) -> None:
        for entry in entries:
            self.on_settled(entry)

    def has_queued(self, peer_id: str) -> bool:
        return bool(self.store.outbox.list_outbox(peer_id, QUEUED, Page("created", 0, 1)))

    def recover(self) -> int:
        """Queue again what a previous run was handing over when it stopped."""
        now = self.clock()
        ids = self.store.outbox.ids_with_status(SENDING)
        return sum(1 for i in ids if self.store.outbox.transition(i, QUEUED, now, from_status=SENDING) is not None)

    def deliver(
        self, peer_id: str, send: HandOver, ready: Callable[[str], bool] = _never,
    ) -> DeliveryReport:
        """Hand the peer's queued messages to ``send``, oldest first, until the peer is gone.

        An acknowledged entry goes as an envelope, and only once ``ready(peer_id)`` (the peer
        said hello on this connection); until then it waits, and so do the entries behind it.
        """
        report = DeliveryReport()
        for entry in self.store.outbox.queued_for(peer_id):
            now = self.clock()
            if entry.expires_at is not None and entry.expires_at <= now:
                report.expired += self._expire(entry.id, now)
                continue
            if entry.ack:
                if not ready(peer_id):
                    report.held = True
                    break
                moving, held = self.store.acked.ack_start(entry.id, now)
                if held:
                    report.held = True
                    break
            else:
                moving = self.store.outbox.transition(entry.id, SENDING, now)
            if moving is None:
                continue  # cancelled or expired since we listed it
            try:
                send(peer_id, moving)
            except OverBudget:
                self.store.outbox.transition(entry.id, QUEUED, self.clock(), from_status=SENDING)
                report.over_budget = True
                break
            except TransientError:
                self.store.outbox.transition(entry.id, QUEUED, self.clock(), from_status=SENDING)
                report.interrupted = True
                break
            except CustomMsgError as exc:
                report.failed += self.fail(moving, exc.message)
                continue
            moved = self.store.outbox.transition(entry.id, SENT, self.clock(), from_status=SENDING)
            if moved is not None:
                report.sent.append(moved)
                if not moved.ack:
                    self.on_settled(moved)
        return report
