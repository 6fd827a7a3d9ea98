"""blip50.py: bLIP-50 (LSPS0) frames, request ids, sanitising, pending calls and muted peers.

Tables first, then the tests that walk them. Bodies are literal bytes, the spec's own
examples copied from lightning/blips blip-0050.md with their layout.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.blip50 import (
    LSPS0_MESSAGE_TYPE,
    MAX_BODY_LEN,
    PARSE_ERROR,
    ErrorResponse,
    Frame,
    MalformedFrame,
    Notification,
    Request,
    Response,
    encode_request,
    new_request_id,
    parse_error_response,
    parse_frame,
    sanitize,
)
from custommsg.core.completion import WaiterRegistry
from custommsg.core.errors import CustomMsgError, TransientError, ValidationError
from custommsg.core.wire import CUSTOM_RANGE, MAX_MESSAGE_LEN, Message, parse_message
from custommsg.lsps.calls import MutedPeers, Outcome, PendingCalls

from .helpers import A, B

# -- the spec's examples -------------------------------------------------------

SPEC_INVALID_PARAMS_REQUEST = b"""{
  "jsonrpc": "2.0",
  "method": "example.method_name",
  "params": {
    "future_feature1_param": "value1",
    "future_feature2_param": "value2"
  },
  "id": "42"
}"""
SPEC_INVALID_PARAMS_ERROR = b"""{
  "jsonrpc": "2.0",
  "error": {
    "code": -32602,
    "message": "Invalid params",
    "data": {
      "unrecognized": ["future_feature1_param"]
    }
  },
  "id": "42"
}"""
SPEC_LIST_PROTOCOLS_REQUEST = b"""{
  "method": "lsps0.list_protocols",
  "jsonrpc": "2.0",
  "id": "example#3cad6a54d302edba4c9ade2f7ffac098",
  "params": {}
}"""
SPEC_LIST_PROTOCOLS_RESPONSE = b"""{
  "jsonrpc": "2.0",
  "id": "example#3cad6a54d302edba4c9ade2f7ffac098",
  "result": {
    "protocols": [1, 3],
    "example-undefined-key-that-clients-should-ignore": true
  }
}"""
SPEC_ID = "example#3cad6a54d302edba4c9ade2f7ffac098"

# (id, body, frame)
SPEC_VALID: list[tuple[str, bytes, Frame]] = [
    ("invalid-params-request", SPEC_INVALID_PARAMS_REQUEST,
     Request("42", "example.method_name", {"future_feature1_param": "value1", "future_feature2_param": "value2"})),
    ("invalid-params-error", SPEC_INVALID_PARAMS_ERROR,
     ErrorResponse("42", -32602, "Invalid params", {"unrecognized": ["future_feature1_param"]})),
    ("list-protocols-request", SPEC_LIST_PROTOCOLS_REQUEST, Request(SPEC_ID, "lsps0.list_protocols", {})),
    ("list-protocols-response", SPEC_LIST_PROTOCOLS_RESPONSE,
     Response(SPEC_ID, {"protocols": [1, 3], "example-undefined-key-that-clients-should-ignore": True})),
]


@pytest.mark.parametrize(("body", "frame"), [c[1:] for c in SPEC_VALID], ids=[c[0] for c in SPEC_VALID])
def test_spec_examples_parse(body: bytes, frame: Frame) -> None:
    assert parse_frame(body) == frame
    assert parse_frame(frame.serialize()) == frame  # and our compact form says the same


# bLIP-50: '" { } " would pass this check, but "{" and " [ ] " would not', and
# '" { } { " and " { } { }" would not pass this check'. " { } " passes the framing
# checks and then fails as JSON-RPC (no "jsonrpc"), a later and different reason.
SPEC_FRAMING: list[tuple[str, bytes, str]] = [
    ("spec-space-braces-space", b" { } ", "bad jsonrpc"),
    ("spec-open-brace", b"{", "not json"),
    ("spec-space-array-space", b" [ ] ", "not an object"),
    ("spec-object-then-open-brace", b" { } { ", "trailing data"),
    ("spec-two-objects", b" { } { }", "trailing data"),
]

_REQ = b'{"jsonrpc":"2.0","id":"a","method":"m","params":{}}'
_RES = b'{"jsonrpc":"2.0","id":"a","result":{}}'
_DEEP = b'{"jsonrpc":"2.0","id":"a","result":' + b"[" * 30000 + b"]" * 30000 + b"}"

# (id, body, data["reason"])
MALFORMED: list[tuple[str, bytes, str]] = SPEC_FRAMING + [
    # -- bytes: bLIP-50 "MUST NOT contain any 0 bytes", "UTF-8 encoded"
    ("nul-after-object", _RES + b"\x00", "nul byte"),
    ("nul-in-string", b'{"jsonrpc":"2.0","id":"a\x00","result":{}}', "nul byte"),
    ("nul-only", b"\x00", "nul byte"),
    ("invalid-utf8-ff", b'{"jsonrpc":"2.0","id":"\xff","result":{}}', "not utf-8"),
    ("utf8-overlong-slash", b'{"jsonrpc":"2.0","id":"\xc0\xaf","result":{}}', "not utf-8"),
    ("utf8-encoded-surrogate", b'{"jsonrpc":"2.0","id":"\xed\xa0\x80","result":{}}', "not utf-8"),
    ("utf8-truncated", b'{"jsonrpc":"2.0","id":"\xe2\x82","result":{}}', "not utf-8"),
    ("latin1-e-acute", b'{"jsonrpc":"2.0","id":"caf\xe9","result":{}}', "not utf-8"),
    ("too-long-65534", b" " * (MAX_BODY_LEN + 1 - len(_RES)) + _RES, "too long"),
    # -- JSON text
    ("empty", b"", "not json"),
    ("whitespace-only", b" \t\r\n", "not json"),
    ("utf8-bom", b"\xef\xbb\xbf" + _RES, "not json"),
    ("vertical-tab-before", b"\x0b" + _RES, "not json"),
    ("form-feed-after", _RES + b"\x0c", "trailing data"),
    ("nbsp-before", b"\xc2\xa0" + _RES, "not json"),
    ("raw-newline-in-string", b'{"jsonrpc":"2.0","id":"a\nb","result":{}}', "not json"),
    ("single-quotes", b"{'jsonrpc':'2.0','id':'a','result':{}}", "not json"),
    ("trailing-comma", b'{"jsonrpc":"2.0","id":"a","result":{},}', "not json"),
    ("nan", b'{"jsonrpc":"2.0","id":"a","result":NaN}', "not json"),
    ("infinity", b'{"jsonrpc":"2.0","id":"a","result":-Infinity}', "not json"),
    ("nesting-30000-deep", _DEEP, "nested too deeply"),
    # Valid JSON that Python reads as infinity, and lightningd could not read back once we wrote it.
    ("number-1e400", b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"sat":1e400}}', "number out of range"),
    ("number-minus-1E309", b'{"jsonrpc":"2.0","id":"a","result":-1E309}', "number out of range"),
    ("nesting-101-deep", b'{"jsonrpc":"2.0","id":"a","result":' + b"[" * 100 + b"]" * 100 + b"}", "nested too deeply"),
    ("nesting-980-deep", b'{"jsonrpc":"2.0","id":"a","result":' + b"[" * 979 + b"]" * 979 + b"}", "nested too deeply"),
    ("lone-surrogate-in-key", b'{"jsonrpc":"2.0","id":"a","result":{"\\udc00":1}}', "lone surrogate"),
    ("lone-surrogate-escape", b'{"jsonrpc":"2.0","id":"\\ud800","result":{}}', "lone surrogate"),
    ("duplicate-id", b'{"jsonrpc":"2.0","id":"a","id":"b","result":{}}', "duplicate key"),
    ("duplicate-key-nested", b'{"jsonrpc":"2.0","id":"a","result":{"x":1,"x":2}}', "duplicate key"),
    ("two-requests", _REQ + _REQ, "trailing data"),
    ("request-then-newline-garbage", _REQ + b"\nx", "trailing data"),
    # -- one object: no batch, no other JSON value
    ("batch-of-one", b"[" + _REQ + b"]", "not an object"),
    ("batch-of-two", b"[" + _REQ + b"," + _REQ + b"]", "not an object"),
    ("empty-array", b"[]", "not an object"),
    ("string", b'"{}"', "not an object"),
    ("number", b"37913", "not an object"),
    ("null", b"null", "not an object"),
    ("true", b"true", "not an object"),
    # -- JSON-RPC 2.0 envelope
    ("no-jsonrpc", b'{"id":"a","method":"m","params":{}}', "bad jsonrpc"),
    ("jsonrpc-1.0", b'{"jsonrpc":"1.0","id":"a","method":"m","params":{}}', "bad jsonrpc"),
    ("jsonrpc-number", b'{"jsonrpc":2.0,"id":"a","method":"m","params":{}}', "bad jsonrpc"),
    ("jsonrpc-2", b'{"jsonrpc":"2","id":"a","method":"m","params":{}}', "bad jsonrpc"),
    ("jsonrpc-padded", b'{"jsonrpc":"2.0 ","id":"a","method":"m","params":{}}', "bad jsonrpc"),
    ("positional-params", b'{"jsonrpc":"2.0","id":"a","method":"m","params":[1,2]}', "bad params"),
    ("positional-params-empty", b'{"jsonrpc":"2.0","id":"a","method":"m","params":[]}', "bad params"),
    ("params-string", b'{"jsonrpc":"2.0","id":"a","method":"m","params":"x"}', "bad params"),
    ("params-null", b'{"jsonrpc":"2.0","id":"a","method":"m","params":null}', "bad params"),
    ("notification-positional", b'{"jsonrpc":"2.0","method":"m","params":[1]}', "bad params"),
    ("method-number", b'{"jsonrpc":"2.0","id":"a","method":1,"params":{}}', "bad method"),
    ("method-empty", b'{"jsonrpc":"2.0","id":"a","method":"","params":{}}', "bad method"),
    ("method-null", b'{"jsonrpc":"2.0","method":null,"params":{}}', "bad method"),
    ("request-id-number", b'{"jsonrpc":"2.0","id":1,"method":"m","params":{}}', "bad id"),
    ("request-id-null", b'{"jsonrpc":"2.0","id":null,"method":"m","params":{}}', "bad id"),
    ("request-id-object", b'{"jsonrpc":"2.0","id":{},"method":"m","params":{}}', "bad id"),
    ("response-id-number", b'{"jsonrpc":"2.0","id":7,"result":{}}', "bad id"),
    ("response-id-null", b'{"jsonrpc":"2.0","id":null,"result":{}}', "bad id"),
    ("response-no-id", b'{"jsonrpc":"2.0","result":{}}', "bad id"),
    ("error-id-number", b'{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}', "bad id"),
    ("error-no-id", b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"x"}}', "bad id"),
    ("result-and-error", b'{"jsonrpc":"2.0","id":"a","result":{},"error":{"code":1,"message":"x"}}', "ambiguous"),
    ("method-and-result", b'{"jsonrpc":"2.0","id":"a","method":"m","params":{},"result":{}}', "ambiguous"),
    ("neither", b'{"jsonrpc":"2.0","id":"a"}', "not a request or response"),
    ("error-not-object", b'{"jsonrpc":"2.0","id":"a","error":"boom"}', "bad error"),
    ("error-code-string", b'{"jsonrpc":"2.0","id":"a","error":{"code":"1","message":"x"}}', "bad error"),
    ("error-code-float", b'{"jsonrpc":"2.0","id":"a","error":{"code":-32600.0,"message":"x"}}', "bad error"),
    ("error-code-bool", b'{"jsonrpc":"2.0","id":"a","error":{"code":true,"message":"x"}}', "bad error"),
    ("error-no-code", b'{"jsonrpc":"2.0","id":"a","error":{"message":"x"}}', "bad error"),
    ("error-no-message", b'{"jsonrpc":"2.0","id":"a","error":{"code":1}}', "bad error"),
    ("error-message-number", b'{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":2}}', "bad error"),
]


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_parse_frame_refuses(body: bytes, reason: str) -> None:
    # given a body breaking one rule; when parsed; then MalformedFrame names that rule
    with pytest.raises(MalformedFrame) as caught:
        parse_frame(body)
    assert caught.value.data["reason"] == reason, caught.value
    assert caught.value.code == errors.LSPS_PEER_MUTED
    assert isinstance(caught.value, CustomMsgError)
    assert caught.value.to_json()["data"]["reason"] == reason


def test_malformed_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 60
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("sign", [b"", b"-"])
def test_int_of_4301_digits_is_not_json(sign: bytes) -> None:
    # the bound is the frame's own, whatever sys.set_int_max_str_digits() or PYTHONINTMAXSTRDIGITS say
    with pytest.raises(MalformedFrame) as caught:
        parse_frame(b'{"jsonrpc":"2.0","id":"a","result":' + sign + b"1" + b"0" * 4300 + b"}")
    assert caught.value.data["reason"] == "number out of range"


def test_nesting_of_100_is_a_result() -> None:
    # the top-level object is level 1, so the result holds 99 nested arrays
    frame = parse_frame(b'{"jsonrpc":"2.0","id":"a","result":' + b"[" * 99 + b"]" * 99 + b"}")
    assert isinstance(frame, Response)
    assert parse_frame(frame.serialize()) == frame


@pytest.mark.parametrize("number", [b"1e308", b"-1.7976931348623157e308", b"1e-400", b"-0.0", b"0.1"])
def test_finite_floats_are_results(number: bytes) -> None:
    frame = parse_frame(b'{"jsonrpc":"2.0","id":"a","result":' + number + b"}")
    assert frame == Response("a", float(number))


def test_int_of_4300_digits_is_a_result() -> None:
    frame = parse_frame(b'{"jsonrpc":"2.0","id":"a","result":-1' + b"0" * 4299 + b"}")
    assert frame == Response("a", -(10**4299))


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python without the int digit limit")
def test_int_bound_does_not_follow_the_interpreter_setting() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # what PYTHONINTMAXSTRDIGITS=0 does
    try:
        with pytest.raises(MalformedFrame):
            parse_frame(b'{"jsonrpc":"2.0","id":"a","result":1' + b"0" * 5000 + b"}")
    finally:
        sys.set_int_max_str_digits(before)


# -- canonical bodies: parse and serialize are exact inverses -----------------

# (id, body, frame)
CANONICAL: list[tuple[str, bytes, Frame]] = [
    ("request", b'{"jsonrpc":"2.0","id":"a1","method":"lsps0.list_protocols","params":{}}',
     Request("a1", "lsps0.list_protocols", {})),
    ("request-nested-params", b'{"jsonrpc":"2.0","id":"x","method":"lsps1.create_order","params":'
     b'{"lsp_balance_sat":"546","announce_channel":false,"token":null,"n":[1,2.5,-3]}}',
     Request("x", "lsps1.create_order",
             {"lsp_balance_sat": "546", "announce_channel": False, "token": None, "n": [1, 2.5, -3]})),
    ("notification", b'{"jsonrpc":"2.0","method":"lsps5.webhook_registered","params":{"url":"x"}}',
     Notification("lsps5.webhook_registered", {"url": "x"})),
    ("response", b'{"jsonrpc":"2.0","id":"a1","result":{"protocols":[1,3]}}', Response("a1", {"protocols": [1, 3]})),
    ("response-null-result", b'{"jsonrpc":"2.0","id":"a1","result":null}', Response("a1", None)),
    ("response-array-result", b'{"jsonrpc":"2.0","id":"a1","result":[]}', Response("a1", [])),
    ("error", b'{"jsonrpc":"2.0","id":"a1","error":{"code":1,"message":"Client rejected","data":'
     b'{"message":"Client rejected"}}}', ErrorResponse("a1", 1, "Client rejected", {"message": "Client rejected"})),
    ("error-no-data", b'{"jsonrpc":"2.0","id":"a1","error":{"code":-32601,"message":"Method not found"}}',
     ErrorResponse("a1", -32601, "Method not found")),
    ("error-string-data", b'{"jsonrpc":"2.0","id":"a1","error":{"code":-32603,"message":"x","data":"why"}}',
     ErrorResponse("a1", -32603, "x", "why")),
    ("parse-error-id-null", b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}',
     ErrorResponse(None, PARSE_ERROR, "parse error")),
    # bLIP-50: characters "that can be embedded into a JSON string without escapes MUST be encoded directly"
    ("utf8-written-directly", '{"jsonrpc":"2.0","id":"\u00e9\u26a1","result":{"m":"\u20bf"}}'.encode(),
     Response("\u00e9\u26a1", {"m": "\u20bf"})),
    ("emoji-4-bytes", '{"jsonrpc":"2.0","id":"a","result":"\U0001f600"}'.encode(), Response("a", "\U0001f600")),
    # an escaped NUL is six ASCII bytes, not a 0 byte: allowed, and written back escaped
    ("escaped-nul", b'{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"a\\u0000b"}}',
     ErrorResponse("a", 1, "a\x00b")),
    ("escaped-quote-newline", b'{"jsonrpc":"2.0","id":"a","result":"\\"\\n\\\\"}', Response("a", '"\n\\')),
]


@pytest.mark.parametrize(("body", "frame"), [c[1:] for c in CANONICAL], ids=[c[0] for c in CANONICAL])
def test_parse_and_serialize_are_inverses(body: bytes, frame: Frame) -> None:
    assert parse_frame(body) == frame
    assert frame.serialize() == body
    assert parse_frame(frame.serialize()) == frame
    assert b"\x00" not in frame.serialize()


@pytest.mark.parametrize(
    ("frame", "kind"),
    [(c[2], k) for c, k in zip(CANONICAL[:4], ["request", "request", "notification", "response"], strict=True)]
    + [(ErrorResponse("a", 1, "x"), "error")],
    ids=["request", "request-nested", "notification", "response", "error"],
)
def test_kind_and_to_json(frame: Frame, kind: str) -> None:
    assert frame.kind == kind
    assert frame.to_json()["jsonrpc"] == "2.0"
    assert parse_frame(frame.serialize()).to_json() == frame.to_json()


# (id, body accepted although not canonical, frame, canonical body)
ACCEPTED: list[tuple[str, bytes, Frame, bytes]] = [
    ("leading-trailing-whitespace", b" \t\r\n" + _REQ + b"\n\r\t ", Request("a", "m", {}), _REQ),
    ("pretty-printed", b'{\n  "jsonrpc": "2.0",\n  "id": "a",\n  "result": {}\n}\n', Response("a", {}), _RES),
    ("keys-reordered", b'{"result":{},"id":"a","jsonrpc":"2.0"}', Response("a", {}), _RES),
    ("params-omitted", b'{"jsonrpc":"2.0","id":"a","method":"m"}', Request("a", "m", {}), _REQ),
    ("unknown-member-ignored", b'{"jsonrpc":"2.0","id":"a","result":{},"x-extra":1}', Response("a", {}), _RES),
    ("ascii-escape", b'{"jsonrpc":"2.0","id":"\\u0061","result":{}}', Response("a", {}), _RES),
    ("error-data-null-is-absent", b'{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x","data":null}}',
     ErrorResponse("a", 1, "x"), b'{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}'),
    ("escaped-surrogate-pair", b'{"jsonrpc":"2.0","id":"a","result":"\\ud83d\\ude00"}', Response("a", "\U0001f600"),
     '{"jsonrpc":"2.0","id":"a","result":"\U0001f600"}'.encode()),
]


@pytest.mark.parametrize(("body", "frame", "canonical"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_non_canonical_bodies_are_accepted(body: bytes, frame: Frame, canonical: bytes) -> None:
    # given a valid but non-compact body; when parsed and written again; then the compact form
    assert parse_frame(body) == frame
    assert frame.serialize() == canonical


def _body_of_length(n: int) -> bytes:
    head, tail = b'{"jsonrpc":"2.0","id":"a","result":"', b'"}'
    return head + b"x" * (n - len(head) - len(tail)) + tail


def test_65533_bytes_accepted_65534_refused() -> None:
    # given the largest body a 65535-byte message can carry after its 2-byte type
    largest = _body_of_length(MAX_BODY_LEN)
    assert len(largest) == 65533 and MAX_BODY_LEN == MAX_MESSAGE_LEN - 2
    frame = parse_frame(largest)
    assert frame.serialize() == largest
    message = Message(LSPS0_MESSAGE_TYPE, frame.serialize())
    assert len(message) == MAX_MESSAGE_LEN and parse_message(message.serialize()) == message
    # when one byte longer; then refused both ways
    with pytest.raises(MalformedFrame) as caught:
        parse_frame(_body_of_length(MAX_BODY_LEN + 1))
    assert caught.value.data == {"reason": "too long", "length": 65534, "max": 65533}
    with pytest.raises(ValidationError) as refused:
        Response("a", "x" * (65533 - len(b'{"jsonrpc":"2.0","id":"a","result":""}') + 1)).serialize()
    assert refused.value.code == errors.LSPS_REQUEST_TOO_LARGE
    assert refused.value.data == {"reason": "too long", "length": 65534, "max": 65533}


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    # 21844 three-byte characters = 65532 bytes of string, far fewer characters
    with pytest.raises(ValidationError) as refused:
        encode_request("m", {"x": "\u20bf" * 21844}, "a")
    assert refused.value.code == errors.LSPS_REQUEST_TOO_LARGE


def test_message_type_is_odd_and_custom() -> None:
    assert LSPS0_MESSAGE_TYPE == 37913 == 0x9419
    assert LSPS0_MESSAGE_TYPE % 2 == 1 and LSPS0_MESSAGE_TYPE in CUSTOM_RANGE
    assert Message(LSPS0_MESSAGE_TYPE, _REQ).serialize() == b"\x94\x19" + _REQ


# -- serialize refuses what it must not send (ValidationError, h11's LocalProtocolError)

# (id, frame, code, reason)
UNSENDABLE: list[tuple[str, Any, int, str]] = [
    ("method-empty", Request("a", "", {}), errors.INVALID_PARAMETER, "bad method"),
    ("method-not-string", Request("a", 5, {}), errors.INVALID_PARAMETER, "bad method"),  # type: ignore[arg-type]
    ("params-list", Request("a", "m", [1]), errors.INVALID_PARAMETER, "bad params"),  # type: ignore[arg-type]
    ("params-none", Request("a", "m", None), errors.INVALID_PARAMETER, "bad params"),  # type: ignore[arg-type]
    ("notification-params-list", Notification("m", []), errors.INVALID_PARAMETER, "bad params"),  # type: ignore[arg-type]
    ("request-id-int", Request(1, "m", {}), errors.INVALID_PARAMETER, "bad id"),  # type: ignore[arg-type]
    ("response-id-none", Response(None, {}), errors.INVALID_PARAMETER, "bad id"),  # type: ignore[arg-type]
    ("error-code-bool", ErrorResponse("a", True, "x"), errors.INVALID_PARAMETER, "bad error"),
    ("nan", Request("a", "m", {"x": float("nan")}), errors.INVALID_PARAMETER, "not json"),
    ("bytes-value", Request("a", "m", {"x": b"\x00"}), errors.INVALID_PARAMETER, "not json"),
    ("lone-surrogate", Request("a", "m", {"x": "\ud800"}), errors.INVALID_PARAMETER, "not json"),
    ("tuple-value", Request("a", "m", {"x": (1, 2)}), errors.INVALID_PARAMETER, "not plain json"),
    ("int-key", Request("a", "m", {1: "x"}), errors.INVALID_PARAMETER, "not plain json"),  # type: ignore[dict-item]
    ("invalid-params-no-data", ErrorResponse("a", -32602, "Invalid params"), errors.INVALID_PARAMETER,
     "no data.unrecognized"),
    ("invalid-params-no-unrecognized", ErrorResponse("a", -32602, "Invalid params", {"x": 1}),
     errors.INVALID_PARAMETER, "no data.unrecognized"),
    ("invalid-params-unrecognized-string", ErrorResponse("a", -32602, "x", {"unrecognized": "p"}),
     errors.INVALID_PARAMETER, "no data.unrecognized"),
    ("invalid-params-unrecognized-ints", ErrorResponse("a", -32602, "x", {"unrecognized": [1]}),
     errors.INVALID_PARAMETER, "no data.unrecognized"),
    ("too-large", Request("a", "m", {"x": "y" * 65533}), errors.LSPS_REQUEST_TOO_LARGE, "too long"),
]


@pytest.mark.parametrize(("frame", "code", "reason"), [c[1:] for c in UNSENDABLE], ids=[c[0] for c in UNSENDABLE])
def test_serialize_refuses(frame: Frame, code: int, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        frame.serialize()
    assert (caught.value.code, caught.value.data["reason"]) == (code, reason), caught.value


def test_invalid_params_with_unrecognized_is_sendable() -> None:
    frame = ErrorResponse("42", -32602, "Invalid params", {"unrecognized": ["future_feature1_param"]})
    assert frame.serialize() == (
        b'{"jsonrpc":"2.0","id":"42","error":{"code":-32602,"message":"Invalid params",'
        b'"data":{"unrecognized":["future_feature1_param"]}}}'
    )


def test_encode_request_is_request_serialize() -> None:
    assert encode_request("lsps0.list_protocols", {}, "r1") == (
        b'{"jsonrpc":"2.0","id":"r1","method":"lsps0.list_protocols","params":{}}'
    )
    with pytest.raises(ValidationError) as caught:
        encode_request("m", [], "r1")  # type: ignore[arg-type]
    assert caught.value.data["reason"] == "bad params"


def test_parse_error_response_is_the_spec_reply() -> None:
    # bLIP-50: the LSP "MUST respond with ... "parse error" (`code` = `-32700`, `id` = `null`)"
    reply = parse_error_response()
    assert (reply.id, reply.code, reply.kind) == (None, -32700, "error")
    assert reply.serialize() == b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}'


# (id, role, body, accepted?) - bLIP-50: a client receives responses and notifications, an LSP requests
ROLES: list[tuple[str, Any, bytes, bool]] = [
    ("client-response", "client", _RES, True),
    ("client-error", "client", b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}', True),
    ("client-notification", "client", b'{"jsonrpc":"2.0","method":"m","params":{}}', True),
    ("client-request", "client", _REQ, False),
    ("lsp-request", "lsp", _REQ, True),
    ("lsp-response", "lsp", _RES, False),
    ("lsp-notification", "lsp", b'{"jsonrpc":"2.0","method":"m","params":{}}', False),
    ("no-role-request", None, _REQ, True),
    ("no-role-response", None, _RES, True),
]


@pytest.mark.parametrize(("role", "body", "accepted"), [c[1:] for c in ROLES], ids=[c[0] for c in ROLES])
def test_role_decides_which_kinds_are_well_formed(role: Any, body: bytes, accepted: bool) -> None:
    if accepted:
        assert parse_frame(body, role).serialize() == body
    else:
        with pytest.raises(MalformedFrame) as caught:
            parse_frame(body, role)
        assert caught.value.data["reason"] == "unexpected kind" and caught.value.data["role"] == role


# -- request ids ---------------------------------------------------------------


def test_request_id_has_at_least_80_bits_and_is_hex() -> None:
    rid = new_request_id()
    assert len(rid) * 4 >= 80  # each hex digit carries 4 bits
    assert int(rid, 16) >= 0 and rid == rid.lower()
    assert parse_frame(encode_request("m", {}, rid)) == Request(rid, "m", {})


def test_request_ids_are_unique_and_not_a_counter() -> None:
    ids = [new_request_id() for _ in range(10000)]
    assert len(set(ids)) == 10000
    values = [int(rid, 16) for rid in ids]
    assert not any(b - a == 1 for a, b in zip(values, values[1:], strict=False))
    assert len({len(rid) for rid in ids}) == 1


# -- sanitising what the peer wrote -------------------------------------------

# (id, text, limit, shown)
SANITIZE: list[tuple[str, str, int, str]] = [
    ("plain", "Client rejected", 200, "Client rejected"),
    ("nul", "bad\x00 thing", 200, "bad thing"),
    ("newlines-and-tabs", "line1\nline2\r\n\tline3", 200, "line1 line2 line3"),
    ("ansi-colour", "\x1b[31mred\x1b[0m text", 200, "red text"),
    ("ansi-clear-screen", "\x1b[2J\x1b[Hhi", 200, "hi"),
    ("osc-window-title", "\x1b]0;pwned\x07ok", 200, "ok"),
    ("osc-with-st", "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", 200, "link"),
    ("c1-csi", "\x9b31mred", 200, "red"),
    ("bare-esc-and-bel", "a\x1b\x07b", 200, "ab"),
    ("esc-reset", "a\x1bcb", 200, "ab"),
    ("esc-charset", "\x1b(Bx\x1b7y", 200, "xy"),
    ("del", "a\x7fb", 200, "ab"),
    ("backspace-overwrite", "paid\x08\x08\x08\x08FAIL", 200, "paidFAIL"),
    ("bidi-override", "abc\u202edcba", 200, "abcdcba"),
    ("bidi-isolate", "\u2066x\u2069", 200, "x"),
    ("zero-width-space", "in\u200bvoice", 200, "invoice"),
    ("line-separator", "a\u2028b\u2029c", 200, "a b c"),
    ("html", "<script>alert(1)</script>", 200, "\u2039script\u203aalert(1)\u2039/script\u203a"),
    ("unassigned-and-private-use", "a\U000e0000\ue000b", 200, "ab"),
    ("unicode-kept", "\u00e9t\u00e9 \u26a1 \u20bf", 200, "\u00e9t\u00e9 \u26a1 \u20bf"),
    ("whitespace-runs", "  a   b  ", 200, "a b"),
    ("only-controls", "\x00\x01\x1b[0m", 200, ""),
    ("exactly-limit", "abcde", 5, "abcde"),
    ("over-limit", "abcdef", 5, "abcd\u2026"),
    ("long-text", "x" * 100000, 200, "x" * 199 + "\u2026"),
    ("limit-1", "abc", 1, "\u2026"),
]


@pytest.mark.parametrize(("text", "limit", "shown"), [c[1:] for c in SANITIZE], ids=[c[0] for c in SANITIZE])
def test_sanitize(text: str, limit: int, shown: str) -> None:
    result = sanitize(text, limit)
    assert result == shown
    assert len(result) <= limit
    assert not any(ch in result for ch in "\x00\x1b\x9b<>\n\r\t")


def test_sanitize_refuses_a_limit_below_1() -> None:
    with pytest.raises(ValueError):
        sanitize("x", 0)


def test_sanitize_an_error_message_from_the_wire() -> None:
    # given an LSP error whose message is a terminal attack; when shown; then inert text
    frame = parse_frame(b'{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"\\u001b[2Jok\\n<b>"}}')
    assert isinstance(frame, ErrorResponse)
    assert sanitize(frame.message) == "ok \u2039b\u203a"


# -- pending calls: keyed by (peer, id) ----------------------------------------


class Outcomes:
    """What each call was told, in call order: (name, outcome)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Outcome]] = []

    def __call__(self, name: str) -> Any:
        return lambda outcome: self.log.append((name, outcome))


def test_same_id_from_two_peers_completes_only_that_peers_call() -> None:
    # given the same id pending with peers A and B
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "same", seen("a"))
    pending.add(B, "same", seen("b"))
    # when B answers; then only B's call completes
    answer = Response("same", {"from": "B"})
    assert pending.match(B, answer) is True
    assert seen.log == [("b", answer)] and len(pending) == 1
    # and B's second answer is no longer ours; A's answer still completes A's call
    assert pending.match(B, answer) is False
    assert pending.match(A, Response("same", {})) is True
    assert [name for name, _ in seen.log] == ["b", "a"] and len(pending) == 0


def test_answer_from_another_peer_is_left_alone() -> None:
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "r1", seen("a"))
    assert pending.match(B, Response("r1", {})) is False
    assert seen.log == [] and len(pending) == 1


@pytest.mark.parametrize(
    "frame",
    [Response("unknown", {}), ErrorResponse("unknown", 1, "x"), ErrorResponse(None, PARSE_ERROR, "parse error"),
     Request("r1", "m", {}), Notification("m", {})],
    ids=["response-unknown-id", "error-unknown-id", "error-id-null", "request-same-id", "notification"],
)
def test_frame_that_is_not_our_answer_is_not_matched(frame: Frame) -> None:
    # bLIP-50: a response "with an `id` it does not remember sending a request for, it MUST ignore"
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "r1", seen("a"))
    assert pending.match(A, frame) is False
    assert seen.log == [] and len(pending) == 1


def test_error_response_completes_the_call() -> None:
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "r1", seen("a"))
    error = ErrorResponse("r1", -32601, "Method not found")
    assert pending.match(A, error) is True
    assert seen.log == [("a", error)]


def test_expire_with_an_injected_clock() -> None:
    # given calls due at 10 and 20, and one without a deadline
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "t10", seen("t10"), deadline=10.0)
    pending.add(A, "t20", seen("t20"), deadline=20.0)
    pending.add(B, "never", seen("never"))
    assert pending.next_deadline() == 10.0
    # when the clock reads 9.99, 10 (the deadline itself), then 1000
    assert pending.expire(9.99) == 0
    assert pending.expire(10.0) == 1
    assert pending.next_deadline() == 20.0
    assert pending.expire(1000.0) == 1
    # then each timed-out call got LSPS_TIMEOUT once, and the other waits on
    assert [name for name, _ in seen.log] == ["t10", "t20"]
    first = seen.log[0][1]
    assert isinstance(first, TransientError) and first.code == errors.LSPS_TIMEOUT
    assert first.data == {"peer_id": A, "id": "t10"}
    assert len(pending) == 1 and pending.next_deadline() is None
    # and a late answer to a timed-out id is no longer ours (bLIP-50: "forget the `id`")
    assert pending.match(A, Response("t10", {})) is False


def test_fail_peer_fails_only_that_peers_calls() -> None:
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "a1", seen("a1"))
    pending.add(A, "a2", seen("a2"))
    pending.add(B, "b1", seen("b1"))
    assert pending.fail_peer(A, "peer disconnected") == 2
    assert sorted(name for name, _ in seen.log) == ["a1", "a2"]
    assert all(isinstance(o, TransientError) and o.code == errors.LSPS_PEER_DISCONNECTED for _, o in seen.log)
    assert [o.message for _, o in seen.log if isinstance(o, CustomMsgError)] == ["peer disconnected"] * 2
    assert len(pending) == 1 and pending.fail_peer(A, "again") == 0
    assert pending.fail_peer(B, "malformed message", errors.LSPS_PEER_MUTED) == 1
    assert isinstance(seen.log[-1][1], CustomMsgError) and seen.log[-1][1].code == errors.LSPS_PEER_MUTED


def test_a_raising_callback_does_not_stop_the_others() -> None:
    # given three calls to A whose first callback raises
    reported: list[str] = []
    pending, seen = PendingCalls(WaiterRegistry(on_callback_error=reported.append)), Outcomes()

    def boom(outcome: Outcome) -> None:
        raise RuntimeError("callback bug")

    pending.add(A, "r0", boom)
    pending.add(A, "r1", seen("r1"))
    pending.add(A, "r2", seen("r2"))
    # when A disconnects; then the other two still complete and the bug is reported
    assert pending.fail_peer(A, "peer disconnected") == 3
    assert [name for name, _ in seen.log] == ["r1", "r2"]
    assert len(reported) == 1 and "callback bug" in reported[0]
    assert len(pending) == 0
    # and a raising callback on match still counts as a match
    pending.add(A, "r3", boom)
    assert pending.match(A, Response("r3", {})) is True and len(reported) == 2


def test_callbacks_run_outside_the_lock() -> None:
    # given a callback that touches the table (a plain Lock would deadlock if held)
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "r1", lambda outcome: pending.add(A, "retry", seen("retry")))
    assert pending.match(A, Response("r1", {})) is True
    assert len(pending) == 1 and pending.match(A, Response("retry", {})) is True
    assert [name for name, _ in seen.log] == ["retry"]


def test_adding_a_pending_id_twice_is_refused() -> None:
    pending, seen = PendingCalls(), Outcomes()
    pending.add(A, "r1", seen("first"))
    with pytest.raises(ValidationError) as caught:
        pending.add(A, "r1", seen("second"))
    assert caught.value.data == {"reason": "duplicate id", "id": "r1"}
    pending.add(B, "r1", seen("other-peer"))  # the same id with another peer is another call
    assert len(pending) == 2


def test_concurrent_add_and_match_complete_each_call_once() -> None:
    pending = PendingCalls()
    done: list[str] = []
    lock = threading.Lock()

    def record(outcome: Outcome) -> None:
        assert isinstance(outcome, Response)
        with lock:
            done.append(outcome.id)

    def worker(n: int) -> None:
        for i in range(300):
            pending.add(A, f"{n}-{i}", record)
            assert pending.match(A, Response(f"{n}-{i}", {})) is True

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == len(set(done)) == 2400 and len(pending) == 0


# -- muted peers ---------------------------------------------------------------


def test_mute_is_true_once_per_peer_until_unmuted() -> None:
    # given a peer that sent a malformed message
    muted = MutedPeers()
    assert muted.mute(A) is True  # log it
    assert muted.mute(A) is False  # already logged
    assert muted.is_muted(A) and A in muted
    assert not muted.is_muted(B) and B not in muted
    # when it reconnects (bLIP-50: "SHOULD re-attempt this on reconnection")
    assert muted.unmute(A) is True
    assert muted.unmute(A) is False
    assert A not in muted
    # then a new malformed message is logged again
    assert muted.mute(A) is True


def test_malformed_frame_then_mute_then_reconnect() -> None:
    # given a client receiving garbage from A; then A is muted once, B untouched
    muted = MutedPeers()
    with pytest.raises(MalformedFrame):
        parse_frame(b"[" + _RES + b"]", "client")
    assert muted.mute(A) is True and A in muted and B not in muted
    muted.unmute(A)
    assert A not in muted
