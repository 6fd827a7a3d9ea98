"""The receive pipeline: what happens to each message the ``custommsg`` hook hands us.

decode -> keep only the configured types -> per-peer rate limit -> for bLIP-50's type,
check it (a malformed one goes to ``lsps`` instead of the inbox) -> store (committed
before the hook answers) -> count -> hand a bLIP-50 frame to ``lsps`` -> notify other
plugins -> wake parked waits.
Runs on the main thread, once per message, before lightningd reads the peer's next
one: it holds direct references to what it uses, and raises nothing it can avoid
(the hook answers ``continue`` whatever happens).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .blip50 import LSPS0_MESSAGE_TYPE, MalformedFrame, parse_frame
from .errors import StorageError
from .lsps import LspsEndpoint, tag
from .policy import PeerRateLimiter
from .stats import Counters
from .store import Store
from .validate import Config
from .waiters import WaiterRegistry
from .wire import MIN_MESSAGE_LEN, message_body, message_type

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
    ):
        self.lsps = lsps
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
        try:
            raw = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) < MIN_MESSAGE_LEN:
            self.malformed += 1
            self.log(f"ignoring a malformed message from {peer_id}: {payload_hex[:20]!r}", level="debug")
            return
        msg_type = message_type(raw)
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
            message, dropped = self.store.add_message(
                peer_id, raw, msg_type, round(time.time(), 3), self.inbox_max, None if frame is None else tag(frame)
            )
        except StorageError as exc:
            self.counters.count(peer_id, msg_type, "dropped_storage")
            if not self._storage_failing:
                self._storage_failing = True
                self.log(f"cannot store messages: {exc.message}", level="broken")
            if frame is not None:
                self.lsps.on_frame(peer_id, frame)  # a call waiting for it is answered all the same
            return
        if self._storage_failing:
            self._storage_failing = False
            self.log("storing messages again", level="info")
        self.counters.count(peer_id, msg_type, "stored")
        # The store counted these in its totals already.
        self.counters.count_session([(p, t, "dropped_retention") for p, t in dropped])
        if len(self.limiter) > LIMITER_GC_AT:
            self.limiter.forget_idle()
        if frame is not None:
            self.lsps.on_frame(peer_id, frame)
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
