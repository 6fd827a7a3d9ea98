"""bLIP-50 bookkeeping, sans I/O: our calls awaiting an answer, and the peers we muted.

Our calls are waiters in the plugin's one :class:`core.completion.WaiterRegistry`, keyed
``("lsps", peer, id)``: the timer thread ends them at their deadline like every other
wait, and a peer's answer completes exactly the call it names. Both are touched from the
main loop (a frame arrives, a peer disconnects) and from the timer and sender threads
(a deadline passes, a send fails): the registry and :class:`MutedPeers` each hold a lock.
The frames themselves are ``core.blip50``'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..core import errors
from ..core.blip50 import ErrorResponse, Frame, Response
from ..core.completion import Waiter, WaiterRegistry, call_safely, too_many
from ..core.errors import CustomMsgError, TransientError, ValidationError

Outcome = Response | ErrorResponse | CustomMsgError
OnDone = Callable[[Outcome], None]
TIMEOUT = "timeout"  # what the registry's expire() fails a waiter with

# Our calls awaiting an answer, per peer and in all (lightning-liquidity's LSPS client and service keep
# 10 per peer and 1000 in all): an LSP client makes a handful at once. Past either, the newest call
# is refused (TOO_MANY_WAITING); the calls waiting keep their place.
MAX_CALLS_PER_PEER = 100
MAX_CALLS = 1000


def _key(peer_id: str, request_id: str) -> tuple[str, str, str]:
    return ("lsps", peer_id, request_id)


def _of_peer(peer_id: str) -> Callable[[Waiter], bool]:
    return lambda w: isinstance(w.key, tuple) and w.key[:2] == ("lsps", peer_id)


def _ours(waiter: Waiter) -> bool:
    return isinstance(waiter.key, tuple) and waiter.key[:1] == ("lsps",)


class PendingCalls:
    """Our requests awaiting an answer, keyed by (peer id, request id). Each ``on_done`` runs once,
    outside any lock, with the Response, the ErrorResponse, or a TransientError (LSPS_TIMEOUT,
    LSPS_PEER_DISCONNECTED, or the code given to fail_peer).
    """

    def __init__(self, waiters: WaiterRegistry | None = None, per_peer_max: int = MAX_CALLS_PER_PEER,
                 total_max: int = MAX_CALLS):
        self.waiters = WaiterRegistry() if waiters is None else waiters
        self.per_peer_max = per_peer_max
        self.total_max = total_max
        self.refused_per_peer = 0  # calls refused by each bound, this run
        self.refused_total = 0

    def add(self, peer_id: str, request_id: str, on_done: OnDone, deadline: float | None = None) -> None:
        key = _key(peer_id, request_id)
        if self.waiters.count(lambda w: w.key == key):
            raise ValidationError(
                errors.INVALID_PARAMETER, "that request id is already pending",
                {"reason": "duplicate id", "id": request_id},
            )
        if len(self) >= self.total_max:
            self.refused_total += 1
            raise too_many("lsps_calls", self.total_max, "too many bLIP-50 calls waiting for an answer")
        if self.waiters.count(_of_peer(peer_id)) >= self.per_peer_max:
            self.refused_per_peer += 1
            raise too_many("lsps_calls_per_peer", self.per_peer_max,
                           f"too many bLIP-50 calls to {peer_id} waiting for an answer", peer_id=peer_id)

        def on_fail(reason: str) -> None:  # only the registry's expire() fails our waiters this way
            on_done(TransientError(errors.LSPS_TIMEOUT, reason, {"peer_id": peer_id, "id": request_id}))

        self.waiters.add(Waiter(min_index=0, on_message=on_done, on_fail=on_fail, deadline=deadline, key=key))

    def match(self, peer_id: str, frame: Frame) -> bool:
        """Complete the call ``frame`` answers; False (frame left alone for, e.g., CLN's own LSPS client):
        bLIP-50: "If a client receives a JSON-RPC 2.0 response with an `id` it does not remember
        sending a request for, it MUST ignore that response." Another peer cannot answer for this one.
        """
        if not isinstance(frame, Response | ErrorResponse) or frame.id is None:
            return False  # an error with id null (a -32700) names no call
        return self.waiters.wake(_key(peer_id, frame.id), frame) > 0

    def remove(self, peer_id: str, request_id: str) -> bool:
        """Forget a call without completing it (its request could not be sent); False if it was done."""
        key = _key(peer_id, request_id)
        return bool(self.waiters.take(lambda w: w.key == key))

    def fail_peer(self, peer_id: str, reason: str, code: int = errors.LSPS_PEER_DISCONNECTED) -> int:
        taken = self.waiters.take(_of_peer(peer_id))
        for waiter in taken:
            failure = TransientError(code, reason, {"peer_id": peer_id, "id": waiter.key[2]})
            call_safely(waiter.on_message, failure, report=self.waiters.on_callback_error)
        return len(taken)

    def expire(self, now: float) -> int:
        # bLIP-50: "SHOULD treat a timeout event as a temporary server failure, and forget
        # the `id` of the timed-out request." The timer thread expires every waiter at its
        # deadline; this is the same, for our calls alone, at ``now``.
        return self.waiters.fail(lambda w: _ours(w) and w.deadline is not None and w.deadline <= now, TIMEOUT)

    def next_deadline(self) -> float | None:
        return min((w.deadline for w in self.waiters.snapshot(_ours) if w.deadline is not None), default=None)

    def __len__(self) -> int:
        return self.waiters.count(_ours)


class MutedPeers:
    """Peers that sent a malformed message; thread-safe. bLIP-50, the client: "SHOULD NOT send further
    BOLT8 messages with ID 37913 to the peer on this connection session. SHOULD re-attempt this on
    reconnection." So: unmute on connect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._muted: set[str] = set()

    def mute(self, peer_id: str) -> bool:
        """True the first time, so the caller logs it ("SHOULD log this as an unusual event") once."""
        with self._lock:
            first = peer_id not in self._muted
            self._muted.add(peer_id)
        return first

    def __len__(self) -> int:
        with self._lock:
            return len(self._muted)

    def unmute(self, peer_id: str) -> bool:
        with self._lock:
            was = peer_id in self._muted
            self._muted.discard(peer_id)
        return was

    def is_muted(self, peer_id: str) -> bool:
        with self._lock:
            return peer_id in self._muted

    __contains__ = is_muted
