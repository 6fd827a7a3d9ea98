"""Every rule that accepts or refuses what a caller sends, in one place.

What the caller gives (``node_id``, ``msg`` hex, a message type, the shape of each
RPC parameter, pagination) is checked here and nowhere else; each refusal is a
:class:`ValidationError` with its stable code (or -32602 where lightningd's own
commands use it). What the operator configures is checked in ``options``, the
layer above. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from typing import Any, TypeVar

from pyln.proto.primitives import PublicKey

from .errors import (
    INVALID_NODE_ID,
    INVALID_PARAMETER,
    JSONRPC_INVALID_PARAMS,
    MSG_NOT_HEX,
    MSG_TOO_LONG,
    REPLY_TYPE_NOT_RECEIVED,
    SELF_NODE_ID,
    TYPE_EVEN,
    TYPE_INTERNAL,
    CustomMsgError,
    ValidationError,
)
from .policy import TypeSelection
from .records import OUTBOX_STATUSES, Page
from .wire import INTERNAL_TYPES, MAX_MESSAGE_LEN, MAX_TYPE, NODE_ID_LEN, Message, parse_message

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
DEFAULT_REQUEST_TIMEOUT = 60.0

_HEXDIGITS = frozenset(string.hexdigits)
T = TypeVar("T")


# -- node ids and messages (custommsg-send, custommsg-request, the guard) -------

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
    """``msg`` as hex -> a framed :class:`Message` (length checked by BOLT #1 framing)."""
    return parse_message(decode_hex(value))


@functools.lru_cache(maxsize=4096)
def _is_public_key(raw: bytes) -> bool:
    """The 02/03 prefix, then that the point is on the curve. Remembered: the guard and custommsg-send
    check the same few peers' ids on every send, and a curve check costs more than the rest of a send's
    checks together."""
    try:
        PublicKey(raw)
    except (ValueError, TypeError):
        return False
    return True


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
    if not _is_public_key(raw):
        reason = "prefix" if raw[0] not in (2, 3) else "not on curve"
        raise ValidationError(
            INVALID_NODE_ID,
            f"{name} {value} is not a valid public key: "
            + ("a compressed key starts with 02 or 03" if reason == "prefix" else "not a point on secp256k1"),
            {"reason": reason},
        ) from None
    return value.lower()


def check_not_self(peer_id: str, own_id: str | None, name: str = "node_id") -> str:
    if own_id is not None and peer_id == own_id:
        raise ValidationError(
            SELF_NODE_ID, f"{name} is this node's own id: a node cannot send itself a peer message", {name: peer_id}
        )
    return peer_id


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
    peer_id = check_not_self(parse_node_id(node_id), own_id)
    message = decode_message_hex(msg)
    check_sendable(message, allow_even)
    return peer_id, message


# -- RPC parameter shapes --------------------------------------------------------


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(INVALID_PARAMETER, f"{name} must be true or false", {"param": name})
    return value


def parse_seconds(value: Any, name: str, allow_zero: bool = False) -> float:
    # lightningd forwards 1e400 (a valid JSON number), which Python reads as infinity: a ttl or a
    # deadline of infinity could be stored but never written back as JSON.
    if (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf
        or (value == 0 and not allow_zero)
    ):
        raise ValidationError(
            INVALID_PARAMETER,
            f"{name} must be a number of seconds {'>= 0' if allow_zero else '> 0'}",
            {"param": name},
        )
    return float(value)


def parse_msg_type(value: Any, name: str = "type") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TYPE:
        raise ValidationError(INVALID_PARAMETER, f"{name} must be an integer from 0 to {MAX_TYPE}", {"param": name})
    return value


def optional(value: Any, parse: Callable[[Any], T]) -> T | None:
    """A filter parameter: ``None`` when not given, else parsed (and so checked)."""
    return None if value is None else parse(value)


def parse_peer_filter(value: Any) -> str | None:
    return optional(value, lambda v: parse_node_id(v, "peer_id"))


def parse_type_filter(value: Any) -> int | None:
    return optional(value, parse_msg_type)


def parse_ttl(ttl: Any, queued: bool) -> float | None:
    seconds = optional(ttl, lambda v: parse_seconds(v, "ttl"))
    if seconds is not None and not queued:
        raise ValidationError(INVALID_PARAMETER, "ttl only applies with queue=true or ack=true", {"param": "ttl"})
    return seconds


def parse_outbox_status(value: Any) -> str | None:
    if value is not None and value not in OUTBOX_STATUSES:
        raise ValidationError(
            INVALID_PARAMETER, f"status must be one of {', '.join(OUTBOX_STATUSES)}", {"param": "status"}
        )
    return value  # type: ignore[no-any-return]


def check_exactly_one(**params: Any) -> None:
    """Exactly one of ``params`` is given (custommsg-delete's ``created_index`` / ``up_to``)."""
    if sum(value is not None for value in params.values()) != 1:
        names = list(params)
        raise ValidationError(INVALID_PARAMETER, f"give exactly one of {' and '.join(names)}", {"param": names[0]})


def check_reply_type(reply_type: Any, stored: TypeSelection) -> int:
    """``reply_type`` of custommsg-request: a type the inbox keeps, or no reply could ever be seen."""
    wanted = parse_msg_type(reply_type, "reply_type")
    if wanted not in stored:
        raise ValidationError(
            REPLY_TYPE_NOT_RECEIVED,
            f"reply_type {wanted} is not kept in the inbox (custommsg-type is {','.join(stored.describe())}), "
            "so a reply could never be seen",
            {"reply_type": wanted},
        )
    return wanted


# -- JSON-RPC over custom messages (bLIP-50) ------------------------------------


def _printable(value: Any, name: str, what: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ValidationError(INVALID_PARAMETER, f"{name} must be a non-empty {what}", {"param": name})
    return value


def parse_method(value: Any, name: str = "method") -> str:
    return _printable(value, name, "method name")


def parse_message_name(value: Any) -> str:
    """A registered protocol's message name (custommsg-list, -wait)."""
    return _printable(value, "name", "message name")


def parse_request_id(value: Any) -> str:
    """custommsg-lsps-respond's ``id``: the peer's JSON-RPC id, as the inbox shows it."""
    return _printable(value, "id", "method name")


def parse_json_object(value: Any, name: str) -> dict[str, Any]:
    """bLIP-50 params are by name only: an object (``{}`` when not given)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(INVALID_PARAMETER, f"{name} must be a JSON object", {"param": name})
    return value


def parse_rpc_answer(result: Any, error: Any) -> tuple[Any, dict[str, Any] | None]:
    """custommsg-lsps-respond: a ``result``, or an ``error`` object with an integer code and a message."""
    check_exactly_one(result=result, error=error)
    if error is not None and not (
        isinstance(error, dict) and type(error.get("code")) is int and isinstance(error.get("message"), str)
        and set(error) <= {"code", "message", "data"}
    ):
        raise ValidationError(
            INVALID_PARAMETER, "error must be an object with an integer code, a message and optional data",
            {"param": "error"},
        )
    return result, error


# -- pagination, as lightningd's list commands (lightningd/forwards.c) -----------


def bad_param(name: str, value: Any, why: str) -> CustomMsgError:
    # The text of lightningd's command_fail_badparam: "{name}: {why}: invalid token '{tok}'".
    return CustomMsgError(JSONRPC_INVALID_PARAMS, f"{name}: {why}: invalid token '{value}'")


def parse_uint(name: str, value: Any, maximum: int = U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        bits = 32 if maximum == U32_MAX else 64
        raise bad_param(name, value, f"should be an unsigned {bits} bit integer")
    return value


def parse_page(index: Any, start: Any, limit: Any, indexes: tuple[str, ...] = ("created",)) -> Page:
    """``index`` names the ordering, ``start`` is an inclusive lower bound on it, ``limit`` caps the count.

    As in ``listforwards``, ``start`` and ``limit`` need ``index``, and the errors are -32602.
    """
    if index is not None and index not in indexes:
        raise bad_param("index", index, "should be " + " or ".join(repr(i) for i in indexes))
    start_value = 0 if start is None else parse_uint("start", start, U64_MAX)
    limit_value = None if limit is None else parse_uint("limit", limit, U32_MAX)
    if start_value != 0 and index is None:
        raise CustomMsgError(JSONRPC_INVALID_PARAMS, "Can only specify {start} with {index}")
    if limit_value is not None and index is None:
        raise CustomMsgError(JSONRPC_INVALID_PARAMS, "Can only specify {limit} with {index}")
    return Page(index or "created", start_value, limit_value)


_JSON_KINDS = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), ((list, tuple), "an array"),
               (dict, "an object"))


def _json_kind(value: Any) -> str:
    return next((kind for types, kind in _JSON_KINDS if isinstance(value, types)), type(value).__name__)
