"""Acknowledged delivery's state in the database (store/acked.py, outbox/machine.py) and in memory (acked/delivery.py).

On a real SQLite file and an injected clock: migration 4, the (stream, seq) an entry gets at
its first hand-off, queued -> sending -> sent -> delivered, what cancel and ttl do to an entry
that has a seq (a broken stream, then a new one), and the receiver's ``last`` per stream,
written in the transaction that stores the message or not at all.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from custommsg.acked.delivery import AckedDelivery
from custommsg.acked.rules import AckPacer
from custommsg.core import errors
from custommsg.core.completion import Waiter, WaiterRegistry
from custommsg.core.envelope import Ack, Decision, Envelope, Hello, parse
from custommsg.core.errors import CustomMsgError, PeerError, StorageError
from custommsg.core.policy import Budget, ReceiveLimiter
from custommsg.core.records import (
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    OutboxEntry,
    Page,
)
from custommsg.core.wire import Message
from custommsg.inbox.counters import Counters
from custommsg.inbox.receiver import Receiver
from custommsg.outbox.machine import Outbox, envelope_of
from custommsg.store.database import Store
from custommsg.store.migrations import MIGRATIONS, SCHEMA_VERSION

from .conftest import OpenStore
from .helpers import A, B, Clock, handed_over


class Recorder:
    """A blocking send: records (peer, payload); raises ``fail`` if set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.fail: CustomMsgError | None = None

    def __call__(self, peer_id: str, item: OutboxEntry | Envelope | bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((peer_id, handed_over(item)))

    def envelopes(self) -> list[Envelope]:
        """The envelopes among the calls (plain entries go as they are)."""
        found = [parse(payload) for _, payload in self.calls if payload[:2] == b"\xb9\x49"]
        return [e for e in found if isinstance(e, Envelope)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(store: Store, clock: Clock) -> Outbox:
    return Outbox(store, per_peer_max=5, clock=clock)


OUR_HELLO, OUR_REPLY = Hello(1, reply=False, batch=True), Hello(1, reply=True, batch=True)  # we read 47437


def ready(peer_id: str) -> bool:
    return True


def msg(n: int) -> Message:
    return Message(32769, bytes([n]))


def statuses(store: Store, peer: str | None = None) -> list[str]:
    return [e.status for e in store.outbox.list_outbox(peer)]


def hand_over(outbox: Outbox, peer: str, *numbers: int) -> Recorder:
    for n in numbers:
        outbox.enqueue(peer, msg(n), ack=True)
    send = Recorder()
    outbox.deliver(peer, send, ready)
    return send


# -- migration 4 ------------------------------------------------------------------------


def test_migration_from_version_3_keeps_the_outbox(db_path: str) -> None:
    # given a file of schema 3 with a sent entry
    db = sqlite3.connect(db_path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    db.execute(
        "INSERT INTO outbox (peer_id, type, payload, status, created_at, updated_at, sent_at, updated_index) "
        "VALUES (?, 32769, ?, 'sent', 1.0, 2.0, 2.0, 1)", (bytes.fromhex(A), b"\x80\x01"),
    )
    db.close()
    # when it is opened; then the entry is a plain one, and the new tables are there
    store = Store(db_path)
    (entry,) = store.outbox.list_outbox()
    assert (entry.status, entry.ack, entry.stream, entry.seq, entry.delivered_at) == (SENT, False, None, None, None)
    assert "ack" not in entry.to_json() and "seq" not in entry.to_json()
    store.close()
    db = sqlite3.connect(db_path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ack_out", "ack_in"} <= tables
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


# -- the sender: seq allocation and the statuses ----------------------------------------------


def test_seq_at_first_hand_off_per_peer_and_persistent(outbox: Outbox, store: Store, open_store: OpenStore) -> None:
    # given acknowledged entries to A and B, interleaved; when each peer's outbox is delivered
    for n, peer in enumerate([A, B, A, A]):
        outbox.enqueue(peer, msg(n), ack=True)
    assert store.outbox.list_outbox()[0].seq is None
    to_a, to_b = Recorder(), Recorder()
    outbox.deliver(A, to_a, ready)
    outbox.deliver(B, to_b, ready)
    # then each peer has its own stream, seqs from 1, in order; the envelope carries the message exactly
    sent_a, sent_b = to_a.envelopes(), to_b.envelopes()
    assert [(e.seq, e.inner) for e in sent_a] == [(1, msg(0)), (2, msg(2)), (3, msg(3))]
    assert [(e.seq, e.inner) for e in sent_b] == [(1, msg(1))]
    assert sent_a[0].stream == sent_a[2].stream != sent_b[0].stream
    assert to_a.calls[0][1] == Envelope(sent_a[0].stream, 1, msg(0)).serialize()
    entry = store.outbox.outbox_entry(1)
    assert entry is not None and (entry.status, entry.ack, entry.stream, entry.seq) == (SENT, True, sent_a[0].stream, 1)
    assert entry.to_json()["ack"] is True and entry.to_json()["seq"] == 1
    # and after a reopen the stream goes on
    store.close()
    reopened = open_store()
    again = Outbox(reopened, per_peer_max=5)
    more = hand_over(again, A, 9).envelopes()
    assert [(e.stream, e.seq) for e in more] == [(sent_a[0].stream, 4)]
    reopened.close()


def test_not_ready_holds_the_entry_and_those_behind_it(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    outbox.enqueue(A, msg(2))  # plain, behind it
    send = Recorder()
    report = outbox.deliver(A, send)  # no hello yet
    assert report.held and send.calls == [] and statuses(store) == [QUEUED, QUEUED]
    assert store.outbox.list_outbox()[0].seq is None


def test_ack_delivers_cumulatively(outbox: Outbox, store: Store, clock: Clock) -> None:
    settled: list[OutboxEntry] = []
    outbox.on_settled = settled.append
    stream = hand_over(outbox, A, 1, 2, 3).envelopes()[0].stream
    assert settled == []  # sent is not where an acknowledged entry stops
    clock.advance(2)
    assert store.acked.ack_delivered(A, stream ^ 1, 3, clock()) is None  # a stream we never sent: ignored
    assert store.acked.ack_delivered(A, stream, 4, clock()) is None  # beyond the highest seq sent: ignored
    assert store.acked.ack_delivered(A, stream, 2**64 - 1, clock()) is None
    assert statuses(store) == [SENT] * 3
    delivered = store.acked.ack_delivered(A, stream, 2, clock())
    assert delivered is not None and [e.id for e in delivered] == [1, 2]
    assert all(e.status == DELIVERED and e.delivered_at == 1002.0 and e.reason is None for e in delivered)
    assert delivered[0].to_json()["delivered_at"] == 1002.0
    assert store.acked.ack_delivered(A, stream, 2, clock()) == []  # again: nothing more
    assert store.acked.ack_delivered(B, stream, 3, clock()) is None  # the same stream id from another peer
    assert [e.id for e in store.acked.ack_delivered(A, stream, 3, clock()) or []] == [3]
    assert statuses(store) == [DELIVERED] * 3
    assert all(e.settled for e in store.outbox.list_outbox())


def test_an_ack_during_the_hand_off_delivers_it(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    send = Recorder()

    def ack_meanwhile(peer_id: str, entry: OutboxEntry) -> None:
        envelope = envelope_of(entry)
        assert store.acked.ack_delivered(A, envelope.stream, envelope.seq, 1.0) is not None  # in sending
        send(peer_id, entry)

    report = outbox.deliver(A, ack_meanwhile, ready)
    assert report.sent == [] and statuses(store) == [DELIVERED]
    entry = store.outbox.outbox_entry(1)
    assert entry is not None and entry.sent_at == 1.0


def test_cancel_only_before_the_first_hand_off(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    outbox.enqueue(A, msg(2), ack=True)
    assert outbox.cancel(1).status == CANCELLED
    hand_over(outbox, A)
    with pytest.raises(CustomMsgError) as caught:
        outbox.cancel(2)
    assert caught.value.code == errors.OUTBOX_NOT_QUEUED and caught.value.data == {"id": 2, "status": SENT}
    # queued again with its seq (the plugin died while handing it over): still not cancellable
    with store.transaction() as db:  # as a crash mid-hand-off leaves it: the machine has no sent -> sending
        db.execute("UPDATE outbox SET status = ? WHERE id = 2", (SENDING,))
    assert outbox.recover() == 1 and statuses(store) == [CANCELLED, QUEUED]
    with pytest.raises(CustomMsgError):
        outbox.cancel(2)


def test_recovered_entry_keeps_its_seq(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    outbox.enqueue(A, msg(2), ack=True)
    moving, held = store.acked.ack_start(1, 1.0)  # the plugin dies during this hand-off
    assert moving is not None and not held and moving.seq == 1
    assert outbox.recover() == 1
    sent = hand_over(outbox, A).envelopes()
    assert [e.seq for e in sent] == [1, 2] and sent[0].stream == moving.stream


def test_pending_acknowledged_entries_count_against_the_bound(outbox: Outbox) -> None:
    hand_over(outbox, A, 1, 2, 3, 4, 5)
    with pytest.raises(CustomMsgError) as caught:
        outbox.enqueue(A, msg(6))
    assert caught.value.code == errors.OUTBOX_FULL


def test_unacknowledged_lists_what_to_send_again(outbox: Outbox, store: Store) -> None:
    stream = hand_over(outbox, A, 1, 2, 3).envelopes()[0].stream
    store.acked.ack_delivered(A, stream, 1, 1.0)
    assert [e.seq for e in store.acked.unacknowledged(A)] == [2, 3] and store.acked.unacknowledged(B) == []
    assert store.acked.ack_counts() == {A: {"queued": 0, "unacknowledged": 2}}


# -- giving up: ttl, a peer without the protocol ---------------------------------------------------


def test_ttl_of_a_sent_entry_breaks_its_stream(outbox: Outbox, store: Store, clock: Clock) -> None:
    settled: list[OutboxEntry] = []
    outbox.on_settled = settled.append
    # given 1 (no ttl), 2 (ttl 10), 3 (no ttl) handed over and unacknowledged
    outbox.enqueue(A, msg(1), ack=True)
    outbox.enqueue(A, msg(2), ttl=10, ack=True)
    outbox.enqueue(A, msg(3), ack=True)
    old = Recorder()
    outbox.deliver(A, old, ready)
    stream = old.envelopes()[0].stream
    # when 2's ttl passes; then 2 expires, 3 (after it) fails, 1 (before it) still waits
    clock.advance(10)
    expired = outbox.expire_due()
    assert [(e.id, e.status) for e in expired] == [(2, EXPIRED), (3, FAILED)]
    assert [e.id for e in settled] == [2, 3]
    assert "outbox entry 2" in (store.outbox.outbox_entry(3) or expired[0]).reason  # type: ignore[operator]
    # and a new entry waits while 1 waits for its ack: the peer must store 1 before it
    outbox.enqueue(A, msg(4), ack=True)
    report = outbox.deliver(A, Recorder(), ready)
    assert report.held and statuses(store) == [SENT, EXPIRED, FAILED, QUEUED]
    # once 1 is acknowledged, 4 goes in a new stream, from seq 1
    store.acked.ack_delivered(A, stream, 1, clock())
    new = hand_over(outbox, A).envelopes()
    assert [(e.seq, e.inner) for e in new] == [(1, msg(4))] and new[0].stream != stream
    assert statuses(store) == [DELIVERED, EXPIRED, FAILED, SENT]


def test_a_queued_entry_without_seq_expires_alone(outbox: Outbox, store: Store, clock: Clock) -> None:
    outbox.enqueue(A, msg(1), ttl=1, ack=True)
    outbox.enqueue(A, msg(2), ack=True)
    clock.advance(1)
    assert [e.id for e in outbox.expire_due()] == [1]
    assert [e.seq for e in hand_over(outbox, A).envelopes()] == [1]  # no hole: 2 is seq 1


def test_peer_without_the_protocol_fails_every_pending_entry(outbox: Outbox, store: Store) -> None:
    stream = hand_over(outbox, A, 1, 2).envelopes()[0].stream
    store.acked.ack_delivered(A, stream, 1, 1.0)
    outbox.enqueue(A, msg(3), ack=True)
    outbox.enqueue(A, msg(4))  # plain: untouched
    failed = outbox.fail_acknowledged(A, "does not speak it")
    assert [(e.id, e.status) for e in failed] == [(2, FAILED), (3, FAILED)]
    assert {e.reason for e in failed} == {"does not speak it"}
    assert statuses(store) == [DELIVERED, FAILED, FAILED, QUEUED]
    new = hand_over(outbox, A, 5).envelopes()  # it spoke it after all: a new stream
    assert new[0].seq == 1 and new[0].stream != stream


def test_refused_envelope_breaks_the_stream_too(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    send = Recorder()
    send.fail = CustomMsgError(errors.SEND_FAILED, "connectd said no")
    report = outbox.deliver(A, send, ready)
    assert [e.status for e in report.failed] == [FAILED]
    assert hand_over(outbox, A, 2).envelopes()[0].seq == 1


def test_disconnect_mid_hand_off_queues_it_again_with_its_seq(outbox: Outbox, store: Store) -> None:
    outbox.enqueue(A, msg(1), ack=True)
    send = Recorder()
    send.fail = PeerError(errors.PEER_NOT_CONNECTED, "gone")
    assert outbox.deliver(A, send, ready).interrupted
    entry = store.outbox.outbox_entry(1)
    assert entry is not None and (entry.status, entry.seq) == (QUEUED, 1)


# -- the receiver -------------------------------------------------------------------------


def receive(store: Store, peer: str, stream: int, seq: int, body: bytes) -> tuple[Decision | None, int, bool]:
    gate = store.acked.envelope_gate(peer, stream, seq)
    stored = store.inbox.add_message(peer, b"\x80\x01" + body, 32769, 1.0, 100, gate=gate)
    return gate.decision, gate.last, stored is not None


def test_the_receivers_rule_with_last_in_the_database(store: Store, open_store: OpenStore) -> None:
    assert receive(store, A, 7, 1, b"a") == (Decision.STORE, 1, True)
    assert receive(store, A, 7, 1, b"a") == (Decision.DUPLICATE, 1, False)
    assert receive(store, A, 7, 3, b"c") == (Decision.GAP, 1, False)
    assert receive(store, A, 8, 1, b"x") == (Decision.STORE, 1, True)  # another stream
    assert receive(store, B, 7, 1, b"y") == (Decision.STORE, 1, True)  # another peer
    assert receive(store, A, 7, 2**64 - 1, b"z") == (Decision.GAP, 1, False)
    store.close()
    reopened = open_store()
    assert receive(reopened, A, 7, 1, b"a") == (Decision.DUPLICATE, 1, False)
    assert receive(reopened, A, 7, 2, b"b") == (Decision.STORE, 2, True)
    assert [m.payload for m in reopened.inbox.list_messages(A)] == [b"\x80\x01a", b"\x80\x01x", b"\x80\x01b"]
    reopened.close()


def test_last_moves_only_with_the_stored_message(store: Store, db_path: str) -> None:
    # given an insert that fails (another process's trigger, as a full disk would)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("CREATE TRIGGER fail_insert BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(StorageError):
        receive(store, A, 7, 1, b"a")
    # then last did not move: the sender's copy is still stored, once
    other.execute("DROP TRIGGER fail_insert")
    other.close()
    assert receive(store, A, 7, 1, b"a") == (Decision.STORE, 1, True)
    assert store.inbox.count == 1


# -- acked/delivery.py: hellos, acks, timeouts in memory ----------------------------------------------


class Wiring:
    """An AckedDelivery with its sends and schedules recorded, on a real outbox."""

    def __init__(self, store: Store, outbox: Outbox, clock: Clock, enabled: bool = True):
        self.posted: list[tuple[str, Any]] = []
        self.scheduled: list[tuple[str, bool, bool]] = []
        self.delivered: list[OutboxEntry] = []
        counters = Counters(store)
        receiver = Receiver(store, counters, ReceiveLimiter(Budget(100, 1000)), WaiterRegistry(), 100,
                            notify=lambda entry: None, log=lambda *a, **k: None)
        self.acked = AckedDelivery(
            store, outbox, receiver, lambda p, m: self.posted.append((p, parse(m.serialize()))), self.schedule,
            self.delivered.append, lambda *a, **k: None,
            hello_timeout=30, retransmit_after=10, enabled=enabled, clock=clock, wall=clock,
        )

    def schedule(self, peer_id: str, *, resend_unacknowledged: bool, even_if_busy: bool) -> None:
        self.scheduled.append((peer_id, resend_unacknowledged, even_if_busy))


def test_a_peer_that_asked_for_nothing_hears_nothing(store: Store, outbox: Outbox, clock: Clock) -> None:
    # given a peer that connects while we have nothing acknowledged for it: no hello, however long
    w = Wiring(store, outbox, clock)
    w.acked.connected(A)
    clock.advance(100)
    w.acked.sweep()
    assert w.posted == [] and [r["ack_support"] for r in w.acked.describe({A})] == ["unknown"]
    # when an acknowledged message for it is queued: our hello, once on this connection
    outbox.enqueue(A, msg(1), ack=True)
    w.acked.ask(A)
    w.acked.ask(A)
    assert w.posted == [(A, OUR_HELLO)]
    # and a reconnect with the message still waiting asks again
    w.acked.disconnected(A)
    w.acked.connected(A)
    assert w.posted == [(A, OUR_HELLO)] * 2


def test_acknowledged_delivery_turned_off(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock, enabled=False)
    outbox.enqueue(A, msg(1), ack=True)
    w.acked.connected(A)
    w.acked.receive(A, Hello(1, reply=False).serialize())  # not answered
    w.acked.receive(A, Envelope(1, 1, msg(2)).serialize())  # not stored, not acknowledged
    assert w.posted == [] and w.scheduled == [] and store.inbox.count == 0
    with pytest.raises(CustomMsgError) as caught:
        w.acked.check_supported(A)
    assert caught.value.code == errors.INVALID_PARAMETER and caught.value.data == {"param": "ack"}


def test_hellos_and_what_they_start(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock)
    outbox.enqueue(A, msg(1), ack=True)
    w.acked.connected(A)
    assert w.posted == [(A, OUR_HELLO)] and not w.acked.ready(A)
    w.acked.on_hello(A, Hello(1, reply=True))  # its answer: ready, send what waits
    assert w.acked.ready(A) and w.scheduled == [(A, True, True)] and len(w.posted) == 1
    clock.advance(10)
    w.acked.on_hello(A, Hello(1, reply=False))  # its plugin (re)started: answered, and everything again
    assert w.posted[-1] == (A, OUR_REPLY) and w.scheduled[-1] == (A, True, True)
    w.acked.on_hello(A, Hello(1, reply=True))
    assert len(w.scheduled) == 2
    w.acked.disconnected(A)
    assert not w.acked.ready(A)


def test_a_hello_flood_is_answered_at_a_pace(store: Store, outbox: Outbox, clock: Clock) -> None:
    # given a peer that said hello (ready: one resend), then sends 2000 more with reply=0 at once
    w = Wiring(store, outbox, clock)
    w.acked.connected(A)
    w.acked.on_hello(A, Hello(1, reply=False))
    assert w.scheduled == [(A, True, True)] and w.posted == [(A, OUR_REPLY)]
    for _ in range(2000):
        w.acked.on_hello(A, Hello(1, reply=False))
    # then nothing more goes at once: the reply is owed, the resend not needed within the interval
    assert len(w.scheduled) == 1 and len(w.posted) == 1
    # when a second passes: one owed reply, at the sweep; no resend before 10 s
    clock.advance(1)
    w.acked.sweep()
    assert w.posted[1:] == [(A, OUR_REPLY)] and len(w.scheduled) == 1
    w.acked.sweep()
    assert len(w.posted) == 2  # owed once, sent once
    # and after the retransmit interval, the next hello may resend once more
    clock.advance(9)
    for _ in range(100):
        w.acked.on_hello(A, Hello(1, reply=False))
    assert w.scheduled == [(A, True, True)] * 2 and w.posted[2:] == [(A, OUR_REPLY)]


def test_a_reconnect_is_answered_at_once(store: Store, outbox: Outbox, clock: Clock) -> None:
    # given a peer answered and resent to, which disconnects and comes back at once
    w = Wiring(store, outbox, clock)
    w.acked.connected(A)
    w.acked.on_hello(A, Hello(1, reply=False))
    w.acked.disconnected(A)
    w.acked.connected(A)
    # when it says hello on the new connection, then it is answered and resent to without waiting
    w.acked.on_hello(A, Hello(1, reply=False))
    assert w.scheduled == [(A, True, True)] * 2
    assert w.posted.count((A, OUR_REPLY)) == 2


def test_one_peers_flood_does_not_pace_another(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock)
    for peer in (A, B):
        w.acked.connected(peer)
    for _ in range(500):
        w.acked.on_hello(A, Hello(1, reply=False))
    w.acked.on_hello(B, Hello(1, reply=False))
    assert w.scheduled == [(A, True, True), (B, True, True)]
    assert (B, OUR_REPLY) in w.posted


def test_hello_timeout_fails_and_refuses(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock)
    w.acked.connected(A)
    outbox.enqueue(A, msg(1), ack=True)
    w.acked.ask(A)  # what custommsg-send ack=true does: our hello, and the clock starts
    w.acked.check_supported(A)  # unknown yet: fine
    clock.advance(30)
    w.acked.sweep()
    assert statuses(store) == [FAILED]
    with pytest.raises(CustomMsgError) as caught:
        w.acked.check_supported(A)
    assert caught.value.code == errors.ACK_UNSUPPORTED and caught.value.data == {"peer_id": A}
    assert [r["ack_support"] for r in w.acked.describe({A})] == ["no"]


def test_retransmit_and_ack(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock)
    w.acked.connected(A)
    w.acked.on_hello(A, Hello(1, reply=True))
    for n in (1, 2):
        outbox.enqueue(A, msg(n), ack=True)
    first = Recorder()

    def send(peer_id: str, entry: OutboxEntry) -> None:
        w.acked.sending(peer_id, envelope_of(entry))
        first(peer_id, entry)

    outbox.deliver(A, send, w.acked.ready)
    clock.advance(9)
    w.acked.sweep()
    assert w.scheduled == [(A, True, True)]  # only the hello's so far
    clock.advance(1)
    w.acked.sweep()
    assert w.scheduled[-1] == (A, True, False)
    again = Recorder()
    assert w.acked.resend(A, again)
    assert again.calls == first.calls
    stream = first.envelopes()[0].stream
    w.acked.on_ack(A, Ack(stream, 2))
    assert [e.id for e in w.delivered] == [1, 2] and statuses(store) == [DELIVERED, DELIVERED]
    clock.advance(100)
    w.acked.sweep()
    assert w.scheduled[-1] == (A, True, False) and len(w.scheduled) == 2  # nothing in flight any more


# -- delayed acks (rules.AckPacer) and the one-write hand-off -------------------------------------

# (time, seq, more in flight) -> what the pacer says: "now" (ack at once), or when the owed ack is due.
PACER_TABLE = [
    (0.000, 1, False, "now"),  # on its own: at once
    (0.002, 2, True, 0.012),  # more in flight: owed, until the delay after the first it owes
    (0.004, 3, True, 0.012),
    (0.013, 4, True, 0.012),  # still owed (due() gives it)
]


def test_ack_pacer_table() -> None:
    pacer = AckPacer(delay=0.010, every=32)
    for now, seq, more, expected in PACER_TABLE:
        due = pacer.stored(A, 7, seq, more, now)
        assert ("now" if due is None else due) == expected, (now, seq)
    assert pacer.next_due() == 0.012 and pacer.due(0.011) == []
    assert pacer.due(0.013) == [(A, 7, 4)]  # one ack for 2, 3 and 4
    assert pacer.due(0.5) == [] and pacer.next_due() is None and pacer.owed() == 0
    assert pacer.stored(A, 7, 5, True, 0.6) == 0.61
    assert pacer.stored(A, 7, 6, False, 0.601) is None  # one on its own takes what was owed with it
    assert pacer.owed() == 0


def test_ack_pacer_every_and_streams_apart() -> None:
    pacer = AckPacer(delay=1.0, every=4)
    assert [pacer.stored(A, 1, seq, True, 0.0) for seq in range(1, 7)] == [1.0, 1.0, 1.0, None, 1.0, 1.0]
    assert pacer.stored(A, 2, 1, True, 0.5) == 1.5 and pacer.stored(B, 1, 1, True, 0.5) == 1.5  # each its own
    assert pacer.due(1.0) == [(A, 1, 6)]
    pacer.forget(B)  # disconnected: owed nothing
    assert pacer.due(9.0) == [(A, 2, 1)] and pacer.next_due() is None


def test_ack_pacer_keeps_nothing_past_the_delay() -> None:
    # a peer opening a stream per envelope: each owed at most the delay, acks never more than envelopes
    pacer = AckPacer(delay=0.010)
    acks = 0
    for n in range(10_000):
        pacer.stored(A, n, 1, True, n * 0.001)
        acks += len(pacer.due(n * 0.001))
        assert pacer.owed() <= 11
    assert acks <= 10_000


def test_delayed_acks_go_when_the_alarm_rings(store: Store, outbox: Outbox, clock: Clock) -> None:
    w = Wiring(store, outbox, clock)
    alarms: list[float] = []
    w.acked.wake_at = alarms.append
    for seq in (1, 2, 3):
        w.acked.on_envelope(A, Envelope(5, seq, msg(seq), more=seq > 1))
    assert w.posted == [(A, Ack(5, 1))] and alarms == [clock() + 0.010] * 2
    assert w.acked.owed_acks() == clock() + 0.010 and w.posted == [(A, Ack(5, 1))]  # not yet
    clock.advance(0.010)
    assert w.acked.owed_acks() is None
    assert w.posted == [(A, Ack(5, 1)), (A, Ack(5, 3))]
    assert [m.payload for m in store.inbox.list_messages(None, None, Page("created", 0, None))] == [
        msg(n).serialize() for n in (1, 2, 3)
    ]


def test_first_in_line_enters_the_outbox_sent_with_its_seq(outbox: Outbox, store: Store) -> None:
    # given nothing queued to A: the entry gets its seq in the write that queues it
    first = outbox.enqueue(A, msg(1), ack=True, start=True)
    assert (first.status, first.seq, first.updated_index) == (SENT, 1, 1)
    assert store.outbox.outbox_entry(first.id) == first
    # when a plain entry waits queued before the next one: that one waits its turn, without a seq
    outbox.enqueue(A, msg(2))
    behind = outbox.enqueue(A, msg(3), ack=True, start=True)
    assert (behind.status, behind.seq) == (QUEUED, None)
    # then it gets the next seq at its hand-off, after the plain one
    send = Recorder()
    outbox.deliver(A, send, ready)
    assert [(e.seq, e.inner) for e in send.envelopes()] == [(2, msg(3))]
    assert statuses(store, A) == [SENT, SENT, SENT]


def test_first_in_line_counts_against_the_bound(store: Store) -> None:
    small = Outbox(store, per_peer_max=2)
    small.enqueue(B, msg(1), ack=True, start=True)
    small.enqueue(B, msg(2), ack=True, start=True)
    with pytest.raises(CustomMsgError) as full:
        small.enqueue(B, msg(3), ack=True, start=True)
    assert full.value.code == errors.OUTBOX_FULL


# -- waiters, options ---------------------------------------------------------------------------


def test_keyed_waiter_is_woken_by_its_key_only() -> None:
    registry = WaiterRegistry(clock=Clock())
    got: list[Any] = []
    registry.add(Waiter(min_index=0, on_message=got.append, on_fail=got.append, key=("outbox", 1)))
    assert registry.wake(("outbox", 2), "other") == 0
    assert registry.wake(("outbox", 1), "mine") == 1 and got == ["mine"]
    assert len(registry) == 0
