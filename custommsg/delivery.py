"""Acknowledged delivery, running: who speaks it, what is in flight, and what hellos and acks do.

``ack`` holds the wire format and the rules; the database (``ackstore``) holds the
entries, the streams and ``last`` per stream; this module holds what lives in memory
(:class:`ack.PeerSupport`, :class:`ack.Retransmitter`) and wires the rules to events:

* a peer connects (or is connected when the plugin starts): our hello, reply=0;
* its hello: our answer (a reply=1, to a reply=0 only); the first on a connection, or a
  reply=0 (the peer's plugin has just started), sends its unacknowledged entries again;
  both paced per peer (:class:`ack.HelloPacer`), so a flood of hellos costs us little;
* its ack: the entries it covers become ``delivered`` (``custommsg_delivered``);
* the sweep, once a second: a peer connected HELLO_TIMEOUT without a hello fails its
  acknowledged entries; entries unacknowledged RETRANSMIT_AFTER go again; owed replies go.

Envelopes the peer sends us are the receive pipeline's (``receive``), which answers each
with :meth:`AckedDelivery.send_ack`. Called from the main thread (the hook, connect and
disconnect), the sender thread (:meth:`retransmit`, :meth:`sending`) and the timer
thread (:meth:`sweep`): the in-memory state sits behind one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .ack import (
    ACK_LEN,
    HELLO_TIMEOUT,
    RETRANSMIT_AFTER,
    U64_LEN,
    Ack,
    Hello,
    HelloPacer,
    PeerSupport,
    Retransmitter,
    answer,
)
from .errors import ACK_UNSUPPORTED, CustomMsgError, PeerError, StorageError, TransientError
from .outbox import Outbox, envelope
from .schema import OutboxEntry
from .store import Store
from .wire import TYPE_LEN, Message, parse_message

Log = Callable[..., None]
Post = Callable[[str, Message], None]  # hand a protocol message to lightningd, from the main thread
Schedule = Callable[[str, bool, bool], None]  # (peer, retransmit, even if its delivery is under way)
Blocking = Callable[[str, bytes], None]  # the sender thread's send: raises TransientError, CustomMsgError

UNSUPPORTED = "the peer does not speak custommsg's acknowledged delivery (no hello within {:g} seconds of connecting)"


class AckedDelivery:
    def __init__(
        self, store: Store, outbox: Outbox, post: Post, schedule: Schedule,
        notify_delivered: Callable[[OutboxEntry], None], log: Log,
        hello_timeout: float | None = None, retransmit_after: float | None = None,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
    ):
        self.store = store
        self.outbox = outbox
        self.post = post
        self.schedule = schedule
        self.notify_delivered = notify_delivered
        self.log = log
        self.clock = clock
        self.wall = wall
        self.hello_timeout = HELLO_TIMEOUT if hello_timeout is None else hello_timeout
        self.support = PeerSupport(self.hello_timeout)
        self.flight = Retransmitter(RETRANSMIT_AFTER if retransmit_after is None else retransmit_after)
        self.pacer = HelloPacer(resend_every=self.flight.retransmit_after)
        self._streams: dict[str, int] = {}  # per peer, the stream of what is in self.flight
        self._lock = threading.Lock()

    # -- peers (main thread) ---------------------------------------------------

    def connected(self, peer_id: str) -> None:
        with self._lock:
            self.support.connected(peer_id, self.clock())
        self.post(peer_id, _message(Hello()))

    def disconnected(self, peer_id: str) -> None:
        with self._lock:
            self.support.disconnected(peer_id)
            self.pacer.forget(peer_id)
            self.flight.reset(peer_id)
            self._streams.pop(peer_id, None)

    def ready(self, peer_id: str) -> bool:
        """The peer said hello on this connection: acknowledged entries may go to it."""
        with self._lock:
            return self.support.ready(peer_id)

    def check_supported(self, peer_id: str) -> None:
        """custommsg-send with ack=true: fails at once (ACK_UNSUPPORTED) for a peer known not to speak it."""
        with self._lock:
            status = self.support.status(peer_id, self.clock())
        if status == "no":
            raise PeerError(ACK_UNSUPPORTED, f"peer {peer_id}: {UNSUPPORTED.format(self.hello_timeout)}",
                            {"peer_id": peer_id})

    # -- what the peer sends (main thread) ---------------------------------------

    def on_hello(self, peer_id: str, hello: Hello) -> None:
        """Answer it, and send the unacknowledged entries again for the first hello on a connection
        or a reply=0 (the peer's plugin started): each at most as often as ``pacer`` allows."""
        now = self.clock()
        ours = answer(hello)
        with self._lock:
            was_ready = self.support.ready(peer_id)
            self.support.hello(peer_id, hello.version, now)
            reply_now = ours is not None and self.pacer.reply(peer_id, now)
            resend = (not was_ready or not hello.reply) and self.pacer.resend(peer_id, now)
        if reply_now:
            self.post(peer_id, _message(Hello(reply=True)))
        if not was_ready:
            self.log(f"peer {peer_id} speaks acknowledged delivery (version {hello.version})", level="debug")
        if resend:
            self.schedule(peer_id, True, True)

    def on_ack(self, peer_id: str, ack: Ack) -> None:
        try:
            delivered = self.store.ack_delivered(peer_id, ack.stream, ack.seq, round(self.wall(), 3))
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

    def send_ack(self, peer_id: str, stream: int, last: int) -> None:
        self.post(peer_id, _message(Ack(stream, last)))

    # -- sending (sender thread) -------------------------------------------------

    def sending(self, peer_id: str, payload: bytes) -> None:
        """An envelope is about to go: in flight from now on (its ack may come before the call returns)."""
        stream = int.from_bytes(payload[TYPE_LEN:TYPE_LEN + U64_LEN], "big")
        seq = int.from_bytes(payload[TYPE_LEN + U64_LEN:TYPE_LEN + ACK_LEN], "big")
        with self._lock:
            if self._streams.get(peer_id) != stream:
                self.flight.reset(peer_id)  # a new stream: what was in flight of the old one is settled
                self._streams[peer_id] = stream
            self.flight.sent(peer_id, seq, self.clock())

    def retransmit(self, peer_id: str, send: Blocking) -> bool:
        """Send the peer's unacknowledged entries again, in order; False if the peer went away meanwhile."""
        if not self.ready(peer_id):
            return True
        with self._lock:
            self.flight.reset(peer_id)
            self._streams.pop(peer_id, None)
        for entry in self.store.unacknowledged(peer_id):
            payload = envelope(entry)
            self.sending(peer_id, payload)
            try:
                send(peer_id, payload)
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
            self.post(peer_id, _message(Hello(reply=True)))
        for peer_id in unsupported:
            failed = self.outbox.fail_acknowledged(peer_id, UNSUPPORTED.format(self.hello_timeout))
            self.log(f"peer {peer_id} does not speak acknowledged delivery (no hello within "
                     f"{self.hello_timeout:g} s): {len(failed)} acknowledged messages to it failed", level="info")
            self.schedule(peer_id, False, False)  # what waits behind them
        for peer_id in due:
            self.schedule(peer_id, True, False)

    # -- custommsg-peers -----------------------------------------------------------

    def describe(self, connected: set[str], peer_id: str | None = None) -> list[dict[str, Any]]:
        """Per peer (connected, or seen this run, or with acknowledged entries waiting): what we know."""
        counts = self.store.ack_counts()
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


def _message(value: Hello | Ack) -> Message:
    return parse_message(value.serialize())
