"""BOLT #1 framing of a custom message, and the checks a message must pass to be sent.

A message, as ``sendcustommsg`` and the ``custommsg`` hook carry it, is
``u16 type || body``: the type is big-endian and there is no length prefix (the
transport adds it). :func:`parse_message` and :meth:`Message.serialize` are exact
inverses. Nothing here does I/O.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from pyln.proto.primitives import PublicKey

from .errors import (
    INVALID_NODE_ID,
    MSG_NOT_HEX,
    MSG_TOO_LONG,
    MSG_TOO_SHORT,
    SELF_NODE_ID,
    TYPE_EVEN,
    TYPE_INTERNAL,
    ValidationError,
)

# BOLT #1: "The messages are grouped logically into five groups, ordered by the
# most significant bit that is set: ... Custom (types 32768-65535)".
CUSTOM_RANGE = range(32768, 65536)

TYPE_LEN = 2
# BOLT #1: "the maximum possible size of a message is 65535 bytes" (type included).
MAX_MESSAGE_LEN = 65535
# BOLT #1: "A message consists of a 2-byte big-endian type" - so 2 bytes at least.
MIN_MESSAGE_LEN = TYPE_LEN

NODE_ID_LEN = 33

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

_HEXDIGITS = frozenset(string.hexdigits)


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

    @property
    def text(self) -> str | None:
        """The body as text, when it is valid UTF-8 (most JSON protocols are)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None


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
    return Message(int.from_bytes(raw[:TYPE_LEN], "big"), bytes(raw[TYPE_LEN:]))


def decode_hex(value: Any, name: str = "msg") -> bytes:
    """Hex as lightningd's JSON parser would read it, refusing what it gets wrong.

    lightning-cli sends a digits-only argument without a leading zero as a JSON
    number (cli/lightning-cli.c: is_literal), and lightningd decodes the number's
    digits as hex; so an ``int`` is read by its decimal digits, as lightningd does.
    Everything else must be a string of an even number of hex digits.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(
            MSG_NOT_HEX,
            f"{name} must be a string of hex digits, not {_json_kind(value)}",
            {"reason": "not a string"},
        )
    if isinstance(value, int):
        try:
            text = str(value)
        except ValueError:  # more digits than Python will print (sys.get_int_max_str_digits)
            raise ValidationError(
                MSG_TOO_LONG,
                f"{name} has far more than {2 * MAX_MESSAGE_LEN} hex digits",
                {"max": MAX_MESSAGE_LEN},
            ) from None
    else:
        text = value
    if text.startswith("-") or not _HEXDIGITS.issuperset(text):
        bad = next((c for c in text if c not in _HEXDIGITS), "-")
        raise ValidationError(
            MSG_NOT_HEX,
            f"{name} must contain only hex digits (0-9, a-f), found {bad!r}"
            + (": write it without the 0x prefix" if text[:2] in ("0x", "0X") else ""),
            {"reason": "not hex"},
        )
    if len(text) % 2:
        raise ValidationError(
            MSG_NOT_HEX,
            f"{name} has an odd number of hex digits ({len(text)}): each byte is two digits",
            {"reason": "odd length", "digits": len(text)},
        )
    return bytes.fromhex(text)


def decode_message_hex(value: Any) -> Message:
    return parse_message(decode_hex(value))


def parse_node_id(value: Any, name: str = "node_id") -> str:
    """A node id is a 33-byte compressed secp256k1 point, as 66 hex digits.

    Returns it in lower case, the form lightningd prints.
    """
    if not isinstance(value, str):
        raise ValidationError(
            INVALID_NODE_ID,
            f"{name} must be a string of 66 hex digits, not {_json_kind(value)}",
            {"reason": "not a string"},
        )
    if len(value) != 2 * NODE_ID_LEN or not _HEXDIGITS.issuperset(value):
        raise ValidationError(
            INVALID_NODE_ID,
            f"{name} must be 66 hex digits (a 33-byte compressed public key), got {value!r}",
            {"reason": "not 33 bytes of hex"},
        )
    raw = bytes.fromhex(value)
    try:
        PublicKey(raw)  # checks the 02/03 prefix, then that the point is on the curve
    except (ValueError, TypeError):
        reason = "prefix" if raw[0] not in (2, 3) else "not on curve"
        raise ValidationError(
            INVALID_NODE_ID,
            f"{name} {value} is not a valid public key: "
            + ("a compressed key starts with 02 or 03" if reason == "prefix" else "not a point on secp256k1"),
            {"reason": reason},
        ) from None
    return value.lower()


def check_sendable(message: Message, allow_even: bool = False) -> None:
    """Refuse types lightningd handles itself, and even types unless asked for."""
    name = INTERNAL_TYPES.get(message.type)
    if name is not None:
        raise ValidationError(
            TYPE_INTERNAL,
            f"type {message.type} ({name}) is handled by Core Lightning itself and cannot "
            "be sent as a custom message",
            {"type": message.type, "name": name},
        )
    # BOLT #1: "upon receiving an unknown even message: MUST close the connection".
    if message.type % 2 == 0 and not allow_even:
        raise ValidationError(
            TYPE_EVEN,
            f"type {message.type} is even: a peer that does not know it must close the "
            "connection (BOLT #1 \"it's ok to be odd\"); use an odd type, or pass "
            "allow_even=true if the peer declared support for it",
            {"type": message.type},
        )


def check_send_request(
    node_id: Any, msg: Any, own_id: str | None, allow_even: bool = False
) -> tuple[str, Message]:
    """All the checks of ``custommsg-send`` that need no peer state, in README order."""
    peer_id = parse_node_id(node_id)
    if own_id is not None and peer_id == own_id:
        raise ValidationError(
            SELF_NODE_ID,
            "node_id is this node's own id: a node cannot send itself a peer message",
            {"node_id": peer_id},
        )
    message = decode_message_hex(msg)
    check_sendable(message, allow_even)
    return peer_id, message


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
