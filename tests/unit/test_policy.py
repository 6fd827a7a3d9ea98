"""policy.py: which types the inbox keeps (custommsg-type) and the per-peer rate limit."""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.errors import ValidationError
from custommsg.core.options import parse_type_spec, parse_types
from custommsg.core.policy import PeerRateLimiter, RateVerdict, TypeSelection

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


# -- PeerRateLimiter ---------------------------------------------------------------


def verdicts(limiter: PeerRateLimiter, peer: str, n: int) -> list[RateVerdict]:
    return [limiter.check(peer) for _ in range(n)]


def test_burst_then_drop() -> None:
    # given burst 3; when 5 messages arrive at once; then 3 pass, the 4th starts an episode, the 5th continues it
    limiter = PeerRateLimiter(rate=1.0, burst=3.0, clock=Clock())
    assert verdicts(limiter, A, 5) == [
        RateVerdict(True),
        RateVerdict(True),
        RateVerdict(True),
        RateVerdict(False, episode_started=True),
        RateVerdict(False, episode_started=False),
    ]


def test_episode_end_carries_the_drop_count() -> None:
    clock = Clock()
    limiter = PeerRateLimiter(rate=1.0, burst=2.0, clock=clock)
    verdicts(limiter, A, 2 + 4)  # 2 allowed, 4 dropped
    # when the whole burst has refilled; then allowed, with the 4 drops reported once
    clock.advance(2.0)
    assert limiter.check(A) == RateVerdict(True, episode_ended_after=4)
    assert limiter.check(A) == RateVerdict(True)  # reported only once
    # a new episode starts over: started again, counted from 1
    assert limiter.check(A) == RateVerdict(False, episode_started=True)
    clock.advance(2.0)
    assert limiter.check(A) == RateVerdict(True, episode_ended_after=1)


def test_a_token_trickling_in_mid_flood_does_not_end_the_episode() -> None:
    # given a peer in an episode; when one token refills (burst 3); then that message passes,
    # but the episode goes on: no end reported, and the next drop does not start a new one
    clock = Clock()
    limiter = PeerRateLimiter(rate=1.0, burst=3.0, clock=clock)
    verdicts(limiter, A, 3 + 2)
    clock.advance(1.0)
    assert limiter.check(A) == RateVerdict(True)
    assert limiter.check(A) == RateVerdict(False)
    clock.advance(2.0)  # two tokens: still short of the burst
    assert verdicts(limiter, A, 3) == [RateVerdict(True), RateVerdict(True), RateVerdict(False)]
    clock.advance(3.0)  # full: the episode ends, with every drop since it began
    assert limiter.check(A) == RateVerdict(True, episode_ended_after=4)


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
    limiter = PeerRateLimiter(rate=rate, burst=burst, clock=clock)
    verdicts(limiter, A, int(burst))
    clock.advance(wait)
    passed = [v.allowed for v in verdicts(limiter, A, int(burst) + 2)]
    assert passed == [True] * allowed_after + [False] * (int(burst) + 2 - allowed_after)


def test_peers_are_independent() -> None:
    limiter = PeerRateLimiter(rate=1.0, burst=1.0, clock=Clock())
    assert limiter.check(A).allowed
    assert limiter.check(A) == RateVerdict(False, episode_started=True)
    # B has its own bucket, and its own episode
    assert limiter.check(B) == RateVerdict(True)
    assert limiter.check(B) == RateVerdict(False, episode_started=True)
    assert len(limiter) == 2


def test_forget_idle_drops_full_buckets_only() -> None:
    clock = Clock()
    limiter = PeerRateLimiter(rate=1.0, burst=10.0, clock=clock)
    limiter.check(A)  # A: 9 of 10
    verdicts(limiter, B, 5)  # B: 5 of 10
    verdicts(limiter, C, 11)  # C: over the limit
    clock.advance(1.0)  # A full again, B at 6, C at 1 and in its episode
    limiter.forget_idle()
    assert len(limiter) == 2  # only A went
    clock.advance(100.0)  # everyone full; C's episode is not reported yet, so C stays
    limiter.forget_idle()
    assert len(limiter) == 1
    assert limiter.check(C) == RateVerdict(True, episode_ended_after=1)
    clock.advance(100.0)
    limiter.forget_idle()
    assert len(limiter) == 0


def test_forgotten_peer_starts_with_a_full_burst() -> None:
    clock = Clock()
    limiter = PeerRateLimiter(rate=1.0, burst=2.0, clock=clock)
    verdicts(limiter, A, 2)
    clock.advance(2.0)
    limiter.forget_idle()
    assert len(limiter) == 0
    assert [v.allowed for v in verdicts(limiter, A, 3)] == [True, True, False]
