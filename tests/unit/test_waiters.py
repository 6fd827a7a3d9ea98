"""waiters.py: parked custommsg-wait / custommsg-request calls and the messages that wake them."""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core.completion import Waiter, WaiterRegistry
from custommsg.core.records import StoredMessage

from .helpers import A, B, Clock


class Outcomes:
    """Collects what each waiter was told, in call order: ("msg", name, index) or ("fail", name, reason)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []

    def waiter(self, name: str, min_index: int = 1, **kwargs: Any) -> Waiter:
        return Waiter(
            min_index=min_index,
            on_message=lambda m: self.log.append(("msg", name, m.created_index)),
            on_fail=lambda reason: self.log.append(("fail", name, reason)),
            context=name,
            **kwargs,
        )


def message(index: int, peer: str = A, payload: bytes = b"\x80\x01") -> StoredMessage:
    return StoredMessage(index, peer, int.from_bytes(payload[:2], "big"), payload, 1.0)


# (id, waiter filters, message, matches?)
MATCHES: list[tuple[str, dict[str, Any], StoredMessage, bool]] = [
    ("anything", {}, message(1), True),
    ("min-index-equal", {"min_index": 5}, message(5), True),
    ("min-index-above", {"min_index": 5}, message(6), True),
    ("min-index-below", {"min_index": 5}, message(4), False),
    ("peer", {"peer_id": A}, message(1, A), True),
    ("other-peer", {"peer_id": A}, message(1, B), False),
    ("type", {"type": 32769}, message(1, A, b"\x80\x01"), True),
    ("other-type", {"type": 32771}, message(1, A, b"\x80\x01"), False),
    ("prefix", {"body_prefix": b"id=7"}, message(1, A, b"\x80\x01id=7;ok"), True),
    ("whole-body-prefix", {"body_prefix": b"id=7"}, message(1, A, b"\x80\x01id=7"), True),
    ("prefix-longer-than-body", {"body_prefix": b"id=7"}, message(1, A, b"\x80\x01id="), False),
    ("prefix-mismatch", {"body_prefix": b"id=7"}, message(1, A, b"\x80\x01id=8"), False),
    ("prefix-not-the-type", {"body_prefix": b"\x80\x01"}, message(1, A, b"\x80\x01"), False),
    ("empty-prefix", {"body_prefix": b""}, message(1, A, b"\x80\x01"), True),
    ("all-filters", {"min_index": 3, "peer_id": B, "type": 32771, "body_prefix": b"\x00"},
     message(3, B, b"\x80\x03\x00\x01"), True),
    ("all-filters-one-off", {"min_index": 3, "peer_id": B, "type": 32771, "body_prefix": b"\x00"},
     message(3, B, b"\x80\x03\x01\x00"), False),
]


@pytest.mark.parametrize(("filters", "stored", "matches"), [c[1:] for c in MATCHES], ids=[c[0] for c in MATCHES])
def test_waiter_matches(filters: dict[str, Any], stored: StoredMessage, matches: bool) -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    waiter = registry.add(outcomes.waiter("w", **filters))
    assert waiter.matches(stored) is matches
    assert registry.offer(stored) == int(matches)
    assert outcomes.log == ([("msg", "w", stored.created_index)] if matches else [])
    assert len(registry) == (0 if matches else 1)


def test_plain_waiters_all_wake_on_one_message() -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    for name in ("w1", "w2", "w3"):
        registry.add(outcomes.waiter(name, peer_id=A))
    assert registry.offer(message(1, A)) == 3
    assert outcomes.log == [("msg", "w1", 1), ("msg", "w2", 1), ("msg", "w3", 1)]
    assert len(registry) == 0


def test_exclusive_waiters_take_one_reply_each_in_arrival_order() -> None:
    # given two requests to A waiting for the same reply type; when A sends two replies; then one each, oldest first
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    registry.add(outcomes.waiter("req1", peer_id=A, type=32771, exclusive=True))
    registry.add(outcomes.waiter("req2", peer_id=A, type=32771, exclusive=True))
    assert registry.offer(message(1, A, b"\x80\x03first")) == 1
    assert registry.offer(message(2, A, b"\x80\x03second")) == 1
    assert outcomes.log == [("msg", "req1", 1), ("msg", "req2", 2)]
    assert registry.offer(message(3, A, b"\x80\x03third")) == 0


def test_exclusive_and_plain_waiters_share_a_message() -> None:
    # a request takes the reply for itself only: plain waits still see it
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    registry.add(outcomes.waiter("wait1"))
    registry.add(outcomes.waiter("req1", exclusive=True))
    registry.add(outcomes.waiter("req2", exclusive=True))
    registry.add(outcomes.waiter("wait2"))
    assert registry.offer(message(1)) == 3
    assert outcomes.log == [("msg", "wait1", 1), ("msg", "req1", 1), ("msg", "wait2", 1)]
    # req2 is still waiting, for the next one
    assert len(registry) == 1
    assert registry.offer(message(2)) == 1
    assert outcomes.log[-1] == ("msg", "req2", 2)


def test_exclusive_waiter_that_does_not_match_leaves_the_message_to_the_next() -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    registry.add(outcomes.waiter("req-id-1", exclusive=True, body_prefix=b"1"))
    registry.add(outcomes.waiter("req-id-2", exclusive=True, body_prefix=b"2"))
    assert registry.offer(message(1, A, b"\x80\x012:pong")) == 1
    assert outcomes.log == [("msg", "req-id-2", 1)]


def test_fail_by_predicate() -> None:
    # when B disconnects; then only the requests to B fail, with the reason
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    registry.add(outcomes.waiter("req-a", peer_id=A, exclusive=True))
    registry.add(outcomes.waiter("req-b", peer_id=B, exclusive=True))
    registry.add(outcomes.waiter("wait-b", peer_id=B))
    assert registry.fail(lambda w: w.exclusive and w.peer_id == B, "disconnected") == 1
    assert outcomes.log == [("fail", "req-b", "disconnected")]
    assert len(registry) == 2
    # a failed waiter is gone: a later message does not reach it
    registry.offer(message(1, B))
    assert outcomes.log[-1] == ("msg", "wait-b", 1)
    assert ("msg", "req-b", 1) not in outcomes.log


@pytest.mark.parametrize(
    ("now", "expired"),
    [(1004.999, []), (1005.0, ["w5"]), (1009.0, ["w5"]), (1010.0, ["w5", "w10"]), (99999.0, ["w5", "w10"])],
    ids=["before-all", "exactly-first", "between", "exactly-second", "long-after"],
)
def test_expire_fails_only_waiters_past_their_deadline(now: float, expired: list[str]) -> None:
    clock = Clock(1000.0)
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=clock)
    registry.add(outcomes.waiter("w10", deadline=1010.0))
    registry.add(outcomes.waiter("w5", deadline=1005.0))
    registry.add(outcomes.waiter("forever"))
    clock.now = now
    assert registry.expire() == len(expired)
    assert sorted(name for _, name, _ in outcomes.log) == sorted(expired)
    assert all(kind == "fail" and reason == "timeout" for kind, _, reason in outcomes.log)
    assert len(registry) == 3 - len(expired)


def test_remove() -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    done = registry.add(outcomes.waiter("done"))
    kept = registry.add(outcomes.waiter("kept", peer_id=B))
    registry.offer(message(1, A))
    assert registry.remove(done) is False  # already completed
    assert registry.remove(kept) is True
    assert registry.remove(kept) is False
    assert registry.remove(outcomes.waiter("never-added")) is False
    assert len(registry) == 0


def test_ids_are_distinct_and_increasing() -> None:
    registry = WaiterRegistry(clock=Clock())
    outcomes = Outcomes()
    ids = [registry.add(outcomes.waiter(str(n))).id for n in range(3)]
    assert ids == [1, 2, 3]


def test_next_deadline() -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())
    assert registry.next_deadline() is None
    registry.add(outcomes.waiter("forever"))
    assert registry.next_deadline() is None
    registry.add(outcomes.waiter("late", deadline=1020.0))
    early = registry.add(outcomes.waiter("early", deadline=1005.0))
    assert registry.next_deadline() == 1005.0
    registry.remove(early)
    assert registry.next_deadline() == 1020.0


def test_a_raising_callback_does_not_strand_the_other_waiters() -> None:
    outcomes = Outcomes()
    registry = WaiterRegistry(clock=Clock())

    def broken(_: StoredMessage) -> None:
        raise BrokenPipeError("the caller went away")

    registry.add(Waiter(min_index=1, on_message=broken, on_fail=lambda reason: None))
    registry.add(outcomes.waiter("second"))
    try:
        registry.offer(message(1))
    except BrokenPipeError:
        pass
    assert outcomes.log == [("msg", "second", 1)]
