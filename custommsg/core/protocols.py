"""Typed protocols: messages described in Core Lightning's wire CSV, encoded from fields and decoded to fields.

Core Lightning describes its own peer messages in CSV lines (``wire/peer_wire.csv``, read
by ``tools/generate-wire.py``): ``msgtype,<name>,<type>``, ``msgdata,<msg>,<field>,<fieldtype>,<count>``,
``tlvtype,<stream>,<record>,<number>``, ``tlvdata,<stream>,<record>,<field>,<fieldtype>,<count>``,
``subtype,<name>`` and ``subtypedata,<subtype>,<field>,<fieldtype>,<count>``. pyln-proto
(``pyln.proto.message.MessageNamespace``) reads that grammar; :func:`parse_spec` lets it, line
by line so that a refusal names its line, then compiles what it built into the shapes of
``core.shapes``, refusing what could not be decoded safely. The codec is ours, not pyln-proto's
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

Decoding never raises anything but :class:`~custommsg.core.shapes.DecodeError`, and its work is
bounded by the message's length: every array element takes at least one byte (a spec where one
could take none is refused here), and a count is checked against the bytes left before anything
is read (``core.shapes``). Nothing here does I/O: reading files is ``protocols/``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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
    PROTOCOL_SPEC_INVALID,
    PROTOCOL_TYPE_EVEN,
    PROTOCOL_TYPE_REFUSED,
    PROTOCOL_TYPE_TAKEN,
    PROTOCOL_UNKNOWN_NAME,
    ValidationError,
)
from .records import Decoded
from .shapes import (
    MAX_BODY_LEN,
    U64_MAX,
    ArrayShape,
    BigSizeShape,
    DecodeError,
    FieldError,
    HexShape,
    IntShape,
    ScidShape,
    Shape,
    StructShape,
    TlvRecord,
    TlvShape,
    TruncatedShape,
)
from .wire import (
    COMMANDO_TYPES,
    INTERNAL_TYPES,
    MAX_TYPE,
    PEER_STORAGE,
    PEER_STORAGE_RETRIEVAL,
    TYPE_LEN,
)

# The folder, under the network directory, whose specs are read when lightningd asks for the
# manifest: the only ones whose even types lightningd will let through (it reads the manifest's
# ``custommessages`` once, before the plugin's options: lightningd/plugin.c).
PROTOCOLS_FOLDER = "custommsg/protocols"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The order pyln-proto's MessageNamespace.load_csv adds lines in: types may be named before
# the line that defines them.
_LINE_KINDS = ("msgtype", "subtype", "tlvtype", "msgdata", "subtypedata", "tlvdata")
_UNSIGNED_COUNTS = ("byte", "u8", "u16", "u32", "u64")


# -- errors -----------------------------------------------------------------------


class SpecError(ValidationError):
    """A protocol description is refused: it does not parse, or breaks a rule (``data``: source, line, reason)."""


def _spec_error(source: str, line: int | None, reason: str, code: int = PROTOCOL_SPEC_INVALID,
                **data: Any) -> SpecError:
    where = f"{source}:{line}" if line is not None else source
    return SpecError(code, f"{where}: {reason}", {"source": source, "line": line, "reason": reason, **data})


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
