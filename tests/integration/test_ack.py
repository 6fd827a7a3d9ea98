"""Acknowledged delivery (custommsg-send ack=true) between real lightningd nodes."""

from __future__ import annotations

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN, TEST_PLUGINS

RECEIVER = str(TEST_PLUGINS / "receiver.py")  # logs every custom message it gets; no custommsg


def outbox(node, **params):
    return node.rpc.call("custommsg-outbox", params)["outbox"]


def inbox(node, **params):
    return node.rpc.call("custommsg-list", params)["messages"]


def send_acked(node, peer, msg):
    return node.rpc.call("custommsg-send", {"node_id": peer, "msg": msg, "ack": True})


def peer_support(node, peer):
    rows = node.rpc.call("custommsg-peers", {"peer_id": peer})["peers"]
    return rows[0]["ack_support"] if rows else None


def cut(l1, l2):
    """Force the connection down, and wait until l1 knows."""
    l1.rpc.disconnect(l2.info["id"], force=True)
    wait_for(lambda: not any(p["connected"] for p in l1.rpc.listpeers(l2.info["id"])["peers"]))


def test_200_acknowledged_messages_across_cuts_and_a_killed_receiver(node_factory):
    """l1 sends 200 acknowledged messages to l2 (both run custommsg; no channel) while the
    connection is cut twice with `disconnect force` and l2's lightningd is SIGKILLed and
    restarted, each time with messages in flight. Then l2's inbox holds each message exactly
    once, in the order sent, and every entry of l1's outbox is delivered."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False)
    # SIGKILL can leave a half-written file of pyln-testing's saved plugin traffic, which its
    # teardown then fails to parse: the killed node does not save it.
    l2.daemon.opts.pop("dev-save-plugin-io", None)
    l2.start()
    l1.connect(l2)
    peer = l2.info["id"]
    assert peer_support(l1, peer) == "unknown"  # neither had a reason to say hello yet
    msgs = [f"8001{i:04x}" + "ab" * 32 for i in range(200)]
    ids = []
    for i, msg in enumerate(msgs):
        if i in (50, 150):
            cut(l1, l2)
        if i == 100:
            l2.daemon.kill()  # SIGKILL: lightningd, and so its plugin, die at once
            wait_for(lambda: not l1.rpc.listpeers(peer)["peers"])
        if i in (60, 160):
            l1.connect(l2)
        if i == 110:
            l2.start()
            l1.connect(l2)
        result = send_acked(l1, peer, msg)
        assert result["status"] in ("sent", "queued")
        ids.append(result["id"])
    wait_for(lambda: [e["status"] for e in outbox(l1)] == ["delivered"] * 200, timeout=120)
    entries = outbox(l1)
    assert [e["id"] for e in entries] == ids
    assert all(e["ack"] and e["delivered_at"] >= e["created_at"] for e in entries)
    assert [m["payload"] for m in inbox(l2, peer_id=l1.info["id"])] == msgs
    # the entries that were in flight at a cut went more than once; each was stored once
    assert [e["seq"] for e in entries] == list(range(1, 201))
    assert l2.rpc.call("custommsg-stats")["inbox_count"] == 200


def test_peer_without_the_plugin(node_factory):
    """l1 runs custommsg with a 2-second hello timeout (the tests' override); l2 runs only a plugin
    that logs the custom messages it gets.
    An acknowledged send waits for l2's hello, then fails saying l2 does not speak the protocol;
    the next one fails at once with 3360; plain sends to l2 still work."""
    l1 = node_factory.get_node(start=False, options={"plugin": str(PLUGIN)})
    l1.daemon.env["CUSTOMMSG_DEV_HELLO_TIMEOUT"] = "2"
    l1.start()
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    peer = l2.info["id"]
    first = send_acked(l1, peer, "8001aa")
    assert first["status"] == "queued"
    done = l1.rpc.call("custommsg-outbox-wait", {"id": first["id"], "timeout": 30})
    assert done["status"] == "failed" and "does not speak" in done["reason"]
    assert peer_support(l1, peer) == "no"
    with pytest.raises(RpcError) as caught:
        send_acked(l1, peer, "8001bb")
    assert caught.value.error["code"] == errors.ACK_UNSUPPORTED
    assert l1.rpc.call("custommsg-send", {"node_id": peer, "msg": "8001cc"})["status"] == "sent"
    l2.daemon.wait_for_log(rf"receiver got 8001cc from {l1.info['id']}")
    assert not l2.daemon.is_in_log("receiver got b949")  # no envelope ever went to it


def test_silent_to_a_peer_that_asked_for_nothing(node_factory):
    """l1 runs custommsg; l2 runs only a plugin that logs the custom messages it gets; l3 runs custommsg.

    l2 connects, disconnects and reconnects, and l1 restarts, with nothing sent to it: l2 never gets a
    custom message from l1. A plain send reaches it and still says nothing else. l1 and l3, both
    silent until then, discover each other on l1's first acknowledged send, and again after l3's
    plugin restarts and after l1 restarts with a message waiting."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l3 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l1.connect(l2)
    l1.connect(l3)
    cut(l1, l2)
    l1.connect(l2)
    l1.restart()
    l1.connect(l2)
    l1.connect(l3)
    marker = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001ff"})
    assert marker["status"] == "sent"
    l2.daemon.wait_for_log(r"receiver got 8001ff from")  # one peer's messages arrive in order
    assert not l2.daemon.is_in_log(r"receiver got b94")  # no hello, envelope or ack, ever
    assert peer_support(l1, l3.info["id"]) == "unknown" and peer_support(l3, l1.info["id"]) == "unknown"

    sent = send_acked(l1, l3.info["id"], "8001aa")
    assert l1.rpc.call("custommsg-outbox-wait", {"id": sent["id"], "timeout": 30})["status"] == "delivered"
    assert peer_support(l1, l3.info["id"]) == "yes" and peer_support(l3, l1.info["id"]) == "yes"
    # l3's plugin restarts (its node stays up): l1's next acknowledged send still goes
    l3.rpc.plugin_stop(str(PLUGIN))
    l3.rpc.plugin_start(str(PLUGIN))
    sent = send_acked(l1, l3.info["id"], "8001bb")
    assert l1.rpc.call("custommsg-outbox-wait", {"id": sent["id"], "timeout": 60})["status"] == "delivered"
    # l1 restarts with a message queued for l3 while it was away: it asks l3 when they connect
    l1.stop()
    l1.start()
    queued = l1.rpc.call("custommsg-send", {"node_id": l3.info["id"], "msg": "8001cc", "ack": True})
    l1.connect(l3)
    assert l1.rpc.call("custommsg-outbox-wait", {"id": queued["id"], "timeout": 60})["status"] == "delivered"
    assert [m["payload"] for m in inbox(l3)] == ["8001aa", "8001bb", "8001cc"]


def test_a_burst_is_acknowledged_by_few_acks_and_a_lone_message_at_once(node_factory):
    """l1 sends 150 acknowledged messages to l2 back to back: l2 stores each once, in order, and
    answers them with at most one ack for two envelopes (cumulative, delayed while more are in
    flight: 47437; about one for three here). Then one message on its own (47433) is delivered at
    once, not after a delay. What l2 sends l1 (its hello and its acks) is counted by l1's connectd,
    which logs "custommsg processing finished" for each custom message a peer sent it (getlog)."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-peer-rate": 1000000,
                                        "custommsg-peer-burst": 1000000})
    l1.connect(l2)
    peer = l2.info["id"]
    msgs = [f"8001{i:04x}" + "cd" * 16 for i in range(150)]
    ids = [send_acked(l1, peer, msg)["id"] for msg in msgs]
    last = l1.rpc.call("custommsg-outbox-wait", {"id": ids[-1], "timeout": 60})
    assert last["status"] == "delivered"
    assert all(e["status"] == "delivered" for e in outbox(l1))
    assert [m["payload"] for m in inbox(l2)] == msgs
    log = l1.rpc.getlog(level="debug")["log"]  # lightningd's own, up to now (its file is read behind)
    from_l2 = [e for e in log if "custommsg processing finished" in e.get("log", "")]
    assert 2 <= len(from_l2) <= 1 + len(msgs) // 2, len(from_l2)  # its hello, then the acks
    # and a message on its own is delivered without waiting for more
    lone = send_acked(l1, peer, "8001" + "ef" * 8)
    assert l1.rpc.call("custommsg-outbox-wait", {"id": lone["id"], "timeout": 5})["status"] == "delivered"
