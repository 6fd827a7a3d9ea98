"""Keeping what peers send: count, rate-limit, store (committed before the hook answers), announce.

The ``custommsg`` hook (``node.hooks``) sends each message where its type says: a plain
message of a kept type to :meth:`Receiver.receive`; a bLIP-50 frame to ``lsps``, and
acknowledged delivery's hellos, envelopes and acks to ``acked``, which check their own
format and then keep what they carry through :meth:`Receiver.admit` and
:meth:`Receiver.keep`, so every message in the inbox is counted, limited, stored,
notified (``custommsg_stored``) and offered to parked waits the same way.

Runs on the main thread, once per message, before lightningd reads the peer's next
one: it raises nothing it can avoid (the hook answers ``continue`` whatever happens).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.completion import WaiterRegistry
from ..core.errors import StorageError
from ..core.policy import PeerRateLimiter
from ..core.records import JsonRpcTag, StoredMessage
from .counters import Counters

if TYPE_CHECKING:
    from ..store.database import Store
    from ..store.query import Db

# Forget the rate limiter's full buckets once it tracks this many peers.
LIMITER_GC_AT = 1000


class Receiver:
    def __init__(
        self, store: Store, counters: Counters, limiter: PeerRateLimiter, waiters: WaiterRegistry,
        inbox_max: int, notify: Callable[[dict[str, Any]], None], log: Callable[..., None],
    ):
        self.store = store
        self.counters = counters
        self.limiter = limiter
        self.waiters = waiters
        self.inbox_max = inbox_max
        self.notify = notify
        self.log = log
        self.malformed = 0  # payloads too short to have a type
        self._storage_failing = False  # log a storage outage once, and its end once

    def receive(self, peer_id: str, raw: bytes, msg_type: int) -> None:
        """A message of a type the inbox keeps."""
        if self.admit(peer_id, msg_type):
            try:
                self.keep(peer_id, raw, msg_type)
            except StorageError:
                pass  # counted and logged by keep()

    def admit(self, peer_id: str, msg_type: int, counted: bool = True) -> bool:
        """Count it as received (unless ``counted`` is False: an envelope counts when it is stored),
        and say whether the peer is within its rate (counting a drop if not)."""
        if counted:
            self.counters.count(peer_id, msg_type, "received")
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

    def keep(
        self, peer_id: str, raw: bytes, msg_type: int, rpc: JsonRpcTag | None = None,
        gate: Callable[[Db], bool] | None = None, count_received: bool = False,
    ) -> StoredMessage | None:
        """Store the message, count it, notify other plugins and wake waits; None if ``gate`` (run in
        the storing transaction) said no. StorageError, counted and logged, if it could not be stored."""
        try:
            counted = ("received", "stored") if count_received else ("stored",)
            stored = self.store.inbox.add_message(
                peer_id, raw, msg_type, round(time.time(), 3), self.inbox_max, rpc, gate, counted
            )
        except StorageError as exc:
            self.counters.count(peer_id, msg_type, "dropped_storage")
            if not self._storage_failing:
                self._storage_failing = True
                self.log(f"cannot store messages: {exc.message}", level="broken")
            raise
        if stored is None:
            return None
        message, dropped = stored
        if self._storage_failing:
            self._storage_failing = False
            self.log("storing messages again", level="info")
        # The store counted these in its totals already, in the transaction that stored the message.
        self.counters.count_session(
            [(peer_id, msg_type, name) for name in counted] + [(p, t, "dropped_retention") for p, t in dropped]
        )
        if len(self.limiter) > LIMITER_GC_AT:
            self.limiter.forget_idle()
        self.notify(message.to_json())
        self.waiters.offer(message)
        return message
