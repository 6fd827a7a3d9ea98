"""The codec of typed protocols: what each field type of Core Lightning's wire CSV is on the wire
and in JSON, decoded from a peer's bytes and encoded from fields given to send.

``core.protocols`` compiles a spec's lines into these shapes; here is only the wire. A peer's
bytes are hostile: decoding raises nothing but :class:`DecodeError`, refuses what BOLT #1
refuses (TLV records out of order or repeated, an unknown even record, a bigsize that is not
minimal), and its work is bounded by the message's length (a count is checked against the
bytes left before anything is read). Encoding checks every value first and raises
:class:`FieldError`. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import PROTOCOL_FIELDS_INVALID, CustomMsgError, ValidationError
from .wire import MAX_MESSAGE_LEN, TYPE_LEN

MAX_BODY_LEN = MAX_MESSAGE_LEN - TYPE_LEN
U64_MAX = 2**64 - 1
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*\Z")
_SCID = re.compile(r"(0|[1-9][0-9]*)x(0|[1-9][0-9]*)x(0|[1-9][0-9]*)\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})\Z")


# -- errors -----------------------------------------------------------------------


class FieldError(ValidationError):
    """Fields given to send do not follow the message's spec (``data``: name, field, reason)."""


class DecodeError(CustomMsgError):
    """A peer's bytes do not follow the spec of their type (h11's RemoteProtocolError)."""

    def __init__(self, path: str, reason: str):
        super().__init__(PROTOCOL_FIELDS_INVALID, f"{path}: {reason}" if path else reason, {"field": path})


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
