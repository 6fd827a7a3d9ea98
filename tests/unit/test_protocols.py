"""core/protocols.py: protocols described in Core Lightning's wire CSV, fields to bytes and bytes to fields.

Tables first: one message per field type pyln-proto supports, each with its fields and the literal
bytes they are on the wire (both ways); then what BOLT #1 makes a reader refuse; specs refused
with their line; the registry's checks; and the fuzz: any bytes from a peer decode to fields or to
a reason, never to an exception, and what pyln-proto itself reads agrees with us.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyln.proto.message import Message as PylnMessage
from pyln.proto.message import MessageNamespace
from pyln.proto.message.fundamental_types import IntegerType

from custommsg.core import errors
from custommsg.core.errors import ValidationError
from custommsg.core.protocols import (
    KNOWN_TYPES,
    PROTOCOLS_FOLDER,
    Protocols,
    Spec,
    SpecError,
    parse_spec,
)
from custommsg.core.records import Decoded
from custommsg.core.shapes import FieldError
from tests.fuzz import fuzz

POINT = "02" + "11" * 32
SHA = "ab" * 32

# Every field type: (CSV type, JSON value, its bytes). Each becomes msgtype t,32769 with one field v.
FIELD_TYPES: list[tuple[str, Any, str]] = [
    ("byte", 255, "ff"),
    ("u8", 7, "07"),
    ("u16", 0x1234, "1234"),
    ("u32", 0xDEADBEEF, "deadbeef"),
    ("u64", 2**64 - 1, "ffffffffffffffff"),
    ("s8", -1, "ff"),
    ("s16", -2, "fffe"),
    ("s32", -(2**31), "80000000"),
    ("s64", 2**63 - 1, "7fffffffffffffff"),
    ("bigsize", 0, "00"),
    ("bigsize", 252, "fc"),
    ("bigsize", 253, "fd00fd"),
    ("bigsize", 65536, "fe00010000"),
    ("bigsize", 2**32, "ff0000000100000000"),
    ("point", POINT, POINT),
    ("sha256", SHA, SHA),
    ("channel_id", "00" * 32, "00" * 32),
    ("chain_hash", "06" * 32, "06" * 32),
    ("signature", "aa" * 64, "aa" * 64),
    ("short_channel_id", "103x1x0", "0000670000010000"),
    ("short_channel_id", "16777215x16777215x65535", "ffffffffffffffff"),
]


def spec_of(csv: str, source: str = "test.csv", from_folder: bool = False) -> Spec:
    spec = parse_spec(csv, source)
    spec.from_folder = from_folder
    return spec


def registry(csv: str, from_folder: bool = False) -> Protocols:
    protocols = Protocols({37913: "bLIP-50"})
    protocols.register(spec_of(csv, from_folder=from_folder))
    return protocols


def pyln_namespace(csv: str) -> MessageNamespace:
    namespace = MessageNamespace()
    namespace.add_fundamentaltype(IntegerType("u8", 1, "B"))
    namespace.load_csv([line for line in csv.splitlines() if line.strip()])
    return namespace


@pytest.mark.parametrize(("csv_type", "value", "wire"), FIELD_TYPES)
def test_each_field_type_both_ways(csv_type: str, value: Any, wire: str) -> None:
    # given a message of one field of that type
    protocols = registry(f"msgtype,t,32769\nmsgdata,t,v,{csv_type},\n")
    # when encoded, then these bytes; when they are decoded, then the same fields
    raw = protocols.encode("t", {"v": value})
    assert raw.hex() == "8001" + wire
    assert protocols.decode(raw) == Decoded("t", {"v": value})
    # and pyln-proto reads the same bytes to the same fields (to_py)
    message = PylnMessage.read(pyln_namespace(f"msgtype,t,32769\nmsgdata,t,v,{csv_type},\n"), io.BytesIO(raw))
    assert message is not None and message.to_py() == {"v": value}


ARRAYS_CSV = """
msgtype,arrays,32771
msgdata,arrays,fixed,u16,2
msgdata,arrays,n,u16,
msgdata,arrays,blob,byte,n
msgdata,arrays,m,u8,
msgdata,arrays,points,point,m
msgdata,arrays,also,u32,m
msgdata,arrays,label_len,u8,
msgdata,arrays,label,utf8,label_len
msgdata,arrays,hop_count,u8,
msgdata,arrays,hops,hop,hop_count
subtype,hop
subtypedata,hop,scid,short_channel_id,
subtypedata,hop,fee,u32,
"""
ARRAYS_FIELDS = {
    "fixed": [1, 2],
    "blob": "c0ffee",
    "points": [POINT],
    "also": [9],
    "label": "h\u00e9",
    "hops": [{"scid": "1x2x3", "fee": 10}, {"scid": "4x5x6", "fee": 0}],
}
ARRAYS_WIRE = (
    "8003" "00010002" "0003c0ffee" "01" + POINT + "00000009" "03" "68c3a9"
    "02" "0000010000020003" "0000000a" "0000040000050006" "00000000"
)


def test_arrays_fixed_counted_shared_count_text_and_subtypes() -> None:
    protocols = registry(ARRAYS_CSV)
    raw = protocols.encode("arrays", ARRAYS_FIELDS)
    assert raw.hex() == ARRAYS_WIRE
    assert protocols.decode(raw) == Decoded("arrays", ARRAYS_FIELDS)
    # pyln-proto agrees, but for utf8 (it gives the byte values; we give the text). It cannot read a
    # count shared by two arrays (KeyError in LengthFieldType.len_fields_bad), so it reads them without "also".
    without_also = ARRAYS_CSV.replace("msgdata,arrays,also,u32,m\n", "")
    raw = registry(without_also).encode("arrays", {k: v for k, v in ARRAYS_FIELDS.items() if k != "also"})
    pyln = PylnMessage.read(pyln_namespace(without_also), io.BytesIO(raw))
    assert pyln is not None
    assert pyln.to_py() == {k: v for k, v in ARRAYS_FIELDS.items() if k != "also"} | {"label": [0x68, 0xC3, 0xA9]}


TLV_CSV = """
msgtype,offer,32773
msgdata,offer,amount,u64,
msgdata,offer,tlvs,offer_tlvs,
tlvtype,offer_tlvs,expiry,1
tlvdata,offer_tlvs,expiry,seconds,tu32,
tlvtype,offer_tlvs,payer,2
tlvdata,offer_tlvs,payer,key,point,
tlvtype,offer_tlvs,note,253
tlvdata,offer_tlvs,note,text,utf8,...
tlvtype,offer_tlvs,hashes,255
tlvdata,offer_tlvs,hashes,h,sha256,...
tlvtype,offer_tlvs,big,65537
tlvdata,offer_tlvs,big,v,tu64,
"""

# (fields, the TLV stream's bytes after amount=1)
TLV_CASES: list[tuple[dict[str, Any], str]] = [
    ({}, ""),
    ({"expiry": {"seconds": 0}}, "0100"),  # a truncated 0 is no bytes
    ({"expiry": {"seconds": 255}}, "0101ff"),
    ({"expiry": {"seconds": 65536}}, "0103010000"),
    ({"payer": {"key": POINT}}, "0221" + POINT),
    ({"note": {"text": "hi"}}, "fd00fd026869"),
    ({"hashes": {"h": [SHA, SHA]}}, "fd00ff40" + SHA + SHA),
    ({"big": {"v": 2**64 - 1}}, "fe0001000108ffffffffffffffff"),
    ({"expiry": {"seconds": 1}, "3": "abcd", "payer": {"key": POINT}}, "010101" "0221" + POINT + "0302abcd"),
    ({"99": ""}, "6300"),  # an unknown odd record, empty
]


@pytest.mark.parametrize(("tlvs", "wire"), TLV_CASES)
def test_tlv_stream_both_ways(tlvs: dict[str, Any], wire: str) -> None:
    protocols = registry(TLV_CSV, from_folder=True)  # payer is even: a folder spec
    fields = {"amount": 1, "tlvs": tlvs}
    raw = protocols.encode("offer", fields)
    assert raw.hex() == "8005" "0000000000000001" + wire
    assert protocols.decode(raw) == Decoded("offer", fields)


def test_tlv_stream_may_be_left_out_when_sending() -> None:
    protocols = registry(TLV_CSV, from_folder=True)
    assert protocols.encode("offer", {"amount": 1}).hex() == "8005" "0000000000000001"


# BOLT #1 makes a reader fail on each of these (after type 32773 and amount=1).
TLV_REFUSED: list[tuple[str, str]] = [
    ("0300" "0100", "not in strictly ascending order"),
    ("0100" "0100", "not in strictly ascending order"),
    ("0400", "unknown even record 4"),
    ("0105", "claims 5 bytes"),
    ("fd0001" "00", "not minimally encoded"),  # type 1 written on 3 bytes
    ("01fd0001" "00", "not minimally encoded"),
    ("fd00", "bigsize needs 3 bytes"),
    ("01", "bigsize needs at least 1 byte"),
    ("0102" "00ff", "not minimally encoded (a leading zero"),  # tu32 with a leading zero
    ("0105" "0102030405", "tu32 is at most 4 bytes"),
    ("0220" + "11" * 32, "needs 33 bytes"),  # payer.key short
    ("0222" + POINT + "00", "record is 34 bytes, its fields take 33"),
    ("fd00ff" "21" + SHA + "00", "h[1]: sha256 needs 32 bytes, 1 left"),  # 33 bytes of sha256...
    ("fd00fd" "01" "ff", "not valid UTF-8"),
]


@pytest.mark.parametrize(("stream", "reason"), TLV_REFUSED)
def test_tlv_stream_refusals(stream: str, reason: str) -> None:
    protocols = registry(TLV_CSV, from_folder=True)
    decoded = protocols.decode(bytes.fromhex("8005" "0000000000000001" + stream))
    assert decoded is not None and decoded.fields is None
    assert decoded.error is not None and reason in decoded.error, decoded.error


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "fixed: 2 elements of at least 2 bytes do not fit in the 0 left"),
        ("0001", "fixed: 2 elements of at least 2 bytes do not fit in the 2 left"),
        ("00010002" "00", "u16 needs 2 bytes, 1 left"),  # n
        ("00010002" "ffff" "00", "65535 elements of at least 1 bytes do not fit in the 1 left"),
        ("00010002" "0000" "ff", "255 elements of at least 33 bytes"),
        ("00010002" "0000" "00" "01" "ff", "not valid UTF-8"),
        ("00010002" "0000" "00" "00" "05" "01", "5 elements of at least 12 bytes"),
    ],
)
def test_truncated_and_lying_messages(body: str, reason: str) -> None:
    decoded = registry(ARRAYS_CSV).decode(bytes.fromhex("8003" + body))
    assert decoded is not None and decoded.error is not None and reason in decoded.error, decoded


def test_a_count_of_2_to_the_64_costs_nothing() -> None:
    # given a u64 count and a body that claims 2^64-1 elements
    protocols = registry("msgtype,t,32769\nmsgdata,t,n,u64,\nmsgdata,t,v,u32,n\n")
    decoded = protocols.decode(bytes.fromhex("8001" "ffffffffffffffff" "00000001"))
    assert decoded is not None and decoded.error is not None and "18446744073709551615 elements" in decoded.error


def test_extra_bytes_after_the_fields_are_ignored() -> None:
    # BOLT #1: "MUST ignore any additional data within a message beyond the length that it expects"
    protocols = registry("msgtype,t,32769\nmsgdata,t,v,u16,\n")
    assert protocols.decode(bytes.fromhex("8001" "0001" "ffff")) == Decoded("t", {"v": 1})


def test_unregistered_type_is_none() -> None:
    protocols = registry("msgtype,t,32769\n")
    assert protocols.decode(bytes.fromhex("8003")) is None
    assert protocols.decode(b"\x80") is None
    assert protocols.decode(bytes.fromhex("8001")) == Decoded("t", {})


# -- sending: fields refused, each naming the field ---------------------------------------

ENCODE_REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({**ARRAYS_FIELDS, "extra": 1}, "extra", "is not a field of arrays"),
    ({k: v for k, v in ARRAYS_FIELDS.items() if k != "blob"}, "blob", "missing"),
    ({**ARRAYS_FIELDS, "n": 3}, "n", "is a count"),
    ({**ARRAYS_FIELDS, "fixed": [1]}, "fixed", "exactly 2 elements"),
    ({**ARRAYS_FIELDS, "fixed": [1, 65536]}, "fixed[1]", "out of range for u16"),
    ({**ARRAYS_FIELDS, "fixed": [1, True]}, "fixed[1]", "must be an integer"),
    ({**ARRAYS_FIELDS, "fixed": [1, 2.0]}, "fixed[1]", "must be an integer"),
    ({**ARRAYS_FIELDS, "fixed": "0102"}, "fixed", "must be an array"),
    ({**ARRAYS_FIELDS, "blob": "abc"}, "blob", "hex digits"),
    ({**ARRAYS_FIELDS, "blob": "ab cd"}, "blob", "hex digits"),
    ({**ARRAYS_FIELDS, "blob": 12}, "blob", "hex digits"),
    ({**ARRAYS_FIELDS, "also": [1, 2]}, "also", "as many elements as points"),
    ({**ARRAYS_FIELDS, "points": ["02"]}, "points[0]", "point is 33 bytes, got 1"),
    ({**ARRAYS_FIELDS, "label": 5}, "label", "must be a string"),
    ({**ARRAYS_FIELDS, "label": "\ud800"}, "label", "lone surrogate"),
    ({**ARRAYS_FIELDS, "hops": [{"scid": "1x2", "fee": 1}]}, "hops[0].scid", "BLOCKxTXxOUT"),
    ({**ARRAYS_FIELDS, "hops": [{"scid": "16777216x0x0", "fee": 1}]}, "hops[0].scid", "out of range"),
    ({**ARRAYS_FIELDS, "hops": [{"scid": "1x2x3"}]}, "hops[0].fee", "missing"),
    ({**ARRAYS_FIELDS, "hops": ["x"]}, "hops[0]", "must be an object"),
    ({**ARRAYS_FIELDS, "blob": "00" * 256, "label": "x" * 256}, "label", "at most 255"),
]


@pytest.mark.parametrize(("fields", "path", "reason"), ENCODE_REFUSED)
def test_encode_refusals_name_the_field(fields: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(FieldError) as caught:
        registry(ARRAYS_CSV).encode("arrays", fields)
    assert caught.value.code == errors.PROTOCOL_FIELDS_INVALID
    assert caught.value.data["name"] == "arrays"
    assert caught.value.data["field"] == path
    assert reason in caught.value.data["reason"], caught.value.data


@pytest.mark.parametrize(
    ("tlvs", "path", "reason"),
    [
        ("x", "tlvs", "must be an object"),
        ({"nope": {}}, "tlvs.nope", "is not a record"),
        ({"1": "00"}, "tlvs.1", "is record expiry"),
        ({"4": "00"}, "tlvs.4", "must be odd"),
        ({"5": "0"}, "tlvs.5", "hex digits"),
        ({"expiry": {"seconds": 2**32}}, "tlvs.expiry.seconds", "out of range for tu32"),
        ({"expiry": {}}, "tlvs.expiry.seconds", "missing"),
        ({"-1": "00"}, "tlvs.-1", "is not a record"),
    ],
)
def test_tlv_encode_refusals(tlvs: Any, path: str, reason: str) -> None:
    with pytest.raises(FieldError) as caught:
        registry(TLV_CSV, from_folder=True).encode("offer", {"amount": 1, "tlvs": tlvs})
    assert caught.value.data["field"] == path and reason in caught.value.data["reason"], caught.value.data


def test_unknown_name_and_fields_not_an_object() -> None:
    protocols = registry("msgtype,t,32769\nmsgdata,t,v,u8,\n")
    with pytest.raises(ValidationError) as caught:
        protocols.encode("nope", {})
    assert caught.value.code == errors.PROTOCOL_UNKNOWN_NAME and caught.value.data == {"name": "nope"}
    with pytest.raises(FieldError) as refused:
        protocols.encode("t", [1])
    assert refused.value.data["field"] == "" and "must be an object" in refused.value.message


# -- specs refused, with their line ----------------------------------------------------------

SPEC_REFUSED: list[tuple[str, int | None, str]] = [
    ("", None, "no msgtype line"),
    ("msgtype,t,32769\nbogus,x\n", 2, "'bogus' is not a line kind"),
    ("msgtype,t,32769,option_x\n", 1, "options are not supported"),
    ("msgtype,t,70000\n", 1, "not a number from 0 to 65535"),
    ("msgtype,t,abc\n", 1, "not a number"),
    ("msgtype,t-x,32769\n", 1, "is not a name"),
    ("msgtype,t,32769\nmsgtype,t,32771\n", 2, "message already exists"),
    ("msgtype,t,32769\nmsgtype,u,32769\n", 2, "already number"),
    ("msgtype,t,32769\nmsgdata,t,v,nosuch,\n", 2, "Unknown type nosuch"),
    ("msgtype,t,32769\nmsgdata,t,v,u8,\nmsgdata,t,v,u8,\n", 3, "duplicate field"),
    ("msgtype,t,32769\nmsgdata,u,v,u8,\n", 2, "unknown"),
    ("msgtype,t,32769\nmsgdata,t,v,u8,x\n", 2, "invalid literal"),
    ("msgtype,t,32769\nmsgdata,t,v,u8,,opt\n", 2, "options are not supported"),
    ("msgtype,t,32769\nmsgdata,t,v,tu32,\n", 2, "only allowed as the last field of a TLV record"),
    ("msgtype,t,32769\nmsgdata,t,n,s8,\nmsgdata,t,v,u8,n\n", 2, "a count is one of"),
    ("msgtype,t,32769\nmsgdata,t,v,byte,70000\n", 1, "a message body is at most 65533"),
    ("msgtype,t,32769\nmsgdata,t,n,u16,\nmsgdata,t,v,e,n\nsubtype,e\n", 3, "its elements could take no bytes"),
    (
        "msgtype,t,32769\nmsgdata,t,s,tl,\nmsgdata,t,v,u8,\ntlvtype,tl,a,1\ntlvdata,tl,a,x,u8,\n",
        2, "must be the last field of a message",
    ),
    ("msgtype,t,32769\nmsgdata,t,v,s,\nsubtype,s\nsubtypedata,s,me,s,\n", 4, "contains itself"),
    ("msgtype,t,32769\nmsgdata,t,s,tl,\ntlvtype,tl,a,1\ntlvtype,tl,b,1\n", 4, "has the number of a"),
    ("msgtype,t,32769\nmsgdata,t,s,tl,\ntlvtype,tl,a,x\n", 3, "record type 'x' is not a number"),
    (
        "msgtype,t,32769\nmsgdata,t,s,tl,\ntlvtype,tl,a,1\ntlvdata,tl,a,x,u8,...\ntlvdata,tl,a,y,u8,\n",
        4, "only allowed as the last field of a TLV record",
    ),
]


@pytest.mark.parametrize(("csv", "line", "reason"), SPEC_REFUSED)
def test_spec_refusals_name_the_line(csv: str, line: int | None, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(csv, "p.csv")
    assert caught.value.code == errors.PROTOCOL_SPEC_INVALID
    assert caught.value.data["line"] == line
    assert reason in caught.value.data["reason"], caught.value.data
    assert caught.value.message.startswith(f"p.csv:{line}: " if line else "p.csv: ")


def test_comments_blank_lines_and_spaces_are_read_as_generate_wire_does() -> None:
    spec = parse_spec("# a comment\n\n  msgtype, t, 32769 \r\nmsgdata,t,v,u8,\n", "p.csv")
    assert [(m.name, m.type, m.line) for m in spec.messages] == [("t", 32769, 3)]


# -- the registry's checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("csv", "from_folder", "code", "reason"),
    [
        ("msgtype,t,18\n", True, errors.PROTOCOL_TYPE_REFUSED, "Core Lightning's ping"),
        ("msgtype,t,37913\n", False, errors.PROTOCOL_TYPE_REFUSED, "read by this plugin itself (bLIP-50)"),
        ("msgtype,e,32768\n", False, errors.PROTOCOL_TYPE_EVEN, PROTOCOLS_FOLDER),
        ("msgtype,other,32769\n", False, errors.PROTOCOL_TYPE_TAKEN, "type 32769 is already t"),
        ("msgtype,t,32771\n", False, errors.PROTOCOL_TYPE_TAKEN, "name is already taken by type 32769"),
    ],
)
def test_registry_refusals(csv: str, from_folder: bool, code: int, reason: str) -> None:
    protocols = registry("msgtype,t,32769\n")
    with pytest.raises(SpecError) as caught:
        protocols.register(spec_of(csv, "second.csv", from_folder))
    assert caught.value.code == code and reason in caught.value.message, caught.value
    assert caught.value.data["source"] == "second.csv" and caught.value.data["line"] == 1
    assert [m.name for s in protocols.specs for m in s.messages] == ["t"]  # nothing of it was added


def test_even_type_from_the_folder_is_registered() -> None:
    protocols = registry("msgtype,t,32768\n", from_folder=True)
    assert protocols.even_types() == [32768]


def test_known_public_types_only_warn() -> None:
    protocols = Protocols()
    warnings = protocols.register(spec_of("msgtype,swap_in,42069\nmsgtype,mine,32769\nmsgtype,cmd,19535\n"))
    assert warnings == [
        "test.csv: swap_in uses type 42069, which is PeerSwap's",
        "test.csv: cmd uses type 19535, which is commando (CLN's commando plugin)'s",
    ]
    assert 42069 in protocols and KNOWN_TYPES[7].startswith("peer storage")


def test_describe_lists_messages_fields_and_records() -> None:
    described = registry(TLV_CSV, from_folder=True).describe()
    assert described[0]["source"] == "test.csv"
    offer = described[0]["messages"][0]
    assert (offer["name"], offer["type"]) == ("offer", 32773)
    assert offer["fields"][0] == {"name": "amount", "type": "u64"}
    tlvs = offer["fields"][1]
    assert tlvs["type"] == "offer_tlvs"
    assert [(r["name"], r["type"]) for r in tlvs["records"]] == [
        ("expiry", 1), ("payer", 2), ("note", 253), ("hashes", 255), ("big", 65537)
    ]
    assert tlvs["records"][2]["fields"] == [{"name": "text", "type": "utf8", "count": "..."}]


# -- fuzz: hostile bytes, and agreement with pyln-proto -------------------------------------------

FUZZ_CSV = ARRAYS_CSV + TLV_CSV
PYLN_CSV = ARRAYS_CSV.replace("msgdata,arrays,also,u32,m\n", "") + TLV_CSV  # see above


@fuzz(400)
@given(st.sampled_from([32771, 32773]), st.binary(max_size=300))
def test_fuzz_any_bytes_decode_to_fields_or_a_reason(msg_type: int, body: bytes) -> None:
    protocols = registry(FUZZ_CSV, from_folder=True)
    raw = msg_type.to_bytes(2, "big") + body
    decoded = protocols.decode(raw)  # never raises
    assert decoded is not None
    assert (decoded.fields is None) != (decoded.error is None)
    if decoded.fields is not None and msg_type == 32773:
        # what was read is sent again unchanged: the same bytes (a TLV stream takes them all)
        assert protocols.encode(decoded.name, decoded.fields) == raw


@fuzz(200)
@given(st.binary(max_size=200))
def test_fuzz_tlv_stream_agrees_with_pyln_where_bolt1_allows_it(stream: bytes) -> None:
    # given the bytes of a TLV stream; when both read them
    raw = bytes.fromhex("8005" "0000000000000001") + stream
    ours = registry(FUZZ_CSV, from_folder=True).decode(raw)
    assert ours is not None
    try:
        theirs = PylnMessage.read(pyln_namespace(PYLN_CSV), io.BytesIO(raw))
        their_fields = theirs.to_py() if theirs is not None else None
    except Exception:
        their_fields = None
    # then whatever we accept, pyln-proto reads the same (it is laxer: it accepts some we refuse)
    if ours.fields is not None:
        assert their_fields is not None
        expected = {**their_fields, "tlvs": {str(k): v for k, v in their_fields["tlvs"].items()}}
        note = expected["tlvs"].get("note")
        if note is not None:
            expected["tlvs"]["note"] = {"text": bytes(note["text"]).decode()}
        assert ours.fields == expected


_values = st.fixed_dictionaries({
    "fixed": st.lists(st.integers(0, 65535), min_size=2, max_size=2),
    "blob": st.binary(max_size=40).map(bytes.hex),
    "label": st.text(max_size=20).filter(lambda t: len(t.encode("utf-8", "surrogatepass")) < 256
                                         and not any("\ud800" <= c <= "\udfff" for c in t)),
    "hops": st.lists(st.fixed_dictionaries({
        "scid": st.tuples(st.integers(0, 2**24 - 1), st.integers(0, 2**24 - 1), st.integers(0, 65535)).map(
            lambda t: f"{t[0]}x{t[1]}x{t[2]}"),
        "fee": st.integers(0, 2**32 - 1),
    }), max_size=5),
})


@fuzz(200)
@given(_values, st.integers(0, 4))
def test_fuzz_fields_round_trip(fields: dict[str, Any], points: int) -> None:
    fields = {**fields, "points": [POINT] * points, "also": list(range(points))}
    protocols = registry(FUZZ_CSV, from_folder=True)
    raw = protocols.encode("arrays", fields)
    assert protocols.decode(raw) == Decoded("arrays", fields)


def test_subtypes_nested_past_pythons_recursion_are_refused() -> None:
    depth = 3000
    lines = ["msgtype,t,32769", "msgdata,t,v,n0,"]
    for i in range(depth):
        lines += [f"subtype,n{i}", f"subtypedata,n{i},x,{f'n{i + 1}' if i + 1 < depth else 'u8'},"]
    with pytest.raises(SpecError) as caught:
        parse_spec("\n".join(lines), "deep.csv")
    assert caught.value.data["reason"] == "subtypes are nested too deeply"


def test_a_subtype_used_many_times_is_compiled_once() -> None:
    # given 40 levels, each subtype holding two of the next: 2^40 paths if each use were compiled again
    lines = ["msgtype,t,32769", "msgdata,t,v,n0,"]
    for i in range(40):
        inner = f"n{i + 1}" if i + 1 < 40 else "u8"
        lines += [f"subtype,n{i}", f"subtypedata,n{i},a,{inner},", f"subtypedata,n{i},b,{inner},"]
    # when parsed; then at once refused, for its size: it was not walked path by path
    with pytest.raises(SpecError) as caught:
        parse_spec("\n".join(lines), "wide.csv")
    assert caught.value.data["reason"] == "t takes at least 1099511627776 bytes: a message body is at most 65533"
