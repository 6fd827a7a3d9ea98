"""Reliable delivery: a durable queue per peer, drained in order when the peer connects.

Each entry moves out of ``queued`` exactly once::

    queued --ttl passed first----------------> expired
    queued --custommsg-cancel-----------------> cancelled
    queued --its turn, the peer connected-----> sending
    sending --lightningd took it--------------> sent
    sending --lightningd refused it for good--> failed (with the reason)
    sending --the peer (or lightningd) was gone> queued (again, to try later)

``sending`` lasts one ``sendcustommsg`` call; it is what keeps a message that is
being handed over from being cancelled (or the other way round). ``sent`` means
lightningd accepted the message for the peer's connection (``sendcustommsg``
returned): it is not an acknowledgement from the peer. A message goes out again
only if the plugin died during its hand-off (it is ``sending`` at the next start,
and queued again), so a peer can see a message twice only after such a crash.

An entry sent with ack=true (acknowledged delivery, ``ack``) goes further::

    queued --its turn, the peer said hello----> sending (gets its stream and seq: ackstore)
    sending --lightningd took it--------------> sent
    queued, sending, sent --the peer's ack----> delivered (with delivered_at)
    queued, sent --ttl passed-----------------> expired
    queued, sending, sent --the peer does not speak the protocol, or an earlier one
                           of its stream expired unacknowledged----------------------> failed

It waits at ``sent`` for the peer's acknowledgement; copies of it go out again
(``delivery``) without changing its status. One with a seq may have reached the peer,
so it can no longer be cancelled. Every move to where an entry stops (``settled``) is
reported to ``on_settled``: custommsg-outbox-wait waits on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .ack import Envelope
from .errors import (
    OUTBOX_FULL,
    OUTBOX_NOT_FOUND,
    OUTBOX_NOT_QUEUED,
    CustomMsgError,
    TransientError,
)
from .schema import CANCELLED, EXPIRED, FAILED, QUEUED, SENDING, SENT, OutboxEntry, Page
from .store import Store
from .wire import Message, parse_message

# Send one message to a peer now. Raises TransientError when it may work later (the
# peer is not connected, lightningd did not answer): the message stays queued; and
# CustomMsgError when lightningd refused the message itself (it will never go).
SendFunction = Callable[[str, bytes], None]


@dataclass
class DeliveryReport:
    sent: list[OutboxEntry] = field(default_factory=list)
    expired: list[OutboxEntry] = field(default_factory=list)
    failed: list[OutboxEntry] = field(default_factory=list)
    interrupted: bool = False  # the peer went away before the queue was empty
    held: bool = False  # an acknowledged entry must wait (no hello yet, or its stream is being replaced)


def envelope(entry: OutboxEntry) -> bytes:
    """What goes to lightningd for an acknowledged entry with its seq: the envelope around its message."""
    assert entry.stream is not None and entry.seq is not None
    return Envelope(entry.stream, entry.seq, parse_message(entry.payload)).serialize()


def _never(peer_id: str) -> bool:
    return False


class Outbox:
    def __init__(self, store: Store, per_peer_max: int, clock: Callable[[], float] = time.time):
        self.store = store
        self.per_peer_max = per_peer_max
        self.clock = clock
        self.on_settled: Callable[[OutboxEntry], None] = lambda entry: None

    def enqueue(self, peer_id: str, message: Message, ttl: float | None = None, ack: bool = False) -> OutboxEntry:
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        entry = self.store.enqueue(
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
        moved = self.store.transition(entry_id, CANCELLED, self.clock(), unsequenced=True)
        if moved is not None:
            self.on_settled(moved)
            return moved
        entry = self.store.outbox_entry(entry_id)
        if entry is None:
            raise CustomMsgError(OUTBOX_NOT_FOUND, f"no outbox entry {entry_id}", {"id": entry_id})
        if entry.seq is not None and entry.status in (QUEUED, SENDING, SENT):
            why = (f"outbox entry {entry_id} is {entry.status} with ack: it was handed to lightningd and may be "
                   "stored by the peer already, so it cannot be taken back; it is sent again until the peer "
                   "acknowledges it or its ttl passes")
        else:
            why = (f"outbox entry {entry_id} is {entry.status}, not queued: only queued messages can be cancelled"
                   + (" (it is being handed to lightningd right now)" if entry.status == SENDING else ""))
        raise CustomMsgError(OUTBOX_NOT_QUEUED, why, {"id": entry_id, "status": entry.status})

    def expire_due(self) -> list[OutboxEntry]:
        now = self.clock()
        return [moved for i in self.store.expired_ids(now) for moved in self._expire(i, now)]

    def _expire(self, entry_id: int, now: float) -> list[OutboxEntry]:
        """ttl passed: the entry, and, if it had a seq, the later ones of its stream (ackstore.give_up)."""
        entry = self.store.outbox_entry(entry_id)
        if entry is None or entry.status not in (QUEUED, SENT):
            return []
        return self._give_up(entry, EXPIRED, now, "ttl passed")

    def _give_up(self, entry: OutboxEntry, status: str, now: float, reason: str) -> list[OutboxEntry]:
        if entry.seq is None:
            moved = self.store.transition(entry.id, status, now, reason, from_status=entry.status)
            settled = [] if moved is None else [moved]
        else:
            settled = self.store.give_up(entry.id, status, now, reason, entry.status)
        for each in settled:
            self.on_settled(each)
        return settled

    def fail_acknowledged(self, peer_id: str, reason: str) -> list[OutboxEntry]:
        """Every acknowledged entry to the peer that is not settled fails with ``reason``."""
        failed = self.store.fail_unacknowledged(peer_id, self.clock(), reason)
        for entry in failed:
            self.on_settled(entry)
        return failed

    def settle(self, entries: list[OutboxEntry]) -> None:
        for entry in entries:
            self.on_settled(entry)

    def has_queued(self, peer_id: str) -> bool:
        return bool(self.store.list_outbox(peer_id, QUEUED, Page("created", 0, 1)))

    def recover(self) -> int:
        """Queue again what a previous run was handing over when it stopped."""
        now = self.clock()
        ids = self.store.ids_with_status(SENDING)
        return sum(1 for i in ids if self.store.transition(i, QUEUED, now, from_status=SENDING) is not None)

    def deliver(
        self, peer_id: str, send: SendFunction, ready: Callable[[str], bool] = _never,
    ) -> DeliveryReport:
        """Hand the peer's queued messages to ``send``, oldest first, until the peer is gone.

        An acknowledged entry goes as an envelope, and only once ``ready(peer_id)`` (the peer
        said hello on this connection); until then it waits, and so do the entries behind it.
        """
        report = DeliveryReport()
        for entry in self.store.queued_for(peer_id):
            now = self.clock()
            if entry.expires_at is not None and entry.expires_at <= now:
                report.expired += self._expire(entry.id, now)
                continue
            if entry.ack:
                if not ready(peer_id):
                    report.held = True
                    break
                moving, held = self.store.ack_start(entry.id, now)
                if held:
                    report.held = True
                    break
            else:
                moving = self.store.transition(entry.id, SENDING, now)
            if moving is None:
                continue  # cancelled or expired since we listed it
            try:
                send(peer_id, envelope(moving) if moving.ack else moving.payload)
            except TransientError:
                self.store.transition(entry.id, QUEUED, self.clock(), from_status=SENDING)
                report.interrupted = True
                break
            except CustomMsgError as exc:
                report.failed += self._give_up(moving, FAILED, self.clock(), exc.message)
                continue
            moved = self.store.transition(entry.id, SENT, self.clock(), from_status=SENDING)
            if moved is not None:
                report.sent.append(moved)
                if not moved.ack:
                    self.on_settled(moved)
        return report
