"""wire.py and validate.py: BOLT #1 framing, and every check a message must pass before it is sent.

Tables first, then the tests that walk them. Each bad input names the error code a
caller sees and the machine-readable ``data`` that comes with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core import errors, wire
from custommsg.core.errors import ValidationError
from custommsg.core.records import StoredMessage
from custommsg.core.validate import check_send_request, check_sendable, decode_hex, decode_message_hex, parse_node_id
from custommsg.core.wire import (
    COMMANDO_TYPES,
    CUSTOM_RANGE,
    INTERNAL_TYPES,
    MAX_MESSAGE_LEN,
    MIN_MESSAGE_LEN,
    PEER_STORAGE,
    PEER_STORAGE_RETRIEVAL,
    Message,
    parse_message,
)

# Real compressed public keys: k*G for k = 1, 2, 6 (the last has an odd y, so 03).
PEER = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
OWN = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
PEER_03 = "03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556"
X_OF_PEER = PEER[2:]

# x = 5, the smallest x with no point on secp256k1 (y^2 = x^3 + 7 mod p): 132 is not a square
# mod p (Euler's criterion: pow(132, (p - 1) // 2, p) == p - 1), so 02||x and 03||x are no keys.
X_OFF_CURVE = "0000000000000000000000000000000000000000000000000000000000000005"

# The 50 msgtypes of wire/peer_wire.csv that wire/peer_wire.c peer_wire_is_internal calls internal
# (all but peer_storage 7 and peer_storage_retrieval 9), copied by hand (CLN v26.06-258).
CLN_INTERNAL = {
    0: "protocol_batch_element", 1: "warning", 2: "stfu", 16: "init", 17: "error", 18: "ping", 19: "pong",
    32: "open_channel", 33: "accept_channel", 34: "funding_created", 35: "funding_signed",
    36: "channel_ready", 38: "shutdown", 39: "closing_signed", 40: "closing_complete", 41: "closing_sig",
    64: "open_channel2", 65: "accept_channel2", 66: "tx_add_input", 67: "tx_add_output",
    68: "tx_remove_input", 69: "tx_remove_output", 70: "tx_complete", 71: "tx_signatures",
    72: "tx_init_rbf", 73: "tx_ack_rbf", 74: "tx_abort", 77: "splice_locked", 80: "splice_init",
    81: "splice_ack", 127: "start_batch", 128: "update_add_htlc", 130: "update_fulfill_htlc",
    131: "update_fail_htlc", 132: "commitment_signed", 133: "revoke_and_ack", 134: "update_fee",
    135: "update_fail_malformed_htlc", 136: "channel_reestablish", 137: "update_blockheight",
    256: "channel_announcement", 257: "node_announcement", 258: "channel_update",
    259: "announcement_signatures", 261: "query_short_channel_ids", 262: "reply_short_channel_ids_end",
    263: "query_channel_range", 264: "reply_channel_range", 265: "gossip_timestamp_filter",
    513: "onion_message",
}

_65536_BYTES = "8001" + "00" * 65534
_65535_BYTES = "8001" + "00" * 65533

# (id, node_id, msg, allow_even, code, data that must be a subset of error.data)
BAD_SEND: list[tuple[str, Any, Any, bool, int, dict[str, Any]]] = [
    # -- length (BOLT #1: the 2-byte type at least, 65535 bytes at most, type included)
    ("empty-string", PEER, "", False, errors.MSG_TOO_SHORT, {"length": 0, "min": 2}),
    ("1-byte-80", PEER, "80", False, errors.MSG_TOO_SHORT, {"length": 1, "min": 2}),
    ("1-byte-00", PEER, "00", False, errors.MSG_TOO_SHORT, {"length": 1}),
    ("1-byte-ff", PEER, "ff", False, errors.MSG_TOO_SHORT, {"length": 1}),
    ("65536-bytes", PEER, _65536_BYTES, False, errors.MSG_TOO_LONG, {"length": 65536, "max": 65535}),
    ("70000-bytes", PEER, "8001" + "00" * 69998, False, errors.MSG_TOO_LONG, {"length": 70000}),
    ("131072-bytes-wraps-to-0", PEER, "8001" + "00" * 131070, False, errors.MSG_TOO_LONG, {"length": 131072}),
    ("int-1-byte", PEER, 80, False, errors.MSG_TOO_SHORT, {"length": 1}),
    # -- not hex
    ("0x-prefix", PEER, "0x8001", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("0X-prefix", PEER, "0X8001", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("leading-space", PEER, " 8001", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("trailing-space", PEER, "8001 ", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("inner-space", PEER, "80 01", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("trailing-newline", PEER, "8001\n", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("crlf", PEER, "8001\r\n", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("leading-tab", PEER, "\t8001", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("letters-zz", PEER, "zz", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("letter-g", PEER, "80g1", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("non-ascii-e-acute", PEER, "8001\u00e9", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("fullwidth-digits", PEER, "\uff18\uff10\uff10\uff11", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("minus-in-string", PEER, "-8001", False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("negative-int", PEER, -80010001, False, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    # -- odd number of digits
    ("odd-3-digits", PEER, "800", False, errors.MSG_NOT_HEX, {"reason": "odd length", "digits": 3}),
    ("odd-1-digit", PEER, "8", False, errors.MSG_NOT_HEX, {"reason": "odd length", "digits": 1}),
    ("odd-5-digits", PEER, "80011", False, errors.MSG_NOT_HEX, {"reason": "odd length", "digits": 5}),
    ("odd-int-7-digits", PEER, 8001001, False, errors.MSG_NOT_HEX, {"reason": "odd length", "digits": 7}),
    ("int-zero", PEER, 0, False, errors.MSG_NOT_HEX, {"reason": "odd length", "digits": 1}),
    # -- JSON values that are not a string (nor a non-negative integer)
    ("msg-null", PEER, None, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-true", PEER, True, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-false", PEER, False, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-float", PEER, 1.5, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-integral-float", PEER, 80010001.0, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-array", PEER, [], False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-array-of-hex", PEER, ["8001"], False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-object", PEER, {}, False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("msg-bytes", PEER, b"\x80\x01", False, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    # -- node id
    ("id-empty", "", "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-32-bytes", PEER[:-2], "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-34-bytes", PEER + "00", "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-odd-digits", PEER[:-1], "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-non-hex", "02" + "zz" * 32, "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-0x-prefix", "0x" + PEER[:64], "8001", False, errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("id-inner-space", PEER[:30] + " " + PEER[31:], "8001", False, errors.INVALID_NODE_ID,
     {"reason": "not 33 bytes of hex"}),
    ("id-04-prefix", "04" + X_OF_PEER, "8001", False, errors.INVALID_NODE_ID, {"reason": "prefix"}),
    ("id-00-prefix", "00" + X_OF_PEER, "8001", False, errors.INVALID_NODE_ID, {"reason": "prefix"}),
    ("id-05-prefix", "05" + X_OF_PEER, "8001", False, errors.INVALID_NODE_ID, {"reason": "prefix"}),
    ("id-02-off-curve", "02" + X_OFF_CURVE, "8001", False, errors.INVALID_NODE_ID, {"reason": "not on curve"}),
    ("id-03-off-curve", "03" + X_OFF_CURVE, "8001", False, errors.INVALID_NODE_ID, {"reason": "not on curve"}),
    ("id-x-above-p", "02" + "ff" * 32, "8001", False, errors.INVALID_NODE_ID, {"reason": "not on curve"}),
    ("id-null", None, "8001", False, errors.INVALID_NODE_ID, {"reason": "not a string"}),
    ("id-int", 123, "8001", False, errors.INVALID_NODE_ID, {"reason": "not a string"}),
    ("id-bytes", bytes.fromhex(PEER), "8001", False, errors.INVALID_NODE_ID, {"reason": "not a string"}),
    ("id-array", [PEER], "8001", False, errors.INVALID_NODE_ID, {"reason": "not a string"}),
    ("id-bad-wins-over-msg-bad", "02", "zz", False, errors.INVALID_NODE_ID, {}),
    ("own-id", OWN, "8001", False, errors.SELF_NODE_ID, {"node_id": OWN}),
    ("own-id-upper-case", OWN.upper(), "8001", False, errors.SELF_NODE_ID, {"node_id": OWN}),
    ("own-id-wins-over-msg-bad", OWN, "zz", False, errors.SELF_NODE_ID, {"node_id": OWN}),
    # -- type
    ("type-ping", PEER, "0012", False, errors.TYPE_INTERNAL, {"type": 18, "name": "ping"}),
    ("type-ping-allow-even", PEER, "0012", True, errors.TYPE_INTERNAL, {"type": 18, "name": "ping"}),
    ("type-0-with-body", PEER, "0000cafe", False, errors.TYPE_INTERNAL, {"type": 0, "name": "protocol_batch_element"}),
    ("type-onion-message", PEER, "0201", False, errors.TYPE_INTERNAL, {"type": 513, "name": "onion_message"}),
    ("even-custom-32768", PEER, "8000", False, errors.TYPE_EVEN, {"type": 32768}),
    ("even-custom-65534", PEER, "fffe00", False, errors.TYPE_EVEN, {"type": 65534}),
    ("even-non-custom-4", PEER, "0004", False, errors.TYPE_EVEN, {"type": 4}),
    ("even-commando-neighbour-19534", PEER, "4c4e", False, errors.TYPE_EVEN, {"type": 19534}),
]


@pytest.mark.parametrize(
    ("node_id", "msg", "allow_even", "code", "data"),
    [case[1:] for case in BAD_SEND],
    ids=[case[0] for case in BAD_SEND],
)
def test_check_send_request_refuses(node_id: Any, msg: Any, allow_even: bool, code: int, data: dict) -> None:
    # given a bad node id, message or type; when checked; then refused with that code and data
    with pytest.raises(ValidationError) as caught:
        check_send_request(node_id, msg, OWN, allow_even)
    assert caught.value.code == code, caught.value
    assert data.items() <= caught.value.data.items()
    assert caught.value.to_json()["code"] == code


def test_bad_send_table_is_large_enough() -> None:
    assert len(BAD_SEND) >= 40
    assert len({case[0] for case in BAD_SEND}) == len(BAD_SEND)


# (id, node_id, msg, allow_even, expected peer id, expected message)
GOOD_SEND: list[tuple[str, Any, Any, bool, str, Message]] = [
    ("2-bytes-type-only", PEER, "8001", False, PEER, Message(32769, b"")),
    ("hello", PEER, "800168656c6c6f", False, PEER, Message(32769, b"hello")),
    ("upper-case-hex", PEER, "8001ABCDEF", False, PEER, Message(32769, b"\xab\xcd\xef")),
    ("mixed-case-hex", PEER, "8001aBcD", False, PEER, Message(32769, b"\xab\xcd")),
    ("65535-bytes", PEER, _65535_BYTES, False, PEER, Message(32769, bytes(65533))),
    ("int-read-as-hex-digits", PEER, 80010001, False, PEER, Message(32769, b"\x00\x01")),
    ("int-type-only", PEER, 8001, False, PEER, Message(32769, b"")),
    ("peer-storage-7", PEER, "0007beef", False, PEER, Message(PEER_STORAGE, b"\xbe\xef")),
    ("peer-storage-retrieval-9", PEER, "0009", False, PEER, Message(PEER_STORAGE_RETRIEVAL, b"")),
    ("odd-custom-65535", PEER, "ffff", False, PEER, Message(65535, b"")),
    ("odd-non-custom-3", PEER, "0003", False, PEER, Message(3, b"")),
    ("commando-19533", PEER, "4c4d", False, PEER, Message(19533, b"")),
    ("even-allowed", PEER, "8000", True, PEER, Message(32768, b"")),
    ("even-non-custom-allowed", PEER, "000401", True, PEER, Message(4, b"\x01")),
    ("upper-case-node-id", PEER.upper(), "8001", False, PEER, Message(32769, b"")),
    ("node-id-03-prefix", PEER_03, "8001", False, PEER_03, Message(32769, b"")),
]


@pytest.mark.parametrize(
    ("node_id", "msg", "allow_even", "peer", "message"),
    [case[1:] for case in GOOD_SEND],
    ids=[case[0] for case in GOOD_SEND],
)
def test_check_send_request_accepts(node_id: Any, msg: Any, allow_even: bool, peer: str, message: Message) -> None:
    assert check_send_request(node_id, msg, OWN, allow_even) == (peer, message)


def test_no_own_id_means_no_self_check() -> None:
    # given the plugin does not know its own id yet; when sending to OWN; then nothing refuses it
    assert check_send_request(OWN, "8001", None) == (OWN, Message(32769))


def test_upper_case_hex_equals_lower_case() -> None:
    # lightningd's hex decoder (ccan/str/hex) accepts A-F too
    assert decode_hex("8001ABCDEF") == decode_hex("8001abcdef") == b"\x80\x01\xab\xcd\xef"


def test_0x_prefix_message_says_so() -> None:
    with pytest.raises(ValidationError) as caught:
        decode_hex("0x8001")
    assert caught.value.code == errors.MSG_NOT_HEX
    assert "0x" in caught.value.message


def test_non_negative_int_is_read_by_its_decimal_digits() -> None:
    # lightning-cli sends `sendcustommsg ID 80010001` as the JSON number 80010001
    assert decode_hex(80010001) == b"\x80\x01\x00\x01"
    assert decode_message_hex(80010001) == Message(0x8001, b"\x00\x01")


def test_int_with_more_than_4300_digits_is_a_validation_error() -> None:
    # 65536 bytes written as 131072 decimal digits; built without str() so Python allows it
    digits_1 = (10**131072 - 1) // 9  # 111...1
    with pytest.raises(ValidationError) as caught:
        decode_message_hex(digits_1)
    assert caught.value.code == errors.MSG_TOO_LONG


def test_decode_hex_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as caught:
        decode_hex("zz", "reply_prefix")
    assert caught.value.message.startswith("reply_prefix ")


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "null"), (True, "a boolean"), (1.5, "a number"), ([], "an array"), ({}, "an object")],
    ids=["null", "bool", "float", "array", "object"],
)
def test_not_a_string_message_names_the_json_kind(value: Any, kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_hex(value)
    assert caught.value.message == f"msg must be a string of hex digits, not {kind}"


# -- parse_message / Message.serialize: literal bytes both ways --------------

ROUND_TRIP = [
    ("hello", b"\x80\x01hello", Message(32769, b"hello")),
    ("type-only", b"\x80\x01", Message(32769, b"")),
    ("peer-storage", b"\x00\x07\x01\x02", Message(7, b"\x01\x02")),
    ("type-0", b"\x00\x00", Message(0, b"")),
    ("type-65535", b"\xff\xff\x00", Message(65535, b"\x00")),
    ("max-length", b"\xff\xff" + bytes(65533), Message(65535, bytes(65533))),
]


@pytest.mark.parametrize(("raw", "message"), [c[1:] for c in ROUND_TRIP], ids=[c[0] for c in ROUND_TRIP])
def test_parse_and_serialize_are_inverses(raw: bytes, message: Message) -> None:
    assert parse_message(raw) == message
    assert message.serialize() == raw
    assert parse_message(message.serialize()) == message
    assert message.hex() == raw.hex()
    assert len(message) == len(raw)


def test_parse_message_accepts_bytearray_and_returns_bytes_body() -> None:
    message = parse_message(bytearray(b"\x80\x01hi"))
    assert message == Message(32769, b"hi")
    assert type(message.body) is bytes


@pytest.mark.parametrize(
    ("raw", "code", "data"),
    [
        (b"", errors.MSG_TOO_SHORT, {"length": 0, "min": MIN_MESSAGE_LEN}),
        (b"\x80", errors.MSG_TOO_SHORT, {"length": 1, "min": MIN_MESSAGE_LEN}),
        (b"\x80\x01" + bytes(65534), errors.MSG_TOO_LONG, {"length": 65536, "max": MAX_MESSAGE_LEN}),
    ],
    ids=["0-bytes", "1-byte", "65536-bytes"],
)
def test_parse_message_refuses_bad_lengths(raw: bytes, code: int, data: dict) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(raw)
    assert caught.value.code == code
    assert caught.value.data == data


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"hello", "hello"),
        (b"", ""),
        (b'{"a":1}', '{"a":1}'),
        ("h\u00e9llo \u26a1".encode(), "h\u00e9llo \u26a1"),
        (b"\xff", None),
        (b"\xc3", None),  # a 2-byte sequence cut short
        (b"ok\x80", None),
    ],
    ids=["ascii", "empty", "json", "multibyte", "ff", "truncated-sequence", "stray-continuation"],
)
def test_stored_message_text(body: bytes, text: str | None) -> None:
    """A stored message's ``text`` is its body when that is UTF-8, and absent otherwise."""
    stored = StoredMessage(1, PEER, 32769, Message(32769, body).serialize(), 0.0)
    assert stored.to_json().get("text") == text


@pytest.mark.parametrize(
    ("message", "length"),
    [(Message(1), 2), (Message(32769, b"hello"), 7), (Message(32769, bytes(65533)), 65535)],
    ids=["empty-body", "hello", "max"],
)
def test_message_len_counts_the_type(message: Message, length: int) -> None:
    assert len(message) == length


# -- parse_node_id -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(PEER, PEER), (PEER.upper(), PEER), (PEER_03, PEER_03), ("02" + PEER[2:].upper(), PEER)],
    ids=["lower", "upper", "03-prefix", "mixed"],
)
def test_parse_node_id_returns_lower_case(value: str, expected: str) -> None:
    assert parse_node_id(value) == expected


@pytest.mark.parametrize("prefix", ["02", "03"])
def test_parse_node_id_refuses_a_point_off_the_curve(prefix: str) -> None:
    # given 66 hex digits with a valid prefix but an x with no point (x = 5); then refused, and why
    value = prefix + "0000000000000000000000000000000000000000000000000000000000000005"
    with pytest.raises(ValidationError) as caught:
        parse_node_id(value)
    assert caught.value.code == errors.INVALID_NODE_ID
    assert caught.value.message == f"node_id {value} is not a valid public key: not a point on secp256k1"
    assert caught.value.data == {"reason": "not on curve"}


def test_parse_node_id_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_node_id("02", "peer_id")
    assert caught.value.code == errors.INVALID_NODE_ID
    assert caught.value.message.startswith("peer_id ")


# -- types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "name"), sorted(INTERNAL_TYPES.items()), ids=[f"{t}-{n}" for t, n in sorted(INTERNAL_TYPES.items())]
)
def test_every_internal_type_is_refused(msg_type: int, name: str) -> None:
    # given a message of a type lightningd handles itself; even with allow_even; then TYPE_INTERNAL
    msg = msg_type.to_bytes(2, "big").hex() + "00"
    for allow_even in (False, True):
        with pytest.raises(ValidationError) as caught:
            check_send_request(PEER, msg, OWN, allow_even)
        assert caught.value.code == errors.TYPE_INTERNAL
        assert caught.value.data == {"type": msg_type, "name": name}


def test_internal_types_match_peer_wire_is_internal() -> None:
    assert INTERNAL_TYPES == CLN_INTERNAL
    assert len(INTERNAL_TYPES) == 50
    assert PEER_STORAGE not in INTERNAL_TYPES and PEER_STORAGE_RETRIEVAL not in INTERNAL_TYPES
    assert {0, 127, 513} <= INTERNAL_TYPES.keys()
    assert not COMMANDO_TYPES & INTERNAL_TYPES.keys()
    assert not set(CUSTOM_RANGE) & INTERNAL_TYPES.keys()


def test_check_sendable_over_every_type() -> None:
    # given every u16 type; then internal -> TYPE_INTERNAL, else even -> TYPE_EVEN, else sendable
    verdicts: dict[str, int] = {"internal": 0, "even": 0, "ok": 0}
    for msg_type in range(65536):
        try:
            check_sendable(Message(msg_type))
        except ValidationError as exc:
            if msg_type in INTERNAL_TYPES:
                assert exc.code == errors.TYPE_INTERNAL, msg_type
                verdicts["internal"] += 1
            else:
                assert exc.code == errors.TYPE_EVEN and msg_type % 2 == 0, msg_type
                verdicts["even"] += 1
        else:
            assert msg_type not in INTERNAL_TYPES and msg_type % 2 == 1, msg_type
            verdicts["ok"] += 1
    internal_odd = sum(1 for t in INTERNAL_TYPES if t % 2)
    assert verdicts == {"internal": 50, "even": 32768 - (50 - internal_odd), "ok": 32768 - internal_odd}


def test_allow_even_lets_every_non_internal_even_type_through() -> None:
    for msg_type in range(0, 65536, 2):
        if msg_type not in INTERNAL_TYPES:
            check_sendable(Message(msg_type), allow_even=True)


KEY = "02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (KEY, True),
        ("03" + KEY[2:], True),
        ("04" + KEY[2:], False),  # uncompressed prefix
        (KEY.upper(), False),  # lightningd writes lower case
        (KEY[:-2], False),  # 32 bytes
        (KEY + "00", False),  # 34 bytes
        (KEY[:-1] + "g", False),
        ("", False),
        (None, False),
        (int("1" * 66), False),
    ],
)
def test_is_node_id_text(value: Any, expected: bool) -> None:
    assert wire.is_node_id_text(value) is expected
