"""Parked ``custommsg-wait`` and ``custommsg-request`` calls, and what wakes them.

A waiter describes the message it wants (an inbox index to start from, a peer, a
type, a body prefix). Every stored message is offered to the waiters; a match
completes the waiter. *Exclusive* waiters (requests) each take a different
message, first come first served, so concurrent requests to one peer get one reply
each; plain waits all see the same message. A *keyed* waiter (``key`` set) waits for
something else than a stored message: :meth:`WaiterRegistry.wake` completes it with
whatever its key names settling (``("outbox", id)``: custommsg-outbox-wait). Thread-safe;
the clock is injected.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .schema import StoredMessage
from .wire import message_body


@dataclass(eq=False)
class Waiter:
    min_index: int
    on_message: Callable[[Any], None]  # the StoredMessage; for a keyed waiter, what wake() gives
    on_fail: Callable[[str], None]
    peer_id: str | None = None
    type: int | None = None
    body_prefix: bytes = b""
    method: str | None = None  # a bLIP-50 method
    deadline: float | None = None
    exclusive: bool = False
    context: Any = None
    key: Any = None  # set: woken by wake(key, ...) only, never by a stored message
    id: int = field(default=0)

    def matches(self, message: StoredMessage) -> bool:
        return (
            self.key is None
            and message.created_index >= self.min_index
            and (self.peer_id is None or message.peer_id == self.peer_id)
            and (self.type is None or message.type == self.type)
            and message_body(message.payload).startswith(self.body_prefix)
            and (self.method is None or (message.rpc is not None and message.rpc.method == self.method))
        )


class WaiterRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.RLock()
        self._waiters: dict[int, Waiter] = {}
        self._ids = itertools.count(1)
        # Wakes the deadline thread when an earlier deadline arrives.
        self.changed = threading.Condition(self._lock)
        self.on_callback_error: Callable[[str], object] = sys.stderr.write

    def add(self, waiter: Waiter) -> Waiter:
        with self._lock:
            waiter.id = next(self._ids)
            self._waiters[waiter.id] = waiter
            self.changed.notify_all()
        return waiter

    def remove(self, waiter: Waiter) -> bool:
        with self._lock:
            return self._waiters.pop(waiter.id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiters)

    def offer(self, message: StoredMessage) -> int:
        """Complete every waiter this message satisfies; returns how many."""
        with self._lock:
            woken: list[Waiter] = []
            taken = False
            for waiter in list(self._waiters.values()):  # insertion order: oldest first
                if waiter.exclusive and taken:
                    continue
                if waiter.matches(message):
                    del self._waiters[waiter.id]
                    woken.append(waiter)
                    taken = taken or waiter.exclusive
        for waiter in woken:
            self._call(waiter.on_message, message)
        return len(woken)

    def wake(self, key: Any, value: Any) -> int:
        """Complete every waiter with this ``key``, giving it ``value``; returns how many."""
        with self._lock:
            woken = [w for w in self._waiters.values() if w.key is not None and w.key == key]
            for waiter in woken:
                del self._waiters[waiter.id]
        for waiter in woken:
            self._call(waiter.on_message, value)
        return len(woken)

    def fail(self, predicate: Callable[[Waiter], bool], reason: str) -> int:
        with self._lock:
            failed = [w for w in self._waiters.values() if predicate(w)]
            for waiter in failed:
                del self._waiters[waiter.id]
        for waiter in failed:
            self._call(waiter.on_fail, reason)
        return len(failed)

    def _call(self, callback: Callable[[Any], None], argument: Any) -> None:
        # Each waiter was already removed: one failing callback must not leave the
        # others' requests unanswered forever.
        try:
            callback(argument)
        except Exception:
            self.on_callback_error(traceback.format_exc())

    def expire(self) -> int:
        now = self.clock()
        return self.fail(lambda w: w.deadline is not None and w.deadline <= now, "timeout")

    def next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [w.deadline for w in self._waiters.values() if w.deadline is not None]
        return min(deadlines, default=None)
