"""The receive pipeline: what happens to each message the ``custommsg`` hook hands us.

decode -> keep only the configured types -> per-peer rate limit -> for bLIP-50's type,
check it (a malformed one goes to ``lsps`` instead of the inbox) -> store (committed
before the hook answers) -> count -> hand a bLIP-50 frame to ``lsps`` -> notify other
plugins -> wake parked waits.

Acknowledged delivery's three types take another path, whatever custommsg-type says:
hellos and acks go to ``delivery``; an envelope is rate-limited like any message, then
its inner message is stored, whatever its type (the sender asked for acknowledged
storage, and refusing one would hold back every later one from that peer), if the
receiver's rule says so, in the transaction that moves ``last`` (``ackstore``); then it
is acknowledged. The inner message is stored, counted and notified exactly as a plain
message of its type would be (bLIP-50 frames are not parsed: through an envelope they
are data); the envelope itself, a copy the inbox already holds, hellos and acks are not
stored, counted or notified.
Runs on the main thread, once per message, before lightningd reads the peer's next
one: it holds direct references to what it uses, and raises nothing it can avoid
(the hook answers ``continue`` whatever happens).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .ack import ACK_TYPES, Ack, Decision, Envelope, Hello, MalformedAck, parse
from .blip50 import LSPS0_MESSAGE_TYPE, MalformedFrame, parse_frame
from .delivery import AckedDelivery
from .errors import StorageError
from .lsps import LspsEndpoint, tag
from .options import Config
from .policy import PeerRateLimiter
from .schema import StoredMessage
from .stats import Counters
from .store import Store
from .waiters import WaiterRegistry
from .wire import MIN_MESSAGE_LEN, is_node_id_text, message_body, message_type

# Forget the rate limiter's full buckets once it tracks this many peers.
LIMITER_GC_AT = 1000


class Receiver:
    def __init__(
        self,
        config: Config,
        store: Store,
        counters: Counters,
        limiter: PeerRateLimiter,
        waiters: WaiterRegistry,
        lsps: LspsEndpoint,
        notify: Callable[[dict[str, Any]], None],
        log: Callable[..., None],
        acked: AckedDelivery,
    ):
        self.lsps = lsps
        self.acked = acked
        self.types = config.types
        self.inbox_max = config.inbox_max
        self.store = store
        self.counters = counters
        self.limiter = limiter
        self.waiters = waiters
        self.notify = notify
        self.log = log
        self.malformed = 0  # payloads too short to have a type
        self._storage_failing = False  # log a storage outage once, and its end once

    def receive(self, peer_id: str, payload_hex: str) -> None:
        if not is_node_id_text(peer_id):
            # lightningd always names the peer (lightningd/connect_control.c: custommsg_payload_serialize);
            # a message from nobody cannot be answered, counted or stored.
            self.log(f"ignoring a custommsg hook call without a valid peer_id: {str(peer_id)[:70]!r}", level="debug")
            return
        try:
            raw = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) < MIN_MESSAGE_LEN:
            self.malformed += 1
            self.log(f"ignoring a malformed message from {peer_id}: {payload_hex[:20]!r}", level="debug")
            return
        msg_type = message_type(raw)
        if msg_type in ACK_TYPES:
            self._protocol(peer_id, raw)
            return
        if msg_type not in self.types:
            return
        self.counters.count(peer_id, msg_type, "received")
        if not self._within_rate(peer_id, msg_type):
            return
        frame = None
        if msg_type == LSPS0_MESSAGE_TYPE:
            try:
                frame = parse_frame(message_body(raw))
            except MalformedFrame as exc:
                self.counters.count(peer_id, msg_type, "dropped_malformed")
                self.lsps.on_malformed(peer_id, exc)
                return
        try:
            stored = self.store.add_message(
                peer_id, raw, msg_type, round(time.time(), 3), self.inbox_max, None if frame is None else tag(frame)
            )
        except StorageError as exc:
            self._storage_failed(peer_id, msg_type, exc)
            if frame is not None:
                self.lsps.on_frame(peer_id, frame)  # a call waiting for it is answered all the same
            return
        assert stored is not None
        self._stored(peer_id, msg_type, *stored)
        if frame is not None:
            self.lsps.on_frame(peer_id, frame)
        self._announce(stored[0])

    def _protocol(self, peer_id: str, raw: bytes) -> None:
        try:
            value = parse(raw)
        except MalformedAck as exc:
            self.log(f"ignoring a malformed acknowledged-delivery message from {peer_id}: {exc.message}",
                     level="debug")
            return
        if isinstance(value, Hello):
            self.acked.on_hello(peer_id, value)
        elif isinstance(value, Ack):
            self.acked.on_ack(peer_id, value)
        else:
            self._envelope(peer_id, value)

    def _envelope(self, peer_id: str, envelope: Envelope) -> None:
        """Store the inner message if it is the next of its stream, then acknowledge (not if rate-limited)."""
        inner = envelope.inner
        # An enveloped message counts as received once, when it is stored: a copy dropped here
        # (rate, storage) comes again, and is counted then.
        if not self._within_rate(peer_id, inner.type):
            return  # no ack: the sender sends it again
        gate = self.store.envelope_gate(peer_id, envelope.stream, envelope.seq)
        try:
            stored = self.store.add_message(
                peer_id, inner.serialize(), inner.type, round(time.time(), 3), self.inbox_max, gate=gate
            )
        except StorageError as exc:
            self._storage_failed(peer_id, inner.type, exc)
            return  # no ack: the sender sends it again
        self.acked.send_ack(peer_id, envelope.stream, gate.last)
        if stored is None:
            if gate.decision is Decision.GAP:
                self.log(f"envelope {envelope.seq} from {peer_id} after {gate.last}: an earlier one was lost",
                         level="debug")
            return
        self.counters.count(peer_id, inner.type, "received")
        self._stored(peer_id, inner.type, *stored)
        self._announce(stored[0])

    def _storage_failed(self, peer_id: str, msg_type: int, exc: StorageError) -> None:
        self.counters.count(peer_id, msg_type, "dropped_storage")
        if not self._storage_failing:
            self._storage_failing = True
            self.log(f"cannot store messages: {exc.message}", level="broken")

    def _stored(self, peer_id: str, msg_type: int, message: StoredMessage, dropped: list[tuple[str, int]]) -> None:
        if self._storage_failing:
            self._storage_failing = False
            self.log("storing messages again", level="info")
        self.counters.count(peer_id, msg_type, "stored")
        # The store counted these in its totals already.
        self.counters.count_session([(p, t, "dropped_retention") for p, t in dropped])
        if len(self.limiter) > LIMITER_GC_AT:
            self.limiter.forget_idle()

    def _announce(self, message: StoredMessage) -> None:
        self.notify(message.to_json())
        self.waiters.offer(message)

    def _within_rate(self, peer_id: str, msg_type: int) -> bool:
        verdict = self.limiter.check(peer_id)
        if verdict.episode_ended_after is not None:
            self.log(
                f"peer {peer_id} is back under the rate limit; {verdict.episode_ended_after} messages were dropped",
                level="info",
            )
        if verdict.allowed:
            return True
        self.counters.count(peer_id, msg_type, "dropped_rate")
        if verdict.episode_started:
            self.log(
                f"peer {peer_id} is over the rate limit ({self.limiter.rate:g}/s, burst "
                f"{self.limiter.burst:g}): dropping its messages until it slows down",
                level="info",
            )
        return False
