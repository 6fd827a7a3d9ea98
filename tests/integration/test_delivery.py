"""Reliable delivery and request/reply against real lightningd nodes."""

from __future__ import annotations

import concurrent.futures
import os
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN, TEST_PLUGINS

ECHO = str(TEST_PLUGINS / "echo.py")


def outbox(node, **params):
    return node.rpc.call("custommsg-outbox", params)["outbox"]


def inbox(node, **params):
    return node.rpc.call("custommsg-list", params)["messages"]


def channel_pair(node_factory, **l2_options):
    """l1 and l2 (both custommsg) with a channel, so l2 stays known to l1 while it is away."""
    opts = [
        {"plugin": str(PLUGIN), "may_reconnect": True},
        {"plugin": str(PLUGIN), "may_reconnect": True, **l2_options},
    ]
    return node_factory.line_graph(2, opts=opts)


def stop_and_wait(l1, l2):
    l2.stop()
    wait_for(lambda: not l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"])


def test_queued_messages_are_delivered_once_in_order_on_reconnect(node_factory):
    """l1 queues 20 messages for l2 while l2 is stopped; when l2 is back and connects,
    l2 has all 20, once each, in the order they were queued, and l1's outbox says sent."""
    l1, l2 = channel_pair(node_factory)
    stop_and_wait(l1, l2)
    msgs = [f"8001{i:04x}" for i in range(20)]
    ids = []
    for msg in msgs:
        result = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": msg, "queue": True})
        assert result["status"] == "queued"
        ids.append(result["id"])
    assert [e["status"] for e in outbox(l1)] == ["queued"] * 20

    l2.start()
    l1.connect(l2)
    wait_for(lambda: len(inbox(l2)) == 20)
    assert [m["payload"] for m in inbox(l2)] == msgs
    wait_for(lambda: [e["status"] for e in outbox(l1)] == ["sent"] * 20)
    assert [e["id"] for e in outbox(l1)] == ids
    assert all("sent_at" in e for e in outbox(l1))
    # lightningd took all 20 before this one, and one peer's messages arrive in order: once it
    # is stored, anything the delivery handed over is stored too.
    l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8003"})
    wait_for(lambda: inbox(l2)[-1]["payload"] == "8003")
    assert [m["payload"] for m in inbox(l2)] == msgs + ["8003"]  # once each


def test_outbox_survives_restart_of_the_sender(node_factory):
    """l1 queues 5 messages for the stopped l2, then l1 restarts; l2 comes back and gets them."""
    l1, l2 = channel_pair(node_factory)
    stop_and_wait(l1, l2)
    for i in range(5):
        l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": f"8001{i:02x}", "queue": True})
    l1.restart()
    assert [e["status"] for e in outbox(l1)] == ["queued"] * 5
    l2.start()
    l1.connect(l2)
    wait_for(lambda: [m["payload"] for m in inbox(l2)] == [f"8001{i:02x}" for i in range(5)])
    wait_for(lambda: {e["status"] for e in outbox(l1)} == {"sent"})


def test_ttl_expires_while_peer_is_away(node_factory):
    """l1 queues one message with ttl=1 and one without; l2 is away for longer than a second:
    the first is marked expired (not dropped silently), the second is delivered."""
    l1, l2 = channel_pair(node_factory)
    stop_and_wait(l1, l2)
    short = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001aa", "queue": True, "ttl": 1})
    keep = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001bb", "queue": True})
    wait_for(lambda: outbox(l1, status="expired") != [])
    assert [e["id"] for e in outbox(l1, status="expired")] == [short["id"]]
    l2.start()
    l1.connect(l2)
    wait_for(lambda: [m["payload"] for m in inbox(l2)] == ["8001bb"])
    assert outbox(l1, status="sent")[0]["id"] == keep["id"]

    # A cancelled message is never sent.
    stop_and_wait(l1, l2)
    queued = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001cc", "queue": True})
    assert l1.rpc.call("custommsg-cancel", {"id": queued["id"]})["status"] == "cancelled"
    with pytest.raises(RpcError) as excinfo:
        l1.rpc.call("custommsg-cancel", {"id": queued["id"]})
    assert excinfo.value.error["code"] == errors.OUTBOX_NOT_QUEUED


def test_outbox_bound(node_factory):
    """l1 (custommsg-outbox-max=3) cannot queue a fourth message for the stopped l2."""
    l1, l2 = node_factory.line_graph(
        2, opts=[{"plugin": str(PLUGIN), "custommsg-outbox-max": 3, "may_reconnect": True}, {"may_reconnect": True}]
    )
    stop_and_wait(l1, l2)
    for i in range(3):
        l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": f"8001{i:02x}", "queue": True})
    with pytest.raises(RpcError) as excinfo:
        l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001ff", "queue": True})
    assert excinfo.value.error["code"] == errors.OUTBOX_FULL


def test_concurrent_requests_each_get_their_own_reply(node_factory):
    """l1 sends 10 concurrent requests to l2, whose echo plugin answers each with the
    request's 8-byte id; every request returns the reply that echoes its own id."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": ECHO})
    l1.connect(l2)

    def request(i):
        request_id = os.urandom(8).hex()
        result = l1.rpc.call(
            "custommsg-request",
            {
                "node_id": l2.info["id"],
                "msg": f"9c41{request_id}" + f"request {i}".encode().hex(),
                "reply_type": 40003,
                "reply_prefix": request_id,
                "timeout": 30,
            },
        )
        return request_id, result

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(request, range(10)))
    for i, (request_id, result) in enumerate(results):
        assert result["reply"]["payload"] == f"9c43{request_id}" + f"request {i}".encode().hex()
        assert result["reply"]["peer_id"] == l2.info["id"]
    # Replies come from the inbox, so they are listable too.
    assert len(inbox(l1, type=40003)) == 10


def sent_of(node, msg_type: int) -> int:
    """Messages of ``msg_type`` lightningd took from ``node``'s plugin this session."""
    rows = node.rpc.call("custommsg-stats", {"type": msg_type})["peers"]
    return sum(row["session"]["sent"] for row in rows)


def test_request_timeout_and_disconnect(node_factory):
    """l1 asks l2, which never answers type 40005: the request times out with its code;
    a request in flight when l2 disconnects fails at once with another code."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node()
    l1.connect(l2)
    params = {"node_id": l2.info["id"], "msg": "9c45aa", "reply_type": 40007}
    with pytest.raises(RpcError) as excinfo:
        l1.rpc.call("custommsg-request", {**params, "timeout": 1})
    assert excinfo.value.error["code"] == errors.REQUEST_TIMEOUT

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(l1.rpc.call, "custommsg-request", {**params, "timeout": 60})
        # Parked and sent (the request is parked first, so a fast reply is not missed): a disconnect
        # before the send would fail it as an unknown peer instead.
        wait_for(lambda: l1.rpc.call("custommsg-stats")["waiting"] == 1 and sent_of(l1, 0x9C45) == 2)
        started = time.monotonic()
        l1.rpc.disconnect(l2.info["id"], force=True)
        with pytest.raises(RpcError) as excinfo:
            pending.result(30)
    assert excinfo.value.error["code"] == errors.REQUEST_PEER_DISCONNECTED
    assert time.monotonic() - started < 10
