"""Keeping what peers send: count, rate-limit, store (committed before the hook answers), announce.

The ``custommsg`` hook (``node.hooks``) sends each message where its type says: a plain
message of a kept type to :meth:`Receiver.receive`; a bLIP-50 frame to ``lsps``, and
acknowledged delivery's hellos, envelopes and acks to ``acked``, which check their own
format and then keep what they carry through :meth:`Receiver.admit` and
:meth:`Receiver.keep`, so every message in the inbox is counted, limited, stored,
notified (``custommsg_stored``) and offered to parked waits the same way.

Runs on the main thread, once per message, before lightningd reads the peer's next
one: it raises nothing it can avoid (the hook answers ``continue`` whatever happens).

Group commit: lightningd writes a hook call for each peer's message as it comes
(lightningd/plugin_hook.c: plugin_hook_call_), so while one commit is under way, calls
from other peers gather in the pipe. With ``batched`` (the main loop's setting), a plain
message is only admitted and held by :meth:`Receiver.receive`; :meth:`Receiver.settle`,
which the loop calls when it has handled what it read, and before it writes any of the
round's answers (``node.eventloop``), stores what was held in one transaction. The hook
answers still follow the commit: they are written with the round's other writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.completion import WaiterRegistry
from ..core.errors import StorageError
from ..core.policy import GLOBAL_BUDGET, PEER_BUDGET, RATE, ReceiveLimiter, Verdict
from ..core.protocols import Protocols
from ..core.records import Decoded, Incoming, JsonRpcTag, StoredMessage
from .counters import Counters

if TYPE_CHECKING:
    from ..store.database import Store
    from ..store.query import Db

# Forget the rate limiter's full buckets once it tracks this many peers.
LIMITER_GC_AT = 1000

# What an episode's first and last log lines call each limit.
_LIMIT_NAMES = {
    RATE: "the rate limit (custommsg-peer-rate, custommsg-peer-burst)",
    PEER_BUDGET: "its byte budget (custommsg-peer-kbps, custommsg-peer-burst-bytes)",
    GLOBAL_BUDGET: "the node's byte budget (custommsg-global-kbps, custommsg-global-burst-bytes)",
}


class Receiver:
    def __init__(
        self, store: Store, counters: Counters, limiter: ReceiveLimiter, waiters: WaiterRegistry,
        inbox_max: int, notify: Callable[[dict[str, Any]], None], log: Callable[..., None],
        protocols: Protocols | None = None,
    ):
        self.store = store
        self.counters = counters
        self.limiter = limiter
        self.waiters = waiters
        self.inbox_max = inbox_max
        self.notify = notify
        self.log = log
        self.protocols = protocols or Protocols()  # registered messages are stored with their fields
        self.malformed = 0  # payloads too short to have a type
        self.batched = False  # hold plain messages for settle() (main loop only)
        self._held: list[Incoming] = []
        # Writes whose commit went unanswered (a round, or one kept message), with the pending counts they
        # took along, the inbox's newest index then, and what storing them counts: found stored once the
        # store answers again, or counted as dropped (and the counts pending again).
        self._unsure: list[tuple[list[Incoming], Any, int, tuple[str, ...]]] = []
        self._storage_failing = False  # log a storage outage once, and its end once

    def receive(self, peer_id: str, raw: bytes, msg_type: int) -> None:
        """A message of a type the inbox keeps."""
        if not self.admit(peer_id, msg_type, len(raw)):
            return
        if self.batched:
            decoded = self._decode(raw, msg_type)
            self._held.append(Incoming(peer_id, raw, msg_type, round(time.time(), 3), decoded=decoded))
            return
        try:
            self.keep(peer_id, raw, msg_type)
        except StorageError:
            pass  # counted and logged by keep()

    def settle(self) -> None:
        """Store the messages :meth:`receive` held, in one transaction, then announce each; if they
        cannot be stored, count each as dropped (cause ``storage``)."""
        if not self._held:
            return
        held, self._held = self._held, []
        try:
            stored, dropped = self.store.inbox.add_messages(held, self.inbox_max, ("stored",))
        except StorageError as exc:
            if exc.unsure:
                # counted once the store says whether it was committed
                self._unsure.append((held, exc.unsure_counts, self.store.inbox.newest, ("stored",)))
            else:
                self._count_dropped(held)
            self._storage_failed(exc)
            return
        self._announce(stored, dropped, ("stored",))

    def _count_dropped(self, messages: list[Incoming]) -> None:
        for message in messages:
            self.counters.count(message.peer_id, message.msg_type, "dropped_storage", len(message.payload))

    def _settle_unsure(self) -> None:
        """The store answers again: a write whose commit went unanswered is announced if it was stored
        (its counts were committed with it), else counted as dropped (and what it took along is pending
        again). One transaction wrote each: all of it is there, or none."""
        unsure, self._unsure = self._unsure, []
        for number, (messages, counts, newest, counted) in enumerate(unsure):
            try:
                found = self.store.inbox.find_stored(messages, newest)
            except StorageError:
                self._unsure = unsure[number:] + self._unsure
                return
            if not found:
                self._count_dropped(messages)
                if counts:
                    self.store.counters.restore(counts)
                continue
            self._announce(found, [], counted)

    def admit(self, peer_id: str, msg_type: int, size: int, counted: bool = True) -> bool:
        """Count it as received (unless ``counted`` is False: an envelope counts when it is stored),
        and say whether the peer is within its rate and byte budget and the node within its own
        (counting a drop, in messages and bytes, if not). ``size``: the bytes the peer sent."""
        if counted:
            self.counters.count(peer_id, msg_type, "received", size)
        verdict = self.limiter.check(peer_id, size)
        if verdict.ended:
            self._log_ended(peer_id, verdict)
        if verdict.allowed:
            return True
        self.counters.count(peer_id, msg_type, f"dropped_{verdict.cause}", size)
        if verdict.episode_started:
            who = "the node is" if verdict.cause == GLOBAL_BUDGET else f"peer {peer_id} is"
            self.log(f"{who} over {_LIMIT_NAMES[verdict.cause or RATE]}: dropping messages until it slows down "
                     f"(first dropped: {size} bytes from {peer_id})", level="info")
        return False

    def _log_ended(self, peer_id: str, verdict: Verdict) -> None:
        for cause, dropped in verdict.ended:
            who = "the node is" if cause == GLOBAL_BUDGET else f"peer {peer_id} is"
            self.log(f"{who} back under {_LIMIT_NAMES[cause]}; {dropped} messages were dropped", level="info")

    def keep(
        self, peer_id: str, raw: bytes, msg_type: int, rpc: JsonRpcTag | None = None,
        gate: Callable[[Db], bool] | None = None, count_received: bool = False,
    ) -> StoredMessage | None:
        """Store the message, count it, notify other plugins and wake waits; None if ``gate`` (run in
        the storing transaction) said no. StorageError, counted and logged, if it could not be stored."""
        self.settle()  # what came before it is stored before it
        decoded = self._decode(raw, msg_type)
        counted = ("received", "stored") if count_received else ("stored",)
        received_at, newest = round(time.time(), 3), self.store.inbox.newest
        try:
            stored = self.store.inbox.add_message(
                peer_id, raw, msg_type, received_at, self.inbox_max, rpc, gate, decoded, counted
            )
        except StorageError as exc:
            if exc.unsure:  # an envelope found stored is acknowledged as a copy when it comes again
                kept = Incoming(peer_id, raw, msg_type, received_at, rpc, decoded)
                self._unsure.append(([kept], exc.unsure_counts, newest, counted))
            else:
                self.counters.count(peer_id, msg_type, "dropped_storage", len(raw))
            self._storage_failed(exc)
            raise
        if stored is None:
            return None
        message, dropped = stored
        self._announce([message], dropped, counted)
        return message

    def _decode(self, raw: bytes, msg_type: int) -> Decoded | None:
        """Before the transaction: decoding never raises, and its work is bounded by len(raw)."""
        return self.protocols.decode(raw) if msg_type in self.protocols.by_type else None

    def _storage_failed(self, exc: StorageError) -> None:
        if not self._storage_failing:
            self._storage_failing = True
            self.log(f"cannot store messages: {exc.message}", level="broken")

    def _announce(self, stored: list[StoredMessage], dropped: list[tuple[str, int, int]],
                  counted: tuple[str, ...]) -> None:
        """Committed: count for the session (the store counted the totals, in the transaction that stored
        them), notify other plugins, wake waits."""
        if self._storage_failing:
            self._storage_failing = False
            self.log("storing messages again", level="info")
        if self._unsure:
            self._settle_unsure()
        for counter in counted:
            self.counters.count_session(counter, [(m.peer_id, m.type, len(m.payload)) for m in stored])
        self.counters.count_session("dropped_retention", dropped)
        if len(self.limiter) > LIMITER_GC_AT:
            self.limiter.forget_idle()
        for message in stored:
            self.notify(message.to_json())
            self.waiters.offer(message)
