"""What a hostile peer can send a custommsg node, against real lightningd nodes (issue 14).

The hostile peer runs no custommsg: it writes exact bytes with native ``sendcustommsg``,
and receiver.py logs every custom message it gets, so the test sees what came back.
Nothing it sends may kill the plugin, leave in its inbox what it cannot list, or make
it send more than a bounded amount in return.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN, TEST_PLUGINS

RECEIVER = str(TEST_PLUGINS / "receiver.py")  # logs every custom message it gets; no custommsg
SUBSCRIBER = str(TEST_PLUGINS / "subscriber.py")  # logs every custommsg_stored

LSPS = 37913  # 0x9419, bLIP-50
HELLO = 47431  # 0xb947: u16 version || u8 flags (bit 0: reply)
ENVELOPE = 47433  # 0xb949: u64 stream || u64 seq || inner message
ACK = 47435  # 0xb94b: u64 stream || u64 seq
PARSE_ERROR = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
MAX_JSON_DEPTH = 100  # custommsg's limit; the top-level object is level 1

# Frames the plugin reads and could not write back as JSON (lightningd refuses Infinity), or
# that a strict JSON reader refuses: each must be refused at the door.
NOT_STRICT_JSON = {
    "infinity": '{"jsonrpc":"2.0","id":"big","method":"lsps1.create_order","params":{"sat":1e400}}',
    "-infinity": '{"jsonrpc":"2.0","id":"small","method":"lsps1.create_order","params":{"sat":-1e400}}',
    "lone surrogate": '{"jsonrpc":"2.0","id":"s","method":"lsps1.create_order","params":{"note":"\\ud800"}}',
    "4301 digits": '{"jsonrpc":"2.0","id":"long","method":"lsps1.create_order","params":{"sat":' + "9" * 4301 + "}}",
}


def inject(hostile, target, msg_type: int, body: bytes) -> None:
    """The hostile peer sends exactly these bytes, with native sendcustommsg."""
    hostile.rpc.sendcustommsg(target.info["id"], f"{msg_type:04x}{body.hex()}")


def got(node, payload_prefix: str) -> int:
    """How many custom messages starting with ``payload_prefix`` (hex) node's receiver.py logged."""
    node.daemon.logs_catchup()
    return sum(f"receiver got {payload_prefix}" in line for line in node.daemon.logs)


def parse_errors(node) -> int:
    node.daemon.logs_catchup()
    answer = f"receiver got {LSPS:04x}{json.dumps(PARSE_ERROR, separators=(',', ':')).encode().hex()}"
    return sum(answer in line for line in node.daemon.logs)


def inbox(node, **params):
    return node.rpc.call("custommsg-list", params)["messages"]


def session(node, **params):
    return node.rpc.call("custommsg-stats", params)["session"]


def running(node) -> bool:
    return str(PLUGIN) in {p["name"] for p in node.rpc.plugin("list")["plugins"] if p["active"]}


def reconnect(l1, l2) -> None:
    l1.rpc.disconnect(l2.info["id"], force=True)
    wait_for(lambda: not any(p["connected"] for p in l1.rpc.listpeers(l2.info["id"])["peers"]))
    l1.connect(l2)


def nested(depth: int) -> str:
    """A bLIP-50 notification nested ``depth`` levels (the top-level object is level 1; params, an
    object, level 2; below it arrays and objects alternate down to a number)."""
    assert depth >= 2
    value = "1"
    for level in range(depth - 2):
        value = f"[{value}]" if level % 2 == 0 else f'{{"a":{value}}}'
    return f'{{"jsonrpc":"2.0","method":"deep{depth}","params":{{"a":{value}}}}}'


def depth_of(text: str) -> int:
    """How deep JSON text nests (no string in it holds a bracket); Python's json cannot read 980 levels
    under pytest's stack."""
    depth = deepest = 0
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        deepest = max(deepest, depth)
    return deepest


def test_numbers_and_strings_json_cannot_write_back_are_refused(node_factory):
    """l1 runs custommsg and is under test; l2 is the hostile peer: no custommsg, only
    receiver.py, injecting bLIP-50 frames with native sendcustommsg.

    l1's custommsg-lsps-call to l2, answered with result {"sat": 1e400}, fails with 3353 (l2's
    answer is malformed), and l1 answers l2 with one -32700. The frames of NOT_STRICT_JSON (1e400,
    -1e400, a lone surrogate escape, a 4301-digit integer), sent next on that connection, are
    refused and counted as dropped malformed, with no further answer. On a new connection the
    issue's exact frame is refused again, answered once, and mutes l2. After a restart of l1's
    node nothing is stored, list and stats work, and the guard still refuses a native
    sendcustommsg of "zz" without l1 dying.
    """
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)}, may_reconnect=True)
    l2 = node_factory.get_node(options={"plugin": RECEIVER}, may_reconnect=True)
    l1.connect(l2)
    peer = l2.info["id"]

    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = l1.rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": "lsps1.get_info",
                                                                    "timeout": 60})
        except RpcError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    line = l2.daemon.wait_for_log(rf"receiver got {LSPS:04x}[0-9a-f]+ from {l1.info['id']}")
    request = json.loads(bytes.fromhex(line.split("receiver got ")[1].split()[0][4:]))
    assert request["method"] == "lsps1.get_info"
    answer = '{"jsonrpc":"2.0","id":' + json.dumps(request["id"]) + ',"result":{"sat":1e400}}'
    inject(l2, l1, LSPS, answer.encode())
    caller.join(60)
    assert "error" in outcome, outcome
    assert outcome["error"].error["code"] == errors.LSPS_PEER_MUTED, outcome["error"].error
    assert running(l1)
    wait_for(lambda: parse_errors(l2) == 1)

    for body in NOT_STRICT_JSON.values():
        inject(l2, l1, LSPS, body.encode())
    wait_for(lambda: session(l1)["dropped"]["malformed"] == 1 + len(NOT_STRICT_JSON))
    assert inbox(l1) == []
    assert session(l1)["stored"] == 0
    # l1 handled every frame (stats above) and sends to one peer in order, as do lightningd and
    # connectd: once a message l1 sends now reaches l2, so has any answer to those frames.
    l1.rpc.call("custommsg-send", {"node_id": peer, "msg": "8001" + b"after the frames".hex()})
    l2.daemon.wait_for_log(f"receiver got 8001{b'after the frames'.hex()}")
    assert parse_errors(l2) == 1  # no answer to the malformed frames after the first: no amplification
    assert got(l2, f"{LSPS:04x}") == 2  # the request and that one answer

    reconnect(l1, l2)
    inject(l2, l1, LSPS, NOT_STRICT_JSON["infinity"].encode())
    wait_for(lambda: session(l1)["dropped"]["malformed"] == 2 + len(NOT_STRICT_JSON))
    wait_for(lambda: parse_errors(l2) == 2)  # the first malformed frame of this connection is answered
    with pytest.raises(RpcError) as caught:
        l1.rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": "lsps1.get_info", "timeout": 5})
    assert caught.value.error["code"] == errors.LSPS_PEER_MUTED
    assert inbox(l1) == [] and running(l1)

    l1.restart()
    assert inbox(l1) == []
    assert session(l1)["stored"] == 0
    l1.connect(l2)
    inject(l2, l1, LSPS, NOT_STRICT_JSON["-infinity"].encode())
    wait_for(lambda: session(l1)["dropped"]["malformed"] == 1)
    assert inbox(l1) == [] and running(l1)
    with pytest.raises(RpcError) as caught:
        l1.rpc.sendcustommsg(peer, "zz")  # invalid hex: without the guard, lightningd dies
    assert caught.value.error["code"] == errors.MSG_NOT_HEX
    assert caught.value.error["data"]["refused_by"] == "custommsg guard"
    assert l1.rpc.getinfo()["id"] == l1.info["id"]
    l1.rpc.sendcustommsg(peer, "8001abcd")
    l2.daemon.wait_for_log("receiver got 8001abcd")


def test_nesting_is_refused_past_the_depth_limit(node_factory):
    """l1 runs custommsg and subscriber.py (which logs each custommsg_stored) and is under test;
    l2 is the hostile peer: no custommsg, only receiver.py, injecting bLIP-50 frames with native
    sendcustommsg.

    A frame nested MAX_JSON_DEPTH (100) levels is stored, listed, waited for and notified; 101
    levels, and 980 (just under what Python's own recursion limit refuses), are refused as
    malformed. The same holds after a restart of l1's node: the stored frame lists as before,
    and the deep frames, sent again, are refused again.
    """
    l1 = node_factory.get_node(options={"plugin": [str(PLUGIN), SUBSCRIBER]}, may_reconnect=True)
    l2 = node_factory.get_node(options={"plugin": RECEIVER}, may_reconnect=True)
    l1.connect(l2)
    for depth in (2, 100, 101, 980):
        assert depth_of(nested(depth)) == depth
    at_limit = nested(MAX_JSON_DEPTH)

    def check_inbox(count: int) -> None:
        messages = inbox(l1, type=LSPS)
        assert len(messages) == count
        for message in messages:
            assert message["text"] == at_limit and message["kind"] == "notification"
            assert message["json"] == json.loads(at_limit) and message["method"] == f"deep{MAX_JSON_DEPTH}"
        assert l1.rpc.call("custommsg-wait", {"nextvalue": count, "type": LSPS, "timeout": 5})["text"] == at_limit

    inject(l2, l1, LSPS, at_limit.encode())
    wait_for(lambda: session(l1)["stored"] == 1)
    check_inbox(1)
    l1.daemon.wait_for_log(rf"subscriber: stored 1 type {LSPS} text .* from {l2.info['id']}")

    for depth in (MAX_JSON_DEPTH + 1, 980):
        inject(l2, l1, LSPS, nested(depth).encode())
    wait_for(lambda: session(l1)["received"] == 3)
    counts = session(l1)
    assert (counts["stored"], counts["dropped"]["malformed"]) == (1, 2), counts
    check_inbox(1)

    l1.restart()
    check_inbox(1)
    l1.connect(l2)
    for depth in (980, MAX_JSON_DEPTH + 1):
        inject(l2, l1, LSPS, nested(depth).encode())
    inject(l2, l1, LSPS, at_limit.encode())  # muted or not, l2's valid frames are stored
    wait_for(lambda: session(l1)["received"] == 3)
    counts = session(l1)
    assert (counts["stored"], counts["dropped"]["malformed"]) == (1, 2), counts
    check_inbox(2)
    l1.daemon.wait_for_log(rf"subscriber: stored 2 type {LSPS} text .* from {l2.info['id']}")
    assert running(l1)


def peer_support(node, peer):
    rows = node.rpc.call("custommsg-peers", {"peer_id": peer.info["id"]})["peers"]
    return rows[0]["ack_support"] if rows else None


def send_acked(node, peer, msg):
    return node.rpc.call("custommsg-send", {"node_id": peer.info["id"], "msg": msg, "ack": True})


def test_hello_flood_is_not_amplified(node_factory):
    """l1 runs custommsg and is under test, its retransmit interval cut from 10 s to 2 s so that the
    flood spans a few; l2 is the hostile peer: no custommsg, only receiver.py, injecting hellos
    with native sendcustommsg; l3 runs custommsg and is an honest peer of l1.

    l2 says hello, so l1 sends it 5 acknowledged messages, which it never acknowledges. Then l2
    sends 2000 hellos (reply=0). Meanwhile an acknowledged send from l1 to l3 is delivered. After
    the flood l2 has received at most 5 x (1 + intervals elapsed + 1) envelopes, each waiting
    entry at most once per interval, and far fewer hellos than it sent.
    """
    retransmit_after = 2
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False)
    l1.daemon.env["CUSTOMMSG_DEV_RETRANSMIT_AFTER"] = str(retransmit_after)
    l1.start()
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l3 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l1.connect(l2)
    l1.connect(l3)
    hello = (1).to_bytes(2, "big") + b"\x00"
    inject(l2, l1, HELLO, hello)
    wait_for(lambda: peer_support(l1, l2) == "yes")
    # l1 and l3 discover each other on l1's first acknowledged send (neither says hello unasked)
    first = send_acked(l1, l3, "8001" + b"before the flood".hex())
    assert l1.rpc.call("custommsg-outbox-wait", {"id": first["id"], "timeout": 30})["status"] == "delivered"
    assert peer_support(l1, l3) == "yes"

    waiting = 5
    start = time.monotonic()
    for i in range(waiting):
        assert send_acked(l1, l2, f"8001{i:04x}")["status"] == "sent"
    wait_for(lambda: got(l2, f"{ENVELOPE:04x}") >= waiting)
    hellos_before = got(l2, f"{HELLO:04x}")

    flood, sent = 2000, [0]

    def hellos() -> None:
        for _ in range(flood):
            inject(l2, l1, HELLO, hello)
            sent[0] += 1

    flooder = threading.Thread(target=hellos)
    flooder.start()
    try:
        wait_for(lambda: sent[0] >= 200)
        began = time.monotonic()
        entry = send_acked(l1, l3, "8001" + b"through the flood".hex())
        done = l1.rpc.call("custommsg-outbox-wait", {"id": entry["id"], "timeout": 60})
        assert done["status"] == "delivered"
        assert time.monotonic() - began < 30  # generous: two shared cores
    finally:
        flooder.join()
    assert [m["text"] for m in inbox(l3, peer_id=l1.info["id"])] == ["before the flood", "through the flood"]

    # Messages from one peer reach the hook in order: once this one is stored, every hello was handled.
    inject(l2, l1, 0x8001, b"after the flood")
    wait_for(lambda: any(m["text"] == "after the flood" for m in inbox(l1, peer_id=l2.info["id"])), timeout=120)
    time.sleep(2)  # what the last hellos set off goes out
    envelopes = got(l2, f"{ENVELOPE:04x}")
    hello_replies = got(l2, f"{HELLO:04x}") - hellos_before
    intervals = int((time.monotonic() - start) // retransmit_after)
    assert envelopes <= waiting * (1 + intervals + 1), (envelopes, intervals)
    assert hello_replies <= flood // 20, hello_replies
    assert running(l1) and running(l3)


def test_envelope_dropped_then_stored_is_received_once(node_factory):
    """l1 runs custommsg and is under test, with a rate limit of one message every 2 s and a
    burst of 1; l2 is the hostile peer: no custommsg, only receiver.py, injecting a plain message
    and envelopes with native sendcustommsg.

    A plain message takes the one token, so the envelope right after it is dropped (no ack);
    sent again once the bucket refilled, it is stored and acknowledged; a third copy is a
    duplicate, acknowledged and not stored. custommsg-stats counts the inner message once as
    received and once as stored.
    """
    l1 = node_factory.get_node(
        options={"plugin": str(PLUGIN), "custommsg-peer-rate": "0.5", "custommsg-peer-burst": 1}
    )
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    stream = 0x0123456789ABCDEF
    inner = (0x8003).to_bytes(2, "big") + b"once"
    envelope = stream.to_bytes(8, "big") + (1).to_bytes(8, "big") + inner
    ack = f"{ACK:04x}{stream:016x}{1:016x}"

    inject(l2, l1, 0x8001, b"takes the token")
    inject(l2, l1, ENVELOPE, envelope)
    wait_for(lambda: session(l1)["dropped"]["rate"] == 1)
    assert [m["text"] for m in inbox(l1)] == ["takes the token"]
    assert got(l2, ack) == 0

    time.sleep(3)  # the bucket refills one token in 2 s
    inject(l2, l1, ENVELOPE, envelope)
    wait_for(lambda: got(l2, ack) == 1)
    time.sleep(3)
    inject(l2, l1, ENVELOPE, envelope)
    wait_for(lambda: got(l2, ack) == 2)

    assert [m["payload"] for m in inbox(l1, type=0x8003)] == [inner.hex()]
    counts = session(l1, type=0x8003)
    assert (counts["received"], counts["stored"]) == (1, 1), counts
    assert session(l1)["received"] == 2  # the plain message, and the enveloped one once
