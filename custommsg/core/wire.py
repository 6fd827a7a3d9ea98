"""BOLT #1 framing of a custom message: the type, the body, and the limits on both.

A message, as ``sendcustommsg`` and the ``custommsg`` hook carry it, is
``u16 type || body``: the type is big-endian and there is no length prefix (the
transport adds it). :func:`parse_message` and :meth:`Message.serialize` are exact
inverses. Nothing here does I/O; what a caller may send is decided in ``validate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MSG_TOO_LONG, MSG_TOO_SHORT, ValidationError

# BOLT #1: "The messages are grouped logically into five groups, ordered by the
# most significant bit that is set: ... Custom (types 32768-65535)".
CUSTOM_RANGE = range(32768, 65536)

TYPE_LEN = 2
MAX_TYPE = 2 ** (8 * TYPE_LEN) - 1
# BOLT #1: "the maximum possible size of a message is 65535 bytes" (type included).
MAX_MESSAGE_LEN = 65535
# BOLT #1: "A message consists of a 2-byte big-endian type" - so 2 bytes at least.
MIN_MESSAGE_LEN = TYPE_LEN

NODE_ID_LEN = 33
_LOWER_HEX = frozenset("0123456789abcdef")


def is_node_id_text(value: object) -> bool:
    """Whether ``value`` has the form of a node id as lightningd writes one: 02 or 03, then 64
    lower-case hex digits (the curve check is left to whoever must trust the key)."""
    return (
        isinstance(value, str)
        and len(value) == 2 * NODE_ID_LEN
        and value[:2] in ("02", "03")
        and _LOWER_HEX.issuperset(value)
    )


# The types Core Lightning handles itself: every message of wire/peer_wire.csv but
# peer_storage (7) and peer_storage_retrieval (9). lightningd refuses to send them
# (lightningd/connect_control.c) and never hands them to the custommsg hook
# (connectd/multiplex.c: peer_wire_is_internal). Kept as of CLN v26.06; a later
# CLN that adds one still refuses it natively, so the worst case is a less specific error.
INTERNAL_TYPES: dict[int, str] = {
    0: "protocol_batch_element",
    1: "warning",
    2: "stfu",
    16: "init",
    17: "error",
    18: "ping",
    19: "pong",
    32: "open_channel",
    33: "accept_channel",
    34: "funding_created",
    35: "funding_signed",
    36: "channel_ready",
    38: "shutdown",
    39: "closing_signed",
    40: "closing_complete",
    41: "closing_sig",
    64: "open_channel2",
    65: "accept_channel2",
    66: "tx_add_input",
    67: "tx_add_output",
    68: "tx_remove_input",
    69: "tx_remove_output",
    70: "tx_complete",
    71: "tx_signatures",
    72: "tx_init_rbf",
    73: "tx_ack_rbf",
    74: "tx_abort",
    77: "splice_locked",
    80: "splice_init",
    81: "splice_ack",
    127: "start_batch",
    128: "update_add_htlc",
    130: "update_fulfill_htlc",
    131: "update_fail_htlc",
    132: "commitment_signed",
    133: "revoke_and_ack",
    134: "update_fee",
    135: "update_fail_malformed_htlc",
    136: "channel_reestablish",
    137: "update_blockheight",
    256: "channel_announcement",
    257: "node_announcement",
    258: "channel_update",
    259: "announcement_signatures",
    261: "query_short_channel_ids",
    262: "reply_short_channel_ids_end",
    263: "query_channel_range",
    264: "reply_channel_range",
    265: "gossip_timestamp_filter",
    513: "onion_message",
}

# Types other software on a CLN node already uses: named in errors and docs.
PEER_STORAGE = 7
PEER_STORAGE_RETRIEVAL = 9
COMMANDO_TYPES = frozenset({19533, 19535, 22859, 22861})

@dataclass(frozen=True)
class Message:
    """One custom message: its type and the bytes after the type."""

    type: int
    body: bytes = b""

    def serialize(self) -> bytes:
        return self.type.to_bytes(TYPE_LEN, "big") + self.body

    def hex(self) -> str:
        return self.serialize().hex()

    def __len__(self) -> int:
        return TYPE_LEN + len(self.body)


def parse_message(raw: bytes) -> Message:
    """``u16 type || body`` -> :class:`Message`; the inverse of ``serialize``."""
    if len(raw) < MIN_MESSAGE_LEN:
        raise ValidationError(
            MSG_TOO_SHORT,
            f"msg is {len(raw)} bytes: a message is at least its {TYPE_LEN}-byte type",
            {"length": len(raw), "min": MIN_MESSAGE_LEN},
        )
    if len(raw) > MAX_MESSAGE_LEN:
        raise ValidationError(
            MSG_TOO_LONG,
            f"msg is {len(raw)} bytes: BOLT #1 allows at most {MAX_MESSAGE_LEN} bytes, "
            "type included (lightningd would silently truncate it)",
            {"length": len(raw), "max": MAX_MESSAGE_LEN},
        )
    return Message(message_type(raw), bytes(message_body(raw)))


def message_type(raw: bytes) -> int:
    """The type of a serialized message (``raw`` holds at least its :data:`TYPE_LEN` bytes)."""
    return int.from_bytes(raw[:TYPE_LEN], "big")


def message_body(raw: bytes) -> bytes:
    """What follows the type in a serialized message."""
    return raw[TYPE_LEN:]
