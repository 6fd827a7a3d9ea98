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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import (
    OUTBOX_FULL,
    OUTBOX_NOT_FOUND,
    OUTBOX_NOT_QUEUED,
    CustomMsgError,
    TransientError,
)
from .schema import CANCELLED, EXPIRED, FAILED, QUEUED, SENDING, SENT, OutboxEntry, Page
from .store import Store
from .wire import Message

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


class Outbox:
    def __init__(self, store: Store, per_peer_max: int, clock: Callable[[], float] = time.time):
        self.store = store
        self.per_peer_max = per_peer_max
        self.clock = clock

    def enqueue(self, peer_id: str, message: Message, ttl: float | None = None) -> OutboxEntry:
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        entry = self.store.enqueue(peer_id, message.type, message.serialize(), now, expires_at, self.per_peer_max)
        if entry is None:
            raise CustomMsgError(
                OUTBOX_FULL,
                f"the outbox for {peer_id} already holds {self.per_peer_max} queued messages "
                "(option custommsg-outbox-max)",
                {"peer_id": peer_id, "max": self.per_peer_max},
            )
        return entry

    def cancel(self, entry_id: int) -> OutboxEntry:
        moved = self.store.transition(entry_id, CANCELLED, self.clock())
        if moved is not None:
            return moved
        entry = self.store.outbox_entry(entry_id)
        if entry is None:
            raise CustomMsgError(OUTBOX_NOT_FOUND, f"no outbox entry {entry_id}", {"id": entry_id})
        raise CustomMsgError(
            OUTBOX_NOT_QUEUED,
            f"outbox entry {entry_id} is {entry.status}, not queued: only queued messages can be cancelled"
            + (" (it is being handed to lightningd right now)" if entry.status == SENDING else ""),
            {"id": entry_id, "status": entry.status},
        )

    def expire_due(self) -> list[OutboxEntry]:
        now = self.clock()
        expired = (self.store.transition(i, EXPIRED, now, "ttl passed") for i in self.store.expired_ids(now))
        return [e for e in expired if e is not None]

    def has_queued(self, peer_id: str) -> bool:
        return bool(self.store.list_outbox(peer_id, QUEUED, Page("created", 0, 1)))

    def recover(self) -> int:
        """Queue again what a previous run was handing over when it stopped."""
        now = self.clock()
        ids = self.store.ids_with_status(SENDING)
        return sum(1 for i in ids if self.store.transition(i, QUEUED, now, from_status=SENDING) is not None)

    def deliver(self, peer_id: str, send: SendFunction) -> DeliveryReport:
        """Hand the peer's queued messages to ``send``, oldest first, until the peer is gone."""
        report = DeliveryReport()
        for entry in self.store.queued_for(peer_id):
            now = self.clock()
            if entry.expires_at is not None and entry.expires_at <= now:
                moved = self.store.transition(entry.id, EXPIRED, now, "ttl passed")
                report.expired += [moved] if moved else []
                continue
            if self.store.transition(entry.id, SENDING, now) is None:
                continue  # cancelled or expired since we listed it
            try:
                send(peer_id, entry.payload)
            except TransientError:
                self.store.transition(entry.id, QUEUED, self.clock(), from_status=SENDING)
                report.interrupted = True
                break
            except CustomMsgError as exc:
                moved = self.store.transition(entry.id, FAILED, self.clock(), exc.message, from_status=SENDING)
                report.failed += [moved] if moved else []
                continue
            moved = self.store.transition(entry.id, SENT, self.clock(), from_status=SENDING)
            report.sent += [moved] if moved else []
        return report
