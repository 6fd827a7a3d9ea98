"""Acknowledged delivery between two custommsg nodes: the wire format and the rules (sans I/O).

Messages (integers big-endian; each is ``u16 type || body``, as in BOLT #1)::

    type   name      body                                      body size
    47431  hello     u16 version || u8 flags                   3 or more
    47433  envelope  u64 stream || u64 seq || inner message    16 + (2..65517)
    47435  ack       u64 stream || u64 seq                     16

The types are odd ("it's ok to be odd": a node without the protocol ignores them) and
collide with no type of the bLIP-0002 registry or of another known protocol.

hello: ``version`` is 1 (0 is malformed); ``flags`` bit 0 is ``reply``. Each side sends a
hello with reply=0 to every peer once per connection; a node that receives one answers
with its own hello with reply=1; a reply is never answered (no loop). Unknown flag bits,
and bytes after ``flags`` (future versions), are ignored; a shorter body is malformed.

envelope: ``stream`` is a random 64-bit id the *sender* chose for its messages to that
peer, kept in its database. ``seq`` starts at 1 and grows by 1 per acknowledged message
to that peer; 0 is malformed. The sender starts a new stream (at seq 1) after its database
was wiped, so its new seq 1 is not taken for a duplicate, and after it gave up on a
message it had sent (its ttl passed unacknowledged): the receiver may never store that
seq, and would take every later one of the stream for a gap. The inner message,
``u16 inner_type || inner_body``, is exactly what the application asked to send: 2 to
MAX_INNER_LEN = 65535 - 2 - 16 = 65517 bytes.

ack: cumulative, "I have committed every message of this stream with seq <= N to my
inbox"; N may be 0 ("nothing yet"). The body is exactly 16 bytes.

Receiver, per (peer, stream), with ``last`` the highest seq stored (0 at first), updated
in the transaction that stores the message: seq == last+1: store the inner message (not
the envelope), last = seq (STORE); seq <= last: DUPLICATE; seq > last+1: GAP, an earlier
one was lost. Only a STORE stores; each answers ack(stream, last): exactly once, in order.

Sender: ack(stream, N) makes every entry of that stream with seq <= N ``delivered``; an
ack for a stream it did not send, or beyond the highest seq it sent in it, is ignored. The
unacknowledged entries go (again), in seq order, when the peer (re)connects and has said
hello, and after RETRANSMIT_AFTER seconds without an ack while it stays connected. A peer
connected HELLO_TIMEOUT seconds without a hello does not speak the protocol: its pending
entries fail, and a new send to it fails at once (ACK_UNSUPPORTED) until it says hello.

This module only decides (the database holds the entries, our stream, ``last`` per
stream); the time is always passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .errors import ACK_UNSUPPORTED, INVALID_PARAMETER, MSG_TOO_LONG, CustomMsgError, ValidationError
from .wire import MAX_MESSAGE_LEN, TYPE_LEN, Message

HELLO = 47431
ENVELOPE = 47433
ACK = 47435
ACK_TYPES = frozenset({HELLO, ENVELOPE, ACK})

VERSION = 1
REPLY_FLAG = 0x01
VERSION_LEN = 2
HELLO_LEN = VERSION_LEN + 1  # u16 version || u8 flags: the least a hello body holds
U64_LEN = 8
ACK_LEN = 2 * U64_LEN  # u64 stream || u64 seq, also the head of an envelope's body
MIN_INNER_LEN = TYPE_LEN
# BOLT #1: "the maximum possible size of a message is 65535 bytes"; less our type, stream and seq.
MAX_INNER_LEN = MAX_MESSAGE_LEN - TYPE_LEN - ACK_LEN  # 65517

RETRANSMIT_AFTER = 10.0  # seconds without an ack, the peer connected, before sending again
HELLO_TIMEOUT = 30.0  # seconds connected without a hello: the peer does not speak the protocol


class MalformedAck(CustomMsgError):
    """The peer sent a hello, envelope or ack that breaks the format above; see data["reason"]. Code
    ACK_UNSUPPORTED: a peer that sends these malformed does not speak this protocol, which is what 3360
    says (INVALID_PARAMETER blames our caller; MSG_TOO_SHORT/LONG are about what we send, and fit few cases).
    """

    def __init__(self, reason: str, **data: Any):
        message = f"malformed acknowledged-delivery message: {reason}"
        super().__init__(ACK_UNSUPPORTED, message, {"reason": reason, **data})


def _uint(value: int, size: int, name: str, least: int = 0) -> bytes:
    """``value`` as ``size`` big-endian bytes; ValidationError unless least <= value < 2**(8*size)."""
    if not least <= value < 2 ** (8 * size):
        raise ValidationError(INVALID_PARAMETER, f"{name} must be in {least}..{2 ** (8 * size) - 1}", {name: value})
    return value.to_bytes(size, "big")


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class Hello:
    version: int = VERSION
    reply: bool = False
    type: ClassVar[int] = HELLO

    def serialize(self) -> bytes:
        flags = REPLY_FLAG if self.reply else 0
        return _uint(HELLO, TYPE_LEN, "type") + _uint(self.version, VERSION_LEN, "version", 1) + bytes([flags])


@dataclass(frozen=True)
class Envelope:
    stream: int
    seq: int
    inner: Message
    type: ClassVar[int] = ENVELOPE

    def serialize(self) -> bytes:
        check_inner(self.inner)
        head = _uint(ENVELOPE, TYPE_LEN, "type") + _uint(self.stream, U64_LEN, "stream")
        inner = _uint(self.inner.type, TYPE_LEN, "inner_type") + self.inner.body
        return head + _uint(self.seq, U64_LEN, "seq", 1) + inner


@dataclass(frozen=True)
class Ack:
    stream: int
    seq: int
    type: ClassVar[int] = ACK

    def serialize(self) -> bytes:
        return _uint(ACK, TYPE_LEN, "type") + _uint(self.stream, U64_LEN, "stream") + _uint(self.seq, U64_LEN, "seq")


AckMessage = Hello | Envelope | Ack


def check_inner(inner: Message) -> None:
    """Refuse a message the envelope cannot carry: MSG_TOO_LONG, with data {length, max}."""
    if len(inner) > MAX_INNER_LEN:
        too_long = f"msg is {len(inner)} bytes: acknowledged, it holds at most {MAX_INNER_LEN}, type included"
        raise ValidationError(MSG_TOO_LONG, too_long, {"length": len(inner), "max": MAX_INNER_LEN})


def parse_hello(body: bytes) -> Hello:
    if len(body) < HELLO_LEN:
        raise MalformedAck("hello too short", type=HELLO, length=len(body), min=HELLO_LEN)
    version = _int(body[:VERSION_LEN])
    if version == 0:
        raise MalformedAck("hello version 0", type=HELLO)
    return Hello(version, bool(body[VERSION_LEN] & REPLY_FLAG))  # other flag bits, further bytes: ignored


def parse_envelope(body: bytes) -> Envelope:
    inner = body[ACK_LEN:]
    if len(inner) < MIN_INNER_LEN:
        raise MalformedAck("envelope too short", type=ENVELOPE, length=len(body), min=ACK_LEN + MIN_INNER_LEN)
    if len(inner) > MAX_INNER_LEN:  # cannot come over BOLT #1; refused so that parse and serialize agree
        raise MalformedAck("envelope too long", type=ENVELOPE, length=len(body), max=ACK_LEN + MAX_INNER_LEN)
    stream, seq = _int(body[:U64_LEN]), _int(body[U64_LEN:ACK_LEN])
    if seq == 0:
        raise MalformedAck("envelope seq 0", type=ENVELOPE, stream=stream)
    return Envelope(stream, seq, Message(_int(inner[:TYPE_LEN]), bytes(inner[TYPE_LEN:])))


def parse_ack(body: bytes) -> Ack:
    if len(body) != ACK_LEN:
        raise MalformedAck("ack not 16 bytes", type=ACK, length=len(body))
    return Ack(_int(body[:U64_LEN]), _int(body[U64_LEN:]))


def answer(hello: Hello) -> Hello | None:
    """Our hello in answer to the peer's: a reply to a first hello, nothing to a reply (so no loop)."""
    return None if hello.reply else Hello(VERSION, reply=True)


_PARSERS: dict[int, Callable[[bytes], AckMessage]] = {HELLO: parse_hello, ENVELOPE: parse_envelope, ACK: parse_ack}


def parse(raw: bytes) -> AckMessage:
    """A whole message (``u16 type || body``) of a type in ACK_TYPES -> its value; the inverse of serialize()."""
    if not TYPE_LEN <= len(raw) <= MAX_MESSAGE_LEN:
        raise MalformedAck("bad message length", length=len(raw))
    parser = _PARSERS.get(_int(raw[:TYPE_LEN]))
    if parser is None:
        raise MalformedAck("not an acknowledged-delivery type", type=_int(raw[:TYPE_LEN]))
    return parser(raw[TYPE_LEN:])


class Decision(enum.Enum):
    STORE = "store"  # seq == last+1: store the inner message, last = seq
    DUPLICATE = "duplicate"  # seq <= last: stored already
    GAP = "gap"  # seq > last+1: an earlier one was lost; the ack makes the sender resend from last+1


def receive_decision(last: int, seq: int) -> Decision:
    """What the receiver does with envelope ``seq``, having stored up to ``last``; then it acks the new last."""
    if last < 0 or seq < 1:
        raise ValueError(f"last must be >= 0 and seq >= 1, not {last} and {seq}")
    if seq == last + 1:
        return Decision.STORE
    return Decision.DUPLICATE if seq <= last else Decision.GAP


Support = Literal["yes", "no", "unknown"]


@dataclass
class _Link:
    since: float | None = None  # connected since; None: not connected
    hello_now: bool = False  # a hello came on this connection
    version: int | None = None  # of the last hello ever received; None: never
    reported: bool = False  # due_unsupported() named it on this connection


class PeerSupport:
    """Which peers speak the protocol, from their hellos and how long they have been connected.

    status(): "yes" once a hello came on this connection, or, before HELLO_TIMEOUT passed on it, if
    one came on an earlier one; "no" once connected HELLO_TIMEOUT without a hello on it; "unknown"
    otherwise. The connect event and a peer's first message race: a hello from a peer not connected
    starts its connection, and connected() on a connected peer changes nothing.
    """

    def __init__(self, hello_timeout: float = HELLO_TIMEOUT):
        self.hello_timeout = hello_timeout
        self._links: dict[str, _Link] = {}

    def connected(self, peer: str, now: float) -> None:
        link = self._links.setdefault(peer, _Link())
        if link.since is None:  # disconnected() cleared the rest
            link.since = now

    def disconnected(self, peer: str) -> None:
        if (link := self._links.get(peer)) is not None:
            link.since, link.hello_now, link.reported = None, False, False

    def hello(self, peer: str, version: int, now: float) -> None:
        self.connected(peer, now)
        self._links[peer].hello_now, self._links[peer].version = True, version

    def status(self, peer: str, now: float) -> Support:
        link = self._links.get(peer, _Link())
        if link.hello_now:
            return "yes"
        if link.since is None:
            return "unknown"
        if now - link.since >= self.hello_timeout:
            return "no"
        return "unknown" if link.version is None else "yes"

    def peers(self) -> list[str]:
        """Every peer seen connected or saying hello."""
        return list(self._links)

    def ready(self, peer: str) -> bool:
        """A hello came on this connection: the time to send its unacknowledged entries."""
        return peer in self._links and self._links[peer].hello_now

    def version(self, peer: str) -> int | None:
        return self._links[peer].version if peer in self._links else None

    def due_unsupported(self, now: float) -> list[str]:
        """The peers whose status has become "no", each named once per connection; sorted."""
        due = sorted(p for p, link in self._links.items() if not link.reported and self.status(p, now) == "no")
        for peer in due:
            self._links[peer].reported = True
        return due


class Retransmitter:
    """Per peer, the in-flight (sent, unacknowledged) seqs of our stream and when each was last sent. The
    caller drops acks for another stream. Lost on a restart or reset(): the database entries stay pending.
    """

    def __init__(self, retransmit_after: float = RETRANSMIT_AFTER):
        self.retransmit_after = retransmit_after
        self._in_flight: dict[str, dict[int, float]] = {}
        self._highest: dict[str, int] = {}

    def sent(self, peer: str, seq: int, now: float) -> None:
        self._in_flight.setdefault(peer, {})[seq] = now
        self._highest[peer] = max(seq, self.highest_sent(peer))

    def acked(self, peer: str, seq: int) -> list[int]:
        """The in-flight seqs ack(seq) delivers, in order; none for an ack beyond the highest seq sent."""
        if seq > self.highest_sent(peer):
            return []
        flight = self._in_flight.get(peer, {})
        done = sorted(s for s in flight if s <= seq)
        for s in done:
            del flight[s]
        return done

    def due(self, peer: str, now: float) -> bool:
        """A seq sent RETRANSMIT_AFTER ago or more is still unacknowledged: send them all again."""
        return any(now - at >= self.retransmit_after for at in self._in_flight.get(peer, {}).values())

    def peers(self) -> list[str]:
        """The peers with seqs in flight."""
        return [peer for peer, flight in self._in_flight.items() if flight]

    def highest_sent(self, peer: str) -> int:
        """The highest seq sent to ``peer`` since the last reset; 0: none."""
        return self._highest.get(peer, 0)

    def reset(self, peer: str) -> None:
        """The peer disconnected: forget what is in flight to it."""
        self._in_flight.pop(peer, None)
        self._highest.pop(peer, None)


HELLO_REPLY_EVERY = 1.0  # seconds: at most one hello of ours in answer to a peer's, per peer


class HelloPacer:
    """How often a peer's hellos may make us act, whatever it sends: our reply to a hello with
    reply=0 at most once per ``reply_every``, and a resend of its unacknowledged entries at most
    once per ``resend_every``. A reply asked for sooner is owed, not dropped (the peer's plugin
    may really have restarted twice, and waits for it): :meth:`due_replies` gives it once its
    time comes. A resend asked for sooner is not needed: what it would send is in flight, and
    the Retransmitter sends it again when it is due. A hello costs its sender 5 bytes; without
    this, each could make us send every unacknowledged entry (up to 65 kB each) again.
    """

    def __init__(self, reply_every: float = HELLO_REPLY_EVERY, resend_every: float = RETRANSMIT_AFTER):
        self.reply_every = reply_every
        self.resend_every = resend_every
        self._replied: dict[str, float] = {}
        self._owed: set[str] = set()
        self._resent: dict[str, float] = {}

    def reply(self, peer: str, now: float) -> bool:
        """The peer asks for our hello: True to send it now, False if it is owed."""
        last = self._replied.get(peer)
        if last is None or now - last >= self.reply_every:
            self._replied[peer] = now
            self._owed.discard(peer)
            return True
        self._owed.add(peer)
        return False

    def resend(self, peer: str, now: float) -> bool:
        """The peer's hello asks for its unacknowledged entries again: True to send them now."""
        last = self._resent.get(peer)
        if last is None or now - last >= self.resend_every:
            self._resent[peer] = now
            return True
        return False

    def due_replies(self, now: float) -> list[str]:
        """The peers whose owed reply may go now (each taken off the owed list); sorted."""
        due = sorted(p for p in self._owed if now - self._replied[p] >= self.reply_every)
        for peer in due:
            self._owed.discard(peer)
            self._replied[peer] = now
        return due

    def forget(self, peer: str) -> None:
        """The peer disconnected: its next connection starts afresh."""
        self._replied.pop(peer, None)
        self._owed.discard(peer)
        self._resent.pop(peer, None)
