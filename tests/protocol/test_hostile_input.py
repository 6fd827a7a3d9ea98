"""Hostile input against the running plugin (issue 14): hypothesis drives the custommsg hook, lightningd-style.

Each fuzz test starts one plugin and sends it, example after example, what a hostile peer might
(tests/fuzz.py): bLIP-50 frames, messages of random types and bytes, hellos, envelopes and acks of
every length and field value, from one or two peers. After each example:

* every hook call was answered ``{"result": "continue"}`` (anything else makes lightningd fatal());
* the plugin still runs;
* every row stored in the example is listed by custommsg-list, and custommsg-wait with nextvalue =
  its created_index returns it; a bLIP-50 frame was stored only if it is strict JSON, with "json"
  what the peer sent;
* nothing new in the harness's problems(): among them, any NaN, Infinity or lone surrogate in what
  the plugin wrote on stdout (lightningd's strict parser would refuse it and kill the plugin).

Then a flood of hellos must not make the plugin resend its unacknowledged entries once per hello.

The number of examples comes from tests/fuzz.py: ``CUSTOMMSG_FUZZ=long`` runs 20 times as many.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import (
    ACK,
    ENVELOPE,
    ENVELOPE_MORE,
    HELLO,
    LSPS0_MESSAGE_TYPE,
    fuzz,
    hostile_ack_messages,
    hostile_blip50_bodies,
    hostile_messages,
    strict_loads,
    u64s,
    weighted,
    why_not_strict,
)

from .conftest import PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, wait_for
from .peerproto import acked_sent_to

NONSTRICT_PLUGIN = Path(__file__).parent / "plugins" / "nonstrict.py"
# No rate limit or byte budget in the way: every message the plugin keeps is stored, and so checked.
UNLIMITED = {"custommsg-peer-rate": "1000000", "custommsg-peer-burst": 1000000, "custommsg-peer-kbps": 0,
             "custommsg-peer-burst-bytes": 0, "custommsg-global-kbps": 0, "custommsg-global-burst-bytes": 0}
LSPS0_PREFIX = LSPS0_MESSAGE_TYPE.to_bytes(2, "big")

Sent = list[tuple[str, bytes]]


class Driven:
    """One plugin taken through a test's examples, checked after each."""

    def __init__(self, ld: FakeLightningd):
        self.ld = ld
        self.last_index = 0  # the highest created_index checked so far

    def deliver(self, messages: Sent) -> list[dict[str, Any]]:
        """Hand ``messages`` to the custommsg hook, check everything; return the rows they stored."""
        before = Counter(self.ld.problems())
        for peer, raw in messages:
            answer = self.ld.custommsg(peer, raw.hex())
            assert answer == {"result": "continue"}, f"the hook answered {answer!r} to {raw[:40].hex()}"
        assert self.ld.running(), "the plugin died"
        page = {"index": "created", "start": self.last_index + 1}
        rows: list[dict[str, Any]] = self.ld.call("custommsg-list", page)["messages"]
        for row in rows:
            waited = self.ld.call("custommsg-wait", {"nextvalue": row["created_index"], "timeout": 5})
            assert waited == row
        if rows:
            self.last_index = rows[-1]["created_index"]
        new = Counter(self.ld.problems()) - before
        assert not new, "\n".join(new)
        return rows


@pytest.fixture
def driven(make_ld: MakeLd) -> Driven:
    """The plugin, unlimited in rate, with peers A and B connected; one for all of a test's examples."""
    return Driven(make_ld(options=UNLIMITED))


peers = st.sampled_from((PEER_A, PEER_B))


def parse_errors_to(ld: FakeLightningd, peer: str) -> int:
    """How many bLIP-50 messages the plugin sent ``peer``: in these tests, only parse-error answers."""
    return sum(1 for msg in ld.sent_to(peer) if msg.startswith(LSPS0_PREFIX.hex()))


def lsps_counts(ld: FakeLightningd) -> dict[str, Counter[str]]:
    """Per peer, its bLIP-50 messages received, stored and dropped as malformed."""
    rows = ld.call("custommsg-stats", {"type": LSPS0_MESSAGE_TYPE})["peers"]
    counts = {peer: Counter[str]() for peer in (PEER_A, PEER_B)}
    for row in rows:
        total = row["total"]
        counts[row["peer_id"]].update(received=total["received"], stored=total["stored"],
                                      malformed=total["dropped"]["malformed"])
    return counts


@fuzz(2000)
@given(st.lists(st.tuples(peers, hostile_blip50_bodies()), min_size=1, max_size=4))
def test_hostile_blip50_frames(driven: Driven, frames: list[tuple[str, bytes]]) -> None:
    """bLIP-50 frames: only strict JSON is stored, with its JSON as the peer sent it, and all of it lists;
    every other frame counts as dropped_malformed and is answered with a parse error, once per
    connection (each example is a new connection for both peers, so that it stands on its own)."""
    ld = driven.ld
    for peer in (PEER_A, PEER_B):
        ld.disconnect_peer(peer)
        ld.connect_peer(peer)
    # The requests earlier examples stored, unanswered, go: else a peer's 101st would not be stored
    # (the bound on unanswered requests, tested on its own).
    ld.call("custommsg-delete", {"up_to": driven.last_index})
    answered = {peer: parse_errors_to(ld, peer) for peer in (PEER_A, PEER_B)}
    before = lsps_counts(ld)
    rows = driven.deliver([(peer, LSPS0_PREFIX + body) for peer, body in frames])
    for row in rows:
        body = bytes.fromhex(row["payload"])[2:]
        assert why_not_strict(body) is None, f"stored a frame that is not strict JSON: {why_not_strict(body)}"
        assert row["json"] == strict_loads(body)
    after = lsps_counts(ld)
    for peer in (PEER_A, PEER_B):
        counted = after[peer] - before[peer]
        sent = sum(1 for p, _ in frames if p == peer)
        stored = sum(1 for row in rows if row["peer_id"] == peer)
        assert counted == Counter(received=sent, stored=stored, malformed=sent - stored)
        expected = 1 if sent > stored else 0  # the answer goes out after the hook returned: wait for it
        wait_for(lambda p=peer, n=expected: parse_errors_to(ld, p) - answered[p] >= n)
        answers = parse_errors_to(ld, peer) - answered[peer]
        assert answers == expected, f"{answers} parse-error answers to {sent - stored} malformed frames"


@fuzz(2000)
@given(st.lists(st.tuples(peers, hostile_messages()), min_size=1, max_size=6))
def test_hostile_messages_of_any_type(driven: Driven, messages: Sent) -> None:
    """Random types and bytes, bLIP-50 frames, hellos, envelopes and acks: all answered, all stored rows list."""
    for row in driven.deliver(messages):
        if "kind" in row:  # a bLIP-50 frame (one in an envelope is data: no "kind")
            assert why_not_strict(bytes.fromhex(row["payload"])[2:]) is None


def _u(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


# Envelopes of a few streams with small seqs, so that some are stored (seq = last + 1).
storable_envelopes = st.builds(
    lambda kind, stream, seq, inner: _u(kind, 2) + _u(stream, 8) + _u(seq, 8) + inner,
    st.sampled_from((ENVELOPE, ENVELOPE_MORE)), st.sampled_from((1, 2**64 - 1)), st.integers(1, 3),
    st.one_of(st.binary(min_size=2, max_size=40), hostile_blip50_bodies().map(lambda body: LSPS0_PREFIX + body)),
)
acked_delivery = weighted(
    (4, hostile_ack_messages()),
    (2, storable_envelopes),
    (1, st.builds(lambda stream, seq: _u(ACK, 2) + _u(stream, 8) + _u(seq, 8), u64s(), u64s())),
    (1, st.sampled_from((_u(HELLO, 2) + b"\x00\x01\x00", _u(HELLO, 2) + b"\x00\x01\x01",
                         _u(HELLO, 2) + b"\x00\x01\x02"))),
)


@fuzz(1500)
@given(st.lists(st.tuples(peers, acked_delivery), min_size=1, max_size=8))
def test_hostile_acked_delivery_messages(driven: Driven, messages: Sent) -> None:
    """Hellos, envelopes and acks of every length and field value: all answered, stored inner messages list."""
    driven.deliver(messages)


# -- a flood of hellos ----------------------------------------------------------------------

HELLO_0 = _u(HELLO, 2).hex() + "000100"  # version 1, reply=0
FLOOD = 500
ENTRIES = 3
RETRANSMIT_AFTER = 30  # seconds: far longer than the flood takes


def test_hello_flood_is_not_amplified(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """PEER_A said hello; three acknowledged entries to it wait for its ack; then it sends 500 more hellos
    (reply=0) over about two seconds. doc/acked-delivery.md: the plugin answers a peer's hellos at most
    once a second and resends for them at most once per retransmit interval. So: each entry goes again
    at most once, and the replies are about one a second, not one a hello."""
    monkeypatch.setenv("CUSTOMMSG_DEV_RETRANSMIT_AFTER", str(RETRANSMIT_AFTER))
    ld = make_ld(options=UNLIMITED)
    ld.custommsg(PEER_A, HELLO_0)
    for i in range(ENTRIES):
        ld.call("custommsg-send", {"node_id": PEER_A, "msg": f"8001{i:02x}", "ack": True})

    def envelopes() -> list[dict[str, Any]]:
        return [m["envelope"] for m in acked_sent_to(ld, PEER_A) if "envelope" in m]

    def replies() -> list[dict[str, Any]]:
        return [m for m in acked_sent_to(ld, PEER_A) if m.get("reply")]

    wait_for(lambda: len(envelopes()) == ENTRIES and replies())
    started = time.monotonic()
    for _ in range(FLOOD):
        assert ld.custommsg(PEER_A, HELLO_0) == {"result": "continue"}
        time.sleep(0.004)
    time.sleep(1.2)  # a reply owed for the last second goes out
    elapsed = time.monotonic() - started
    assert elapsed < RETRANSMIT_AFTER
    resent = envelopes()[ENTRIES:]
    assert len(resent) <= ENTRIES, f"{len(resent)} envelopes resent for {FLOOD} hellos in {elapsed:.1f} s"
    assert len({e["seq"] for e in resent}) == len(resent)  # no entry twice
    answered = len(replies()) - 1
    assert answered <= 1 + elapsed, f"{answered} hello replies to {FLOOD} hellos in {elapsed:.1f} s"


# -- the harness's strict check ---------------------------------------------------------------


def test_harness_flags_json_lightningd_refuses(make_ld: MakeLd) -> None:
    """A plugin that writes Infinity, -Infinity, NaN or a lone surrogate is reported at teardown."""
    ld = make_ld(start=False, plugin_path=NONSTRICT_PLUGIN)
    ld.start()
    answer = ld.call("nonstrict-numbers")
    assert answer["big"] == float("inf")  # read on, as before
    ld.call("nonstrict-surrogate")
    refused = [p for p in ld.problems() if p.startswith("lightningd would refuse this JSON")]
    assert len(refused) == 2, refused
    assert "the constant Infinity" in refused[0] and "nonstrict-numbers" in refused[0]
    assert "a lone surrogate" in refused[1] and '"log"' in refused[1]
    ld.refused.clear()  # expected here
