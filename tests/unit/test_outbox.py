"""outbox/machine.py: the durable queue's state machine, on a real SQLite file and an injected clock.

Each entry leaves ``queued`` exactly once: to sent, expired, cancelled or failed.
The send function here records its calls instead of talking to lightningd.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from custommsg.core import errors
from custommsg.core.errors import CustomMsgError, PeerError, TransientError
from custommsg.core.records import CANCELLED, EXPIRED, FAILED, QUEUED, SENT, OutboxEntry, Page
from custommsg.core.wire import Message
from custommsg.outbox.machine import Outbox
from custommsg.store.database import Store

from .conftest import OpenStore
from .helpers import A, B, Clock, handed_over


class Recorder:
    """A send function: records (peer, payload), and raises what it is told to for a payload."""

    def __init__(self, fail: dict[bytes, CustomMsgError] | None = None):
        self.calls: list[tuple[str, bytes]] = []
        self.fail = fail or {}
        self.before: Callable[[bytes], None] | None = None

    def __call__(self, peer_id: str, item: OutboxEntry | bytes) -> None:
        payload = handed_over(item)
        self.calls.append((peer_id, payload))
        if self.before is not None:
            self.before(payload)
        if payload in self.fail:
            raise self.fail[payload]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(store: Store, clock: Clock) -> Outbox:
    return Outbox(store, per_peer_max=5, clock=clock)


def msg(n: int) -> Message:
    """Message n: type 32769, body one byte n; serialized b"\\x80\\x01" + bytes([n])."""
    return Message(32769, bytes([n]))


def statuses(store: Store) -> dict[int, str]:
    return {e.id: e.status for e in store.outbox.list_outbox()}


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_makes_a_queued_entry(outbox: Outbox, store: Store) -> None:
    entry = outbox.enqueue(A, Message(32769, b"hi"), ttl=30)
    assert entry == OutboxEntry(1, A, 32769, b"\x80\x01hi", QUEUED, None, 1000.0, 1000.0, None, 1030.0, None)
    assert store.outbox.outbox_entry(1) == entry
    assert entry.to_json() == {
        "id": 1, "created_index": 1, "peer_id": A, "type": 32769, "length": 4, "status": "queued",
        "created_at": 1000.0, "updated_at": 1000.0, "expires_at": 1030.0,
    }
    assert outbox.has_queued(A) and not outbox.has_queued(B)


def test_enqueue_without_ttl_never_expires(outbox: Outbox, clock: Clock) -> None:
    entry = outbox.enqueue(A, msg(1))
    assert entry.expires_at is None
    clock.advance(10**9)
    assert outbox.expire_due() == []


def test_per_peer_bound(outbox: Outbox, store: Store) -> None:
    # given per_peer_max=5 queued for A; when a 6th is queued; then OUTBOX_FULL, and B is unaffected
    for n in range(5):
        outbox.enqueue(A, msg(n))
    with pytest.raises(CustomMsgError) as caught:
        outbox.enqueue(A, msg(5))
    assert caught.value.code == errors.OUTBOX_FULL
    assert caught.value.data == {"peer_id": A, "max": 5}
    assert outbox.enqueue(B, msg(9)).status == QUEUED
    assert len(store.outbox.list_outbox(A)) == 5
    # when one of A's leaves the queue; then there is room again
    outbox.cancel(1)
    assert outbox.enqueue(A, msg(5)).id == 7


def test_only_queued_entries_count_against_the_bound(outbox: Outbox, store: Store) -> None:
    # given per_peer_max=5 queued for A, all then sent; when 5 more are queued; then each is
    # accepted and queued, the sent ones stay sent, and a 6th queued one is refused again
    for n in range(5):
        outbox.enqueue(A, msg(n))
    outbox.deliver(A, Recorder())
    later = [outbox.enqueue(A, msg(10 + n)) for n in range(5)]
    assert [(e.id, e.status, e.payload) for e in later] == [
        (6, QUEUED, b"\x80\x01\x0a"), (7, QUEUED, b"\x80\x01\x0b"), (8, QUEUED, b"\x80\x01\x0c"),
        (9, QUEUED, b"\x80\x01\x0d"), (10, QUEUED, b"\x80\x01\x0e"),
    ]
    assert statuses(store) == {
        1: SENT, 2: SENT, 3: SENT, 4: SENT, 5: SENT, 6: QUEUED, 7: QUEUED, 8: QUEUED, 9: QUEUED, 10: QUEUED
    }
    with pytest.raises(CustomMsgError) as caught:
        outbox.enqueue(A, msg(15))
    assert caught.value.code == errors.OUTBOX_FULL


# -- deliver ---------------------------------------------------------------------------


def test_deliver_sends_fifo_per_peer(outbox: Outbox, store: Store, clock: Clock) -> None:
    # given A's and B's messages interleaved; when A connects; then only A's go, oldest first
    for n, peer in enumerate([A, B, A, B, A]):
        outbox.enqueue(peer, msg(n))
    clock.advance(5)
    send = Recorder()
    report = outbox.deliver(A, send)
    assert send.calls == [(A, b"\x80\x01\x00"), (A, b"\x80\x01\x02"), (A, b"\x80\x01\x04")]
    assert [e.id for e in report.sent] == [1, 3, 5]
    assert (report.expired, report.failed, report.interrupted) == ([], [], False)
    assert report.sent[0].status == SENT and report.sent[0].sent_at == 1005.0 and report.sent[0].updated_at == 1005.0
    assert statuses(store) == {1: SENT, 2: QUEUED, 3: SENT, 4: QUEUED, 5: SENT}
    assert not outbox.has_queued(A) and outbox.has_queued(B)


def test_sent_entry_is_never_sent_again(outbox: Outbox) -> None:
    outbox.enqueue(A, msg(1))
    outbox.deliver(A, Recorder())
    again = Recorder()
    report = outbox.deliver(A, again)
    assert again.calls == [] and report.sent == []


def test_peer_error_stops_delivery_and_keeps_the_rest_queued(outbox: Outbox, store: Store) -> None:
    # given 3 queued; when the peer disconnects while the 2nd is handed over; then 1 sent, 2 and 3 queued
    for n in range(3):
        outbox.enqueue(A, msg(n))
    gone = PeerError(errors.PEER_NOT_CONNECTED, "peer is not connected")
    send = Recorder({b"\x80\x01\x01": gone})
    report = outbox.deliver(A, send)
    assert report.interrupted is True
    assert [e.id for e in report.sent] == [1]
    assert send.calls == [(A, b"\x80\x01\x00"), (A, b"\x80\x01\x01")]  # the 3rd was not tried
    assert statuses(store) == {1: SENT, 2: QUEUED, 3: QUEUED}
    # when it reconnects; then the 2nd is sent again, then the 3rd
    retry = Recorder()
    report = outbox.deliver(A, retry)
    assert retry.calls == [(A, b"\x80\x01\x01"), (A, b"\x80\x01\x02")]
    assert statuses(store) == {1: SENT, 2: SENT, 3: SENT}


def test_lightningd_unreachable_keeps_the_message_queued(outbox: Outbox, store: Store) -> None:
    # given 2 queued; when lightningd does not answer the 1st hand-off; then nothing is failed for good
    for n in range(2):
        outbox.enqueue(A, msg(n))
    unreachable = TransientError(errors.SEND_FAILED, "cannot reach lightningd: EOF", {"reason": "rpc"})
    report = outbox.deliver(A, Recorder({b"\x80\x01\x00": unreachable}))
    assert report.interrupted is True and report.failed == []
    assert statuses(store) == {1: QUEUED, 2: QUEUED}


def test_send_failed_marks_failed_and_delivery_continues(outbox: Outbox, store: Store, clock: Clock) -> None:
    for n in range(3):
        outbox.enqueue(A, msg(n))
    clock.advance(1)
    refused = CustomMsgError(errors.SEND_FAILED, "sendcustommsg failed: something", {"peer_id": A})
    send = Recorder({b"\x80\x01\x01": refused})
    report = outbox.deliver(A, send)
    assert len(send.calls) == 3
    assert [e.id for e in report.sent] == [1, 3]
    assert [(e.id, e.status, e.reason, e.updated_at) for e in report.failed] == [
        (2, FAILED, "sendcustommsg failed: something", 1001.0)
    ]
    assert report.failed[0].sent_at is None
    assert report.interrupted is False
    assert statuses(store) == {1: SENT, 2: FAILED, 3: SENT}
    assert store.outbox.outbox_entry(2).to_json()["reason"] == "sendcustommsg failed: something"


def test_internal_type_refusal_is_a_failure_too(outbox: Outbox, store: Store) -> None:
    # a ValidationError is a CustomMsgError but not a PeerError: it will never go
    outbox.enqueue(A, Message(18))
    refused = CustomMsgError(errors.TYPE_INTERNAL, "Cannot send messages of type 18")
    report = outbox.deliver(A, Recorder({b"\x00\x12": refused}))
    assert [e.status for e in report.failed] == [FAILED]


# -- ttl ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("advance", "expired"),
    [(9.999, False), (10.0, True), (10.001, True), (3600.0, True)],
    ids=["just-before", "exactly-at", "just-after", "long-after"],
)
def test_expire_due(outbox: Outbox, store: Store, clock: Clock, advance: float, expired: bool) -> None:
    entry = outbox.enqueue(A, msg(1), ttl=10)
    outbox.enqueue(A, msg(2))  # no ttl
    clock.advance(advance)
    moved = outbox.expire_due()
    if expired:
        assert [(e.id, e.status, e.reason, e.updated_at) for e in moved] == [(entry.id, EXPIRED, "ttl passed", clock())]
        assert statuses(store) == {1: EXPIRED, 2: QUEUED}
    else:
        assert moved == []
        assert statuses(store) == {1: QUEUED, 2: QUEUED}
    assert outbox.expire_due() == []  # only once


def test_deliver_expires_instead_of_sending(outbox: Outbox, store: Store, clock: Clock) -> None:
    # given entries with ttls 5 and 50 and none; when delivery happens at +10; then the first expires unsent
    outbox.enqueue(A, msg(1), ttl=5)
    outbox.enqueue(A, msg(2), ttl=50)
    outbox.enqueue(A, msg(3))
    clock.advance(10)
    send = Recorder()
    report = outbox.deliver(A, send)
    assert send.calls == [(A, b"\x80\x01\x02"), (A, b"\x80\x01\x03")]
    assert [(e.id, e.status, e.reason) for e in report.expired] == [(1, EXPIRED, "ttl passed")]
    assert [e.id for e in report.sent] == [2, 3]
    assert statuses(store) == {1: EXPIRED, 2: SENT, 3: SENT}


def test_sent_entry_never_expires(outbox: Outbox, store: Store, clock: Clock) -> None:
    outbox.enqueue(A, msg(1), ttl=5)
    outbox.deliver(A, Recorder())
    clock.advance(100)
    assert outbox.expire_due() == []
    assert statuses(store) == {1: SENT}


# -- cancel --------------------------------------------------------------------------------


def test_cancel_queued(outbox: Outbox, store: Store, clock: Clock) -> None:
    outbox.enqueue(A, msg(1))
    clock.advance(2)
    cancelled = outbox.cancel(1)
    assert (cancelled.status, cancelled.reason, cancelled.updated_at, cancelled.updated_index) == (
        CANCELLED, None, 1002.0, 1
    )
    assert store.outbox.outbox_entry(1) == cancelled
    # a cancelled entry is never sent
    send = Recorder()
    assert outbox.deliver(A, send).sent == [] and send.calls == []


@pytest.mark.parametrize(
    ("make_final", "status"),
    [
        (lambda o, c: o.cancel(1), CANCELLED),
        (lambda o, c: o.deliver(A, Recorder()), SENT),
        (lambda o, c: (c.advance(100), o.expire_due()), EXPIRED),
        (lambda o, c: o.deliver(A, Recorder({b"\x80\x01\x01": CustomMsgError(errors.SEND_FAILED, "no")})), FAILED),
    ],
    ids=["cancelled", "sent", "expired", "failed"],
)
def test_cancel_refuses_entries_that_left_the_queue(outbox: Outbox, clock: Clock, make_final, status: str) -> None:
    outbox.enqueue(A, msg(1), ttl=10)
    make_final(outbox, clock)
    with pytest.raises(CustomMsgError) as caught:
        outbox.cancel(1)
    assert caught.value.code == errors.OUTBOX_NOT_QUEUED
    assert caught.value.data == {"id": 1, "status": status}


@pytest.mark.parametrize("entry_id", [0, 2, 999, 2**63 - 1], ids=["zero", "next", "far", "i64-max"])
def test_cancel_unknown_id(outbox: Outbox, entry_id: int) -> None:
    outbox.enqueue(A, msg(1))
    with pytest.raises(CustomMsgError) as caught:
        outbox.cancel(entry_id)
    assert caught.value.code == errors.OUTBOX_NOT_FOUND
    assert caught.value.data == {"id": entry_id}


class CancelFromAnotherThread:
    """custommsg-cancel runs on pyln's main thread while deliver runs on the sender thread.

    Called from inside the send function, it cancels ``entry_id`` on a second thread and
    waits for it a little: a fix that makes cancel wait for the hand-off must not hang here.
    """

    def __init__(self, outbox: Outbox, entry_id: int):
        self.outbox, self.entry_id = outbox, entry_id
        self.outcome: OutboxEntry | CustomMsgError | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.outcome = self.outbox.cancel(self.entry_id)
        except CustomMsgError as exc:
            self.outcome = exc

    def start(self) -> None:
        self.thread.start()
        self.thread.join(timeout=2)

    def cancelled(self) -> bool:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        return isinstance(self.outcome, OutboxEntry)


# A cancel that races a delivery: the entry being handed over is 'sending' and cannot be
# cancelled; the ones after it are still 'queued' and are skipped once cancelled.

def test_entry_cancelled_during_delivery_is_not_sent(outbox: Outbox, store: Store) -> None:
    # given 3 queued; when message 2 is cancelled while message 1 is with lightningd
    for n in range(3):
        outbox.enqueue(A, msg(n))
    race = CancelFromAnotherThread(outbox, 2)
    send = Recorder()
    send.before = lambda payload: race.start() if payload == b"\x80\x01\x00" else None
    outbox.deliver(A, send)
    # then a message the user was told is cancelled was not sent, and a sent one is recorded as sent
    was_sent = (A, b"\x80\x01\x01") in send.calls
    assert not (race.cancelled() and was_sent)
    assert store.outbox.outbox_entry(2).status == (SENT if was_sent else CANCELLED)


def test_entry_cancelled_during_its_own_hand_off_is_not_reported_cancelled(outbox: Outbox, store: Store) -> None:
    # given 1 queued; when it is cancelled while lightningd is taking it
    outbox.enqueue(A, msg(0))
    race = CancelFromAnotherThread(outbox, 1)
    send = Recorder()
    send.before = lambda payload: race.start()
    report = outbox.deliver(A, send)
    # then the cancel is refused (it is being sent), and the entry ends as sent
    assert send.calls == [(A, b"\x80\x01\x00")]
    assert not race.cancelled()
    assert store.outbox.outbox_entry(1).status == SENT
    assert [e.id for e in report.sent] == [1]


# -- updated_index and listing -----------------------------------------------------------


def test_updated_index_has_no_gaps(outbox: Outbox, store: Store, clock: Clock) -> None:
    # given five entries; when they move one by one (a hand-off is two moves: sending,
    # then sent or failed), with refused moves in between; then no index is skipped
    for n in range(5):
        outbox.enqueue(A if n < 4 else B, msg(n), ttl=10 if n == 3 else None)
    outbox.cancel(3)  # updated_index 1
    for bad in (3, 99):  # refused: neither may use up an index
        with pytest.raises(CustomMsgError):
            outbox.cancel(bad)
    fail = CustomMsgError(errors.SEND_FAILED, "no")
    outbox.deliver(A, Recorder({b"\x80\x01\x01": fail}))  # 1: 2, 3; 2: 4, 5 (failed); 4: 6, 7
    clock.advance(100)
    assert outbox.expire_due() == []  # 4 was sent before its ttl
    outbox.cancel(5)  # 8
    assert {e.id: e.updated_index for e in store.outbox.list_outbox()} == {1: 3, 2: 5, 3: 1, 4: 7, 5: 8}
    assert [e.id for e in store.outbox.list_outbox(page=Page("updated", 0, None))] == [3, 1, 2, 4, 5]


def test_first_transition_ever_refused_leaves_no_gap(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1))
    with pytest.raises(CustomMsgError):
        outbox.cancel(42)
    assert outbox.cancel(1).updated_index == 1


def _five_moved(outbox: Outbox) -> None:
    """Entries 1-5 for A, 6 for B; moved in the order 4, 2, 5 (cancel, cancel, cancel)."""
    for n in range(5):
        outbox.enqueue(A, msg(n))
    outbox.enqueue(B, msg(5))
    for entry_id in (4, 2, 5):
        outbox.cancel(entry_id)


# (id, peer, status, page, expected ids in order)
LISTINGS = [
    ("created-all", None, None, Page("created", 0, None), [1, 2, 3, 4, 5, 6]),
    ("created-start", None, None, Page("created", 3, None), [3, 4, 5, 6]),
    ("created-start-limit", None, None, Page("created", 2, 2), [2, 3]),
    ("created-limit-0", None, None, Page("created", 0, 0), []),
    ("created-peer", B, None, Page("created", 0, None), [6]),
    ("created-status", None, QUEUED, Page("created", 0, None), [1, 3, 6]),
    ("created-peer-status", A, CANCELLED, Page("created", 0, None), [2, 4, 5]),
    ("updated-all", None, None, Page("updated", 0, None), [4, 2, 5]),  # never-moved entries have none
    ("updated-start", None, None, Page("updated", 2, None), [2, 5]),
    ("updated-start-limit", None, None, Page("updated", 1, 2), [4, 2]),
    ("updated-past-end", None, None, Page("updated", 4, None), []),
]


@pytest.mark.parametrize(
    ("peer", "status", "page", "expected"), [c[1:] for c in LISTINGS], ids=[c[0] for c in LISTINGS]
)
def test_list_outbox(outbox: Outbox, store: Store, peer: str | None, status: str | None, page: Page, expected) -> None:
    _five_moved(outbox)
    assert [e.id for e in store.outbox.list_outbox(peer, status, page)] == expected


def test_outbox_survives_reopening(open_store: OpenStore, clock: Clock) -> None:
    first = open_store()
    Outbox(first, 5, clock).enqueue(A, msg(1), ttl=60)
    Outbox(first, 5, clock).enqueue(B, msg(2))
    first.close()
    second = open_store()
    outbox = Outbox(second, 5, clock)
    assert sorted(second.outbox.peers_with_queued()) == sorted([A, B])
    send = Recorder()
    outbox.deliver(A, send)
    assert send.calls == [(A, b"\x80\x01\x01")]
    second.close()
