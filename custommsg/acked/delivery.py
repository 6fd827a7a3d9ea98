"""Acknowledged delivery, running: who speaks it, what is in flight, and what hellos, envelopes and acks do.

``core.envelope`` holds the wire format and the receiver's rule; ``rules`` the in-memory
state (:class:`rules.PeerSupport`, :class:`rules.InFlight`, :class:`rules.HelloPacer`);
the database (``store.acked``) the entries, the streams and ``last`` per stream. This
module wires the rules to events:

* we have acknowledged messages for a connected peer (it connects, the plugin starts, or one is
  sent): our hello, reply=0, once per connection; a peer that asked for nothing hears nothing;
* its hello: our answer (a reply=1, to a reply=0 only); the first on a connection, or a
  reply=0 (the peer's plugin has just started), sends its unacknowledged entries again;
  both paced per peer (:class:`rules.HelloPacer`), so a flood of hellos costs us little;
* its envelope: the inner message is kept (``inbox.Receiver``) if it is the next of its
  stream, in the transaction that moves ``last``; then it is acknowledged: at once, or, if
  its sender has more in flight (47437), by one delayed ack for several
  (:class:`rules.AckPacer`), which :meth:`AckedDelivery.owed_acks` sends when the main
  loop's alarm calls it;
* its ack: the entries it covers become ``delivered`` (``custommsg_delivered``);
* the sweep, once a second: a peer asked HELLO_TIMEOUT ago without a hello fails its
  acknowledged entries; entries unacknowledged RETRANSMIT_AFTER go again; owed replies go.

Called from the main thread (the hook, connect and disconnect, the loop's alarm), the sender thread
(:meth:`AckedDelivery.resend`, :meth:`AckedDelivery.sending`) and the timer thread
(:meth:`AckedDelivery.sweep`): the in-memory state sits behind one lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..core.envelope import (
    ENVELOPE_OVERHEAD,
    HELLO_TIMEOUT,
    RETRANSMIT_AFTER,
    Ack,
    Decision,
    Envelope,
    Hello,
    MalformedAck,
    answer,
    parse,
)
from ..core.errors import (
    ACK_UNSUPPORTED,
    INVALID_PARAMETER,
    CustomMsgError,
    PeerError,
    StorageError,
    TransientError,
    ValidationError,
)
from ..core.records import OutboxEntry
from ..core.wire import Message
from ..inbox.receiver import Receiver
from ..outbox.machine import Outbox, envelope_of
from .rules import AckPacer, HelloPacer, InFlight, PeerSupport

if TYPE_CHECKING:
    from ..store.database import Store

Log = Callable[..., None]
Post = Callable[[str, Message], None]  # hand a hello or an ack to lightningd, from any thread
Blocking = Callable[[str, Envelope], None]  # the sender thread's send: raises TransientError, CustomMsgError

UNSUPPORTED = "the peer does not speak custommsg's acknowledged delivery (no answer to our hello within {:g} seconds)"


class DeliverSoon(Protocol):
    def __call__(self, peer_id: str, *, resend_unacknowledged: bool, even_if_busy: bool) -> None:
        """Drain the peer's outbox on the sender thread, its unacknowledged entries first if asked."""


class AckedDelivery:
    def __init__(
        self, store: Store, outbox: Outbox, receiver: Receiver, post: Post, deliver_soon: DeliverSoon,
        notify_delivered: Callable[[OutboxEntry], None], log: Log,
        hello_timeout: float | None = None, retransmit_after: float | None = None,
        ack_delay: float | None = None, enabled: bool = True,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        wake_at: Callable[[float], None] = lambda when: None,
    ):
        self.enabled = enabled  # custommsg-acked-delivery
        self.store = store
        self.outbox = outbox
        self.receiver = receiver
        self.post = post
        self.deliver_soon = deliver_soon
        self.notify_delivered = notify_delivered
        self.log = log
        self.clock = clock
        self.wall = wall
        self.hello_timeout = HELLO_TIMEOUT if hello_timeout is None else hello_timeout
        self.support = PeerSupport(self.hello_timeout)
        self.flight = InFlight(RETRANSMIT_AFTER if retransmit_after is None else retransmit_after)
        self.pacer = HelloPacer(resend_every=self.flight.retransmit_after)
        self.acks = AckPacer() if ack_delay is None else AckPacer(delay=ack_delay)
        self.wake_at = wake_at  # main thread: have owed_acks() called at that clock() time
        self._streams: dict[str, int] = {}  # per peer, the stream of what is in self.flight
        self.streams_forgotten = 0  # receiving streams forgotten past MAX_STREAMS_PER_PEER, this run
        self._streams_logged: set[str] = set()  # peers logged for it on this connection
        self._lock = threading.Lock()

    # -- peers (main thread) ---------------------------------------------------

    def connected(self, peer_id: str) -> None:
        """The peer connected (or was when the plugin started): our hello only if we have acknowledged
        messages for it; a peer that asked for nothing hears nothing from us."""
        with self._lock:
            self.support.connected(peer_id, self.clock())
        if self.enabled and self.store.acked.has_unsettled(peer_id):
            self.ask(peer_id)

    def ask(self, peer_id: str) -> None:
        """We have acknowledged messages for the peer: say hello (reply=0), once per connection, so it
        answers with its own if it speaks the protocol; HELLO_TIMEOUT from now it is judged."""
        with self._lock:
            first = self.support.ask(peer_id, self.clock())
        if first:
            self.post(peer_id, Hello(batch=True).message())

    def disconnected(self, peer_id: str) -> None:
        with self._lock:
            self.support.disconnected(peer_id)
            self.pacer.forget(peer_id)
            self.acks.forget(peer_id)
            self.flight.reset(peer_id)
            self._streams.pop(peer_id, None)
        self._streams_logged.discard(peer_id)

    def ready(self, peer_id: str) -> bool:
        """The peer said hello on this connection: acknowledged entries may go to it."""
        with self._lock:
            return self.support.ready(peer_id)

    def check_supported(self, peer_id: str) -> None:
        """custommsg-send with ack=true: fails at once (ACK_UNSUPPORTED) for a peer known not to speak it,
        and for every peer when the operator turned acknowledged delivery off."""
        if not self.enabled:
            raise ValidationError(
                INVALID_PARAMETER, "acknowledged delivery is off on this node (custommsg-acked-delivery=false)",
                {"param": "ack"},
            )
        with self._lock:
            status = self.support.status(peer_id, self.clock())
        if status == "no":
            raise PeerError(ACK_UNSUPPORTED, f"peer {peer_id}: {UNSUPPORTED.format(self.hello_timeout)}",
                            {"peer_id": peer_id})

    # -- what the peer sends (main thread) ---------------------------------------

    def receive(self, peer_id: str, raw: bytes) -> None:
        """A hello, envelope or ack (whatever custommsg-type says); a malformed one is ignored, and all
        of them when acknowledged delivery is off (no hello answered, nothing stored or acknowledged)."""
        if not self.enabled:
            return
        try:
            value = parse(raw)
        except MalformedAck as exc:
            self.log(f"ignoring a malformed acknowledged-delivery message from {peer_id}: {exc.message}",
                     level="debug")
            return
        if isinstance(value, Hello):
            self.on_hello(peer_id, value)
        elif isinstance(value, Ack):
            self.on_ack(peer_id, value)
        else:
            self.on_envelope(peer_id, value)

    def on_hello(self, peer_id: str, hello: Hello) -> None:
        """Answer it, and send the unacknowledged entries again for the first hello on a connection
        or a reply=0 (the peer's plugin started): each at most as often as ``pacer`` allows."""
        now = self.clock()
        ours = answer(hello)
        with self._lock:
            was_ready = self.support.ready(peer_id)
            self.support.hello(peer_id, hello.version, now, hello.batch)
            reply_now = ours is not None and self.pacer.reply(peer_id, now)
            resend = (not was_ready or not hello.reply) and self.pacer.resend(peer_id, now)
        if ours is not None and reply_now:
            self.post(peer_id, ours.message())
        if not was_ready:
            self.log(f"peer {peer_id} speaks acknowledged delivery (version {hello.version})", level="debug")
        if resend:
            # The peer just spoke, so it is connected, whatever our notifications say.
            self.deliver_soon(peer_id, resend_unacknowledged=True, even_if_busy=True)

    def on_envelope(self, peer_id: str, envelope: Envelope) -> None:
        """Keep the inner message if it is the next of its stream, then acknowledge: the inner message
        is stored, counted and notified exactly as a plain message of its type would be, whatever
        custommsg-type says (the sender asked for acknowledged storage, and refusing one would hold
        back every later one from that peer). It counts as received once, when stored: a copy
        dropped here (rate, storage) is not acknowledged, and comes again."""
        inner = envelope.inner
        # Charged what the peer sent: the envelope around the message.
        if not self.receiver.admit(peer_id, inner.type, ENVELOPE_OVERHEAD + len(inner), counted=False):
            return
        gate = self.store.acked.envelope_gate(peer_id, envelope.stream, envelope.seq)
        try:
            self.receiver.keep(peer_id, inner.serialize(), inner.type, gate=gate, count_received=True)
        except StorageError:
            return  # counted and logged; no ack: the sender sends it again
        if gate.forgotten:
            self.streams_forgotten += gate.forgotten
            if peer_id not in self._streams_logged:
                self._streams_logged.add(peer_id)
                self.log(f"peer {peer_id} opens more acknowledged-delivery streams than {gate.max_streams}: the "
                         "least recently used go (logged once per connection)", level="info")
        now = self.clock()
        with self._lock:
            owed_until = self.acks.stored(peer_id, envelope.stream, gate.last, envelope.more, now)
        if owed_until is None:
            self.post(peer_id, Ack(envelope.stream, gate.last).message())
        else:
            self.wake_at(owed_until)
        if gate.decision is Decision.GAP:
            self.log(f"envelope {envelope.seq} from {peer_id} after {gate.last}: an earlier one was lost",
                     level="debug")

    def on_ack(self, peer_id: str, ack: Ack) -> None:
        try:
            delivered = self.store.acked.ack_delivered(peer_id, ack.stream, ack.seq, round(self.wall(), 3))
        except StorageError as exc:
            self.log(f"cannot record the acknowledgement from {peer_id}: {exc.message}", level="broken")
            return
        if delivered is None:
            self.log(f"ignoring an ack from {peer_id} for a seq never sent ({ack.stream:016x}, {ack.seq})",
                     level="debug")
            return
        with self._lock:
            if self._streams.get(peer_id) == ack.stream:
                self.flight.acked(peer_id, ack.seq)
        self.outbox.settle(delivered)
        for entry in delivered:
            self.notify_delivered(entry)

    def owed_acks(self) -> float | None:
        """Main thread, when the loop's alarm rings: send the delayed acks whose time has come;
        returns when the next one is due (None: none is owed)."""
        with self._lock:
            due = self.acks.due(self.clock())
            later = self.acks.next_due()
        for peer_id, stream, last in due:
            self.post(peer_id, Ack(stream, last).message())
        return later

    # -- sending (sender thread) -------------------------------------------------

    def sending(self, peer_id: str, envelope: Envelope) -> Envelope:
        """An envelope is about to go: in flight from now on (its ack may come before the call returns).
        Returns it as it goes: as 47437 if earlier ones of its stream are in flight and the peer reads it."""
        with self._lock:
            if self._streams.get(peer_id) != envelope.stream:
                self.flight.reset(peer_id)  # a new stream: what was in flight of the old one is settled
                self._streams[peer_id] = envelope.stream
            more = self.support.batches(peer_id) and self.flight.busy(peer_id)
            self.flight.sent(peer_id, envelope.seq, self.clock())
        return dataclasses.replace(envelope, more=True) if more else envelope

    def resend(self, peer_id: str, send: Blocking) -> bool:
        """Send the peer's unacknowledged entries again, in order; False if the peer went away meanwhile."""
        if not self.ready(peer_id):
            return True
        with self._lock:
            self.flight.reset(peer_id)
            self._streams.pop(peer_id, None)
        for entry in self.store.acked.unacknowledged(peer_id):
            envelope = self.sending(peer_id, envelope_of(entry))
            try:
                send(peer_id, envelope)
            except TransientError:
                return False
            except CustomMsgError as exc:  # lightningd refused it for good: it cannot go again either
                self.log(f"outbox {entry.id} to {peer_id}: cannot send it again: {exc.message}", level="warn")
                return True
        return True

    # -- time (timer thread) -----------------------------------------------------

    def sweep(self) -> None:
        now = self.clock()
        with self._lock:
            unsupported = self.support.due_unsupported(now)
            due = [peer for peer in self.flight.peers() if self.flight.due(peer, now)]
            owed = self.pacer.due_replies(now)
        for peer_id in owed:
            self.post(peer_id, Hello(reply=True, batch=True).message())
        for peer_id in unsupported:
            failed = self.outbox.fail_acknowledged(peer_id, UNSUPPORTED.format(self.hello_timeout))
            self.log(f"peer {peer_id} does not speak acknowledged delivery (no hello within "
                     f"{self.hello_timeout:g} s): {len(failed)} acknowledged messages to it failed", level="info")
            self.deliver_soon(peer_id, resend_unacknowledged=False, even_if_busy=False)  # what waits behind them
        for peer_id in due:
            self.deliver_soon(peer_id, resend_unacknowledged=True, even_if_busy=False)

    # -- custommsg-peers -----------------------------------------------------------

    def describe(self, connected: set[str], peer_id: str | None = None) -> list[dict[str, Any]]:
        """Per peer (connected, or seen this run, or with acknowledged entries waiting): what we know."""
        counts = self.store.acked.ack_counts()
        now = self.clock()
        with self._lock:
            known = set(connected) | set(counts) | set(self.support.peers())
            rows = []
            for peer in sorted(known if peer_id is None else known & {peer_id}):
                row: dict[str, Any] = {
                    "peer_id": peer,
                    "connected": peer in connected,
                    "ack_support": self.support.status(peer, now),
                }
                version = self.support.version(peer)
                if version is not None:
                    row["ack_version"] = version
                rows.append({**row, **counts.get(peer, {"queued": 0, "unacknowledged": 0})})
        return rows

