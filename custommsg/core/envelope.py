"""Acknowledged delivery between two custommsg nodes: the wire format and the rules (sans I/O).

Messages (integers big-endian; each is ``u16 type || body``, as in BOLT #1)::

    type   name      body                                      body size
    47431  hello     u16 version || u8 flags                   3 or more
    47433  envelope  u64 stream || u64 seq || inner message    16 + (2..65517)
    47435  ack       u64 stream || u64 seq                     16
    47437  envelope, more in flight: as 47433                  16 + (2..65517)

The types are odd ("it's ok to be odd": a node without the protocol ignores them) and
collide with no type of the bLIP-0002 registry or of another known protocol.

hello: ``version`` is 1 (0 is malformed); ``flags`` bit 0 is ``reply``, bit 1 is ``batch``
(the node reads 47437). A node sends a
hello with reply=0 to a peer it has acknowledged messages for, once per connection, and
to no other (a peer that asked for nothing hears nothing); a node that receives one
answers with its own hello with reply=1; a reply is never answered (no loop). Unknown flag bits,
and bytes after ``flags`` (future versions), are ignored; a shorter body is malformed.

47437 is an envelope whose sender has earlier envelopes of the stream unacknowledged: the
receiver may delay its ack (a cumulative ack then covers several), where a 47433 is
acknowledged at once, so a message sent on its own waits for nothing. It goes only to a peer
whose hello on this connection set ``batch``; a node without it never sees one.

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
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ACK_UNSUPPORTED, INVALID_PARAMETER, MSG_TOO_LONG, CustomMsgError, ValidationError
from .wire import MAX_MESSAGE_LEN, TYPE_LEN, Message

HELLO = 47431
ENVELOPE = 47433
ACK = 47435
ENVELOPE_MORE = 47437
ACK_TYPES = frozenset({HELLO, ENVELOPE, ACK, ENVELOPE_MORE})

VERSION = 1
REPLY_FLAG = 0x01
BATCH_FLAG = 0x02
VERSION_LEN = 2
HELLO_LEN = VERSION_LEN + 1  # u16 version || u8 flags: the least a hello body holds
U64_LEN = 8
ACK_LEN = 2 * U64_LEN  # u64 stream || u64 seq, also the head of an envelope's body
MIN_INNER_LEN = TYPE_LEN
# BOLT #1: "the maximum possible size of a message is 65535 bytes"; less our type, stream and seq.
ENVELOPE_OVERHEAD = TYPE_LEN + ACK_LEN  # an envelope is its inner message and these 18 bytes
MAX_INNER_LEN = MAX_MESSAGE_LEN - ENVELOPE_OVERHEAD  # 65517

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


# The fixed layouts, big-endian (BOLT #1: "All data fields are unsigned big-endian unless
# otherwise specified"): what follows each type, and the type itself.
_TYPE = struct.Struct(">H")
_HELLO = struct.Struct(">HB")  # version, flags
_STREAM_SEQ = struct.Struct(">QQ")  # an ack's body, and the head of an envelope's body


def _check(value: int, bits: int, name: str, least: int = 0) -> None:
    """ValidationError unless least <= value < 2**bits."""
    if not least <= value < 2**bits:
        raise ValidationError(INVALID_PARAMETER, f"{name} must be in {least}..{2**bits - 1}", {name: value})


class _Frame:
    """What the three messages share: ``u16 type || body()``, as a Message or as bytes."""

    type: ClassVar[int]

    def body(self) -> bytes:
        raise NotImplementedError

    def wire_type(self) -> int:
        return self.type

    def message(self) -> Message:
        return Message(self.wire_type(), self.body())

    def serialize(self) -> bytes:
        return _TYPE.pack(self.wire_type()) + self.body()


@dataclass(frozen=True)
class Hello(_Frame):
    version: int = VERSION
    reply: bool = False
    batch: bool = False  # the sender reads 47437; ours always say so
    type: ClassVar[int] = HELLO

    def body(self) -> bytes:
        _check(self.version, 16, "version", 1)
        return _HELLO.pack(self.version, (REPLY_FLAG if self.reply else 0) | (BATCH_FLAG if self.batch else 0))



@dataclass(frozen=True)
class Envelope(_Frame):
    stream: int
    seq: int
    inner: Message
    more: bool = False  # earlier envelopes of the stream are unacknowledged: goes as 47437
    type: ClassVar[int] = ENVELOPE

    def wire_type(self) -> int:
        return ENVELOPE_MORE if self.more else ENVELOPE

    def body(self) -> bytes:
        check_inner(self.inner)
        _check(self.stream, 64, "stream")
        _check(self.seq, 64, "seq", 1)
        _check(self.inner.type, 16, "inner_type")
        return _STREAM_SEQ.pack(self.stream, self.seq) + self.inner.serialize()



@dataclass(frozen=True)
class Ack(_Frame):
    stream: int
    seq: int
    type: ClassVar[int] = ACK

    def body(self) -> bytes:
        _check(self.stream, 64, "stream")
        _check(self.seq, 64, "seq")
        return _STREAM_SEQ.pack(self.stream, self.seq)



AckMessage = Hello | Envelope | Ack


def check_inner(inner: Message) -> None:
    """Refuse a message the envelope cannot carry: MSG_TOO_LONG, with data {length, max}."""
    if len(inner) > MAX_INNER_LEN:
        too_long = f"msg is {len(inner)} bytes: acknowledged, it holds at most {MAX_INNER_LEN}, type included"
        raise ValidationError(MSG_TOO_LONG, too_long, {"length": len(inner), "max": MAX_INNER_LEN})


def parse_hello(body: bytes) -> Hello:
    if len(body) < HELLO_LEN:
        raise MalformedAck("hello too short", type=HELLO, length=len(body), min=HELLO_LEN)
    version, flags = _HELLO.unpack_from(body)  # further bytes (future versions): ignored
    if version == 0:
        raise MalformedAck("hello version 0", type=HELLO)
    return Hello(version, bool(flags & REPLY_FLAG), bool(flags & BATCH_FLAG))  # other flag bits: ignored


def parse_envelope(body: bytes, more: bool = False) -> Envelope:
    kind = ENVELOPE_MORE if more else ENVELOPE
    inner = body[ACK_LEN:]
    if len(inner) < MIN_INNER_LEN:
        raise MalformedAck("envelope too short", type=kind, length=len(body), min=ACK_LEN + MIN_INNER_LEN)
    if len(inner) > MAX_INNER_LEN:  # cannot come over BOLT #1; refused so that parse and serialize agree
        raise MalformedAck("envelope too long", type=kind, length=len(body), max=ACK_LEN + MAX_INNER_LEN)
    stream, seq = _STREAM_SEQ.unpack_from(body)
    if seq == 0:
        raise MalformedAck("envelope seq 0", type=kind, stream=stream)
    (inner_type,) = _TYPE.unpack_from(inner)
    return Envelope(stream, seq, Message(inner_type, bytes(inner[TYPE_LEN:])), more)


def parse_ack(body: bytes) -> Ack:
    if len(body) != ACK_LEN:
        raise MalformedAck("ack not 16 bytes", type=ACK, length=len(body))
    return Ack(*_STREAM_SEQ.unpack(body))


def answer(hello: Hello) -> Hello | None:
    """Our hello in answer to the peer's: a reply to a first hello, nothing to a reply (so no loop)."""
    return None if hello.reply else Hello(VERSION, reply=True, batch=True)


_PARSERS: dict[int, Callable[[bytes], AckMessage]] = {
    HELLO: parse_hello, ENVELOPE: parse_envelope, ACK: parse_ack,
    ENVELOPE_MORE: lambda body: parse_envelope(body, more=True),
}


def parse(raw: bytes) -> AckMessage:
    """A whole message (``u16 type || body``) of a type in ACK_TYPES -> its value; the inverse of serialize()."""
    if not TYPE_LEN <= len(raw) <= MAX_MESSAGE_LEN:
        raise MalformedAck("bad message length", length=len(raw))
    (msg_type,) = _TYPE.unpack_from(raw)
    parser = _PARSERS.get(msg_type)
    if parser is None:
        raise MalformedAck("not an acknowledged-delivery type", type=msg_type)
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
