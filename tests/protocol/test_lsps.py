"""JSON-RPC over custom messages (bLIP-50, type 37913): custommsg-lsps-call and -respond, driven like lightningd.

The fake lightningd records every sendcustommsg; a test plays the peer by reading the
request the plugin sent and calling the custommsg hook with the peer's answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .conftest import PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, wait_for

LSPS = 37913


def frame(obj: Any) -> str:
    """A 37913 message as the hook carries it: the type, then the JSON text."""
    return LSPS.to_bytes(2, "big").hex() + json.dumps(obj).encode().hex()


def sent_json(ld: FakeLightningd, peer: str, count: int) -> dict[str, Any]:
    """The ``count``-th 37913 message the plugin sent to ``peer`` (1-based), decoded."""
    ours = wait_for(lambda: [m for m in ld.sent_to(peer) if m.startswith("9419")][count - 1:] or None)
    return json.loads(bytes.fromhex(ours[0][4:]))  # type: ignore[no-any-return]


def test_call_returns_the_peers_result(ld: FakeLightningd) -> None:
    """A call sends one well-formed request with a fresh 128-bit id, and returns the peer's result."""
    call = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "lsps0.list_protocols"})
    request = sent_json(ld, PEER_A, 1)
    assert request["method"] == "lsps0.list_protocols" and request["params"] == {}
    assert request["jsonrpc"] == "2.0" and len(request["id"]) == 32 and int(request["id"], 16) >= 0
    ld.custommsg(PEER_A, frame({"jsonrpc": "2.0", "id": request["id"], "result": {"protocols": [1, 2]}}))
    assert call.result() == {"protocols": [1, 2]}
    stored = ld.call("custommsg-list", {"method": "lsps0.list_protocols"})["messages"]
    assert stored == []  # our own request is not in the inbox; the response is, untagged by method
    response = ld.call("custommsg-list", {"type": LSPS})["messages"][-1]
    assert response["kind"] == "response" and response["json"]["result"] == {"protocols": [1, 2]}


def test_call_fails_with_the_peers_error_sanitised(ld: FakeLightningd) -> None:
    call = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "lsps1.get_info", "params": {"a": 1}})
    request = sent_json(ld, PEER_A, 1)
    assert request["params"] == {"a": 1}
    error = {"code": 100, "message": "bad <script>\x1b[31m\nthing", "data": {"why": "x"}}
    ld.custommsg(PEER_A, frame({"jsonrpc": "2.0", "id": request["id"], "error": error}))
    failure = call.error()
    assert failure.code == 3350
    assert failure.data["code"] == 100 and failure.data["data"] == {"why": "x"}
    assert failure.data["message"] == "bad \u2039script\u203a thing"
    assert "\x1b" not in failure.message and "<" not in failure.message


def test_concurrent_calls_to_two_peers_with_the_same_id_shape(ld: FakeLightningd) -> None:
    """Each call gets its own answer; a peer cannot answer another peer's call, even with its id."""
    call_a = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m"})
    call_b = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_B, "method": "m"})
    id_a, id_b = sent_json(ld, PEER_A, 1)["id"], sent_json(ld, PEER_B, 1)["id"]
    assert id_a != id_b
    ld.custommsg(PEER_B, frame({"jsonrpc": "2.0", "id": id_a, "result": {"from": "B pretending"}}))
    ld.custommsg(PEER_B, frame({"jsonrpc": "2.0", "id": id_b, "result": {"from": "B"}}))
    ld.custommsg(PEER_A, frame({"jsonrpc": "2.0", "id": id_a, "result": {"from": "A"}}))
    assert call_b.result() == {"from": "B"}
    assert call_a.result() == {"from": "A"}


def test_call_times_out(ld: FakeLightningd) -> None:
    failure = ld.call_error("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m", "timeout": 1})
    assert failure.code == 3351 and failure.data["timeout"] == 1


def test_call_fails_when_the_peer_disconnects(ld: FakeLightningd) -> None:
    call = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m"})
    sent_json(ld, PEER_A, 1)
    ld.disconnect_peer(PEER_A)
    assert call.error().code == 3352


def test_call_to_a_peer_that_is_not_connected(ld: FakeLightningd) -> None:
    from .conftest import OFFLINE_PEER

    assert ld.call_error("custommsg-lsps-call", {"peer_id": OFFLINE_PEER, "method": "m"}).code == 3308


def test_request_too_large_for_one_message(shared_ld: FakeLightningd) -> None:
    failure = shared_ld.call_error("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m",
                                                           "params": {"x": "a" * 65533}})
    assert failure.code == 3354 and failure.data["max"] == 65533


def test_bad_parameters(shared_ld: FakeLightningd) -> None:
    for params in ({"peer_id": PEER_A, "method": ""}, {"peer_id": PEER_A, "method": "m", "params": [1]},
                   {"peer_id": PEER_A, "method": "m", "timeout": 0}):
        assert shared_ld.call_error("custommsg-lsps-call", params).code == 3310, params
    assert shared_ld.call_error("custommsg-lsps-call", {"peer_id": "02", "method": "m"}).code == 3300


def test_malformed_message_mutes_the_peer_until_it_reconnects(ld: FakeLightningd) -> None:
    """A malformed 37913 is not stored, is counted, answered with -32700, logged once, and mutes the peer."""
    pending = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m"})
    sent_json(ld, PEER_A, 1)
    for body in (b"[1,2]", b'{"jsonrpc":"2.0"} {}'):
        assert ld.custommsg(PEER_A, LSPS.to_bytes(2, "big").hex() + body.hex()) == {"result": "continue"}
    assert pending.error().code == 3353
    parse_error = sent_json(ld, PEER_A, 2)
    assert parse_error == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    # once per connection: a second answer would let a 3-byte message cost us 76
    assert ld.custommsg(PEER_A, LSPS.to_bytes(2, "big").hex() + "7b") == {"result": "continue"}
    ld.call("custommsg-stats")  # answered after the hook call: anything it sent went before
    assert len([m for m in ld.sent_to(PEER_A) if m.startswith("9419")]) == 2  # the request, one parse error
    assert len(ld.log_lines("malformed bLIP-50")) == 1
    assert ld.call("custommsg-list", {"type": LSPS})["messages"] == []
    stats = ld.call("custommsg-stats", {"type": LSPS})
    assert stats["total"]["dropped"]["malformed"] == 3
    assert ld.call_error("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m"}).code == 3353
    ld.disconnect_peer(PEER_A)
    ld.connect_peer(PEER_A)
    again = ld.start_call("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m"})
    request = sent_json(ld, PEER_A, 3)
    ld.custommsg(PEER_A, frame({"jsonrpc": "2.0", "id": request["id"], "result": {}}))
    assert again.result() == {}


def test_serving_a_request_once(make_ld: MakeLd) -> None:
    """A stored request is listed by method, answered once; unknown ids and other peers' requests are refused."""
    ld = make_ld()
    request = {"jsonrpc": "2.0", "id": "abc", "method": "lsps0.list_protocols", "params": {}}
    ld.custommsg(PEER_A, frame(request))
    stored = ld.call("custommsg-wait", {"nextvalue": 1, "method": "lsps0.list_protocols"})
    assert stored["kind"] == "request" and stored["method"] == "lsps0.list_protocols" and stored["json"] == request
    notification = ld.wait_notification("custommsg_stored")
    assert notification["params"]["custommsg_stored"]["kind"] == "request"
    answered = ld.call("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "abc", "result": {"protocols": [1]}})
    assert answered["created_index"] == stored["created_index"] and answered["id"] == "abc"
    assert sent_json(ld, PEER_A, 1) == {"jsonrpc": "2.0", "id": "abc", "result": {"protocols": [1]}}
    again = ld.call_error("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "abc", "result": {}})
    assert again.code == 3356
    assert ld.call_error("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "nope", "result": {}}).code == 3355
    assert ld.call_error("custommsg-lsps-respond", {"peer_id": PEER_B, "id": "abc", "result": {}}).code == 3357
    listed = ld.call("custommsg-list", {"method": "lsps0.list_protocols"})["messages"]
    assert "answered_at" in listed[0]


def test_serving_an_error_answer(ld: FakeLightningd) -> None:
    ld.custommsg(PEER_A, frame({"jsonrpc": "2.0", "id": "q", "method": "lsps1.get_info", "params": {"x": 1}}))
    bad = ld.call_error("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "q",
                                                   "error": {"code": -32602, "message": "bad"}})
    assert bad.code == 3310  # bLIP-50: -32602 needs data.unrecognized
    ld.call("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "q", "error": {
        "code": -32602, "message": "invalid params", "data": {"unrecognized": ["x"]}}})
    answer = sent_json(ld, PEER_A, 1)
    assert answer["error"] == {"code": -32602, "message": "invalid params", "data": {"unrecognized": ["x"]}}
    assert ld.call_error("custommsg-lsps-respond", {"peer_id": PEER_A, "id": "q"}).code == 3310


def test_a_call_ends_at_its_deadline_not_at_the_next_sweep(ld: FakeLightningd) -> None:
    """A call's deadline is kept by the timer thread like every wait's (it sleeps until the earliest),
    not by the once-a-second sweep: five 50 ms calls each fail with 3351 well under a second."""
    elapsed = []
    for _ in range(5):
        started = time.monotonic()
        error = ld.call_error("custommsg-lsps-call", {"peer_id": PEER_A, "method": "m", "timeout": 0.05})
        elapsed.append(time.monotonic() - started)
        assert error.code == 3351
    assert min(elapsed) >= 0.05 and max(elapsed) < 0.5, elapsed
