"""Typed protocols: messages described in Core Lightning's wire CSV, encoded from fields and decoded to fields.

Core Lightning describes its own peer messages in CSV lines (``wire/peer_wire.csv``, read
by ``tools/generate-wire.py``): ``msgtype,<name>,<type>``, ``msgdata,<msg>,<field>,<fieldtype>,<count>``,
``tlvtype,<stream>,<record>,<number>``, ``tlvdata,<stream>,<record>,<field>,<fieldtype>,<count>``,
``subtype,<name>`` and ``subtypedata,<subtype>,<field>,<fieldtype>,<count>``. pyln-proto
(``pyln.proto.message.MessageNamespace``) reads that grammar; :func:`parse_spec` lets it, line
by line so that a refusal names its line, then compiles what it built into this module's
own shapes, refusing what could not be decoded safely. The codec is ours, not pyln-proto's
``Message.read``: a peer's bytes are hostile, and pyln-proto's reader accepts TLV records out
of order, unknown even records and bigsizes that are not minimal (BOLT #1 refuses all three),
and loops for as long as a count field says on element types that take no bytes.

Every field in JSON is what pyln-proto's ``Message.to_py`` gives: integers as numbers, a
``short_channel_id`` as ``BLOCKxTXxOUT``, byte arrays and the fixed-size types (``point``,
``sha256``, ...) as hex, other arrays as lists, a subtype as an object, a TLV stream as an
object by record name (an unknown odd record by its number, as hex); count fields are left
out (they are the length of the arrays they count). One difference: an array of ``utf8`` is
a string (to_py gives a list of byte values). What :func:`Protocols.decode` gives,
:func:`Protocols.encode` takes back unchanged.

Decoding never raises anything but :class:`DecodeError`, and its work is bounded by the
message's length: every array element takes at least one byte (a spec where one could take
none is refused), and a count is checked against the bytes left before anything is read.
Nothing here does I/O: reading files is ``protocols/``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyln.proto.message import MessageNamespace
from pyln.proto.message.array_types import (
    DynamicArrayType,
    EllipsisArrayType,
    LengthFieldType,
    SizedArrayType,
)
from pyln.proto.message.fundamental_types import (
    BigSizeType,
    FieldType,
    FundamentalHexType,
    IntegerType,
    ShortChannelIDType,
    TruncatedIntType,
)
from pyln.proto.message.message import MessageType, SubtypeType, TlvMessageType, TlvStreamType

from .errors import (
    PROTOCOL_FIELDS_INVALID,
    PROTOCOL_SPEC_INVALID,
    PROTOCOL_TYPE_EVEN,
    PROTOCOL_TYPE_REFUSED,
    PROTOCOL_TYPE_TAKEN,
    PROTOCOL_UNKNOWN_NAME,
    CustomMsgError,
    ValidationError,
)
from .records import Decoded
from .wire import (
    COMMANDO_TYPES,
    INTERNAL_TYPES,
    MAX_MESSAGE_LEN,
    MAX_TYPE,
    PEER_STORAGE,
    PEER_STORAGE_RETRIEVAL,
    TYPE_LEN,
)

# The folder, under the network directory, whose specs are read when lightningd asks for the
# manifest: the only ones whose even types lightningd will let through (it reads the manifest's
# ``custommessages`` once, before the plugin's options: lightningd/plugin.c).
PROTOCOLS_FOLDER = "custommsg/protocols"

MAX_BODY_LEN = MAX_MESSAGE_LEN - TYPE_LEN
U64_MAX = 2**64 - 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*\Z")
_SCID = re.compile(r"(0|[1-9][0-9]*)x(0|[1-9][0-9]*)x(0|[1-9][0-9]*)\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})\Z")
# The order pyln-proto's MessageNamespace.load_csv adds lines in: types may be named before
# the line that defines them.
_LINE_KINDS = ("msgtype", "subtype", "tlvtype", "msgdata", "subtypedata", "tlvdata")
_UNSIGNED_COUNTS = ("byte", "u8", "u16", "u32", "u64")


# -- errors -----------------------------------------------------------------------


class SpecError(ValidationError):
    """A protocol description is refused: it does not parse, or breaks a rule (``data``: source, line, reason)."""


class FieldError(ValidationError):
    """Fields given to send do not follow the message's spec (``data``: name, field, reason)."""


class DecodeError(CustomMsgError):
    """A peer's bytes do not follow the spec of their type (h11's RemoteProtocolError)."""

    def __init__(self, path: str, reason: str):
        super().__init__(PROTOCOL_FIELDS_INVALID, f"{path}: {reason}" if path else reason, {"field": path})


def _spec_error(source: str, line: int | None, reason: str, code: int = PROTOCOL_SPEC_INVALID,
                **data: Any) -> SpecError:
    where = f"{source}:{line}" if line is not None else source
    return SpecError(code, f"{where}: {reason}", {"source": source, "line": line, "reason": reason, **data})


# -- shapes: what a field is on the wire and in JSON -----------------------------------


class Shape:
    """One field type; ``min_width`` is the fewest bytes its encoding takes."""

    csv_name = ""
    min_width = 0

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        raise NotImplementedError


class IntShape(Shape):
    def __init__(self, csv_name: str, size: int, signed: bool):
        self.csv_name, self.min_width, self.signed = csv_name, size, signed
        self.low = -(1 << (8 * size - 1)) if signed else 0
        self.high = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        if end - pos < self.min_width:
            raise DecodeError(path, f"{self.csv_name} needs {self.min_width} bytes, {end - pos} left")
        return int.from_bytes(buf[pos:pos + self.min_width], "big", signed=self.signed), pos + self.min_width

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        out += self.to_bytes(check_int(value, path, self.low, self.high, self.csv_name))

    def to_bytes(self, value: int) -> bytes:
        return value.to_bytes(self.min_width, "big", signed=self.signed)


class ScidShape(Shape):
    """BOLT #7: block height (3 bytes), transaction index (3 bytes), output index (2 bytes)."""

    csv_name, min_width = "short_channel_id", 8

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        if end - pos < 8:
            raise DecodeError(path, f"short_channel_id needs 8 bytes, {end - pos} left")
        v = int.from_bytes(buf[pos:pos + 8], "big")
        return f"{v >> 40}x{(v >> 16) & 0xFFFFFF}x{v & 0xFFFF}", pos + 8

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        match = _SCID.match(value) if isinstance(value, str) else None
        if match is None:
            raise field_error(path, "must be a short_channel_id written BLOCKxTXxOUT, like 103x1x0")
        block, tx, outnum = (int(g) for g in match.groups())
        if block >= 1 << 24 or tx >= 1 << 24 or outnum >= 1 << 16:
            raise field_error(path, "out of range: block and tx are 3 bytes, the output 2")
        out += ((block << 40) | (tx << 16) | outnum).to_bytes(8, "big")


class TruncatedShape(Shape):
    """BOLT #1 ``tu16``/``tu32``/``tu64``: big-endian with no leading zero byte, the rest of its TLV record."""

    def __init__(self, csv_name: str, max_bytes: int):
        self.csv_name, self.max_bytes = csv_name, max_bytes

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        if end - pos > self.max_bytes:
            raise DecodeError(path, f"{self.csv_name} is at most {self.max_bytes} bytes, got {end - pos}")
        if end > pos and buf[pos] == 0:
            # BOLT #1: "MUST NOT ... encode with leading zeros" (a reader fails on non-minimal encodings).
            raise DecodeError(path, f"{self.csv_name} is not minimally encoded (a leading zero byte)")
        return int.from_bytes(buf[pos:end], "big"), end

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        v = check_int(value, path, 0, (1 << (8 * self.max_bytes)) - 1, self.csv_name)
        out += v.to_bytes((v.bit_length() + 7) // 8, "big")


class HexShape(Shape):
    """Fixed-size bytes: ``point``, ``sha256``, ``channel_id``, ``chain_hash``, ``signature``, ``bip340sig``.
    A point is not checked to be on the curve."""

    def __init__(self, csv_name: str, size: int):
        self.csv_name, self.min_width = csv_name, size

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        if end - pos < self.min_width:
            raise DecodeError(path, f"{self.csv_name} needs {self.min_width} bytes, {end - pos} left")
        return buf[pos:pos + self.min_width].hex(), pos + self.min_width

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        raw = check_hex(value, path)
        if len(raw) != self.min_width:
            raise field_error(path, f"{self.csv_name} is {self.min_width} bytes, got {len(raw)}")
        out += raw


class BigSizeShape(Shape):
    csv_name, min_width = "bigsize", 1

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        return read_bigsize(buf, pos, end, path)

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        out += bigsize(check_int(value, path, 0, U64_MAX, "bigsize"))


def bigsize(value: int) -> bytes:
    """BOLT #1 BigSize, minimally encoded."""
    if value < 0xFD:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfd" + value.to_bytes(2, "big")
    if value < 1 << 32:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


_BIGSIZE_WIDTH = {0xFD: (2, 0xFD), 0xFE: (4, 1 << 16), 0xFF: (8, 1 << 32)}


def read_bigsize(buf: bytes, pos: int, end: int, path: str) -> tuple[int, int]:
    if pos >= end:
        raise DecodeError(path, "bigsize needs at least 1 byte, 0 left")
    first = buf[pos]
    if first < 0xFD:
        return first, pos + 1
    width, minimum = _BIGSIZE_WIDTH[first]
    if end - pos - 1 < width:
        raise DecodeError(path, f"bigsize needs {width + 1} bytes, {end - pos} left")
    value = int.from_bytes(buf[pos + 1:pos + 1 + width], "big")
    if value < minimum:
        # BOLT #1 BigSize: a reader "MUST fail" on a value that is not minimally encoded.
        raise DecodeError(path, "bigsize is not minimally encoded")
    return value, pos + 1 + width


@dataclass
class ArrayShape(Shape):
    """``count`` is a number (fixed size), the name of a count field before it, or None
    (``...``: the rest of a TLV record)."""

    elem: Shape
    count: int | str | None

    def __post_init__(self) -> None:
        self.csv_name = self.elem.csv_name
        self.min_width = self.count * self.elem.min_width if isinstance(self.count, int) else 0
        self.as_hex = isinstance(self.elem, IntShape) and self.elem.csv_name == "byte"
        self.as_text = isinstance(self.elem, IntShape) and self.elem.csv_name == "utf8"

    def decode_n(self, buf: bytes, pos: int, end: int, path: str, n: int | None) -> tuple[Any, int]:
        width = self.elem.min_width
        if n is None and (self.as_hex or self.as_text):
            n = end - pos
        elif n is not None and n * width > end - pos:
            # Checked before reading: a count field claiming 2^64 elements costs nothing.
            raise DecodeError(path, f"{n} elements of at least {width} bytes do not fit in the {end - pos} left")
        if self.as_hex or self.as_text:
            assert n is not None
            raw = buf[pos:pos + n]
            if self.as_hex:
                return raw.hex(), pos + n
            try:
                return raw.decode("utf-8"), pos + n
            except UnicodeDecodeError:
                raise DecodeError(path, "utf8 array is not valid UTF-8") from None
        values = []
        i = 0
        while (i < n) if n is not None else (pos < end):
            value, pos = self.elem.decode(buf, pos, end, f"{path}[{i}]")
            values.append(value)
            i += 1
        return values, pos

    def encode_items(self, value: Any, path: str) -> list[Any] | bytes:
        """The elements (bytes for a byte or utf8 array), before they are counted."""
        if self.as_hex:
            return check_hex(value, path)
        if self.as_text:
            if not isinstance(value, str):
                raise field_error(path, "must be a string (utf8)")
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError:
                raise field_error(path, "is not valid UTF-8 text (a lone surrogate)") from None
        if not isinstance(value, list):
            raise field_error(path, f"must be an array of {self.elem.csv_name}")
        if len(value) * self.elem.min_width > MAX_BODY_LEN:
            raise field_error(path, f"{len(value)} elements cannot fit in one message")
        return value

    def encode_counted(self, items: list[Any] | bytes, path: str, out: bytearray) -> None:
        if isinstance(self.count, int) and len(items) != self.count:
            raise field_error(path, f"must have exactly {self.count} elements, got {len(items)}")
        if isinstance(items, bytes):
            out += items
            return
        for i, item in enumerate(items):
            self.elem.encode(item, f"{path}[{i}]", out)


@dataclass
class StructShape(Shape):
    """A message's, a subtype's or a TLV record's fields, in order. ``counts`` maps each count
    field to the arrays it counts (left out of JSON: their length says it)."""

    csv_name: str
    fields: list[tuple[str, Shape]] = field(default_factory=list)
    counts: dict[str, list[str]] = field(default_factory=dict)

    def finish(self) -> None:
        self.min_width = sum(s.min_width for _, s in self.fields)

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        counted: dict[str, int] = {}
        for name, shape in self.fields:
            at = f"{path}.{name}" if path else name
            if name in self.counts:
                counted[name], pos = shape.decode(buf, pos, end, at)
            elif isinstance(shape, ArrayShape):
                n = counted[shape.count] if isinstance(shape.count, str) else shape.count
                values[name], pos = shape.decode_n(buf, pos, end, at, n)
            else:
                values[name], pos = shape.decode(buf, pos, end, at)
        return values, pos

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        if not isinstance(value, dict):
            raise field_error(path, f"must be an object with the fields of {self.csv_name}")
        names = {name for name, _ in self.fields if name not in self.counts}
        for key in value:
            if key not in names:
                at = f"{path}.{key}" if path else str(key)
                why = "is a count: it is the length of " + ", ".join(self.counts[key]) if key in self.counts else (
                    f"is not a field of {self.csv_name}")
                raise field_error(at, why)
        items: dict[str, Any] = {}
        for name, shape in self.fields:
            at = f"{path}.{name}" if path else name
            if name in self.counts or isinstance(shape, TlvShape):
                continue
            if name not in value:
                raise field_error(at, "missing")
            if isinstance(shape, ArrayShape):
                items[name] = shape.encode_items(value[name], at)
        for name, shape in self.fields:
            at = f"{path}.{name}" if path else name
            if name in self.counts:
                arrays = self.counts[name]
                n = len(items[arrays[0]])
                for other in arrays[1:]:
                    if len(items[other]) != n:
                        raise field_error(f"{path}.{other}" if path else other,
                                          f"must have as many elements as {arrays[0]} (count {name})")
                assert isinstance(shape, IntShape)
                if n > shape.high:
                    raise field_error(f"{path}.{arrays[0]}" if path else arrays[0],
                                      f"{n} elements: the count {name} is a {shape.csv_name}, at most {shape.high}")
                out += shape.to_bytes(n)
            elif isinstance(shape, ArrayShape):
                shape.encode_counted(items[name], at, out)
            elif isinstance(shape, TlvShape):
                shape.encode(value.get(name, {}), at, out)
            else:
                shape.encode(value[name], at, out)


@dataclass
class TlvRecord:
    name: str
    number: int
    fields: StructShape


@dataclass
class TlvShape(Shape):
    """A BOLT #1 TLV stream: the rest of the message."""

    csv_name: str
    records: dict[int, TlvRecord] = field(default_factory=dict)

    def decode(self, buf: bytes, pos: int, end: int, path: str) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        last = -1
        while pos < end:
            number, pos = read_bigsize(buf, pos, end, f"{path} record type")
            length, pos = read_bigsize(buf, pos, end, f"{path} record {number} length")
            # BOLT #1: the reader MUST fail if "the record's length ... exceeds the bytes left", if
            # "type is not strictly greater than the previous" one, and on an unknown even type.
            if length > end - pos:
                raise DecodeError(path, f"record {number} claims {length} bytes, {end - pos} left")
            if number <= last:
                raise DecodeError(path, f"record {number} after record {last}: not in strictly ascending order")
            last = number
            record = self.records.get(number)
            if record is None:
                if number % 2 == 0:
                    raise DecodeError(path, f"unknown even record {number} (it's ok to be odd, not even)")
                values[str(number)] = buf[pos:pos + length].hex()  # unknown odd: kept, as to_py does
            else:
                at = f"{path}.{record.name}"
                values[record.name], used = record.fields.decode(buf, pos, pos + length, at)
                if used != pos + length:
                    # BOLT #1: MUST fail if "length is not exactly equal to that required for the known encoding".
                    raise DecodeError(at, f"record is {length} bytes, its fields take {used - pos}")
            pos += length
        return values, pos

    def encode(self, value: Any, path: str, out: bytearray) -> None:
        if not isinstance(value, dict):
            raise field_error(path, "must be an object: a TLV stream by record name")
        by_name = {r.name: r for r in self.records.values()}
        ordered: list[tuple[int, bytes]] = []
        for key, record_value in value.items():
            at = f"{path}.{key}"
            record = by_name.get(key)
            if record is not None:
                chunk = bytearray()
                record.fields.encode(record_value, at, chunk)
                ordered.append((record.number, bytes(chunk)))
                continue
            if not isinstance(key, str) or not _DECIMAL.match(key) or int(key) > U64_MAX:
                raise field_error(at, f"is not a record of {self.csv_name} (an unknown record is named by its number)")
            number = int(key)
            if number in self.records:
                raise field_error(at, f"is record {self.records[number].name}: give it by name")
            if number % 2 == 0:
                raise field_error(at, "an unknown record must be odd: the peer would refuse an unknown even one")
            ordered.append((number, check_hex(record_value, at)))
        for number, record_bytes in sorted(ordered):
            out += bigsize(number) + bigsize(len(record_bytes)) + record_bytes


# -- encode-side value checks ----------------------------------------------------------


def field_error(path: str, reason: str) -> FieldError:
    return FieldError(PROTOCOL_FIELDS_INVALID, f"field {path}: {reason}", {"field": path, "reason": reason})


def check_int(value: Any, path: str, low: int, high: int, type_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(path, f"must be an integer ({type_name})")
    if not low <= value <= high:
        raise field_error(path, f"{value} is out of range for {type_name} ({low} to {high})")
    return value


def check_hex(value: Any, path: str) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value):
        raise field_error(path, "must be a string of hex digits, an even number of them")
    return bytes.fromhex(value)


# -- messages and specs -----------------------------------------------------------------


@dataclass
class MessageSpec:
    name: str
    type: int
    body: StructShape
    description: list[dict[str, Any]]
    line: int
    source: str = ""


@dataclass
class Spec:
    """One CSV file's messages."""

    source: str
    messages: list[MessageSpec]
    from_folder: bool = False  # read at manifest time from PROTOCOLS_FOLDER: even types allowed

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "messages": [{"name": m.name, "type": m.type, "fields": m.description} for m in self.messages],
        }


def parse_spec(text: str, source: str) -> Spec:
    """CSV lines -> :class:`Spec`, or the :class:`SpecError` naming the line and the reason."""
    grouped: dict[str, list[tuple[int, list[str]]]] = {kind: [] for kind in _LINE_KINDS}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, *parts = [part.strip() for part in line.split(",")]
        if kind not in grouped:
            raise _spec_error(source, number, f"{kind!r} is not a line kind: " + ", ".join(_LINE_KINDS))
        grouped[kind].append((number, parts))
    namespace = MessageNamespace()
    namespace.add_fundamentaltype(IntegerType("u8", 1, "B"))  # CLN's CSVs say u8 where pyln-proto says byte
    lines: dict[tuple[str, str], int] = {}
    for kind in _LINE_KINDS:
        for number, parts in grouped[kind]:
            try:
                _load_line(namespace, kind, parts)
            except SpecError as exc:
                raise _spec_error(source, number, exc.message) from None
            except Exception as exc:  # pyln-proto raises ValueError, AssertionError, KeyError... on bad lines
                raise _spec_error(source, number, _pyln_reason(exc)) from None
            if kind in ("msgtype", "subtype"):
                lines[(kind, parts[0])] = number
            elif kind == "tlvtype":
                lines[("tlvtype", f"{parts[0]}.{parts[1]}")] = number
            elif kind == "tlvdata":
                lines[("field", f"{parts[0]}.{parts[1]}.{parts[2]}")] = number
            else:
                lines[("field", f"{parts[0]}.{parts[1]}")] = number
    if not namespace.messagetypes:
        raise _spec_error(source, None, "no msgtype line: a protocol has at least one message")
    compiler = _Compiler(source, lines)
    try:
        messages = [compiler.message(m) for m in namespace.messagetypes.values()]
    except RecursionError:  # subtypes nested deeper than Python recurses
        raise _spec_error(source, None, "subtypes are nested too deeply") from None
    return Spec(source, sorted(messages, key=lambda m: m.line))


def _pyln_reason(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text if isinstance(exc, ValueError) else f"cannot be read ({type(exc).__name__}: {text})"


def _load_line(namespace: MessageNamespace, kind: str, parts: list[str]) -> None:
    """One line into the namespace, as ``MessageNamespace.load_csv`` would, refusing what we do not support."""
    if kind == "msgtype":
        if len(parts) != 2:
            raise SpecError(PROTOCOL_SPEC_INVALID, "msgtype is msgtype,<name>,<type> (options are not supported)")
        if not _NAME.match(parts[0]):
            raise SpecError(PROTOCOL_SPEC_INVALID, f"{parts[0]!r} is not a name (letters, digits, _)")
        if not parts[1].isdigit() or int(parts[1]) > MAX_TYPE:
            raise SpecError(PROTOCOL_SPEC_INVALID, f"message type {parts[1]!r} is not a number from 0 to {MAX_TYPE}")
        namespace.add_messagetype(MessageType.msgtype_from_csv(parts))
    elif kind == "subtype":
        namespace.add_subtype(SubtypeType.subtype_from_csv(parts))
    elif kind == "tlvtype":
        if len(parts) == 3 and (not parts[2].isdigit() or int(parts[2]) > U64_MAX):
            raise SpecError(PROTOCOL_SPEC_INVALID, f"record type {parts[2]!r} is not a number from 0 to 2^64-1")
        TlvStreamType.tlvtype_from_csv(namespace, parts)
    elif kind == "msgdata":
        if len(parts) != 4:
            raise SpecError(PROTOCOL_SPEC_INVALID,
                            "msgdata is msgdata,<message>,<field>,<type>,<count> (options are not supported)")
        MessageType.msgfield_from_csv(namespace, parts)
    elif kind == "subtypedata":
        SubtypeType.subfield_from_csv(namespace, parts)
    else:
        TlvStreamType.tlvfield_from_csv(namespace, parts)


class _Compiler:
    """pyln-proto's parsed types -> our shapes, refusing what could not be decoded safely."""

    def __init__(self, source: str, lines: dict[tuple[str, str], int]):
        self.source = source
        self.lines = lines
        self.subtypes: dict[str, tuple[StructShape, list[dict[str, Any]]]] = {}  # each compiled once
        self.building: set[str] = set()

    def error(self, key: tuple[str, str], reason: str) -> SpecError:
        return _spec_error(self.source, self.lines.get(key), reason)

    def message(self, mtype: MessageType) -> MessageSpec:
        body, description = self.struct(mtype, f"{mtype.name}", where="message")
        if body.min_width > MAX_BODY_LEN:
            raise self.error(("msgtype", mtype.name), f"{mtype.name} takes at least {body.min_width} bytes: "
                                                      f"a message body is at most {MAX_BODY_LEN}")
        line = self.lines[("msgtype", mtype.name)]
        return MessageSpec(mtype.name, mtype.number, body, description, line, self.source)

    def struct(self, owner: SubtypeType, path: str, where: str) -> tuple[StructShape, list[dict[str, Any]]]:
        shape = StructShape(owner.name)
        description: list[dict[str, Any]] = []
        for i, f in enumerate(owner.fields):
            key = ("field", f"{path}.{f.name}")
            last = i == len(owner.fields) - 1
            ftype = f.fieldtype
            if isinstance(ftype, LengthFieldType):
                if ftype.underlying_type.name not in _UNSIGNED_COUNTS:
                    raise self.error(key, f"count {f.name} is a {ftype.underlying_type.name}: "
                                          f"a count is one of {', '.join(_UNSIGNED_COUNTS)}")
                shape.counts[f.name] = [g.name for g in ftype.len_for]
                shape.fields.append((f.name, self.fundamental(ftype.underlying_type, key, where, last)))
                description.append({"name": f.name, "type": ftype.underlying_type.name,
                                    "count_of": shape.counts[f.name]})
                continue
            item, entry = self.field(ftype, key, where, last, f"{path}.{f.name}")
            shape.fields.append((f.name, item))
            description.append({"name": f.name, **entry})
        shape.finish()
        return shape, description

    def field(self, ftype: FieldType, key: tuple[str, str], where: str, last: bool,
              path: str) -> tuple[Shape, dict[str, Any]]:
        if isinstance(ftype, (SizedArrayType, DynamicArrayType, EllipsisArrayType)):
            if isinstance(ftype, EllipsisArrayType) and not (where == "record" and last):
                raise self.error(key, "a ... array is only allowed as the last field of a TLV record")
            elem, entry = self.field(ftype.elemtype, key, "array", False, path)
            if elem.min_width == 0:
                raise self.error(key, f"an array of {ftype.elemtype.name}: its elements could take no bytes, "
                                      "so a count could not be checked against the message's length")
            count: int | str | None
            if isinstance(ftype, SizedArrayType):
                count = ftype.arraysize
            elif isinstance(ftype, DynamicArrayType):
                count = ftype.lenfield.name
            else:
                count = None
            return ArrayShape(elem, count), {**entry, "count": "..." if count is None else count}
        if isinstance(ftype, TlvStreamType):
            if where != "message" or not last:
                raise self.error(key, f"TLV stream {ftype.name} must be the last field of a message")
            return self.tlv(ftype)
        if isinstance(ftype, SubtypeType):
            return self.subtype(ftype, key)
        return self.fundamental(ftype, key, where, last), {"type": ftype.name}

    def fundamental(self, ftype: FieldType, key: tuple[str, str], where: str, last: bool) -> Shape:
        if isinstance(ftype, ShortChannelIDType):
            return ScidShape()
        if isinstance(ftype, IntegerType):
            return IntShape(ftype.name, ftype.bytelen, ftype.structfmt.lstrip(">").islower())
        if isinstance(ftype, TruncatedIntType):
            if not (where == "record" and last):
                raise self.error(key, f"{ftype.name} is only allowed as the last field of a TLV record "
                                      "(it takes the rest of the record)")
            return TruncatedShape(ftype.name, ftype.maxbytes)
        if isinstance(ftype, FundamentalHexType):
            return HexShape(ftype.name, ftype.bytelen)
        if isinstance(ftype, BigSizeType):
            return BigSizeShape()
        raise self.error(key, f"type {ftype.name} is not supported")

    def subtype(self, ftype: SubtypeType, key: tuple[str, str]) -> tuple[Shape, dict[str, Any]]:
        if ftype.name in self.building:
            raise self.error(key, f"subtype {ftype.name} contains itself")
        if ftype.name not in self.subtypes:
            self.building.add(ftype.name)
            self.subtypes[ftype.name] = self.struct(ftype, ftype.name, where="subtype")
            self.building.discard(ftype.name)
        shape, description = self.subtypes[ftype.name]
        return shape, {"type": ftype.name, "fields": description}

    def tlv(self, ftype: TlvStreamType) -> tuple[Shape, dict[str, Any]]:
        shape = TlvShape(ftype.name)
        records = []
        for record in ftype.fields:
            key = ("tlvtype", f"{ftype.name}.{record.name}")
            if record.number in shape.records:
                raise self.error(key, f"record {record.name} has the number of {shape.records[record.number].name}"
                                      f" ({record.number})")
            assert isinstance(record, TlvMessageType)
            fields, description = self.struct(record, f"{ftype.name}.{record.name}", where="record")
            shape.records[record.number] = TlvRecord(record.name, record.number, fields)
            records.append({"name": record.name, "type": record.number, "fields": description})
        shape.records = dict(sorted(shape.records.items()))
        return shape, {"type": ftype.name, "records": sorted(records, key=lambda r: r["type"])}


# -- what the plugin refuses and warns about ---------------------------------------------

# Types public protocols use: registering one is legitimate (speaking PeerSwap on purpose), so it is
# only named in a warning. bLIP-0002's message table (lightning/blips blip-0002.md), and the uses
# that table does not list.
KNOWN_TYPES: dict[int, str] = {
    PEER_STORAGE: "peer storage (BOLT #1 peer_storage, CLN's chanbackup)",
    PEER_STORAGE_RETRIEVAL: "peer storage (BOLT #1 peer_storage_retrieval, CLN's chanbackup)",
    **{t: "commando (CLN's commando plugin)" for t in COMMANDO_TYPES},
    37913: "LSPS0 (bLIP-50, JSON-RPC over custom messages)",
    **{t: "PeerSwap" for t in range(42069, 42086, 2)},
    52884: "Taproot Assets RFQ (request)",
    52885: "Taproot Assets RFQ (accept)",
    52886: "Taproot Assets RFQ (reject)",
    65535: "hosted channels (bLIP-12 invoke_hosted_channel)",
    65533: "hosted channels (bLIP-12 init_hosted_channel)",
    65531: "hosted channels (bLIP-12 last_cross_signed_state)",
    65529: "hosted channels (bLIP-12 state_update)",
    65527: "hosted channels (bLIP-12 state_override)",
    65525: "hosted channels (bLIP-12 hosted_channel_branding)",
    65511: "hosted channels (bLIP-12 ask_channel_branding)",
    63505: "hosted channels (bLIP-12 hc_update_add_htlc)",
    63503: "hosted channels (bLIP-12 hc_update_fulfill_htlc)",
    63501: "hosted channels (bLIP-12 hc_updated_fail_htlc)",
    63499: "hosted channels (bLIP-12 hc_update_fail_malformed_htlc)",
    63497: "hosted channels (bLIP-12 hc_error)",
}


class Protocols:
    """Every registered message, by type and by name. ``register`` checks a spec against the others
    and the rules, then adds it whole, or nothing. ``own_types`` are the types this plugin reads
    itself before any protocol could (acknowledged delivery's, bLIP-50's): type -> what reads it."""

    def __init__(self, own_types: Mapping[int, str] | None = None):
        self.own_types = dict(own_types or {})
        self.specs: list[Spec] = []
        self.by_type: dict[int, MessageSpec] = {}
        self.by_name: dict[str, MessageSpec] = {}

    def check(self, spec: Spec) -> list[str]:
        """SpecError if ``spec`` cannot be registered; else the warnings (types public protocols use)."""
        warnings = []
        for m in spec.messages:
            def refuse(reason: str, code: int, m: MessageSpec = m, **data: Any) -> SpecError:
                return _spec_error(spec.source, m.line, reason, code, name=m.name, type=m.type, **data)

            if m.type in INTERNAL_TYPES:
                raise refuse(f"{m.name}: type {m.type} is Core Lightning's {INTERNAL_TYPES[m.type]}: it never reaches "
                             "plugins", PROTOCOL_TYPE_REFUSED)
            if m.type in self.own_types:
                raise refuse(f"{m.name}: type {m.type} is read by this plugin itself ({self.own_types[m.type]})",
                             PROTOCOL_TYPE_REFUSED)
            other = self.by_type.get(m.type)
            if other is not None:
                raise refuse(f"{m.name}: type {m.type} is already {other.name}, from {other.source}",
                             PROTOCOL_TYPE_TAKEN, other=other.source)
            other = self.by_name.get(m.name)
            if other is not None:
                raise refuse(f"{m.name}: the name is already taken by type {other.type}, from {other.source}",
                             PROTOCOL_TYPE_TAKEN, other=other.source)
            if m.type % 2 == 0 and not spec.from_folder:
                raise refuse(
                    f"{m.name}: type {m.type} is even: lightningd lets even types through only for protocols it learns "
                    f"of at start, so put this file in <lightning-dir>/<network>/{PROTOCOLS_FOLDER}/ and restart",
                    PROTOCOL_TYPE_EVEN, folder=PROTOCOLS_FOLDER,
                )
            if m.type in KNOWN_TYPES:
                warnings.append(f"{spec.source}: {m.name} uses type {m.type}, which is {KNOWN_TYPES[m.type]}'s")
        return warnings

    def register(self, spec: Spec) -> list[str]:
        warnings = self.check(spec)
        self.by_type = {**self.by_type, **{m.type: m for m in spec.messages}}
        self.by_name = {**self.by_name, **{m.name: m for m in spec.messages}}
        self.specs = [*self.specs, spec]
        return warnings

    def __contains__(self, msg_type: object) -> bool:
        return msg_type in self.by_type

    def even_types(self) -> list[int]:
        return sorted(t for t in self.by_type if t % 2 == 0)

    def encode(self, name: Any, fields: Any) -> bytes:
        """A message ``name`` with ``fields`` -> its bytes (type included); FieldError or an unknown name refused."""
        if not isinstance(name, str) or name not in self.by_name:
            known = ", ".join(sorted(self.by_name)) or "none registered"
            raise ValidationError(PROTOCOL_UNKNOWN_NAME, f"no registered message is named {str(name)[:80]!r} ({known})",
                                  {"name": name if isinstance(name, str) else None})
        spec = self.by_name[name]
        out = bytearray(spec.type.to_bytes(TYPE_LEN, "big"))
        try:
            spec.body.encode({} if fields is None else fields, "", out)
        except FieldError as exc:
            exc.data = {"name": name, **exc.data}
            raise
        return bytes(out)

    def decode(self, raw: bytes) -> Decoded | None:
        """A message (type included) of a registered type -> its fields, or the reason they cannot be read;
        None for a type no protocol registered. Never raises."""
        spec = self.by_type.get(int.from_bytes(raw[:TYPE_LEN], "big")) if len(raw) >= TYPE_LEN else None
        if spec is None:
            return None
        return decode_body(spec, raw)

    def describe(self) -> list[dict[str, Any]]:
        return [spec.to_json() for spec in self.specs]


def decode_body(spec: MessageSpec, raw: bytes) -> Decoded:
    try:
        fields, _ = spec.body.decode(raw, TYPE_LEN, len(raw), "")
    except DecodeError as exc:
        return Decoded(spec.name, error=exc.message)
    except (RecursionError, MemoryError):  # not reachable with the checks above: reported, never raised
        return Decoded(spec.name, error="the message could not be decoded")
    # BOLT #1: a reader "MUST ignore any additional data within a message beyond the length that it
    # expects for that type" (a message that ends in a TLV stream has none).
    return Decoded(spec.name, fields)
