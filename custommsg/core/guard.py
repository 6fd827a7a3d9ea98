"""The verdict on a call to lightningd's native ``sendcustommsg``.

lightningd does not check that ``msg`` is hex (``param_bin_from_hex`` tests the
out-pointer instead of the result, common/json_param.c), nor its length. Invalid
hex, an empty message and a multiple of 65536 bytes all reach connectd as an empty
message, which trips an assertion there and takes the whole node down; longer
messages are silently truncated to their length mod 65536 (a u16 on the
lightningd->connectd wire). So the guard refuses exactly those, and lets
everything else through untouched: internal types and unknown peers get
lightningd's own errors, even types keep native behaviour, and chanbackup's and
commando's calls, which are always well formed, are never in the way.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from collections.abc import Callable
from typing import Any

from .errors import INVALID_NODE_ID, MSG_NOT_HEX, CustomMsgError, ValidationError
from .validate import decode_message_hex, parse_node_id

_MISSING = object()


class EscapedStr(str):
    """A JSON string that was written with escape sequences (``\\u0038``, ``\\/``...).

    lightningd decodes ``msg`` from the raw characters of the request, escapes and
    all, so ``"\\u0038\\u0030\\u0030\\u0031"`` is invalid hex to it (an empty
    message: the crash), while a JSON parser reads it as the valid ``"8001"``.
    """


class _EscapeMarkingDecoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__()
        plain_parse_string: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

        def parse_string(text: str, end: int, strict: bool) -> tuple[str, int]:
            value, new_end = plain_parse_string(text, end, strict)
            if "\\" in text[end:new_end]:
                value = EscapedStr(value)
            return value, new_end

        self.parse_string = parse_string
        # The C scanner ignores parse_string; the Python one calls it for every string.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]


def loads_marking_escapes(raw: bytes | str) -> Any:
    """``json.loads``, but every string written with escapes comes back as :class:`EscapedStr`."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if "\\" not in text:
        return json.loads(text)  # no escapes anywhere: the fast C parser says the same
    return _EscapeMarkingDecoder().decode(text)


def _param(params: Any, name: str, position: int) -> Any:
    if isinstance(params, dict):
        return params.get(name, _MISSING)
    if isinstance(params, list):
        return params[position] if position < len(params) else _MISSING
    return _MISSING


def check_native_call(params: Any) -> CustomMsgError | None:
    """``None`` to let the call through, or the error to answer it with.

    ``params`` is the request's ``params`` as the rpc_command hook passes it: an
    object from pyln and ``lightning-cli -k``, a positional array from plain
    ``lightning-cli sendcustommsg ID HEX``. A missing parameter is left to
    lightningd, which reports it properly.
    """
    node_id = _param(params, "node_id", 0)
    msg = _param(params, "msg", 1)
    try:
        if isinstance(node_id, EscapedStr):
            raise ValidationError(
                INVALID_NODE_ID, "node_id is written with JSON escapes, which lightningd does not decode"
            )
        if isinstance(msg, EscapedStr):
            raise ValidationError(
                MSG_NOT_HEX,
                "msg is written with JSON escapes, which lightningd does not decode: it would read invalid hex",
                {"reason": "escaped"},
            )
        if node_id is not _MISSING:
            parse_node_id(node_id)
        if msg is not _MISSING:
            decode_message_hex(msg)
    except CustomMsgError as refusal:
        refusal.data = {**refusal.data, "refused_by": "custommsg guard"}
        return refusal
    return None
