"""bLIP-50 (LSPS0, lightning/blips ``blip-0050.md``): JSON-RPC 2.0 in custom messages of type 37913.

Sans I/O. ``Frame.serialize`` and :func:`parse_frame` are exact inverses (a body is what follows
the 2-byte type); request ids; sanitising. Who is waiting for what, and who is muted, is
``lsps.calls``'s.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from . import errors, strictjson
from .errors import CustomMsgError, ValidationError

# bLIP-50: "All LSPS messages MUST use the BOLT8 message ID 37913 (`lsps0_message_id`)."
LSPS0_MESSAGE_TYPE = 37913
# bLIP-50: "BOLT8 messages are limited to payloads of 65533 bytes" (65535 minus the type).
MAX_BODY_LEN = 65533

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

Role = Literal["client", "lsp"]
_WS = " \t\n\r"  # bLIP-50: "whitespaces (space, tab, line feed, carriage return)"


class MalformedFrame(CustomMsgError):
    """The peer sent a bLIP-50 "bad message format" (h11's RemoteProtocolError); see data["reason"].

    Code LSPS_PEER_MUTED: errors.py gives 3353 to "the peer sent a malformed bLIP-50 message" and a
    client mutes next (INVALID_PARAMETER would blame our caller). An LSP answers parse_error_response().
    """

    def __init__(self, reason: str, **data: Any):
        super().__init__(errors.LSPS_PEER_MUTED, f"malformed bLIP-50 message: {reason}", {"reason": reason, **data})


def _refuse(reason: str, message: str, code: int = errors.INVALID_PARAMETER, **data: Any) -> ValidationError:
    return ValidationError(code, message, {"reason": reason, **data})


class _Frame:
    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC object: "jsonrpc", then the fields in order (id, method, params / result)."""
        return {"jsonrpc": "2.0", **vars(self)}

    def serialize(self) -> bytes:
        """The compact UTF-8 JSON body; ValidationError unless it parses back to ``self``."""
        try:
            # bLIP-50: "characters that can be embedded into a JSON string without escapes MUST
            # be encoded directly". Control characters (NUL too) stay escaped: no 0 byte.
            raw = strictjson.dumps(self.to_json())
        except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
            raise _refuse("not json", f"not JSON: {exc}") from None
        if len(raw) > MAX_BODY_LEN:  # bLIP-50 rules out cutting "a large object across multiple messages"
            too_long = f"the JSON body is {len(raw)} bytes, over {MAX_BODY_LEN}"
            raise _refuse("too long", too_long, errors.LSPS_REQUEST_TOO_LARGE, length=len(raw), max=MAX_BODY_LEN)
        try:
            again = parse_frame(raw)
        except MalformedFrame as exc:  # the same rules both ways
            raise _refuse(exc.data["reason"], exc.message) from None
        if again != self:  # a tuple, a non-string key...: JSON would change the value
            raise _refuse("not plain json", "params/result must be plain JSON values")
        return raw


@dataclass(frozen=True)
class Request(_Frame):
    id: str
    method: str
    params: dict[str, Any]
    kind: ClassVar[str] = "request"


@dataclass(frozen=True)
class Notification(_Frame):
    method: str
    params: dict[str, Any]
    kind: ClassVar[str] = "notification"


@dataclass(frozen=True)
class Response(_Frame):
    id: str
    result: Any
    kind: ClassVar[str] = "response"


@dataclass(frozen=True)
class ErrorResponse(_Frame):
    id: str | None
    code: int
    message: str  # written by the peer: show only sanitize(message)
    data: Any = None  # None: no "data" member
    kind: ClassVar[str] = "error"

    def to_json(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message} | ({} if self.data is None else {"data": self.data})
        return {"jsonrpc": "2.0", "id": self.id, "error": error}

    def serialize(self) -> bytes:
        # bLIP-50: "An LSP that sends back an invalid parameter error with code = -32602 MUST
        # include a data object ... at least the field `unrecognized`, a JSON array of strings"
        names = self.data.get("unrecognized") if isinstance(self.data, dict) else None
        if self.code == INVALID_PARAMS and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise _refuse("no data.unrecognized", "a -32602 error needs data.unrecognized, a list of strings")
        return super().serialize()


Frame = Request | Notification | Response | ErrorResponse


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # json keeps the last one silently: two readers, two meanings
        raise MalformedFrame("duplicate key")
    return obj


_DECODER = strictjson.decoder(object_pairs_hook=_no_duplicate_keys)


def parse_frame(body: bytes, role: Role | None = None) -> Frame:
    """A 37913 message body -> a frame, or :class:`MalformedFrame`. ``role``: who *we* are."""
    if len(body) > MAX_BODY_LEN:
        raise MalformedFrame("too long", length=len(body), max=MAX_BODY_LEN)
    if b"\x00" in body:  # bLIP-50: "The payload MUST NOT contain any 0 bytes."
        raise MalformedFrame("nul byte")
    try:  # bLIP-50: "The payload MUST parse as a single complete UTF-8 encoded JSON object"
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFrame("not utf-8") from None
    # bLIP-50: "with optional leading or trailing whitespaces (space, tab, line feed,
    # carriage return). For example, " { } " would pass this check, but "{" and " [ ] " would not."
    # The payload must also be JSON that lightningd's parser reads when we hand it on (stored,
    # notified, returned): strictjson's rules, checked here, at the door, once.
    try:
        obj, end = strictjson.raw_loads(text, len(text) - len(text.lstrip(_WS)), _DECODER)
    except strictjson.JsonRefused as exc:
        raise MalformedFrame(exc.reason, **exc.data) from None
    if text[end:].strip(_WS):  # bLIP-50: "MUST NOT parse as more than a single complete JSON object"
        raise MalformedFrame("trailing data")
    if not isinstance(obj, dict):  # bLIP-50: "MUST NOT batch ... request objects in an array"
        raise MalformedFrame("not an object")
    frame = _from_json(obj)
    # bLIP-50: "If the client, the received payload MUST parse to a JSON object that is a
    # JSON-RPC 2.0 response or notification object. If the LSP, ... a JSON-RPC 2.0 request."
    if role is not None and (role == "lsp") != isinstance(frame, Request):
        raise MalformedFrame("unexpected kind", kind=frame.kind, role=role)
    return frame


def _from_json(obj: dict[str, Any]) -> Frame:
    if obj.get("jsonrpc") != "2.0":  # JSON-RPC 2.0: jsonrpc "MUST be exactly "2.0"."
        raise MalformedFrame("bad jsonrpc")
    rid = obj.get("id")  # other members are ignored, as lightning-liquidity does
    if "method" in obj:
        if "result" in obj or "error" in obj:
            raise MalformedFrame("ambiguous")
        method, params = obj["method"], obj.get("params", {})  # JSON-RPC: params "MAY be omitted"
        if not isinstance(method, str) or not method:
            raise MalformedFrame("bad method")
        if not isinstance(params, dict):  # bLIP-50: "MUST NOT use by-position parameter structures"
            raise MalformedFrame("bad params")
        if "id" not in obj:  # bLIP-50: a notification is "an object without `id`"
            return Notification(method, params)
        if not isinstance(rid, str):  # bLIP-50: "Clients MUST use a high-entropy `id` string"
            raise MalformedFrame("bad id")
        return Request(rid, method, params)
    if "result" in obj and "error" in obj:  # JSON-RPC: "both members MUST NOT be included"
        raise MalformedFrame("ambiguous")
    if "result" in obj:
        if not isinstance(rid, str):  # only an error may carry id null
            raise MalformedFrame("bad id")
        return Response(rid, obj["result"])
    if "error" not in obj:
        raise MalformedFrame("not a request or response")
    # JSON-RPC: "If there was an error in detecting the id in the Request object ... it MUST be Null."
    if "id" not in obj or not (rid is None or isinstance(rid, str)):
        raise MalformedFrame("bad id")
    error = obj["error"]
    if not isinstance(error, dict) or type(error.get("code")) is not int or not isinstance(error.get("message"), str):
        raise MalformedFrame("bad error")  # JSON-RPC: code "MUST be an integer", message "A String"
    # data: any JSON value (lightning-liquidity sends a string or null); null reads as absent.
    return ErrorResponse(rid, error["code"], error["message"], error.get("data"))


def parse_error_response() -> ErrorResponse:
    # bLIP-50, the LSP on a bad message: "MUST respond with a JSON-RPC 2.0 error response
    # with the reason "parse error" (`code` = `-32700`, `id` = `null`)."
    return ErrorResponse(None, PARSE_ERROR, "parse error")


def encode_request(method: str, params: dict[str, Any], request_id: str) -> bytes:
    return Request(request_id, method, params).serialize()


def new_request_id() -> str:
    # bLIP-50: "a hex encoding of a random binary blob of at least 80 bits, with randomness
    # acquired from a cryptographically secure source": 128 bits from `secrets`.
    return secrets.token_hex(16)


# ECMA-48: CSI (ESC [ or 8-bit 0x9b), OSC (ESC ] ... BEL or ESC \), other ESC sequences (ESC c, ESC ( B).
_ESCAPE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]")
_ANGLES = {"<": "\u2039", ">": "\u203a"}


def sanitize(text: str, limit: int = 200) -> str:
    """bLIP-50: "Clients MUST carefully filter error messages of possibly problematic characters, such
    as NUL characters, `<`, newlines, or ASCII control characters". Drops escape sequences, controls,
    format characters (bidi, zero-width), unassigned code points; one space per whitespace run;
    < > become ‹ ›; over ``limit`` characters: cut, ending in "…".
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    kept = (ch for ch in _ESCAPE.sub("", text) if ch.isspace() or unicodedata.category(ch)[0] != "C")
    clean = " ".join("".join(" " if ch.isspace() else _ANGLES.get(ch, ch) for ch in kept).split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "\u2026"
