"""ack.py: the acknowledged-delivery wire format (hello, envelope, ack) and the rules on both sides.

Tables first, then the tests that walk them. Messages are literal bytes written by hand:
types 47431 = b947 (hello), 47433 = b949 (envelope), 47435 = b94b (ack).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from custommsg.acked.rules import InFlight, PeerSupport
from custommsg.core import errors
from custommsg.core.blip50 import LSPS0_MESSAGE_TYPE
from custommsg.core.envelope import (
    ACK,
    ACK_TYPES,
    ENVELOPE,
    ENVELOPE_MORE,
    HELLO,
    HELLO_TIMEOUT,
    MAX_INNER_LEN,
    RETRANSMIT_AFTER,
    Ack,
    AckMessage,
    Decision,
    Envelope,
    Hello,
    MalformedAck,
    answer,
    parse,
    parse_ack,
    parse_envelope,
    parse_hello,
    receive_decision,
)
from custommsg.core.errors import CustomMsgError, ValidationError
from custommsg.core.wire import COMMANDO_TYPES, CUSTOM_RANGE, INTERNAL_TYPES, MAX_MESSAGE_LEN, Message, parse_message

from .helpers import A, B, C, Clock

STREAM = 0x0123456789ABCDEF
HELLO_TEXT = Message(32769, b"hello")

# -- the types -------------------------------------------------------------------

# Taken in the bLIP-0002 registry or by known protocols, as the spec lists them.
TAKEN = [
    range(35001, 35016), range(37000, 37005), range(37913, 37914), range(39409, 39410), range(41041, 41047),
    range(42069, 42086), range(42900, 42903), range(52884, 52885), range(53011, 53012), range(63497, 65536),
    range(32769, 33001),
]


@pytest.mark.parametrize("msg_type", [HELLO, ENVELOPE, ACK], ids=["hello", "envelope", "ack"])
def test_types_are_odd_custom_and_free(msg_type: int) -> None:
    assert msg_type % 2 == 1 and msg_type in CUSTOM_RANGE
    assert not any(msg_type in taken for taken in TAKEN)
    assert msg_type not in COMMANDO_TYPES | INTERNAL_TYPES.keys() | {LSPS0_MESSAGE_TYPE}


def test_the_four_types() -> None:
    assert (HELLO, ENVELOPE, ACK, ENVELOPE_MORE) == (0xB947, 0xB949, 0xB94B, 0xB94D) == (47431, 47433, 47435, 47437)
    assert ACK_TYPES == {HELLO, ENVELOPE, ACK, ENVELOPE_MORE}
    assert MAX_INNER_LEN == 65517 == MAX_MESSAGE_LEN - 2 - 16


# -- round trips on literal bytes ----------------------------------------------------

_MAX_ENVELOPE = bytes.fromhex("b949" "0000000000000007" "0000000000000001" "8001") + bytes(65515)

# (id, whole message as hex, value)
ROUND_TRIP: list[tuple[str, bytes, AckMessage]] = [
    ("hello", bytes.fromhex("b947" "0001" "00"), Hello(1, reply=False)),
    ("hello-reply", bytes.fromhex("b947" "0001" "01"), Hello(1, reply=True)),
    ("hello-version-2", bytes.fromhex("b947" "0002" "00"), Hello(2, reply=False)),
    ("hello-version-65535-reply", bytes.fromhex("b947" "ffff" "01"), Hello(65535, reply=True)),
    ("hello-batch", bytes.fromhex("b947" "0001" "02"), Hello(1, reply=False, batch=True)),
    ("hello-reply-batch", bytes.fromhex("b947" "0001" "03"), Hello(1, reply=True, batch=True)),
    ("envelope-hello", bytes.fromhex("b949" "0123456789abcdef" "0000000000000001" "8001" "68656c6c6f"),
     Envelope(STREAM, 1, HELLO_TEXT)),
    ("envelope-type-only", bytes.fromhex("b949" "0000000000000000" "ffffffffffffffff" "ffff"),
     Envelope(0, 2**64 - 1, Message(65535))),
    ("envelope-seq-258-peer-storage", bytes.fromhex("b949" "fedcba9876543210" "0000000000000102" "0007" "beef"),
     Envelope(0xFEDCBA9876543210, 258, Message(7, b"\xbe\xef"))),
    ("envelope-inner-is-an-envelope", bytes.fromhex("b949" "0000000000000001" "0000000000000002" "b949"),
     Envelope(1, 2, Message(ENVELOPE))),
    ("envelope-largest", _MAX_ENVELOPE, Envelope(7, 1, Message(32769, bytes(65515)))),
    ("envelope-more-in-flight", bytes.fromhex("b94d" "0123456789abcdef" "0000000000000002" "8001" "68656c6c6f"),
     Envelope(STREAM, 2, HELLO_TEXT, more=True)),
    ("ack-nothing-yet", bytes.fromhex("b94b" "0123456789abcdef" "0000000000000000"), Ack(STREAM, 0)),
    ("ack-258", bytes.fromhex("b94b" "ffffffffffffffff" "0000000000000102"), Ack(2**64 - 1, 258)),
    ("ack-stream-0-max-seq", bytes.fromhex("b94b" "0000000000000000" "ffffffffffffffff"), Ack(0, 2**64 - 1)),
]
_BODY_PARSERS: dict[int, Any] = {
    HELLO: parse_hello, ENVELOPE: parse_envelope, ACK: parse_ack,
    ENVELOPE_MORE: lambda body: parse_envelope(body, more=True),
}


@pytest.mark.parametrize(("raw", "value"), [c[1:] for c in ROUND_TRIP], ids=[c[0] for c in ROUND_TRIP])
def test_parse_and_serialize_are_inverses(raw: bytes, value: AckMessage) -> None:
    assert parse(raw) == value
    assert value.serialize() == raw
    assert _BODY_PARSERS[value.wire_type()](raw[2:]) == value
    assert parse_message(raw) == Message(value.wire_type(), raw[2:])  # a well-framed BOLT #1 message, too


def test_largest_envelope_is_exactly_65535_bytes() -> None:
    value = Envelope(7, 1, Message(32769, bytes(MAX_INNER_LEN - 2)))
    assert len(value.inner) == 65517 and len(value.serialize()) == MAX_MESSAGE_LEN
    assert parse(value.serialize()) == value


def test_one_byte_more_is_refused_with_msg_too_long() -> None:
    with pytest.raises(ValidationError) as caught:
        Envelope(7, 1, Message(32769, bytes(65516))).serialize()
    assert caught.value.code == errors.MSG_TOO_LONG
    assert caught.value.data == {"length": 65518, "max": 65517}


# (id, whole message as hex, what it reads as, how we write that): accepted, but not our form
LENIENT: list[tuple[str, str, Hello, str]] = [
    ("unknown-flag-bit-2", "b947" "0001" "04", Hello(1, reply=False), "b947" "0001" "00"),
    ("all-flag-bits", "b947" "0001" "ff", Hello(1, reply=True, batch=True), "b947" "0001" "03"),
    ("extra-bytes", "b947" "0001" "01" "cafe", Hello(1, reply=True), "b947" "0001" "01"),
    ("version-3-extra-bytes", "b947" "0003" "00" "00000000", Hello(3, reply=False), "b947" "0003" "00"),
]


@pytest.mark.parametrize(("raw", "value", "ours"), [c[1:] for c in LENIENT], ids=[c[0] for c in LENIENT])
def test_hello_ignores_unknown_flags_and_extra_bytes(raw: str, value: Hello, ours: str) -> None:
    assert parse(bytes.fromhex(raw)) == value
    assert value.serialize() == bytes.fromhex(ours)


@pytest.mark.parametrize(
    ("received", "ours"),
    [("b947" "0001" "00", "b947" "0001" "03"), ("b947" "0002" "00", "b947" "0001" "03"), ("b947" "0001" "01", None),
     ("b947" "0001" "07", None)],
    ids=["hello-gets-a-reply-with-batch", "version-2-gets-our-version-1", "reply-gets-nothing",
         "reply-with-unknown-bit"],
)
def test_a_hello_is_answered_once(received: str, ours: str | None) -> None:
    hello = parse(bytes.fromhex(received))
    assert isinstance(hello, Hello)
    reply = answer(hello)
    assert (reply and reply.serialize().hex()) == ours
    assert reply is None or answer(reply) is None  # and the reply is never answered: no loop


# -- malformed input ---------------------------------------------------------------

# (id, whole message as hex, data["reason"])
MALFORMED: list[tuple[str, str, str]] = [
    ("empty", "", "bad message length"),
    ("one-byte", "b9", "bad message length"),
    ("too-long-65536", "b94b" + "00" * 65534, "bad message length"),
    ("type-32769", "8001" "0001" "00", "not an acknowledged-delivery type"),
    ("type-47430-even-neighbour", "b946" "0001" "00", "not an acknowledged-delivery type"),
    ("type-47439-next-odd", "b94f" "0123456789abcdef" "0000000000000000", "not an acknowledged-delivery type"),
    ("envelope-more-seq-0", "b94d" "0123456789abcdef" "0000000000000000" "8001", "envelope seq 0"),
    ("envelope-more-no-inner", "b94d" "0123456789abcdef" "0000000000000001", "envelope too short"),
    ("type-0", "0000", "not an acknowledged-delivery type"),
    ("lsps0-37913", "9419" "7b7d", "not an acknowledged-delivery type"),
    ("hello-no-body", "b947", "hello too short"),
    ("hello-1-byte", "b947" "00", "hello too short"),
    ("hello-no-flags", "b947" "0001", "hello too short"),
    ("hello-version-0", "b947" "0000" "00", "hello version 0"),
    ("hello-version-0-reply", "b947" "0000" "01", "hello version 0"),
    ("envelope-no-body", "b949", "envelope too short"),
    ("envelope-stream-only", "b949" "0123456789abcdef", "envelope too short"),
    ("envelope-no-inner", "b949" "0123456789abcdef" "0000000000000001", "envelope too short"),
    ("envelope-inner-1-byte", "b949" "0123456789abcdef" "0000000000000001" "80", "envelope too short"),
    ("envelope-seq-0", "b949" "0123456789abcdef" "0000000000000000" "8001", "envelope seq 0"),
    ("envelope-seq-0-with-body", "b949" "0123456789abcdef" "0000000000000000" "8001" "68656c6c6f", "envelope seq 0"),
    ("ack-no-body", "b94b", "ack not 16 bytes"),
    ("ack-stream-only", "b94b" "0123456789abcdef", "ack not 16 bytes"),
    ("ack-15-bytes", "b94b" "0123456789abcdef" "00000000000001", "ack not 16 bytes"),
    ("ack-17-bytes", "b94b" "0123456789abcdef" "0000000000000001" "00", "ack not 16 bytes"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_parse_refuses(raw: str, reason: str) -> None:
    # given a message breaking one rule; when parsed; then MalformedAck names the rule
    with pytest.raises(MalformedAck) as caught:
        parse(bytes.fromhex(raw))
    assert caught.value.data["reason"] == reason, caught.value
    assert caught.value.code == errors.ACK_UNSUPPORTED
    assert isinstance(caught.value, CustomMsgError)
    assert caught.value.to_json()["data"]["reason"] == reason


@pytest.mark.parametrize(
    ("parser", "body", "reason"),
    [
        (parse_hello, b"\x00\x01", "hello too short"),
        (parse_envelope, bytes(17), "envelope too short"),
        (parse_envelope, bytes(16) + bytes(MAX_INNER_LEN + 1), "envelope too long"),  # no BOLT #1 message holds it
        (parse_ack, b"", "ack not 16 bytes"),
    ],
    ids=["hello-2-bytes", "envelope-17-bytes", "envelope-inner-65518", "ack-empty"],
)
def test_body_parsers_refuse(parser: Any, body: bytes, reason: str) -> None:
    with pytest.raises(MalformedAck) as caught:
        parser(body)
    assert caught.value.data["reason"] == reason


# (id, value that cannot be written, the field named in data)
UNWRITABLE: list[tuple[str, AckMessage, str]] = [
    ("hello-version-0", Hello(0), "version"),
    ("hello-version-65536", Hello(65536), "version"),
    ("envelope-seq-0", Envelope(STREAM, 0, HELLO_TEXT), "seq"),
    ("envelope-seq-2**64", Envelope(STREAM, 2**64, HELLO_TEXT), "seq"),
    ("envelope-stream-negative", Envelope(-1, 1, HELLO_TEXT), "stream"),
    ("envelope-stream-2**64", Envelope(2**64, 1, HELLO_TEXT), "stream"),
    ("envelope-inner-type-65536", Envelope(STREAM, 1, Message(65536)), "inner_type"),
    ("ack-seq-negative", Ack(STREAM, -1), "seq"),
    ("ack-stream-2**64", Ack(2**64, 0), "stream"),
]


@pytest.mark.parametrize(("value", "field"), [c[1:] for c in UNWRITABLE], ids=[c[0] for c in UNWRITABLE])
def test_serialize_refuses_values_out_of_range(value: AckMessage, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        value.serialize()
    assert caught.value.code == errors.INVALID_PARAMETER
    assert list(caught.value.data) == [field]


# -- the receiver rule ----------------------------------------------------------------

# (id, last, seq, decision)
DECISIONS: list[tuple[str, int, int, Decision]] = [
    ("first-message", 0, 1, Decision.STORE),
    ("first-lost", 0, 2, Decision.GAP),
    ("many-lost", 0, 9, Decision.GAP),
    ("next", 1, 2, Decision.STORE),
    ("next-after-5", 5, 6, Decision.STORE),
    ("duplicate-of-last", 1, 1, Decision.DUPLICATE),
    ("duplicate-of-last-5", 5, 5, Decision.DUPLICATE),
    ("duplicate-of-old", 5, 3, Decision.DUPLICATE),
    ("duplicate-of-first", 5, 1, Decision.DUPLICATE),
    ("gap-of-one", 5, 7, Decision.GAP),
    ("last-possible-seq", 2**64 - 2, 2**64 - 1, Decision.STORE),
]


@pytest.mark.parametrize(("last", "seq", "decision"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS])
def test_receive_decision(last: int, seq: int, decision: Decision) -> None:
    assert receive_decision(last, seq) is decision


@pytest.mark.parametrize(("last", "seq"), [(0, 0), (3, 0), (-1, 1)], ids=["seq-0", "seq-0-after-3", "last-negative"])
def test_receive_decision_refuses_impossible_input(last: int, seq: int) -> None:
    with pytest.raises(ValueError):
        receive_decision(last, seq)


# -- both rules over a lossy channel -----------------------------------------------------


class Receiver:
    """The receiving node: what its database holds (``last`` per (peer, stream), the inbox) and the rule."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], int] = {}
        self.inbox: list[Message] = []
        self.decisions: list[Decision] = []

    def on_message(self, peer: str, raw: bytes) -> bytes:
        envelope = parse(raw)
        assert isinstance(envelope, Envelope)
        last = self.last.get((peer, envelope.stream), 0)
        decision = receive_decision(last, envelope.seq)
        self.decisions.append(decision)
        if decision is Decision.STORE:  # one transaction: the inner message and the new last
            self.inbox.append(envelope.inner)
            self.last[peer, envelope.stream] = last = envelope.seq
        return Ack(envelope.stream, last).serialize()


class Sender:
    """The sending node, with one peer (A): its database (the entries, what is delivered) and its rules."""

    def __init__(self, stream: int) -> None:
        self.stream = stream
        self.entries: dict[int, Message] = {}
        self.delivered: set[int] = set()
        self.restart()

    def restart(self) -> None:  # what is in memory is lost; the database stays
        self.in_flight, self.support = InFlight(), PeerSupport()

    def connect(self, now: float) -> list[bytes]:
        """Connected, and the peer's hello came (BOLT 8 loses nothing within one connection)."""
        self.support.connected(A, now)
        hello = parse(Hello().serialize())
        assert isinstance(hello, Hello)
        self.support.hello(A, hello.version, now)
        return self.transmit(now)

    def disconnect(self) -> None:
        self.support.disconnected(A)
        self.in_flight.reset(A)

    def send(self, inner: Message, now: float) -> list[bytes]:
        seq = len(self.entries) + 1
        self.entries[seq] = inner
        return self.transmit(now, [seq])

    def transmit(self, now: float, seqs: list[int] | None = None) -> list[bytes]:
        if not self.support.ready(A):
            return []
        pending = sorted(set(self.entries) - self.delivered) if seqs is None else seqs
        for seq in pending:
            self.in_flight.sent(A, seq, now)
        return [Envelope(self.stream, seq, self.entries[seq]).serialize() for seq in pending]

    def on_ack(self, raw: bytes) -> list[int]:
        ack = parse(raw)
        assert isinstance(ack, Ack)
        done = self.in_flight.acked(A, ack.seq) if ack.stream == self.stream else []
        self.delivered.update(done)
        return done

    def tick(self, now: float) -> list[bytes]:
        return self.transmit(now) if self.in_flight.due(A, now) else []


def _msg(n: int) -> Message:
    return Message(32769, b"m%d" % n)


def test_scripted_loss_duplication_and_reordering() -> None:
    clock, sender, receiver = Clock(), Sender(STREAM), Receiver()
    assert sender.connect(clock.now) == []
    e1, e2, e3, e4 = (sender.send(_msg(n), clock.now)[0] for n in (1, 2, 3, 4))
    assert e2 == bytes.fromhex("b949" "0123456789abcdef" "0000000000000002" "8001" "6d32")
    # 1 arrives, 2 is lost, 3 arrives, 4 arrives twice: the gaps ack 1
    acks = [receiver.on_message(B, raw) for raw in (e1, e3, e4, e4)]
    assert receiver.decisions == [Decision.STORE, Decision.GAP, Decision.GAP, Decision.GAP]
    assert acks == [Ack(STREAM, 1).serialize()] * 4
    assert [sender.on_ack(raw) for raw in acks] == [[1], [], [], []]
    # no ack for RETRANSMIT_AFTER: everything unacknowledged again, in order, byte for byte
    clock.advance(RETRANSMIT_AFTER - 0.1)
    assert sender.tick(clock.now) == []
    clock.advance(0.1)
    assert sender.tick(clock.now) == [e2, e3, e4]
    # reordered: 3 before 2, and 4 lost; the acks come back reordered too
    acks = [receiver.on_message(B, raw) for raw in (e3, e2)]
    assert receiver.decisions[4:] == [Decision.GAP, Decision.STORE]
    assert [sender.on_ack(raw) for raw in reversed(acks)] == [[2], []]
    clock.advance(RETRANSMIT_AFTER)
    assert sender.tick(clock.now) == [e3, e4]
    acks = [receiver.on_message(B, raw) for raw in (e3, e4)]
    assert sender.on_ack(acks[1]) == [3, 4]  # the ack of 3 is lost; 4's is cumulative
    # a late copy of 1: a duplicate, acked with the last; nothing left to deliver or resend
    assert receiver.on_message(B, e1) == Ack(STREAM, 4).serialize()
    assert receiver.decisions[-1] is Decision.DUPLICATE
    assert sender.on_ack(Ack(STREAM, 4).serialize()) == []
    assert sender.tick(clock.now + 100 * RETRANSMIT_AFTER) == []
    assert receiver.inbox == [_msg(1), _msg(2), _msg(3), _msg(4)]
    assert sender.delivered == {1, 2, 3, 4}


def test_restarts_and_a_wiped_sender() -> None:
    clock, sender, receiver = Clock(), Sender(STREAM), Receiver()
    sender.connect(clock.now)
    sent = sender.send(_msg(1), clock.now) + sender.send(_msg(2), clock.now)
    ack = [receiver.on_message(B, raw) for raw in sent][-1]  # stored; the ack is lost in a disconnect
    sender.disconnect()
    assert sender.send(_msg(3), clock.now) == []  # not connected: it waits in the outbox
    sender.restart()
    resent = sender.connect(clock.now)  # after the restart: 1, 2 and 3, in order
    assert [parse(raw) for raw in resent] == [Envelope(STREAM, n, _msg(n)) for n in (1, 2, 3)]
    acks = [receiver.on_message(B, raw) for raw in resent]
    assert receiver.decisions[2:] == [Decision.DUPLICATE, Decision.DUPLICATE, Decision.STORE]
    assert sender.on_ack(ack) == [1, 2] and sender.on_ack(acks[-1]) == [3]
    # the sender's database is wiped: a new stream, whose seq 1 is no duplicate
    wiped = Sender(0xFEDCBA9876543210)
    wiped.connect(clock.now)
    ack = receiver.on_message(B, wiped.send(_msg(4), clock.now)[0])
    assert receiver.decisions[-1] is Decision.STORE
    assert wiped.on_ack(Ack(STREAM, 3).serialize()) == []  # the old stream's ack: ignored
    assert wiped.on_ack(ack) == [1]
    assert receiver.inbox == [_msg(1), _msg(2), _msg(3), _msg(4)]
    assert receiver.last == {(B, STREAM): 3, (B, 0xFEDCBA9876543210): 1}


@pytest.mark.parametrize("seed", range(12))
def test_lossy_channel_stores_each_message_once_in_order(seed: int) -> None:
    # given a channel that drops, duplicates and reorders both ways, disconnects and restarts
    rng, clock = random.Random(seed), Clock()
    sender, receiver = Sender(rng.getrandbits(64)), Receiver()
    messages = [_msg(n) for n in range(1, 41)]
    to_receiver, to_sender = sender.connect(clock.now), list[bytes]()

    def lossy(queue: list[bytes]) -> list[bytes]:
        """What arrives: shuffled, each dropped (1/4), duplicated (1/4) or delivered once."""
        rng.shuffle(queue)
        arrived = [raw for raw in queue for _ in range(rng.choice((0, 1, 1, 2)))]
        queue.clear()
        return arrived

    for _ in range(2000):
        if len(sender.delivered) == len(messages):
            break
        if len(sender.entries) < len(messages) and rng.random() < 0.5:
            to_receiver += sender.send(messages[len(sender.entries)], clock.now)
        if rng.random() < 0.05:  # a disconnect (sometimes a restart): what is in transit is lost
            to_receiver.clear()
            to_sender.clear()
            sender.disconnect()
            if rng.random() < 0.5:
                sender.restart()
            to_receiver += sender.connect(clock.now)
        to_sender += [receiver.on_message(B, raw) for raw in lossy(to_receiver)]
        for raw in lossy(to_sender):
            sender.on_ack(raw)
        clock.advance(1.0)
        to_receiver += sender.tick(clock.now)
    # then the receiver stored each message exactly once, in order, and the sender knows it
    assert receiver.inbox == messages
    assert sender.delivered == set(range(1, len(messages) + 1))
    assert {Decision.STORE, Decision.DUPLICATE, Decision.GAP} <= set(receiver.decisions)


# -- PeerSupport ---------------------------------------------------------------------


def test_peer_without_hello_is_reported_once_per_connection() -> None:
    # given a connected peer we have not asked: nothing to judge, however long it stays
    clock, support = Clock(), PeerSupport()
    support.connected(A, clock.now)
    assert support.status(A, clock.now) == "unknown" and not support.ready(A)
    clock.advance(10 * HELLO_TIMEOUT)
    assert support.due_unsupported(clock.now) == [] and support.status(A, clock.now) == "unknown"
    # when we ask (our hello): judged HELLO_TIMEOUT later, once
    assert support.ask(A, clock.now) is True and support.ask(A, clock.now) is False  # once a connection
    clock.advance(HELLO_TIMEOUT - 0.1)
    assert support.due_unsupported(clock.now) == [] and support.status(A, clock.now) == "unknown"
    clock.advance(0.1)
    assert support.status(A, clock.now) == "no"
    assert support.due_unsupported(clock.now) == [A]
    clock.advance(60)
    assert support.due_unsupported(clock.now) == [] and support.status(A, clock.now) == "no"
    support.connected(A, clock.now)  # a second connect event for the same connection: no change
    assert support.status(A, clock.now) == "no"
    # reconnect: unknown again, asked again, and reported again after the timeout
    support.disconnected(A)
    assert support.status(A, clock.now) == "unknown"
    support.connected(A, clock.now)
    assert support.status(A, clock.now) == "unknown" and support.ask(A, clock.now) is True
    clock.advance(HELLO_TIMEOUT)
    assert support.due_unsupported(clock.now) == [A]
    # the plugin is installed late: its hello makes it known at once
    support.hello(A, 1, clock.now)
    assert support.status(A, clock.now) == "yes" and support.ready(A) and support.version(A) == 1


def test_ask_only_a_connected_peer_that_has_not_said_hello() -> None:
    clock, support = Clock(), PeerSupport()
    assert support.ask(A, clock.now) is False  # never connected: its connection will ask
    support.connected(A, clock.now)
    support.hello(A, 1, clock.now)
    assert support.ask(A, clock.now) is False  # it said hello already: nothing to ask
    support.disconnected(A)
    assert support.ask(A, clock.now) is False  # gone


def test_a_peer_that_said_hello_before() -> None:
    clock, support = Clock(), PeerSupport()
    assert support.status(A, clock.now) == "unknown" and support.version(A) is None
    support.connected(A, clock.now)
    support.hello(A, 2, clock.now)
    assert support.status(A, clock.now + 1000) == "yes" and support.version(A) == 2
    support.disconnected(A)
    assert support.status(A, clock.now) == "unknown" and not support.ready(A)
    support.connected(A, clock.now)
    # known from before: "yes", but not ready (no hello on this connection yet); asked, it must answer
    assert support.status(A, clock.now + 10 * HELLO_TIMEOUT) == "yes" and not support.ready(A)
    assert support.ask(A, clock.now)
    assert support.status(A, clock.now + HELLO_TIMEOUT - 1) == "yes"
    assert support.status(A, clock.now + HELLO_TIMEOUT) == "no"
    assert support.due_unsupported(clock.now + HELLO_TIMEOUT) == [A]


def test_hello_before_the_connect_event_counts() -> None:
    clock, support = Clock(), PeerSupport()
    support.hello(A, 1, clock.now)
    clock.advance(1)
    support.connected(A, clock.now)
    assert support.ready(A) and support.status(A, clock.now + HELLO_TIMEOUT) == "yes"


def test_due_unsupported_names_each_peer_sorted() -> None:
    clock, support = Clock(), PeerSupport(hello_timeout=5)
    for peer in (C, A, B):
        support.connected(peer, clock.now)
        support.ask(peer, clock.now)
    support.hello(B, 1, clock.now)
    assert support.due_unsupported(clock.now + 5) == [A, C]
    assert [support.status(p, clock.now + 5) for p in (A, B, C)] == ["no", "yes", "no"]


# -- InFlight -------------------------------------------------------------------------


def test_due_after_retransmit_after_without_an_ack() -> None:
    clock, in_flight = Clock(), InFlight()
    assert not in_flight.due(A, clock.now) and in_flight.highest_sent(A) == 0
    in_flight.sent(A, 1, clock.now)
    assert not in_flight.due(A, clock.now + RETRANSMIT_AFTER - 0.1)
    assert in_flight.due(A, clock.now + RETRANSMIT_AFTER)
    assert not in_flight.due(B, clock.now + RETRANSMIT_AFTER)  # per peer
    clock.advance(RETRANSMIT_AFTER)
    in_flight.sent(A, 1, clock.now)  # sent again: the wait starts over
    assert not in_flight.due(A, clock.now + RETRANSMIT_AFTER - 0.1)
    assert in_flight.acked(A, 1) == [1]
    assert not in_flight.due(A, clock.now + 100 * RETRANSMIT_AFTER)


# (id, acks received in turn, what each delivers), after seqs 1..5 were sent
ACKED: list[tuple[str, list[int], list[list[int]]]] = [
    ("cumulative", [3], [[1, 2, 3]]),
    ("all-at-once", [5], [[1, 2, 3, 4, 5]]),
    ("nothing-yet", [0], [[]]),
    ("one-by-one", [1, 2, 3], [[1], [2], [3]]),
    ("repeated-and-stale", [3, 3, 2, 5], [[1, 2, 3], [], [], [4, 5]]),
    ("beyond-highest-sent-ignored", [6, 2**64 - 1, 4], [[], [], [1, 2, 3, 4]]),
]


@pytest.mark.parametrize(("acks", "delivered"), [c[1:] for c in ACKED], ids=[c[0] for c in ACKED])
def test_acked(acks: list[int], delivered: list[list[int]]) -> None:
    in_flight = InFlight()
    for seq in (1, 2, 3, 4, 5):
        in_flight.sent(A, seq, 0.0)
    assert [in_flight.acked(A, seq) for seq in acks] == delivered
    assert in_flight.acked(B, 5) == []  # another peer's ack delivers nothing here
    assert in_flight.highest_sent(A) == 5
    assert in_flight.due(A, RETRANSMIT_AFTER) == (sum(map(len, delivered)) < 5)


def test_reset_forgets_the_peer() -> None:
    in_flight = InFlight()
    for peer, seq in ((A, 1), (A, 2), (B, 7)):
        in_flight.sent(peer, seq, 0.0)
    in_flight.reset(A)
    assert in_flight.highest_sent(A) == 0 and not in_flight.due(A, RETRANSMIT_AFTER)
    assert in_flight.acked(A, 2) == []  # a late ack of the old connection: ignored
    assert in_flight.highest_sent(B) == 7 and in_flight.due(B, RETRANSMIT_AFTER)
