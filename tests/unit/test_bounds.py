"""The bounds on what a peer (or a caller) can make the plugin keep: each holds at its documented size,
and past it the documented one goes (the oldest or the newest), counted. Literal sizes, small bounds."""

from __future__ import annotations

import pytest

from custommsg.acked.rules import PeerSupport
from custommsg.core import errors
from custommsg.core.completion import Waiter, WaiterRegistry
from custommsg.core.envelope import Decision
from custommsg.core.errors import OverBudget, TransientError
from custommsg.core.records import QUEUED, SENT, JsonRpcTag
from custommsg.core.wire import Message
from custommsg.lsps.calls import PendingCalls
from custommsg.outbox.machine import Outbox
from custommsg.store.acked import MAX_STREAMS_PER_PEER, EnvelopeGate
from custommsg.store.database import Store
from custommsg.store.inbox import IN_ALL, PER_PEER, RequestRoom

from .helpers import A, B, C, Clock


def parked(registry: WaiterRegistry, n: int) -> list[Waiter]:
    return [registry.add(Waiter(min_index=1, on_message=print, on_fail=print)) for _ in range(n)]


def test_parked_waits_past_the_bound_refuse_the_newest() -> None:
    registry = WaiterRegistry(max_waiters=3)
    first = parked(registry, 3)
    with pytest.raises(TransientError) as caught:
        parked(registry, 1)
    assert caught.value.code == errors.TOO_MANY_WAITING
    assert caught.value.data == {"bound": "waits", "max": 3}
    assert (len(registry), registry.refused) == (3, 1)
    registry.remove(first[0])  # room again
    parked(registry, 1)
    assert (len(registry), registry.refused) == (3, 1)


def test_lsps_calls_are_bounded_per_peer_then_in_all() -> None:
    pending = PendingCalls(WaiterRegistry(), per_peer_max=2, total_max=3)
    pending.add(A, "a1", print)
    pending.add(A, "a2", print)
    with pytest.raises(TransientError) as caught:
        pending.add(A, "a3", print)
    assert caught.value.data == {"bound": "lsps_calls_per_peer", "max": 2, "peer_id": A}
    pending.add(B, "b1", print)
    with pytest.raises(TransientError) as caught:
        pending.add(C, "c1", print)
    assert caught.value.data == {"bound": "lsps_calls", "max": 3}
    assert (len(pending), pending.refused_per_peer, pending.refused_total) == (3, 1, 1)


def envelope(store: Store, peer: str, stream: int, seq: int, max_streams: int) -> tuple[Decision | None, int]:
    gate = EnvelopeGate(peer, stream, seq, max_streams)
    store.inbox.add_message(peer, b"\x80\x01", 32769, 1.0, 1000, gate=gate)
    return gate.decision, gate.forgotten


def streams(store: Store, peer: str) -> list[int]:
    rows = store.read("SELECT stream FROM ack_in WHERE peer_id = ? ORDER BY touched", (bytes.fromhex(peer),))
    return [int.from_bytes(r[0], "big") for r in rows]


def test_streams_past_the_bound_forget_the_least_recently_used(store: Store) -> None:
    # given 3 streams of A (bound 3) and stream 1 stored into last; when a 4th opens; then stream 2 goes
    for stream in (1, 2, 3):
        assert envelope(store, A, stream, 1, 3) == (Decision.STORE, 0)
    assert envelope(store, A, 1, 2, 3) == (Decision.STORE, 0)
    assert streams(store, A) == [2, 3, 1]
    assert envelope(store, A, 4, 1, 3) == (Decision.STORE, 1)
    assert streams(store, A) == [3, 1, 4]
    # B's streams are its own
    assert envelope(store, B, 9, 1, 3) == (Decision.STORE, 0)
    assert store.acked.streams_of(A) == 3 and store.acked.streams_of(B) == 1
    # what A loses: stream 2's seq 2 is now a gap, its seq 1 would be stored again
    assert envelope(store, A, 2, 2, 3) == (Decision.GAP, 0)


def test_ten_thousand_streams_leave_the_bound(store: Store) -> None:
    for stream in range(1, 10_001):
        envelope(store, A, stream, 1, MAX_STREAMS_PER_PEER)
    assert store.acked.streams_of(A) == MAX_STREAMS_PER_PEER == 32
    assert streams(store, A) == list(range(10_001 - 32, 10_001))


def request(store: Store, peer: str, rpc_id: str, per_peer: int, total: int) -> str | None:
    room = RequestRoom(peer, per_peer, total)
    store.inbox.add_message(peer, b"\x94\x19{}", 37913, 1.0, 1000, JsonRpcTag("request", "m", rpc_id), gate=room)
    return room.full


def test_unanswered_requests_past_the_bound_refuse_the_newest(store: Store) -> None:
    assert [request(store, A, f"a{i}", 2, 3) for i in range(3)] == [None, None, PER_PEER]
    assert request(store, B, "b0", 2, 3) is None
    assert request(store, C, "c0", 2, 3) == IN_ALL
    assert store.inbox.count == 3
    # answering one of A's makes room for A again
    first = store.inbox.requests_with_id("a0")[0]
    assert store.inbox.set_answered(first.created_index, 2.0)
    assert request(store, A, "a3", 2, 3) is None


def test_peer_support_forgets_disconnected_peers_past_the_bound() -> None:
    support = PeerSupport(max_peers=2)
    support.connected(A, 1.0)
    support.hello(B, 1, 1.0)
    support.disconnected(B)
    support.connected(C, 2.0)  # full: the disconnected B goes
    assert (sorted(support.peers()), support.forgotten) == (sorted([A, C]), 1)
    support.disconnected(A)
    support.connected(B, 3.0)
    assert (sorted(support.peers()), support.forgotten) == (sorted([B, C]), 2)
    # connected peers always stay, even past the bound
    support.connected(A, 4.0)
    assert len(support) == 3


class BudgetedSend:
    """A blocking send with a byte budget: raises OverBudget once ``left`` bytes are spent."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.sent: list[bytes] = []

    def __call__(self, peer_id: str, entry: object) -> None:
        payload = entry.payload  # type: ignore[attr-defined]
        if len(payload) > self.left:
            raise OverBudget(peer_id, len(payload), 1.0)
        self.left -= len(payload)
        self.sent.append(payload)


def test_outbox_over_budget_keeps_the_rest_queued_in_order(store: Store) -> None:
    outbox = Outbox(store, 100, clock=Clock())
    for n in range(5):
        outbox.enqueue(A, Message(32769, bytes([n]) * 9))  # 11 bytes each
    send = BudgetedSend(30)
    report = outbox.deliver(A, send)
    assert report.over_budget and not report.interrupted
    assert [e.status for e in store.outbox.list_outbox(A)] == [SENT, SENT, QUEUED, QUEUED, QUEUED]
    send.left = 100
    assert not outbox.deliver(A, send).over_budget
    assert [p[2] for p in send.sent] == [0, 1, 2, 3, 4]


def test_over_budget_error_says_when_it_would_fit() -> None:
    error = OverBudget(A, 65535, 0.12345)
    assert error.code == errors.SEND_OVER_BUDGET == 3380
    assert error.data == {"peer_id": A, "length": 65535, "retry_after": 0.124}
    assert "custommsg-peer-send-kbps" in error.message
