"""The one way an asynchronous call finishes: parked waiters, what completes them, and their deadlines.

Every call that answers later parks a :class:`Waiter` here: ``custommsg-wait`` and
``custommsg-request`` (a stored message completes them), ``custommsg-outbox-wait`` and
our bLIP-50 calls (a *key* completes them: ``("outbox", id)`` when that entry settles,
``("lsps", peer, id)`` when that peer answers that id). A message waiter describes the
message it wants (an inbox index to start from, a peer, a type, a body prefix, a
method); every stored message is offered to the waiters. *Exclusive* waiters (requests)
each take a different message, first come first served, so concurrent requests to one
peer get one reply each; plain waits all see the same message. Each waiter is removed
under the lock and completed outside it, exactly once: by its message or key, by
:meth:`WaiterRegistry.fail` (its peer went away), or at its deadline, which the timer
thread honours to within its scheduling delay (it sleeps until the earliest deadline,
and :attr:`WaiterRegistry.changed` wakes it when an earlier one is parked).
Thread-safe; the clock is injected.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import TOO_MANY_WAITING, CustomMsgError, TransientError
from .records import StoredMessage
from .wire import message_body

ReportError = Callable[[str], object]  # given a formatted traceback

# Calls parked at once, of every kind: each holds a callback and its closure, a few hundred bytes.
# Past it, the newest call is refused (TOO_MANY_WAITING): the ones parked keep their place.
MAX_WAITERS = 10_000


def too_many(bound: str, limit: int, what: str, **data: Any) -> TransientError:
    """The error of a call refused because a bound on waiting calls is reached: it may work later."""
    return TransientError(TOO_MANY_WAITING, f"{what}: {limit} are waiting already ({bound})",
                          {"bound": bound, "max": limit, **data})


def call_safely(callback: Callable[..., object], *args: Any, report: ReportError) -> None:
    """Run a completion callback, reporting a bug in it instead of raising: whoever calls it has
    already removed what the callback completes, and must go on to complete the others."""
    try:
        callback(*args)
    except Exception:
        report(traceback.format_exc())


@dataclass(eq=False)
class Waiter:
    min_index: int
    on_message: Callable[[Any], None]  # the StoredMessage; for a keyed waiter, what wake() gives
    on_fail: Callable[[str], None]
    peer_id: str | None = None
    type: int | None = None
    body_prefix: bytes = b""
    method: str | None = None  # a bLIP-50 method
    name: str | None = None  # a registered protocol's message name
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
            and (self.name is None or message.name == self.name)
        )


class WaiterRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic, on_callback_error: ReportError = sys.stderr.write,
                 max_waiters: int = MAX_WAITERS):
        self.clock = clock
        self.on_callback_error = on_callback_error
        self.max_waiters = max_waiters
        self.refused = 0  # calls refused because max_waiters were parked
        self._lock = threading.RLock()
        self._waiters: dict[int, Waiter] = {}
        self._ids = itertools.count(1)
        # Wakes the deadline thread when an earlier deadline arrives.
        self.changed = threading.Condition(self._lock)

    def add(self, waiter: Waiter) -> Waiter:
        """Park ``waiter``; TOO_MANY_WAITING if ``max_waiters`` are parked already."""
        with self._lock:
            if len(self._waiters) >= self.max_waiters:
                self.refused += 1
                raise too_many("waits", self.max_waiters, "too many calls waiting")
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

    def take(self, predicate: Callable[[Waiter], bool]) -> list[Waiter]:
        """Remove and return the waiters ``predicate`` picks, oldest first: the caller completes them."""
        with self._lock:
            taken = [w for w in self._waiters.values() if predicate(w)]
            for waiter in taken:
                del self._waiters[waiter.id]
        return taken

    def snapshot(self, predicate: Callable[[Waiter], bool]) -> list[Waiter]:
        """The waiters ``predicate`` picks, left in place (to look at, not to complete)."""
        with self._lock:
            return [w for w in self._waiters.values() if predicate(w)]

    def count(self, predicate: Callable[[Waiter], bool]) -> int:
        with self._lock:
            return sum(1 for w in self._waiters.values() if predicate(w))

    def fail(self, predicate: Callable[[Waiter], bool], reason: str) -> int:
        failed = self.take(predicate)
        for waiter in failed:
            self._call(waiter.on_fail, reason)
        return len(failed)

    def _call(self, callback: Callable[[Any], None], argument: Any) -> None:
        call_safely(callback, argument, report=self.on_callback_error)

    def expire(self) -> int:
        now = self.clock()
        return self.fail(lambda w: w.deadline is not None and w.deadline <= now, "timeout")

    def next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [w.deadline for w in self._waiters.values() if w.deadline is not None]
        return min(deadlines, default=None)


# -- answering a method call later ----------------------------------------------------

PENDING = object()  # a method's return value: "I will answer this call later, through its Reply"


class Reply(Protocol):
    """How a method answers its caller, now or later, exactly once (``node.rpcmethod`` makes one per
    call): the first answer counts, later ones are dropped."""

    def result(self, value: Any) -> None:
        """Succeed with ``value``, a JSON object."""

    def error(self, error: CustomMsgError) -> None:
        """Fail with ``error``'s code, message and data."""

    def crash(self, exc: Exception) -> None:
        """Fail because of a bug (``exc``): the caller is answered all the same."""
