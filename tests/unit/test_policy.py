"""policy.py: which types the inbox keeps (custommsg-type) and the per-peer rate limit."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custommsg.core import errors
from custommsg.core.errors import ValidationError
from custommsg.core.options import parse_type_spec, parse_types
from custommsg.core.policy import (
    GLOBAL_BUDGET,
    OFF,
    PEER_BUDGET,
    RATE,
    Budget,
    ReceiveLimiter,
    SendBudget,
    TypeSelection,
    Verdict,
)
from tests.fuzz import fuzz

from .helpers import A, B, C, Clock

# -- TypeSelection ---------------------------------------------------------------

# (id, option values, ranges, describe())
PARSE_OK: list[tuple[str, list[Any], tuple[tuple[int, int], ...], list[str]]] = [
    ("one-number", ["40000"], ((40000, 40000),), ["40000"]),
    ("int-value", [40001], ((40001, 40001),), ["40001"]),
    ("range", ["40000-40999"], ((40000, 40999),), ["40000-40999"]),
    ("spaces-around", [" 40000 "], ((40000, 40000),), ["40000"]),
    ("overlap-merged", ["40000-40999", "40500-41000"], ((40000, 41000),), ["40000-41000"]),
    ("adjacent-merged", ["1-5", "6-10"], ((1, 10),), ["1-10"]),
    ("contained-merged", ["32768-65535", "40000"], ((32768, 65535),), ["32768-65535"]),
    ("unsorted", ["10-20", "3-5"], ((3, 5), (10, 20)), ["3-5", "10-20"]),
    ("gap-kept", ["7", "9"], ((7, 7), (9, 9)), ["7", "9"]),
    ("peer-storage-pair-merged", ["7", "8"], ((7, 8),), ["7-8"]),
    ("duplicates", ["40001", "40001"], ((40001, 40001),), ["40001"]),
    ("commando-alone", ["19533"], ((19533, 19533),), ["19533"]),
    ("everything", ["0-65535"], ((0, 65535),), ["0-65535"]),
    ("top", ["65535"], ((65535, 65535),), ["65535"]),
    ("single-point-range", ["40000-40000"], ((40000, 40000),), ["40000"]),
    ("empty-means-default", [], ((32768, 65535),), ["32768-65535"]),
]


@pytest.mark.parametrize(
    ("specs", "ranges", "described"), [c[1:] for c in PARSE_OK], ids=[c[0] for c in PARSE_OK]
)
def test_type_selection_parse(specs: list[Any], ranges: tuple, described: list[str]) -> None:
    selection = parse_types(specs)
    assert selection.ranges == ranges
    assert selection.describe() == described
    assert selection == TypeSelection(ranges)


# (id, value, text in the error's data)
PARSE_BAD: list[tuple[str, Any, str]] = [
    ("letters", "abc", "abc"),
    ("negative", "-5", "-5"),
    ("negative-int", -5, "-5"),
    ("above-u16", "70000", "70000"),
    ("range-above-u16", "1-70000", "1-70000"),
    ("reversed-range", "5-3", "5-3"),
    ("open-range", "1-", "1-"),
    ("lone-dash", "-", "-"),
    ("empty", "", ""),
    ("blank", "   ", ""),
    ("three-parts", "40000-40999-41000", "40000-40999-41000"),
    ("hex", "0x8001", "0x8001"),
    ("decimal-point", "1.5", "1.5"),
    ("internal-ping", "18", "18"),
    ("internal-type-0", "0", "0"),
    ("internal-onion-message", "513", "513"),
    ("internal-point-range", "18-18", "18-18"),
    ("bool", True, "True"),
]


@pytest.mark.parametrize(("spec", "text"), [c[1:] for c in PARSE_BAD], ids=[c[0] for c in PARSE_BAD])
def test_type_selection_parse_refuses(spec: Any, text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_types(["40000", spec])
    assert caught.value.code == errors.INVALID_PARAMETER
    assert caught.value.data == {"option": "custommsg-type", "value": text}
    assert caught.value.message.startswith(f"custommsg-type {text!r}: ")


def test_lone_internal_type_error_names_it() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_type_spec("18")
    assert "ping" in caught.value.message


def test_range_over_internal_types_is_allowed() -> None:
    # only a lone internal type is a mistake worth refusing; a range just covers them
    assert parse_type_spec("0-100") == (0, 100)


@pytest.mark.parametrize(
    ("msg_type", "kept"),
    [
        (32768, True), (32769, True), (40000, True), (65535, True),
        (7, False), (9, False), (19533, False), (19535, False), (22859, False), (22861, False),
        (32767, False), (65536, False), (-1, False), ("32769", False), (None, False), (32769.0, False),
    ],
    ids=lambda v: repr(v),
)
def test_default_selection_is_the_custom_range(msg_type: Any, kept: bool) -> None:
    assert (msg_type in TypeSelection.default()) is kept


def test_membership_with_gaps() -> None:
    selection = parse_types(["7", "40000-40002"])
    assert [t for t in (6, 7, 8, 39999, 40000, 40002, 40003) if t in selection] == [7, 40000, 40002]


def test_repr_and_inequality() -> None:
    assert repr(parse_types(["7", "9"])) == "TypeSelection(['7', '9'])"
    assert parse_types(["7"]) != parse_types(["9"])
    assert parse_types(["7"]) != [(7, 7)]


# -- ReceiveLimiter: messages ---------------------------------------------------------------


def verdicts(limiter: ReceiveLimiter, peer: str, n: int) -> list[Verdict]:
    return [limiter.check(peer) for _ in range(n)]


def test_burst_then_drop() -> None:
    # given burst 3; when 5 messages arrive at once; then 3 pass, the 4th starts an episode, the 5th continues it
    limiter = ReceiveLimiter(Budget(1.0, 3.0), clock=Clock())
    assert verdicts(limiter, A, 5) == [
        Verdict(True),
        Verdict(True),
        Verdict(True),
        Verdict(False, RATE, episode_started=True),
        Verdict(False, RATE),
    ]


def test_episode_end_carries_the_drop_count() -> None:
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1.0, 2.0), clock=clock)
    verdicts(limiter, A, 2 + 4)  # 2 allowed, 4 dropped
    # when the whole burst has refilled; then allowed, with the 4 drops reported once
    clock.advance(2.0)
    assert limiter.check(A) == Verdict(True, ended=((RATE, 4),))
    assert limiter.check(A) == Verdict(True)  # reported only once
    # a new episode starts over: started again, counted from 1
    assert limiter.check(A) == Verdict(False, RATE, episode_started=True)
    clock.advance(2.0)
    assert limiter.check(A) == Verdict(True, ended=((RATE, 1),))


def test_a_token_trickling_in_mid_flood_does_not_end_the_episode() -> None:
    # given a peer in an episode; when one token refills (burst 3); then that message passes,
    # but the episode goes on: no end reported, and the next drop does not start a new one
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1.0, 3.0), clock=clock)
    verdicts(limiter, A, 3 + 2)
    clock.advance(1.0)
    assert limiter.check(A) == Verdict(True)
    assert limiter.check(A) == Verdict(False, RATE)
    clock.advance(2.0)  # two tokens: still short of the burst
    assert verdicts(limiter, A, 3) == [Verdict(True), Verdict(True), Verdict(False, RATE)]
    clock.advance(3.0)  # full: the episode ends, with every drop since it began
    assert limiter.check(A) == Verdict(True, ended=((RATE, 4),))


@pytest.mark.parametrize(
    ("rate", "burst", "wait", "allowed_after"),
    [
        (1.0, 5.0, 0.5, 0),
        (1.0, 5.0, 1.0, 1),
        (2.0, 5.0, 1.0, 2),
        (2.0, 5.0, 1.25, 2),
        (4.0, 5.0, 0.75, 3),
        (1.0, 5.0, 3600.0, 5),  # refill stops at burst
        (0.5, 1.0, 1.999, 0),
        (0.5, 1.0, 2.0, 1),
    ],
    ids=["half-token", "one-token", "rate-2", "fractional-kept", "rate-10", "capped-at-burst", "slow-not-yet", "slow"],
)
def test_refill_at_rate(rate: float, burst: float, wait: float, allowed_after: int) -> None:
    # given an emptied bucket; when `wait` seconds pass; then exactly `allowed_after` messages pass
    clock = Clock()
    limiter = ReceiveLimiter(Budget(rate, burst), clock=clock)
    verdicts(limiter, A, int(burst))
    clock.advance(wait)
    passed = [v.allowed for v in verdicts(limiter, A, int(burst) + 2)]
    assert passed == [True] * allowed_after + [False] * (int(burst) + 2 - allowed_after)


def test_peers_are_independent() -> None:
    limiter = ReceiveLimiter(Budget(1.0, 1.0), clock=Clock())
    assert limiter.check(A).allowed
    assert limiter.check(A) == Verdict(False, RATE, episode_started=True)
    # B has its own bucket, and its own episode
    assert limiter.check(B) == Verdict(True)
    assert limiter.check(B) == Verdict(False, RATE, episode_started=True)
    assert len(limiter) == 2


def test_forget_idle_drops_full_buckets_only() -> None:
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1.0, 10.0), clock=clock)
    limiter.check(A)  # A: 9 of 10
    verdicts(limiter, B, 5)  # B: 5 of 10
    verdicts(limiter, C, 11)  # C: over the limit
    clock.advance(1.0)  # A full again, B at 6, C at 1 and in its episode
    limiter.forget_idle()
    assert len(limiter) == 2  # only A went
    clock.advance(100.0)  # everyone full; C's episode is not reported yet, so C stays
    limiter.forget_idle()
    assert len(limiter) == 1
    assert limiter.check(C) == Verdict(True, ended=((RATE, 1),))
    clock.advance(100.0)
    limiter.forget_idle()
    assert len(limiter) == 0


def test_forgotten_peer_starts_with_a_full_burst() -> None:
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1.0, 2.0), clock=clock)
    verdicts(limiter, A, 2)
    clock.advance(2.0)
    limiter.forget_idle()
    assert len(limiter) == 0
    assert [v.allowed for v in verdicts(limiter, A, 3)] == [True, True, False]


# -- ReceiveLimiter: bytes, per peer and for the whole node -------------------------------------

KIB64 = 65535  # the largest message, and the smallest burst that is on


def sizes_allowed(limiter: ReceiveLimiter, peer: str, sizes: list[int]) -> list[bool]:
    return [limiter.check(peer, size).allowed for size in sizes]


# (id, peer budget (bytes/s, burst), sizes arriving at once, which pass)
PEER_BYTES: list[tuple[str, tuple[float, float], list[int], list[bool]]] = [
    ("burst-in-large-messages", (1000.0, 131070.0), [65535, 65535, 65535], [True, True, False]),
    ("a-small-one-fits-after-a-refusal", (1000.0, 100000.0), [65535, 65535, 34465], [True, False, True]),
    ("exactly-the-burst", (1000.0, 65535.0), [65000, 535, 1], [True, True, False]),
    ("many-small-ones", (1000.0, 65535.0), [13107] * 6, [True] * 5 + [False]),
    ("empty-costs-nothing", (1000.0, 65535.0), [65535, 0, 2], [True, True, False]),
]


@pytest.mark.parametrize(("budget", "sizes", "passed"), [c[1:] for c in PEER_BYTES], ids=[c[0] for c in PEER_BYTES])
def test_peer_byte_budget(budget: tuple[float, float], sizes: list[int], passed: list[bool]) -> None:
    limiter = ReceiveLimiter(Budget(1000, 1000), peer_bytes=Budget(*budget), clock=Clock())
    assert sizes_allowed(limiter, A, sizes) == passed


@pytest.mark.parametrize(
    ("kbps", "burst", "wait", "passes"),
    [
        (8, 65535, 65.535, True),  # 8 kbps = 1000 bytes a second: 65535 bytes take 65.535 s
        (8, 65535, 65.534, False),
        (512, 262144, 1.0, False),  # lnd's default: 64000 bytes a second
        (512, 262144, 1.024, True),
        (2048, 2097152, 0.256, True),  # custommsg's default: 256000 bytes a second
        (2048, 2097152, 0.2559, False),
    ],
)
def test_byte_budget_refills_at_kbps_times_125(kbps: int, burst: int, wait: float, passes: bool) -> None:
    # given a peer that spent its whole burst; when `wait` seconds pass; then a 65535-byte message passes or not
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1000, 1000), peer_bytes=Budget.kbps(kbps, burst), clock=clock)
    assert limiter.check(A, burst).allowed
    clock.advance(wait)
    assert limiter.check(A, 65535).allowed is passes


def test_byte_episode_is_logged_once_and_ends_with_its_count() -> None:
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1000, 1000), peer_bytes=Budget(1000.0, 65535.0), clock=clock)
    assert limiter.check(A, 65535) == Verdict(True)
    assert limiter.check(A, 100) == Verdict(False, PEER_BUDGET, episode_started=True)
    assert limiter.check(A, 100) == Verdict(False, PEER_BUDGET)
    assert limiter.state(A) == {"messages": 999, "bytes": 0, "dropped_in_episode": 2}  # refusals cost no message
    clock.advance(65.535)  # full again
    assert limiter.check(A, 100) == Verdict(True, ended=((PEER_BUDGET, 2),))
    assert limiter.state(A) == {"messages": 999, "bytes": 65435, "dropped_in_episode": 0}


def test_a_refused_message_costs_the_other_buckets_nothing() -> None:
    # given a peer out of bytes; when 3 more messages are refused; then its message count is untouched
    limiter = ReceiveLimiter(Budget(1, 3), peer_bytes=Budget(1000.0, 65535.0), clock=Clock())
    assert limiter.check(A, 65535).allowed
    assert sizes_allowed(limiter, A, [10, 10, 10]) == [False] * 3
    assert limiter.state(A)["messages"] == 2
    # and out of messages, its bytes are untouched
    limiter = ReceiveLimiter(Budget(1, 1), peer_bytes=Budget(1000.0, 65535.0), clock=Clock())
    assert limiter.check(A, 10).allowed
    assert limiter.check(A, 10) == Verdict(False, RATE, episode_started=True)
    assert limiter.state(A) == {"messages": 0, "bytes": 65525, "dropped_in_episode": 1}


def test_global_budget_holds_every_peer_together() -> None:
    # given a node budget of 2 large messages and a peer budget of 2 each; when 3 peers send 1 each
    # and then 1 more; then the node's 2 pass, and a refusal by the node's budget costs the peer nothing
    clock = Clock()
    limiter = ReceiveLimiter(
        Budget(1000, 1000), peer_bytes=Budget(1000.0, 131070.0), global_bytes=Budget(2000.0, 131070.0), clock=clock,
    )
    assert limiter.check(A, 65535) == Verdict(True)
    assert limiter.check(B, 65535) == Verdict(True)
    assert limiter.check(C, 65535) == Verdict(False, GLOBAL_BUDGET, episode_started=True)
    assert limiter.check(A, 65535) == Verdict(False, GLOBAL_BUDGET)
    assert limiter.state(C) == {"messages": 1000, "bytes": 131070, "dropped_in_episode": 0}
    assert limiter.global_state() == {"bytes": 0, "dropped_in_episode": 2}
    clock.advance(33.0)  # half the node's burst back, and a little more
    assert limiter.check(C, 65535) == Verdict(True)
    clock.advance(65.535)
    assert limiter.check(C, 10) == Verdict(True, ended=((GLOBAL_BUDGET, 2),))


def test_both_zero_turns_a_budget_off() -> None:
    limiter = ReceiveLimiter(Budget(1000, 1000), peer_bytes=OFF, global_bytes=OFF, clock=Clock())
    assert sizes_allowed(limiter, A, [65535] * 100) == [True] * 100
    assert limiter.state(A) == {"messages": 900, "dropped_in_episode": 0}
    assert limiter.global_state() is None


def test_tracked_peers_are_capped_full_ones_first_then_the_oldest() -> None:
    # given a cap of 2 peers; when a 3rd arrives while both are mid-budget; then the oldest (A) goes
    clock = Clock()
    limiter = ReceiveLimiter(Budget(1, 2), clock=clock, max_peers=2)
    limiter.check(A)
    limiter.check(B)
    limiter.check(C)
    assert (len(limiter), limiter.evicted) == (2, 1)
    assert limiter.state(A)["messages"] == 2  # forgotten: full again
    clock.advance(10.0)  # B and C refill: the next new peer pushes out no one who was not idle
    limiter.check(A)
    assert (len(limiter), limiter.evicted) == (1, 1)


# -- SendBudget: what we send one peer -----------------------------------------------------------


def test_send_budget_takes_or_says_when_it_would_fit() -> None:
    clock = Clock()
    budget = SendBudget(Budget(1000.0, 65535.0), clock=clock)
    assert budget.take(A, 65000) == 0.0
    assert budget.left(A) == 535
    assert budget.take(A, 1535) == 1.0  # 1000 bytes short at 1000 a second
    assert budget.left(A) == 535  # nothing taken
    assert budget.take(B, 65535) == 0.0  # B has its own
    clock.advance(1.0)
    assert budget.take(A, 1535) == 0.0
    budget.give_back(A, 1535)
    assert budget.left(A) == 1535
    assert budget.take(A, 65536) == math.inf  # above the burst: never


def test_send_budget_off() -> None:
    budget = SendBudget(OFF, clock=Clock())
    assert [budget.take(A, 65535) for _ in range(100)] == [0.0] * 100
    assert budget.left(A) is None
    assert len(budget) == 0


# -- what no sequence of messages gets past ---------------------------------------------------------

arrivals = st.lists(
    st.tuples(st.sampled_from((A, B, C)), st.integers(0, 65535), st.sampled_from((0.0, 0.001, 0.1, 1.0, 7.5))),
    max_size=200,
)


@fuzz(300)
@given(arrivals)
def test_no_sequence_gets_more_than_burst_plus_rate_times_time(sequence: list[tuple[str, int, float]]) -> None:
    """Whatever peers send and whenever: each peer's stored bytes stay within its burst plus its rate times
    the time elapsed, all peers' within the node's; and a message refused takes nothing from anyone."""
    clock = Clock()
    peer_budget, node_budget = Budget(1000.0, 65535.0), Budget(2500.0, 131070.0)
    limiter = ReceiveLimiter(Budget(5.0, 20.0), peer_budget, node_budget, clock=clock)
    stored: dict[str, int] = {A: 0, B: 0, C: 0}
    elapsed = 0.0
    for peer, size, wait in sequence:
        clock.advance(wait)
        elapsed += wait
        before = (limiter.state(peer), limiter.global_state())
        verdict = limiter.check(peer, size)
        if verdict.allowed:
            stored[peer] += size
        else:
            after = (limiter.state(peer), limiter.global_state())
            assert after[0]["bytes"] >= before[0]["bytes"] and after[1]["bytes"] >= before[1]["bytes"]  # type: ignore[index]
        assert stored[peer] <= peer_budget.burst + peer_budget.rate * elapsed + 1e-6
        assert sum(stored.values()) <= node_budget.burst + node_budget.rate * elapsed + 1e-6
