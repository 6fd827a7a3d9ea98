"""bLIP-50 bookkeeping, sans I/O: our calls awaiting an answer, and the peers we muted.

Both are touched from the main loop (a frame arrives, a peer disconnects) and from
the timer and sender threads (a deadline passes, a send fails), so each holds its own
lock and runs callbacks outside it. The frames themselves are ``blip50``'s.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable

from . import errors
from .blip50 import ErrorResponse, Frame, Response
from .errors import CustomMsgError, TransientError, ValidationError

Outcome = Response | ErrorResponse | CustomMsgError
OnDone = Callable[[Outcome], None]


class PendingCalls:
    """Our requests awaiting an answer, keyed by (peer id, request id); thread-safe. Each ``on_done``
    runs once, outside the lock, with the Response, the ErrorResponse, or a TransientError
    (LSPS_TIMEOUT, LSPS_PEER_DISCONNECTED, or the code given to fail_peer).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], tuple[OnDone, float | None]] = {}
        self.on_callback_error: Callable[[str], object] = sys.stderr.write

    def add(self, peer_id: str, request_id: str, on_done: OnDone, deadline: float | None = None) -> None:
        with self._lock:
            if (peer_id, request_id) in self._calls:
                raise ValidationError(
                    errors.INVALID_PARAMETER, "that request id is already pending",
                    {"reason": "duplicate id", "id": request_id},
                )
            self._calls[peer_id, request_id] = (on_done, deadline)

    def match(self, peer_id: str, frame: Frame) -> bool:
        """Complete the call ``frame`` answers; False (frame left alone for, e.g., CLN's own LSPS client):
        bLIP-50: "If a client receives a JSON-RPC 2.0 response with an `id` it does not remember
        sending a request for, it MUST ignore that response." Another peer cannot answer for this one.
        """
        if not isinstance(frame, Response | ErrorResponse) or frame.id is None:
            return False  # an error with id null (a -32700) names no call
        with self._lock:
            call = self._calls.pop((peer_id, frame.id), None)
        if call is not None:
            self._call(call[0], frame)
        return call is not None

    def remove(self, peer_id: str, request_id: str) -> bool:
        """Forget a call without completing it (its request could not be sent); False if it was done."""
        with self._lock:
            return self._calls.pop((peer_id, request_id), None) is not None

    def fail_peer(self, peer_id: str, reason: str, code: int = errors.LSPS_PEER_DISCONNECTED) -> int:
        return self._fail(lambda key, _: key[0] == peer_id, code, reason)

    def expire(self, now: float) -> int:
        # bLIP-50: "SHOULD treat a timeout event as a temporary server failure, and forget
        # the `id` of the timed-out request."
        return self._fail(lambda _, deadline: deadline is not None and deadline <= now, errors.LSPS_TIMEOUT, "timeout")

    def next_deadline(self) -> float | None:
        with self._lock:
            return min((d for _, d in self._calls.values() if d is not None), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def _fail(self, pick: Callable[[tuple[str, str], float | None], bool], code: int, reason: str) -> int:
        with self._lock:
            picked = [(key, call) for key, call in self._calls.items() if pick(key, call[1])]
            for key, _ in picked:
                del self._calls[key]
        for (peer_id, request_id), (on_done, _) in picked:
            self._call(on_done, TransientError(code, reason, {"peer_id": peer_id, "id": request_id}))
        return len(picked)

    def _call(self, on_done: OnDone, outcome: Outcome) -> None:
        try:  # each call was removed first: one raising callback must not strand the others
            on_done(outcome)
        except Exception:
            self.on_callback_error(traceback.format_exc())


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

    def unmute(self, peer_id: str) -> bool:
        with self._lock:
            was = peer_id in self._muted
            self._muted.discard(peer_id)
        return was

    def is_muted(self, peer_id: str) -> bool:
        with self._lock:
            return peer_id in self._muted

    __contains__ = is_muted
