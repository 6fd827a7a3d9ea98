"""doc/schemas: the Core Lightning JSON schemas of every custommsg-* method and notification.

The files are in CLN's format (``doc/schemas/*.json`` and ``doc/schemas/notification/*.json`` in the CLN
tree), so CLN's tools turn them into man pages and a file drops unchanged into CLN's ``doc/schemas``.
They are checked here against ``tests/schema_check.FORMAT``, a meta-schema of that format; their
examples, a table of literal responses (README examples, every ``to_json`` shape) and the plugin's own
``to_json`` output validate with CLN's types, and the same responses with a wrong field type, an extra
field or a missing one do not.

pyln-testing's autouse ``jsonschemas`` fixture loads ``doc/schemas`` from the working directory, so the
integration tier validates every custommsg-* call (dict parameters and result) against these files too;
the protocol tier validates every answer the plugin writes (tests/protocol/harness.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.records import DELIVERED, OUTBOX_STATUSES, SENDING, SENT, OutboxEntry, StoredMessage
from custommsg.node.plugin import METHODS
from custommsg.node.runtime import DELIVERED_TOPIC, STORED_TOPIC
from custommsg.store.database import Store
from tests.schema_check import (
    ALL_FILES,
    METHOD_FILES,
    NOTIFICATION_FILES,
    SCHEMAS,
    format_problems,
    problems,
    schema_of,
)
from tests.schema_check import load as _load


def file_id(path: Path) -> str:
    return str(path.relative_to(SCHEMAS))


A = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
B = "03c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
NOT_A_KEY = "04" + "11" * 32  # 66 hex digits, but not a compressed key (the integration tier sends it)
DROPPED = {"rate": 0, "peer_budget": 0, "global_budget": 0, "retention": 0, "storage": 0, "malformed": 0,
           "unanswered": 0}
ZEROS = {"sent": 0, "received": 0, "stored": 0, "dropped": DROPPED,
         "bytes": {"sent": 0, "received": 0, "stored": 0, "dropped": DROPPED}}

# A stored message exactly as the README's quickstart shows it (with a real node id).
HELLO = {
    "created_index": 1,
    "peer_id": A,
    "type": 32769,
    "payload": "800168656c6c6f",
    "length": 7,
    "received_at": 1764064800.123,
    "text": "hello",
}
BINARY = {"created_index": 2, "peer_id": A, "type": 40001, "payload": "9c41ff00", "length": 4, "received_at": 5.5}
# A bLIP-50 (LSPS0) request this node answered: type 37913, the JSON-RPC object as text and decoded.
LSPS_TEXT = '{"jsonrpc":"2.0","id":"7a1c","method":"lsps0.list_protocols","params":{}}'
LSPS_REQUEST = {
    "created_index": 5, "peer_id": B, "type": 37913, "payload": "9419" + LSPS_TEXT.encode().hex(),
    "length": 2 + len(LSPS_TEXT), "received_at": 7.25, "text": LSPS_TEXT, "kind": "request",
    "json": json.loads(LSPS_TEXT), "method": "lsps0.list_protocols", "answered_at": 7.5,
}
LSPS_RESPONSE_TEXT = '{"jsonrpc":"2.0","id":"7a1c","result":{"protocols":[1,2]}}'
LSPS_RESPONSE = {
    "created_index": 6, "peer_id": B, "type": 37913, "payload": "9419" + LSPS_RESPONSE_TEXT.encode().hex(),
    "length": 2 + len(LSPS_RESPONSE_TEXT), "received_at": 8.5, "text": LSPS_RESPONSE_TEXT, "kind": "response",
    "json": json.loads(LSPS_RESPONSE_TEXT),
}
EMPTY_BODY = {"created_index": 3, "peer_id": B, "type": 32769, "payload": "8001", "length": 2, "received_at": 6.0,
              "text": ""}


def outbox_entry(status: str, **fields: Any) -> dict[str, Any]:
    entry = {"id": 4, "created_index": 4, "peer_id": B, "type": 32769, "length": 3, "status": status,
             "created_at": 10.5, "updated_at": 10.5}
    entry.update(fields)
    return entry


def without(entry: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


BOUNDS = {
    "receive_limiter_peers": {"max": 10000, "now": 0, "over": 0},
    "send_budget_peers": {"max": 10000, "now": 0, "over": 0},
    "waits": {"max": 10000, "now": 0, "over": 0},
    "lsps_calls": {"max": 1000, "now": 0, "over": 0},
    "lsps_calls_per_peer": {"max": 100, "over": 0},
    "lsps_requests": {"max": 1000, "over": 0},
    "lsps_requests_per_peer": {"max": 100, "over": 3},
    "acked_streams_per_peer": {"max": 32, "over": 9968},
    "acked_peers": {"max": 10000, "now": 2, "over": 0},
}
STATS = {"started_at": 1764064700.25, "inbox_count": 0, "malformed": 0, "waiting": 0, "session": ZEROS,
         "total": ZEROS, "peers": [], "bounds": BOUNDS}
STATS_ROW = {"peer_id": A, "type": 32769, "session": ZEROS, "total": ZEROS}
# An acknowledged entry the peer acknowledged, as custommsg_delivered and custommsg-outbox-wait give it.
DELIVERED_ENTRY = outbox_entry("delivered", updated_index=3, sent_at=11.5, ack=True, seq=1, delivered_at=12.5)
PEER_ROW = {"peer_id": A, "connected": True, "ack_support": "yes", "ack_version": 1, "queued": 0, "unacknowledged": 0,
            "receive_budget": {"messages": 1000, "bytes": 2097152, "dropped_in_episode": 0},
            "send_budget": {"bytes": 2097152}}
# What custommsg-lsps-respond answers, and a -32602 error as bLIP-50 wants it (with data.unrecognized).
RESPONDED = {"peer_id": A, "id": "7a1c", "created_index": 5, "length": 2 + len(LSPS_RESPONSE_TEXT)}
INVALID_PARAMS_ERROR = {"code": -32602, "message": "invalid params", "data": {"unrecognized": ["x"]}}

# (schema, part, instance): literal requests and responses that must validate.
VALID: list[tuple[str, str, Any]] = [
    ("custommsg-send", "request", {"node_id": A, "msg": "800168656c6c6f"}),
    ("custommsg-send", "request", {"node_id": A, "msg": 80010000}),  # lightning-cli sends digits-only hex unquoted
    ("custommsg-send", "request", {"node_id": A, "msg": "8001AABB", "allow_even": False}),
    ("custommsg-send", "request", {"node_id": B, "msg": "8001aa", "queue": True, "ttl": 1.5}),
    ("custommsg-send", "request", {"node_id": A, "name": "swap_request", "fields": {"amount_sat": 1, "tlvs": {}}}),
    ("custommsg-request", "request", {"node_id": A, "name": "swap_request", "reply_type": "swap_response"}),
    ("custommsg-list", "request", {"name": "swap_response"}),
    ("custommsg-send", "response", {"status": "sent", "peer_id": A, "type": 32769, "length": 7}),
    ("custommsg-send", "response", {"status": "queued", "peer_id": B, "type": 32769, "length": 3, "id": 1}),
    ("custommsg-send", "request", {"node_id": B, "msg": "8001aa", "ack": True, "ttl": 60}),
    ("custommsg-send", "response", {"status": "sent", "peer_id": B, "type": 32769, "length": 3, "id": 2}),  # ack
    ("custommsg-list", "request", {}),
    ("custommsg-list", "request", {"peer_id": A, "type": 40001, "index": "created", "start": 251, "limit": 100}),
    ("custommsg-list", "response", {"messages": []}),
    ("custommsg-list", "response", {"messages": [HELLO, BINARY, EMPTY_BODY]}),
    ("custommsg-list", "request", {"method": "lsps0.list_protocols"}),
    ("custommsg-list", "response", {"messages": [LSPS_REQUEST, without(LSPS_REQUEST, "answered_at"), LSPS_RESPONSE]}),
    ("custommsg-wait", "request", {"nextvalue": 5, "method": "lsps1.get_info", "timeout": 30}),
    ("custommsg-wait", "response", LSPS_RESPONSE),
    ("custommsg_stored", "response", LSPS_REQUEST),
    ("custommsg-wait", "request", {"nextvalue": 1}),
    ("custommsg-wait", "request", {"nextvalue": 2, "peer_id": A, "type": 32769, "timeout": 0}),
    ("custommsg-wait", "response", HELLO),
    ("custommsg-wait", "response", BINARY),
    ("custommsg-wait", "response", EMPTY_BODY),
    ("custommsg-delete", "request", {"created_index": 1}),
    ("custommsg-delete", "request", {"up_to": 250}),
    ("custommsg-delete", "response", {"deleted": 0}),
    ("custommsg-stats", "request", {"peer_id": A, "type": 1}),
    ("custommsg-stats", "response", STATS),
    ("custommsg-stats", "response", {**STATS, "inbox_count": 1, "peers": [STATS_ROW]}),
    ("custommsg-stats", "response", {**STATS, "global_budget": {"bytes": 65535, "dropped_in_episode": 7}}),
    ("custommsg-outbox", "request", {"peer_id": B, "status": "failed", "index": "updated", "start": 1, "limit": 10}),
    ("custommsg-outbox", "response", {"outbox": []}),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued")]}),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", expires_at=70.5)]}),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", updated_index=2)]}),  # queued again
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("sending", updated_index=1)]}),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("sent", updated_index=2, sent_at=11.5)]}),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("expired", updated_index=1, reason="ttl passed", expires_at=11.0)]}),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("cancelled", updated_index=1)]}),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("sent", updated_index=2, sent_at=11.5, ack=True, seq=1)]}),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("delivered", updated_index=3, sent_at=11.5, ack=True, seq=1, delivered_at=12.0)]}),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("failed", updated_index=3, sent_at=11.5, ack=True, seq=2, reason="peer went away")]}),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("failed", updated_index=2, reason="Peer is not connected: not ours")]}),
    ("custommsg-cancel", "request", {"id": 4}),
    ("custommsg-cancel", "response", outbox_entry("cancelled", updated_index=1)),
    ("custommsg-cancel", "response", outbox_entry("cancelled", updated_index=1, expires_at=70.5)),
    ("custommsg-request", "request", {"node_id": A, "msg": "9c41aa", "reply_type": 40003}),
    ("custommsg-request", "request",
     {"node_id": A, "msg": "9c41aa", "reply_type": 40003, "reply_prefix": 1234, "timeout": 10, "allow_even": True}),
    ("custommsg-request", "response",
     {"request": {"peer_id": A, "type": 40001, "length": 3}, "reply": {**BINARY, "type": 40003}}),
    ("custommsg_stored", "response", HELLO),
    ("custommsg_stored", "response", BINARY),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": "lsps0.list_protocols"}),
    ("custommsg-lsps-call", "request", {"peer_id": B, "method": "lsps1.get_info", "params": {"a": 1}, "timeout": 60}),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": "m", "params": {}, "timeout": 0.5}),
    ("custommsg-lsps-call", "response", {"protocols": [1, 2]}),  # the peer's result object, as it is
    ("custommsg-lsps-call", "response", {}),
    ("custommsg-lsps-call", "response", {"result": 5}),  # a result that is not an object, wrapped
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "7a1c", "result": {"protocols": [1]}}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": []}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": "ok"}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": 0}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": False}),
    ("custommsg-lsps-respond", "request",
     {"peer_id": A, "id": "q", "error": {"code": -32601, "message": "method not found"}}),
    ("custommsg-lsps-respond", "request", {"peer_id": B, "id": "q", "error": INVALID_PARAMS_ERROR}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {"code": 1, "message": "x", "data": "y"}}),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {"code": 1, "message": "", "data": None}}),
    ("custommsg-lsps-respond", "response", RESPONDED),
    ("custommsg-outbox-wait", "request", {"id": 1}),
    ("custommsg-outbox-wait", "request", {"id": 4, "timeout": 0}),
    ("custommsg-outbox-wait", "request", {"id": 4, "timeout": 5.5}),
    ("custommsg-outbox-wait", "response", DELIVERED_ENTRY),
    ("custommsg-outbox-wait", "response", {**DELIVERED_ENTRY, "expires_at": 70.5}),
    ("custommsg-outbox-wait", "response", outbox_entry("sent", updated_index=2, sent_at=11.5)),  # without ack
    ("custommsg-outbox-wait", "response", outbox_entry("sent", updated_index=2, sent_at=11.5, expires_at=70.5)),
    ("custommsg-outbox-wait", "response",
     outbox_entry("expired", updated_index=1, reason="ttl passed", expires_at=11.0)),
    ("custommsg-outbox-wait", "response",
     outbox_entry("expired", updated_index=3, reason="ttl passed", expires_at=70.5, ack=True, seq=1, sent_at=11.5)),
    ("custommsg-outbox-wait", "response", outbox_entry("cancelled", updated_index=1)),
    ("custommsg-outbox-wait", "response", outbox_entry("cancelled", updated_index=1, ack=True, expires_at=70.5)),
    ("custommsg-outbox-wait", "response",
     outbox_entry("failed", updated_index=3, sent_at=11.5, ack=True, seq=2, reason="peer went away")),
    ("custommsg-outbox-wait", "response", outbox_entry("failed", updated_index=2, reason="Peer is not connected")),
    ("custommsg-peers", "request", {}),
    ("custommsg-peers", "request", {"peer_id": A}),
    ("custommsg-peers", "response", {"peers": []}),
    ("custommsg-peers", "response", {"peers": [PEER_ROW]}),
    ("custommsg-peers", "response",
     {"peers": [PEER_ROW, {"peer_id": B, "connected": False, "ack_support": "unknown", "queued": 2,
                           "unacknowledged": 1, "receive_budget": {"messages": 3, "dropped_in_episode": 40}}]}),
    ("custommsg-peers", "response", {"peers": [{**without(PEER_ROW, "ack_version"), "ack_support": "no"}]}),
    ("custommsg_delivered", "response", DELIVERED_ENTRY),
    ("custommsg_delivered", "response", {**DELIVERED_ENTRY, "expires_at": 70.5}),
]

# (schema, part, instance, why): the same shapes made wrong; each must fail.
INVALID: list[tuple[str, str, Any, str]] = [
    ("custommsg-send", "request", {"msg": "8001"}, "node_id missing"),
    ("custommsg-send", "request", {"node_id": A, "name": "t", "fields": [1]}, "fields not an object"),
    ("custommsg-send", "request", {"node_id": A, "name": 5}, "name not a string"),
    ("custommsg-send", "request", {"node_id": A, "msg": "zz"}, "msg not hex"),
    ("custommsg-send", "request", {"node_id": A, "msg": True}, "msg a boolean"),
    ("custommsg-send", "request", {"node_id": NOT_A_KEY, "msg": "8001"}, "node_id not a compressed key"),
    ("custommsg-send", "request", {"node_id": A, "msg": "8001", "queue": "yes"}, "queue not a boolean"),
    ("custommsg-send", "request", {"node_id": A, "msg": "8001", "ttl": "10"}, "ttl a string"),
    ("custommsg-send", "request", {"node_id": A, "msg": "8001", "force": True}, "unknown parameter"),
    ("custommsg-send", "response", {"status": "sent", "peer_id": A, "type": 32769, "length": "7"}, "length a string"),
    ("custommsg-send", "response", {"status": "sent", "peer_id": A, "type": 32769, "length": 7, "extra": 1},
     "extra field"),
    ("custommsg-send", "response", {"status": "queued", "peer_id": A, "type": 32769, "length": 7}, "queued, no id"),
    ("custommsg-send", "response", {"status": "delivered", "peer_id": A, "type": 32769, "length": 7},
     "unknown status"),
    ("custommsg-send", "response", {"status": "sent", "peer_id": NOT_A_KEY, "type": 32769, "length": 7},
     "peer_id not a key"),
    ("custommsg-list", "request", {"index": "updated"}, "list has no updated index"),
    ("custommsg-list", "request", {"type": 70000}, "type above u16"),
    ("custommsg-list", "request", {"limit": -1}, "negative limit"),
    ("custommsg-list", "response", {"messages": [{**HELLO, "text": 5}]}, "text a number"),
    ("custommsg-list", "response", {"messages": [{**HELLO, "foo": "bar"}]}, "extra field in an entry"),
    ("custommsg-list", "response", {"messages": [without(HELLO, "payload")]}, "payload missing"),
    ("custommsg-list", "response", {"messages": [{**HELLO, "type": 65536}]}, "type above u16"),
    ("custommsg-list", "response", {"messages": [HELLO], "next": 2}, "extra top-level field"),
    ("custommsg-list", "request", {"method": 5}, "method a number"),
    ("custommsg-list", "response", {"messages": [{**HELLO, "json": {}}]}, "json without kind"),
    ("custommsg-list", "response", {"messages": [{**HELLO, "method": "x"}]}, "method without kind"),
    ("custommsg-list", "response", {"messages": [without(LSPS_REQUEST, "json")]}, "kind without json"),
    ("custommsg-list", "response", {"messages": [without(LSPS_REQUEST, "text")]}, "kind without text"),
    ("custommsg-list", "response", {"messages": [without(LSPS_REQUEST, "method")]}, "request without method"),
    ("custommsg-list", "response", {"messages": [{**LSPS_RESPONSE, "method": "x"}]}, "method on a response"),
    ("custommsg-list", "response", {"messages": [{**LSPS_RESPONSE, "answered_at": 9.0}]}, "answered_at on a response"),
    ("custommsg-list", "response", {"messages": [{**LSPS_REQUEST, "kind": "batch"}]}, "unknown kind"),
    ("custommsg-list", "response", {"messages": [{**LSPS_REQUEST, "json": [1]}]}, "json not an object"),
    ("custommsg-wait", "request", {"peer_id": A}, "nextvalue missing"),
    ("custommsg-wait", "request", {"nextvalue": "1"}, "nextvalue a string"),
    ("custommsg-wait", "response", {**HELLO, "payload": "zz"}, "payload not hex"),
    ("custommsg-wait", "response", {**HELLO, "created_index": -1}, "negative index"),
    ("custommsg-wait", "response", {**HELLO, "received_at": "now"}, "received_at a string"),
    ("custommsg-delete", "request", {"created_index": 1, "all": True}, "unknown parameter"),
    ("custommsg-delete", "response", {"deleted": 1, "extra": True}, "extra field"),
    ("custommsg-delete", "response", {"deleted": 1.5}, "deleted not an integer"),
    ("custommsg-stats", "response", without(STATS, "waiting"), "waiting missing"),
    ("custommsg-stats", "response",
     {**STATS, "session": {**ZEROS, "dropped": without(DROPPED, "storage")}},
     "dropped.storage missing"),
    ("custommsg-stats", "response", {**STATS, "total": {**ZEROS, "queued": 0}}, "extra count"),
    ("custommsg-stats", "response", without(STATS, "bounds"), "bounds missing"),
    ("custommsg-stats", "response", {**STATS, "session": without(ZEROS, "bytes")}, "bytes missing"),
    ("custommsg-stats", "response", {**STATS, "bounds": {**BOUNDS, "waits": {"max": 1, "over": 0}}}, "now missing"),
    ("custommsg-stats", "response", {**STATS, "peers": [{**STATS_ROW, "type": "32769"}]}, "row type a string"),
    ("custommsg-outbox", "request", {"status": "done"}, "unknown status"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", reason="why")]}, "reason when queued"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("sent", updated_index=2, sent_at=11.5,
                                                              delivered_at=12.0)]}, "delivered_at when sent"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("delivered", updated_index=3, ack=True)]},
     "delivered, no delivered_at"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("delivered", updated_index=3, delivered_at=12.0)]},
     "delivered, no ack"),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("delivered", updated_index=3, ack=True, delivered_at=12.0, reason="x")]},
     "reason when delivered"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", ack=False)]}, "ack false"),
    ("custommsg-cancel", "response", outbox_entry("cancelled", updated_index=1, seq=1), "seq when cancelled"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("sent", updated_index=2)]}, "sent, no sent_at"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("failed", updated_index=2)]}, "failed, no reason"),
    ("custommsg-outbox", "response",
     {"outbox": [outbox_entry("expired", updated_index=1, reason="ttl passed")]}, "expired, no expires_at"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("sending")]}, "sending, no updated_index"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("done")]}, "unknown status"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", length=3.5)]}, "length not an integer"),
    ("custommsg-outbox", "response", {"outbox": [outbox_entry("queued", extra=1)]}, "extra field"),
    ("custommsg-cancel", "request", {"id": "4"}, "id a string"),
    ("custommsg-cancel", "response", outbox_entry("queued", updated_index=1), "not cancelled"),
    ("custommsg-cancel", "response", outbox_entry("cancelled"), "updated_index missing"),
    ("custommsg-request", "request", {"node_id": A, "msg": "9c41aa"}, "reply_type missing"),
    ("custommsg-request", "request", {"node_id": A, "msg": "9c41aa", "reply_type": 40003, "reply_prefix": "xyz"},
     "reply_prefix not hex"),
    ("custommsg-request", "response", {"request": {"peer_id": A, "type": 40001}, "reply": HELLO},
     "request.length missing"),
    ("custommsg-request", "response",
     {"request": {"peer_id": A, "type": 40001, "length": 3}, "reply": {**HELLO, "extra": 1}}, "extra field in reply"),
    ("custommsg_stored", "response", {**HELLO, "extra": 1}, "extra field"),
    ("custommsg_stored", "response", {**HELLO, "received_at": "yesterday"}, "received_at a string"),
    ("custommsg_stored", "response", without(HELLO, "peer_id"), "peer_id missing"),
    # custommsg-lsps-call's response is the peer's result object, free-form: no wrong shape to list.
    ("custommsg-lsps-call", "request", {"peer_id": A}, "method missing"),
    ("custommsg-lsps-call", "request", {"method": "m"}, "peer_id missing"),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": ""}, "method empty"),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": 5}, "method a number"),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": "m", "params": [1]}, "params by position"),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": "m", "timeout": "60"}, "timeout a string"),
    ("custommsg-lsps-call", "request", {"peer_id": NOT_A_KEY, "method": "m"}, "peer_id not a compressed key"),
    ("custommsg-lsps-call", "request", {"peer_id": A, "method": "m", "id": "x"}, "unknown parameter"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "result": {}}, "id missing"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": 5, "result": {}}, "id a number"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "", "result": {}}, "id empty"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": None}, "result null"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": "oops"}, "error a string"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {"code": 1}}, "error without message"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {"code": "1", "message": "x"}},
     "error code a string"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {"code": 1.5, "message": "x"}},
     "error code not an integer"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "error": {**INVALID_PARAMS_ERROR, "stack": "x"}},
     "extra field in error"),
    ("custommsg-lsps-respond", "request", {"peer_id": A, "id": "q", "result": {}, "jsonrpc": "2.0"},
     "unknown parameter"),
    ("custommsg-lsps-respond", "response", without(RESPONDED, "created_index"), "created_index missing"),
    ("custommsg-lsps-respond", "response", {**RESPONDED, "length": "60"}, "length a string"),
    ("custommsg-lsps-respond", "response", {**RESPONDED, "id": 5}, "id a number"),
    ("custommsg-lsps-respond", "response", {**RESPONDED, "answered_at": 7.5}, "extra field"),
    ("custommsg-outbox-wait", "request", {}, "id missing"),
    ("custommsg-outbox-wait", "request", {"id": "1"}, "id a string"),
    ("custommsg-outbox-wait", "request", {"id": -1}, "negative id"),
    ("custommsg-outbox-wait", "request", {"id": 1, "timeout": "5"}, "timeout a string"),
    ("custommsg-outbox-wait", "request", {"id": 1, "wait": True}, "unknown parameter"),
    ("custommsg-outbox-wait", "response", outbox_entry("queued"), "queued: not settled"),
    ("custommsg-outbox-wait", "response", outbox_entry("sending", updated_index=1), "sending: not settled"),
    ("custommsg-outbox-wait", "response", outbox_entry("sent", updated_index=2, sent_at=11.5, ack=True, seq=1),
     "sent with ack: not settled"),
    ("custommsg-outbox-wait", "response", outbox_entry("sent", updated_index=2), "sent, no sent_at"),
    ("custommsg-outbox-wait", "response", without(DELIVERED_ENTRY, "delivered_at"), "delivered, no delivered_at"),
    ("custommsg-outbox-wait", "response", without(DELIVERED_ENTRY, "ack"), "delivered, no ack"),
    ("custommsg-outbox-wait", "response", without(DELIVERED_ENTRY, "seq"), "delivered, no seq"),
    ("custommsg-outbox-wait", "response", without(DELIVERED_ENTRY, "sent_at"), "delivered, no sent_at"),
    ("custommsg-outbox", "response", {"outbox": [without(DELIVERED_ENTRY, "sent_at")]}, "delivered, no sent_at"),
    ("custommsg-outbox-wait", "response", {**DELIVERED_ENTRY, "reason": "x"}, "reason when delivered"),
    ("custommsg-outbox-wait", "response", outbox_entry("cancelled", updated_index=1, seq=1), "seq when cancelled"),
    ("custommsg-outbox-wait", "response", outbox_entry("cancelled", updated_index=1, sent_at=11.5),
     "sent_at when cancelled"),
    ("custommsg-outbox-wait", "response", outbox_entry("cancelled"), "updated_index missing"),
    ("custommsg-outbox-wait", "response", outbox_entry("failed", updated_index=2), "failed, no reason"),
    ("custommsg-outbox-wait", "response", outbox_entry("expired", updated_index=1, reason="ttl passed"),
     "expired, no expires_at"),
    ("custommsg-outbox-wait", "response", {**DELIVERED_ENTRY, "extra": 1}, "extra field"),
    ("custommsg-peers", "request", {"peer_id": "02"}, "peer_id not a key"),
    ("custommsg-peers", "response", {"peers": [without(PEER_ROW, "receive_budget")]}, "receive_budget missing"),
    ("custommsg-peers", "request", {"peer_id": A, "all": True}, "unknown parameter"),
    ("custommsg-peers", "response", {}, "peers missing"),
    ("custommsg-peers", "response", {"peers": [{**PEER_ROW, "ack_support": "maybe"}]}, "unknown ack_support"),
    ("custommsg-peers", "response", {"peers": [{**PEER_ROW, "connected": "yes"}]}, "connected a string"),
    ("custommsg-peers", "response", {"peers": [without(PEER_ROW, "queued")]}, "queued missing"),
    ("custommsg-peers", "response", {"peers": [{**PEER_ROW, "unacknowledged": -1}]}, "negative count"),
    ("custommsg-peers", "response", {"peers": [{**PEER_ROW, "ack_version": 65536}]}, "ack_version above u16"),
    ("custommsg-peers", "response", {"peers": [{**PEER_ROW, "stream": 1}]}, "extra field in a row"),
    ("custommsg_delivered", "response", {**DELIVERED_ENTRY, "status": "sent"}, "not delivered"),
    ("custommsg_delivered", "response", without(DELIVERED_ENTRY, "delivered_at"), "delivered_at missing"),
    ("custommsg_delivered", "response", without(DELIVERED_ENTRY, "seq"), "seq missing"),
    ("custommsg_delivered", "response", {**DELIVERED_ENTRY, "ack": False}, "ack false"),
    ("custommsg_delivered", "response", {**DELIVERED_ENTRY, "reason": "x"}, "reason"),
    ("custommsg_delivered", "response", {**DELIVERED_ENTRY, "created_at": "now"}, "created_at a string"),
]


def test_every_method_has_a_schema_and_every_schema_a_method() -> None:
    assert sorted(p.stem for p in METHOD_FILES) == sorted(METHODS)
    assert sorted(p.stem for p in NOTIFICATION_FILES) == sorted([STORED_TOPIC, DELIVERED_TOPIC])


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_schema_keeps_clns_format(path: Path) -> None:
    schema = _load(path)
    # CLN's relative path, from doc/schemas (or doc/schemas/notification) to doc/rpc-schema-draft.json,
    # so the file drops unchanged into CLN's tree.
    assert (path.parent / schema["$schema"]).resolve() == (SCHEMAS.parent / "rpc-schema-draft.json").resolve()
    assert format_problems(schema) == []


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_rpc_or_notification_name_is_the_file_name(path: Path) -> None:
    schema = _load(path)
    key = "notification" if path.parent.name == "notification" else "rpc"
    assert schema[key] == path.stem
    assert schema["title"] and schema["title"][0].isupper()
    assert schema["type"] == "object"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["request"]["properties"]["node_id"].update(type="pubkeyy"),
        lambda s: s["request"]["properties"]["node_id"].update(optional=True),
        lambda s: s["response"]["properties"]["status"].update(description="not a list of lines"),
        lambda s: s.pop("rpc"),
        lambda s: s.update(example_responses=[]),
        lambda s: s["examples"][0].pop("response"),
    ],
    ids=["unknown type", "unknown keyword", "description not an array", "no rpc", "unknown top-level key",
         "example without response"],
)
def test_the_format_check_refuses_a_broken_schema(mutate: Any) -> None:
    schema = schema_of("custommsg-send")
    mutate(schema)
    assert format_problems(schema)


def _fields(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every property definition under ``node``'s ``properties``, recursively, with its path."""
    found = []
    for name, prop in node.get("properties", {}).items():
        found.append((f"{path}.{name}", prop))
        found += _fields(prop, f"{path}.{name}")
        for branch in prop.get("oneOf", []):
            found += _fields(branch, f"{path}.{name}")
        if isinstance(prop.get("items"), dict):
            found += _fields(prop["items"], f"{path}.{name}[]")
            for clause in prop["items"].get("allOf", []):
                for key in ("then", "else"):
                    found += _fields(clause.get(key, {}), f"{path}.{name}[]<{key}>")
    for clause in node.get("allOf", []):
        for key in ("then", "else"):
            found += _fields(clause.get(key, {}), f"{path}<{key}>")
    return found


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_every_field_has_a_type_and_a_description(path: Path) -> None:
    schema = _load(path)
    for part in ("request", "response"):
        for where, prop in _fields(schema[part], part):
            if prop == {}:
                continue  # CLN's placeholder: the field is typed in the base properties or in an if/then
            assert "type" in prop or "oneOf" in prop, where
            assert isinstance(prop.get("description"), list) and all(prop["description"]), where
            for branch in prop.get("oneOf", []):
                assert "type" in branch and branch.get("description"), where


# Methods whose result is free-form, as CLN's commando.json has it (no properties, additionalProperties
# true): custommsg-lsps-call returns the peer's JSON-RPC result object as it is.
FREE_FORM_RESPONSES = {"custommsg-lsps-call"}


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_objects_refuse_unknown_fields(path: Path) -> None:
    schema = _load(path)
    parts = ["response"] if "notification" in schema else ["request", "response"]
    for part in parts:
        if part == "response" and schema.get("rpc") in FREE_FORM_RESPONSES:
            assert schema[part] == {"required": [], "additionalProperties": True, "properties": {},
                                    "pre_return_value_notes": schema[part]["pre_return_value_notes"]}
            continue
        assert schema[part]["additionalProperties"] is False, part
        for where, prop in _fields(schema[part], part):
            target = prop["items"] if prop.get("type") == "array" else prop
            if target.get("type") == "object" and "properties" in target:  # not a free-form one, like json
                assert target.get("additionalProperties") is False, where


@pytest.mark.parametrize("path", METHOD_FILES, ids=file_id)
def test_conditional_parameters_name_real_parameters(path: Path) -> None:
    request = _load(path)["request"]
    params = set(request["properties"])
    assert set(request["required"]) <= params
    for group in request.get("oneOfMany", []) + request.get("pairedWith", []):
        assert set(group) <= params
    for key, dependents in request.get("dependentUpon", {}).items():
        assert {key, *dependents} <= params


ERROR_CODES = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, int)}


@pytest.mark.parametrize("path", METHOD_FILES, ids=file_id)
def test_errors_section_lists_real_codes(path: Path) -> None:
    lines = _load(path)["errors"]
    codes = [int(m.group(1)) for line in lines if (m := re.match(r"- (-?\d+): \S", line))]
    assert codes and len(codes) == len(set(codes))
    assert set(codes) <= ERROR_CODES, set(codes) - ERROR_CODES


@pytest.mark.parametrize("path", METHOD_FILES, ids=file_id)
def test_examples_validate(path: Path) -> None:
    schema = _load(path)
    assert schema["examples"]
    for example in schema["examples"]:
        request = example["request"]
        assert request["method"] == schema["rpc"] and request["id"].startswith(f"example:{schema['rpc']}#")
        assert problems(schema["rpc"], "request", request["params"]) == [], request["id"]
        assert problems(schema["rpc"], "response", example["response"]) == [], request["id"]


@pytest.mark.parametrize("name, part, instance", VALID, ids=[f"{n}-{p}-{i}" for i, (n, p, _) in enumerate(VALID)])
def test_literal_example_validates(name: str, part: str, instance: Any) -> None:
    assert problems(name, part, instance) == []


@pytest.mark.parametrize("name, part, instance, why", INVALID, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in INVALID])
def test_wrong_example_fails(name: str, part: str, instance: Any, why: str) -> None:
    assert problems(name, part, instance), f"{name} {part} accepted: {why}"


@pytest.mark.parametrize(
    "message",
    [
        StoredMessage(1, A, 32769, bytes.fromhex("800168656c6c6f"), 1764064800.123),  # text "hello"
        StoredMessage(2, A, 40001, bytes.fromhex("9c41ff00"), 5.5),  # not UTF-8: no text
        StoredMessage(3, B, 65535, bytes.fromhex("ffff"), 6.0),  # empty body: text ""
        # a registered protocol's message, decoded; and one whose bytes did not follow its spec
        StoredMessage(4, A, 32771, bytes.fromhex("8003000a"), 6.5, name="t", fields={"v": 10}),
        StoredMessage(5, A, 32771, bytes.fromhex("8003"), 7.0, name="t", decode_error="v: u16 needs 2 bytes, 0 left"),
    ],
)
def test_the_plugins_message_shape_validates(message: StoredMessage) -> None:
    entry = message.to_json()
    assert problems("custommsg-list", "response", {"messages": [entry]}) == []
    assert problems("custommsg-wait", "response", entry) == []
    assert problems("custommsg_stored", "response", entry) == []
    sent = {"peer_id": A, "type": 40001, "length": 3}
    assert problems("custommsg-request", "response", {"request": sent, "reply": entry}) == []


def test_the_plugins_blip50_message_shape_validates() -> None:
    from custommsg.core.records import JsonRpcTag  # bLIP-50 messages carry kind, json, method, answered_at

    request, response = b"\x94\x19" + LSPS_TEXT.encode(), b"\x94\x19" + LSPS_RESPONSE_TEXT.encode()
    asked = JsonRpcTag("request", "lsps0.list_protocols", "7a1c")
    shapes = [
        StoredMessage(5, B, 37913, request, 7.25, asked),
        StoredMessage(5, B, 37913, request, 7.25, asked, 7.5),  # answered
        StoredMessage(6, B, 37913, response, 8.5, JsonRpcTag("response", None, "7a1c")),
    ]
    for message in shapes:
        entry = message.to_json()
        assert problems("custommsg-list", "response", {"messages": [entry]}) == [], entry
        assert problems("custommsg_stored", "response", entry) == [], entry


def _outbox(status: str, **fields: Any) -> OutboxEntry:
    base: dict[str, Any] = dict(id=7, peer_id=B, type=32769, payload=bytes.fromhex("8001aa"), status=status,
                                reason=None, created_at=1.5, updated_at=1.5, sent_at=None, expires_at=None,
                                updated_index=None)
    base.update(fields)
    return OutboxEntry(**base)


# Each status as outbox/machine.py leaves it: every transition sets updated_index and the reason it was given.
OUTBOX_SHAPES = {
    "queued": [_outbox("queued"), _outbox("queued", expires_at=61.5), _outbox("queued", updated_index=2)],
    "sending": [_outbox("sending", updated_index=1)],
    "sent": [_outbox("sent", updated_index=2, sent_at=2.5), _outbox("sent", updated_index=2, sent_at=2.5,
                                                                     expires_at=61.5)],
    "expired": [_outbox("expired", updated_index=1, reason="ttl passed", expires_at=61.5)],
    "cancelled": [_outbox("cancelled", updated_index=1), _outbox("cancelled", updated_index=1, expires_at=61.5)],
    "failed": [_outbox("failed", updated_index=2, reason="lightningd refused it")],
    # Acknowledged delivery (ack=true): a seq from the first hand-off on; sent_at stays after sent.
    # An ack that overtakes its sendcustommsg's answer (sending -> delivered) sets sent_at too (store/acked.py).
    "delivered": [_outbox("delivered", updated_index=3, sent_at=2.5, ack=True, seq=1, delivered_at=3.5),
                  _outbox("delivered", updated_index=2, sent_at=3.5, ack=True, seq=1, delivered_at=3.5)],
}
OUTBOX_SHAPES["sent"].append(_outbox("sent", updated_index=2, sent_at=2.5, ack=True, seq=1))
OUTBOX_SHAPES["failed"].append(_outbox("failed", updated_index=3, sent_at=2.5, ack=True, seq=2, reason="no ack"))
OUTBOX_SHAPES["cancelled"].append(_outbox("cancelled", updated_index=1, ack=True))


def test_every_outbox_status_has_a_shape() -> None:
    assert sorted(OUTBOX_SHAPES) == sorted(OUTBOX_STATUSES)
    assert schema_of("custommsg-outbox")["request"]["properties"]["status"]["enum"] == list(OUTBOX_STATUSES)


@pytest.mark.parametrize(
    "entry",
    [e for shapes in OUTBOX_SHAPES.values() for e in shapes],
    ids=[f"{status}-{i}" for status, shapes in OUTBOX_SHAPES.items() for i in range(len(shapes))],
)
def test_the_plugins_outbox_shape_validates(entry: OutboxEntry) -> None:
    assert problems("custommsg-outbox", "response", {"outbox": [entry.to_json()]}) == []
    cancelled = entry.status == "cancelled"
    assert (problems("custommsg-cancel", "response", entry.to_json()) == []) is cancelled


@pytest.mark.parametrize(
    "entry",
    [e for shapes in OUTBOX_SHAPES.values() for e in shapes],
    ids=[f"{status}-{i}" for status, shapes in OUTBOX_SHAPES.items() for i in range(len(shapes))],
)
def test_outbox_wait_returns_exactly_the_settled_shapes(entry: OutboxEntry) -> None:
    assert (problems("custommsg-outbox-wait", "response", entry.to_json()) == []) is entry.settled


def test_the_plugins_delivered_shape_validates(store: Store) -> None:
    """custommsg_delivered carries OutboxEntry.to_json() of each entry an ack delivers (store.acked.ack_delivered):
    one acknowledged after it was sent, one (with a ttl) whose ack came during its hand-off."""
    payload = bytes.fromhex("8001aa")
    store.outbox.enqueue(B, 32769, payload, 1.5, None, 10, ack=True)
    store.outbox.enqueue(B, 32769, payload, 1.5, 61.5, 10, ack=True)
    first, _ = store.acked.ack_start(1, 2.5)
    store.acked.ack_start(2, 2.5)
    store.outbox.transition(1, SENT, 3.5, from_status=SENDING)
    assert first is not None and first.stream is not None
    delivered = store.acked.ack_delivered(B, first.stream, 2, 4.5)
    assert delivered is not None and [e.status for e in delivered] == [DELIVERED, DELIVERED]
    for entry in delivered:
        assert problems("custommsg_delivered", "response", entry.to_json()) == [], entry
        assert problems("custommsg-outbox-wait", "response", entry.to_json()) == [], entry
        assert problems("custommsg-outbox", "response", {"outbox": [entry.to_json()]}) == [], entry
    for entry in OUTBOX_SHAPES["delivered"]:
        if entry.sent_at is not None:  # ack_delivered always sets sent_at (the time of the ack, at the latest)
            assert problems("custommsg_delivered", "response", entry.to_json()) == []


def test_pyln_testing_validates_the_same_way() -> None:
    """The integration tier validates with pyln-testing's own validator: it must agree with the tables."""
    fixtures = pytest.importorskip("pyln.testing.fixtures")
    for name, part, instance in VALID:
        fixtures._extra_validator(part == "request")(schema_of(name)[part]).validate(instance)
    for name, part, instance, why in INVALID:
        pyln_validator = fixtures._extra_validator(part == "request")(schema_of(name)[part])
        assert not pyln_validator.is_valid(instance), why


def _has_integral_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_has_integral_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_integral_float(v) for v in value)
    return False


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_formatted_as_jq_prints_it(path: Path) -> None:
    """CLN's ``make check-fmt-schemas`` compares each file with ``jq . < file``: two-space indent, one
    key per line, a final newline. jq prints 1.0 as 1, so no float in a file may be integral."""
    text = path.read_text(encoding="utf-8")
    schema = json.loads(text)
    assert text == json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    assert not _has_integral_float(schema)
