"""The inbox against real lightningd nodes: storing, listing, waiting, limits, restarts."""

from __future__ import annotations

import threading

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN

SELECTED = (0x8001, 0x9C41)  # 32769 and 40001: in the default range
NOT_SELECTED = (0x03E9, 0x7531)  # 1001 and 30001: custom, but below 32768


def send(node, peer, msg):
    return node.rpc.call("custommsg-send", {"node_id": peer.info["id"], "msg": msg})


def inbox(node, **params):
    return node.rpc.call("custommsg-list", params)["messages"]


def test_mixed_types_are_filtered_stored_in_order_and_paginated(node_factory):
    """l1 sends 500 messages of four types to l2 (both run custommsg); l2 stores only
    the two in its selection (the default range), in order, and pages through them."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l1.connect(l2)
    types = SELECTED + NOT_SELECTED
    sent = []
    for i in range(500):
        msg_type = types[i % len(types)]
        msg = f"{msg_type:04x}" + f"msg {i}".encode().hex()
        send(l1, l2, msg)
        sent.append(msg)
    expected = [m for m in sent if int(m[:4], 16) in SELECTED]
    wait_for(lambda: len(inbox(l2)) == len(expected))

    messages = inbox(l2)
    assert [m["payload"] for m in messages] == expected
    assert [m["created_index"] for m in messages] == list(range(1, len(expected) + 1))
    assert {m["peer_id"] for m in messages} == {l1.info["id"]}
    assert messages[0]["text"] == "msg 0" and messages[0]["length"] == 2 + len("msg 0")

    pages, start = [], 1
    while True:
        page = inbox(l2, index="created", start=start, limit=100)
        if not page:
            break
        pages.append(page)
        start = page[-1]["created_index"] + 1
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [m for p in pages for m in p] == messages

    only_40001 = inbox(l2, peer_id=l1.info["id"], type=40001)
    assert len(only_40001) == 125 and {m["type"] for m in only_40001} == {40001}

    with pytest.raises(RpcError, match=r"Can only specify \{start\} with \{index\}"):
        l2.rpc.call("custommsg-list", {"start": 5})

    stats = l2.rpc.call("custommsg-stats", {"peer_id": l1.info["id"]})
    assert stats["session"]["stored"] == 250 and stats["session"]["dropped"]["rate"] == 0
    assert l1.rpc.call("custommsg-stats")["session"]["sent"] == 500


def test_wait_wakes_on_arrival(node_factory):
    """l2 waits for a message that l1 has not sent yet; the send wakes it."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l1.connect(l2)
    result = {}

    def waiter():
        result["message"] = l2.rpc.call("custommsg-wait", {"nextvalue": 1, "peer_id": l1.info["id"], "timeout": 60})

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: l2.rpc.call("custommsg-stats")["waiting"] == 1)  # parked before the send
    send(l1, l2, "8001" + b"hello".hex())
    thread.join(30)
    assert result["message"]["text"] == "hello" and result["message"]["created_index"] == 1

    # Already stored: answered at once. Nothing newer: the timeout has its own code.
    assert l2.rpc.call("custommsg-wait", {"nextvalue": 1})["created_index"] == 1
    with pytest.raises(RpcError) as excinfo:
        l2.rpc.call("custommsg-wait", {"nextvalue": 2, "timeout": 1})
    assert excinfo.value.error["code"] == errors.WAIT_TIMEOUT


def test_inbox_survives_plugin_and_node_restarts(node_factory):
    """l2 stores three messages from l1, then its plugin and then the whole node restart:
    the inbox is intact and created_index continues after the last one."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN), "may_reconnect": True})
    l1.connect(l2)
    for i in range(3):
        send(l1, l2, f"8001{i:02x}")
    wait_for(lambda: len(inbox(l2)) == 3)
    before = inbox(l2)

    l2.rpc.plugin_stop(str(PLUGIN))
    l2.rpc.plugin_start(str(PLUGIN))
    assert inbox(l2) == before

    l2.restart()
    assert inbox(l2) == before
    l1.connect(l2)
    wait_for(lambda: l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"])
    send(l1, l2, "8001ff")
    wait_for(lambda: len(inbox(l2)) == 4)
    assert inbox(l2)[-1]["created_index"] == 4


def test_commando_frames_are_not_stored(node_factory):
    """l1 runs getinfo on l2 over commando; l2 (custommsg, default types) stores no frame,
    and only an operator who lists commando's types gets them stored (l3)."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l3 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-type": ["19533", "19535"]})
    l1.connect(l2)
    l1.connect(l3)
    for node in (l2, l3):
        rune = node.rpc.createrune()["rune"]
        result = l1.rpc.call("commando", {"peer_id": node.info["id"], "rune": rune, "method": "getinfo"})
        assert result["id"] == node.info["id"]
    assert inbox(l2) == []
    assert {m["type"] for m in inbox(l3)} == {19535}


def test_flood_is_rate_limited_and_peer_stays_connected(node_factory):
    """l1 floods l2 (rate 5/s, burst 20) with 300 messages: l2 keeps about the burst,
    counts the rest as dropped, logs the episode once, and stays connected and responsive."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(
        options={"plugin": str(PLUGIN), "custommsg-peer-rate": "5", "custommsg-peer-burst": 20}
    )
    l1.connect(l2)
    for i in range(300):
        send(l1, l2, f"8001{i:04x}")
    wait_for(lambda: l2.rpc.call("custommsg-stats")["session"]["received"] == 300)
    stats = l2.rpc.call("custommsg-stats")["session"]
    assert 20 <= stats["stored"] < 300
    assert stats["stored"] + stats["dropped"]["rate"] == 300
    l2.daemon.logs_catchup()
    assert sum("over the rate limit" in line for line in l2.daemon.logs) == 1
    assert l2.rpc.getinfo()["id"] == l2.info["id"]
    assert l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"]


def test_stored_notification_reaches_subscribers(node_factory):
    """l2 runs custommsg and a plugin subscribed to custommsg_stored; l1 sends one message."""
    subscriber = PLUGIN.parent / "tests" / "integration" / "plugins" / "subscriber.py"
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": [str(PLUGIN), str(subscriber)]})
    l1.connect(l2)
    send(l1, l2, "8001" + b"hi".hex())
    l2.daemon.wait_for_log(r"subscriber: stored 1 type 32769 text hi from " + l1.info["id"])
