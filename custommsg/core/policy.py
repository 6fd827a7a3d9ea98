"""Policy: which message types the inbox keeps, how fast a peer may fill it (messages and bytes, per
peer and for the whole node), and how fast we may send to a peer (bytes).

The option values that configure both are read in ``options``.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class Budget:
    """A token bucket's size: ``rate`` units a second, up to ``burst`` at once. Rate 0 and burst 0
    is LND's "off" (lnd's onion-message limiter: both 0 turn it off)."""

    rate: float
    burst: float

    @property
    def off(self) -> bool:
        return self.rate == 0 and self.burst == 0

    @classmethod
    def kbps(cls, kbps: float, burst_bytes: int) -> Budget:
        """LND's units: a rate in kilobits a second (1 kbps = 125 bytes a second), a burst in bytes."""
        return cls(kbps * BYTES_PER_SECOND_PER_KBPS, float(burst_bytes))


BYTES_PER_SECOND_PER_KBPS = 125  # 1000 bits / 8
OFF = Budget(0, 0)


@dataclass
class TokenBucket:
    """One bucket: it refills at ``budget.rate`` up to ``budget.burst``. An *episode* runs from its
    first refusal until it is full again: its start and its end are worth one log line each."""

    budget: Budget
    tokens: float
    updated: float
    limited: bool = False  # inside an over-budget episode
    dropped_in_episode: int = 0

    @classmethod
    def full(cls, budget: Budget, now: float) -> TokenBucket:
        return cls(budget, budget.burst, now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.budget.burst, self.tokens + (now - self.updated) * self.budget.rate)
            self.updated = now

    def level_at(self, now: float) -> float:
        return min(self.budget.burst, self.tokens + max(0.0, now - self.updated) * self.budget.rate)

    def ended(self) -> int | None:
        """After refill: the episode's drop count if it is over now (the bucket is full again), once.
        A token trickling in mid-flood does not end it: only slowing down long enough does."""
        if self.limited and self.tokens >= self.budget.burst:
            dropped, self.limited, self.dropped_in_episode = self.dropped_in_episode, False, 0
            return dropped
        return None

    def refuse(self) -> bool:
        """Count a refusal; True if it starts an episode."""
        started = not self.limited
        self.limited = True
        self.dropped_in_episode += 1
        return started

    def wait_for(self, cost: float) -> float:
        """After refill: seconds until ``cost`` fits (0: now; inf: never, it is over the burst)."""
        if self.tokens >= cost:
            return 0.0
        if cost > self.budget.burst or self.budget.rate <= 0:
            return math.inf
        return (cost - self.tokens) / self.budget.rate

    @property
    def idle(self) -> bool:
        """Full and in no episode: it carries no information, and can be forgotten."""
        return not self.limited and self.tokens >= self.budget.burst


# Why a message was refused, as the counters name it (``dropped_<cause>``).
RATE, PEER_BUDGET, GLOBAL_BUDGET = "rate", "peer_budget", "global_budget"


@dataclass
class Verdict:
    allowed: bool
    cause: str | None = None  # RATE, PEER_BUDGET or GLOBAL_BUDGET when refused
    episode_started: bool = False  # this refusal starts an episode of ``cause``
    # The episodes that ended with this message: (cause, messages dropped in it).
    ended: tuple[tuple[str, int], ...] = ()


@dataclass
class _Peer:
    messages: TokenBucket
    data: TokenBucket


# Peers the receive limiter tracks at most (buckets that are not full, or in an episode). Past it the
# full ones are forgotten first, then the oldest tracked: that peer starts again with a full burst.
# Only connected peers send, so an honest node comes nowhere near it.
MAX_TRACKED_PEERS = 10_000


@dataclass
class ReceiveLimiter:
    """What a peer may add to the inbox: per peer ``messages`` a second (custommsg-peer-rate,
    -peer-burst) *and* ``peer_bytes`` (custommsg-peer-kbps, -peer-burst-bytes); for the whole node
    ``global_bytes`` (custommsg-global-kbps, -global-burst-bytes). A message passes when every
    bucket that is on has room for it; only then does it take from each, so a message one refuses
    costs the others nothing. A peer refused by the global budget is not charged for it either.

    The clock is injected so tests step time instead of sleeping. A peer's buckets that have
    refilled completely carry no information and are forgotten (:meth:`forget_idle`), so memory
    follows the number of recently active peers, never more than ``max_peers``.
    """

    messages: Budget
    peer_bytes: Budget = OFF
    global_bytes: Budget = OFF
    clock: Callable[[], float] = time.monotonic
    max_peers: int = MAX_TRACKED_PEERS
    evicted: int = 0  # peers forgotten while not idle, because max_peers were tracked
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _global: TokenBucket | None = None

    def __post_init__(self) -> None:
        self._global = None if self.global_bytes.off else TokenBucket.full(self.global_bytes, self.clock())

    def check(self, peer_id: str, size: int = 0) -> Verdict:
        """A message of ``size`` bytes (type included) from ``peer_id``: may it be stored?"""
        now = self.clock()
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._track(peer_id, now)
        buckets = [(RATE, peer.messages, 1.0)]
        if not self.peer_bytes.off:
            buckets.append((PEER_BUDGET, peer.data, float(size)))
        if self._global is not None:
            buckets.append((GLOBAL_BUDGET, self._global, float(size)))
        ended = []
        for cause, bucket, cost in buckets:
            bucket.refill(now)
            dropped = bucket.ended()
            if dropped is not None:
                ended.append((cause, dropped))
            if bucket.tokens < cost:
                return Verdict(False, cause, bucket.refuse(), tuple(ended))
        for _, bucket, cost in buckets:
            bucket.tokens -= cost
        return Verdict(True, ended=tuple(ended))

    def _track(self, peer_id: str, now: float) -> _Peer:
        if len(self._peers) >= self.max_peers:
            self.forget_idle()
            while len(self._peers) >= self.max_peers:
                del self._peers[next(iter(self._peers))]  # the oldest tracked
                self.evicted += 1
        peer = _Peer(TokenBucket.full(self.messages, now), TokenBucket.full(self.peer_bytes, now))
        self._peers[peer_id] = peer
        return peer

    def forget_idle(self) -> None:
        now = self.clock()
        for peer_id, peer in list(self._peers.items()):
            peer.messages.refill(now)
            peer.data.refill(now)
            if peer.messages.idle and (self.peer_bytes.off or peer.data.idle):
                del self._peers[peer_id]

    def state(self, peer_id: str) -> dict[str, int]:
        """What the peer has left now: whole ``messages`` and ``bytes`` (when that budget is on), and
        ``dropped_in_episode`` (0 outside an episode)."""
        now = self.clock()
        peer = self._peers.get(peer_id)
        if peer is None:
            left = {"messages": int(self.messages.burst), "dropped_in_episode": 0}
            return left if self.peer_bytes.off else {**left, "bytes": int(self.peer_bytes.burst)}
        left = {
            "messages": int(peer.messages.level_at(now)),
            "dropped_in_episode": peer.messages.dropped_in_episode + peer.data.dropped_in_episode,
        }
        return left if self.peer_bytes.off else {**left, "bytes": int(peer.data.level_at(now))}

    def global_state(self) -> dict[str, int] | None:
        """The node's budget: ``bytes`` left and ``dropped_in_episode``; None when it is off."""
        if self._global is None:
            return None
        bucket = self._global
        return {"bytes": int(bucket.level_at(self.clock())), "dropped_in_episode": bucket.dropped_in_episode}

    def __len__(self) -> int:
        return len(self._peers)


@dataclass
class SendBudget:
    """What this node may send one peer (custommsg-peer-send-kbps, -peer-send-burst-bytes): a byte bucket
    per peer. Not thread-safe: the caller holds a lock (sends start on the main loop and the sender thread).
    Full buckets are forgotten once ``max_peers`` are tracked; past that the oldest goes."""

    budget: Budget
    clock: Callable[[], float] = time.monotonic
    max_peers: int = MAX_TRACKED_PEERS
    evicted: int = 0
    _peers: dict[str, TokenBucket] = field(default_factory=dict)

    @property
    def off(self) -> bool:
        return self.budget.off

    def take(self, peer_id: str, size: int) -> float:
        """Take ``size`` bytes from the peer's budget and return 0; or, if they do not fit, take nothing
        and return the seconds until they would (inf: never, ``size`` is above the burst)."""
        if self.budget.off:
            return 0.0
        now = self.clock()
        bucket = self._peers.get(peer_id)
        if bucket is None:
            if len(self._peers) >= self.max_peers:
                self._forget_full(now)
                while len(self._peers) >= self.max_peers:
                    del self._peers[next(iter(self._peers))]
                    self.evicted += 1
            bucket = self._peers[peer_id] = TokenBucket.full(self.budget, now)
        bucket.refill(now)
        wait = bucket.wait_for(size)
        if wait == 0:
            bucket.tokens -= size
        return wait

    def give_back(self, peer_id: str, size: int) -> None:
        """A send that took from the budget did not go after all."""
        bucket = self._peers.get(peer_id)
        if bucket is not None:
            bucket.tokens = min(self.budget.burst, bucket.tokens + size)

    def left(self, peer_id: str) -> int | None:
        """Bytes the peer's budget holds now; None when it is off."""
        if self.budget.off:
            return None
        bucket = self._peers.get(peer_id)
        return int(self.budget.burst if bucket is None else bucket.level_at(self.clock()))

    def _forget_full(self, now: float) -> None:
        for peer_id, bucket in list(self._peers.items()):
            bucket.refill(now)
            if bucket.tokens >= self.budget.burst:
                del self._peers[peer_id]

    def __len__(self) -> int:
        return len(self._peers)
