"""Receive policy: which message types the inbox keeps, and how fast a peer may fill it.

The option values that configure both are read in ``options``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .wire import CUSTOM_RANGE


class TypeSelection:
    """A set of message types, written as numbers and inclusive ranges ("40000-40999").

    The default is BOLT #1's custom range, 32768-65535: it leaves out peer storage
    (7, 9) and commando (19533, 19535, 22859, 22861), whose frames carry runes.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]]):
        merged: list[tuple[int, int]] = []
        for low, high in sorted(ranges):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self.ranges: tuple[tuple[int, int], ...] = tuple(merged)

    @classmethod
    def default(cls) -> TypeSelection:
        return cls([(CUSTOM_RANGE.start, CUSTOM_RANGE.stop - 1)])

    def __contains__(self, msg_type: object) -> bool:
        return isinstance(msg_type, int) and any(lo <= msg_type <= hi for lo, hi in self.ranges)

    def describe(self) -> list[str]:
        return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypeSelection) and self.ranges == other.ranges

    def __repr__(self) -> str:
        return f"TypeSelection({self.describe()})"


@dataclass
class _Bucket:
    tokens: float
    updated: float
    limited: bool = False  # inside an over-limit episode
    dropped_in_episode: int = 0


@dataclass
class RateVerdict:
    allowed: bool
    # An episode runs from the first drop until the peer's bucket is full again:
    # its start and its end are the moments worth one log line each.
    episode_started: bool = False
    episode_ended_after: int | None = None


@dataclass
class PeerRateLimiter:
    """A token bucket per peer: ``rate`` messages a second, up to ``burst`` at once.

    The clock is injected so tests step time instead of sleeping. A bucket that has
    refilled completely carries no information and is forgotten, so memory follows
    the number of recently active peers, not the traffic.
    """

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, peer_id: str) -> RateVerdict:
        now = self.clock()
        bucket = self._buckets.get(peer_id)
        if bucket is None:
            bucket = self._buckets[peer_id] = _Bucket(tokens=self.burst, updated=now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        verdict = RateVerdict(bucket.tokens >= 1)
        if bucket.limited and bucket.tokens >= self.burst:
            # The episode is over only once the peer slowed down long enough to
            # refill the whole burst; a token trickling in mid-flood does not end it.
            verdict.episode_ended_after = bucket.dropped_in_episode
            bucket.limited, bucket.dropped_in_episode = False, 0
        if verdict.allowed:
            bucket.tokens -= 1
            return verdict
        verdict.episode_started = not bucket.limited
        bucket.limited = True
        bucket.dropped_in_episode += 1
        return verdict

    def forget_idle(self) -> None:
        now = self.clock()
        for peer_id, bucket in list(self._buckets.items()):
            if not bucket.limited and bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[peer_id]

    def __len__(self) -> int:
        return len(self._buckets)
