"""custommsg-send and the sendcustommsg guard against real lightningd nodes."""

from __future__ import annotations

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN, TEST_PLUGINS

RECEIVER = str(TEST_PLUGINS / "receiver.py")


def error_code(excinfo: pytest.ExceptionInfo[RpcError]) -> int:
    return excinfo.value.error["code"]


def test_send_reaches_channel_peer_and_connected_peer(node_factory):
    """l1 (custommsg) sends to l2, its channel peer, and to l3, connected without a channel.

    l2 and l3 log every custom message they receive (receiver.py); l1 logs wire IO.
    """
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN), "log-level": "io"})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l3 = node_factory.get_node(options={"plugin": RECEIVER})
    node_factory.join_nodes([l1, l2])
    l1.connect(l3)

    msg = "8001" + "ab" * 30
    result = l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": msg})
    assert result == {"status": "sent", "peer_id": l2.info["id"], "type": 0x8001, "length": 32}
    l1.daemon.wait_for_log(rf"{l2.info['id']}-connectd: \[OUT\] {msg}")
    l2.daemon.wait_for_log(rf"receiver got {msg} from {l1.info['id']}")

    # Positional parameters, as `lightning-cli custommsg-send ID HEX` sends them.
    msg3 = "8003" + "cd" * 10
    result = l1.rpc.call("custommsg-send", [l3.info["id"], msg3])
    assert result["status"] == "sent" and result["length"] == 12
    l3.daemon.wait_for_log(rf"receiver got {msg3} from {l1.info['id']}")
    assert not l2.daemon.is_in_log(f"receiver got {msg3}")


def test_send_errors_against_real_node(node_factory):
    """l1 (custommsg) has a channel with l2, which is then stopped; l3 is a stranger.

    Each check fails with its own code, before anything reaches lightningd.
    """
    l1, l2 = node_factory.line_graph(2, opts=[{"plugin": str(PLUGIN)}, {}])
    l3 = node_factory.get_node()
    l1.rpc.check_request_schemas = False  # the requests are wrong on purpose: lightningd must see them
    send = l1.rpc.call
    good = "8001aabb"

    cases = [
        ({"node_id": "02" + "00" * 32, "msg": good}, errors.INVALID_NODE_ID),
        ({"node_id": "04" + "11" * 32, "msg": good}, errors.INVALID_NODE_ID),
        ({"node_id": l1.info["id"], "msg": good}, errors.SELF_NODE_ID),
        ({"node_id": l2.info["id"], "msg": "zz"}, errors.MSG_NOT_HEX),
        ({"node_id": l2.info["id"], "msg": "abc"}, errors.MSG_NOT_HEX),
        ({"node_id": l2.info["id"], "msg": ""}, errors.MSG_TOO_SHORT),
        ({"node_id": l2.info["id"], "msg": "01"}, errors.MSG_TOO_SHORT),
        ({"node_id": l2.info["id"], "msg": "8001" + "00" * 65534}, errors.MSG_TOO_LONG),
        ({"node_id": l2.info["id"], "msg": "0012"}, errors.TYPE_INTERNAL),
        ({"node_id": l2.info["id"], "msg": "8000aabb"}, errors.TYPE_EVEN),
        ({"node_id": l3.info["id"], "msg": good}, errors.PEER_UNKNOWN),
    ]
    for params, code in cases:
        with pytest.raises(RpcError) as excinfo:
            send("custommsg-send", params)
        assert error_code(excinfo) == code, (params, excinfo.value.error)

    with pytest.raises(RpcError) as excinfo:
        send("custommsg-send", {"node_id": l2.info["id"], "msg": "0012"})
    assert excinfo.value.error["data"] == {"type": 18, "name": "ping"}

    # The largest message BOLT #1 allows goes through whole.
    assert send("custommsg-send", {"node_id": l2.info["id"], "msg": "8001" + "00" * 65533})["length"] == 65535

    l2.stop()
    wait_for(lambda: not l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"])
    with pytest.raises(RpcError) as excinfo:
        send("custommsg-send", {"node_id": l2.info["id"], "msg": good})
    assert error_code(excinfo) == errors.PEER_NOT_CONNECTED


@pytest.mark.parametrize(
    "msg",
    ["", "01", "abc", "zz", "8001" + "00" * 65534],
    ids=["empty", "1-byte", "odd-length", "not-hex", "65536-bytes"],
)
def test_guard_keeps_node_up(node_factory, msg):
    """l1 (custommsg, guard on) and l2 are connected; malformed native sendcustommsg
    calls, each of which would make lightningd exit, are refused, in both the
    object and the positional form, and l1 stays up and connected to l2."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)

    with pytest.raises(RpcError) as excinfo:
        l1.rpc.sendcustommsg(l2.info["id"], msg)
    assert excinfo.value.error["data"]["refused_by"] == "custommsg guard"
    with pytest.raises(RpcError):
        l1.rpc.call("sendcustommsg", [l2.info["id"], msg])

    assert l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"]
    l1.rpc.sendcustommsg(l2.info["id"], "8001abcd")
    l2.daemon.wait_for_log(rf"receiver got 8001abcd from {l1.info['id']}")


def test_guard_lets_well_formed_calls_through(node_factory):
    """l1 (custommsg) and l2 are connected: valid native calls, even types included,
    behave exactly as without the guard; lightningd's own errors still come through."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    assert l1.rpc.sendcustommsg(l2.info["id"], "8001abcd")["status"] == "Message sent to connectd for delivery"
    l2.daemon.wait_for_log("receiver got 8001abcd")
    with pytest.raises(RpcError, match=r"Cannot send messages of type 18 .WIRE_PING."):
        l1.rpc.sendcustommsg(l2.info["id"], "0012")


def test_commando_works_with_guard(node_factory):
    """l1 and l2 both run custommsg (guard on); l2 runs a command on l1 over commando,
    whose frames go through sendcustommsg, and nothing of it is stored."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l2.connect(l1)
    rune = l1.rpc.createrune()["rune"]
    result = l2.rpc.call("commando", {"peer_id": l1.info["id"], "rune": rune, "method": "getinfo"})
    assert result["id"] == l1.info["id"]
    for node in (l1, l2):
        assert node.rpc.call("custommsg-list")["messages"] == []


def test_guard_can_be_turned_off(node_factory):
    """l1 runs custommsg with custommsg-guard=false: a valid native call works and the
    guard no longer answers (a malformed call is not tried: it would kill l1)."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-guard": False})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    l1.rpc.sendcustommsg(l2.info["id"], "8001abcd")
    l2.daemon.wait_for_log("receiver got 8001abcd")
    assert l1.daemon.is_in_log("guard off")


def test_dynamic_start_and_stop(node_factory):
    """l1 starts custommsg at runtime with `plugin start`, sends, and stops it."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    l1.rpc.plugin_start(str(PLUGIN))
    l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001aa"})
    l2.daemon.wait_for_log("receiver got 8001aa")
    l1.rpc.plugin_stop(str(PLUGIN))
    with pytest.raises(RpcError, match="Unknown command"):
        l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "msg": "8001aa"})


def raw_rpc(node, text: str) -> dict:
    """Send one request exactly as written, escapes and all (pyln would re-encode it)."""
    import json
    import os
    import socket

    path = os.path.join(node.daemon.lightning_dir, "regtest", "lightning-rpc")
    directory = os.open(os.path.dirname(path), os.O_RDONLY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"/proc/self/fd/{directory}/lightning-rpc")
        sock.sendall(text.encode())
        reply = b""
        while b"\n\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, "lightningd closed the connection"
            reply += chunk
    finally:
        sock.close()
        os.close(directory)
    return json.loads(reply.split(b"\n\n")[0])


@pytest.mark.parametrize(
    "msg_json",
    [
        r'"\u0038\u0030\u0030\u0031"',  # "8001" to a JSON parser, invalid hex to lightningd
        "8" + "0" * (2 * 65536 - 1),  # 65536 bytes as lightning-cli sends digits: a JSON number
    ],
    ids=["json-escapes", "131072-digit-number"],
)
def test_guard_reads_msg_as_lightningd_does(node_factory, msg_json):
    """l1 (custommsg) and l2 are connected; requests written so that a JSON parser and
    lightningd's raw-token hex decoder disagree are refused, and l1 stays up."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    reply = raw_rpc(
        l1,
        '{"jsonrpc":"2.0","id":"raw-1","method":"sendcustommsg","params":'
        f'{{"node_id":"{l2.info["id"]}","msg":{msg_json}}}}}',
    )
    assert reply["error"]["data"]["refused_by"] == "custommsg guard", reply
    assert l1.rpc.listpeers(l2.info["id"])["peers"][0]["connected"]
    l1.rpc.sendcustommsg(l2.info["id"], "8001abcd")
    l2.daemon.wait_for_log("receiver got 8001abcd")


def test_help_explains_every_method(node_factory):
    """l1 runs custommsg: lightningd's ``help`` for each custommsg-* method carries what it does and returns."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    for name in ("custommsg-send", "custommsg-list", "custommsg-wait", "custommsg-delete", "custommsg-stats",
                 "custommsg-outbox", "custommsg-cancel", "custommsg-request"):
        entries = l1.rpc.call("help", {"command": name})["help"]
        assert len(entries) == 1, name
        text = " ".join(str(value) for value in entries[0].values())
        assert text.startswith(name), text
        assert "Returns" in text or "returns" in text, f"{name}: {text}"


def test_requests_nested_too_deeply_are_answered(node_factory):
    """lightningd forwards JSON nested past Python's recursion limit: the plugin's method, its
    guard and its hook each still answer, and the node stays up."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False)
    # pyln-testing's teardown re-reads the saved plugin traffic with Python's json, which cannot.
    l1.daemon.opts.pop("dev-save-plugin-io", None)
    l1.start()
    l2 = node_factory.get_node(options={"plugin": RECEIVER})
    l1.connect(l2)
    deep = "[" * 5000 + "]" * 5000  # past Python's recursion limit (1000); lightningd parses it slowly
    reply = raw_rpc(l1, f'{{"jsonrpc":"2.0","id":"deep-1","method":"custommsg-list","params":{{"peer_id":{deep}}}}}')
    assert reply["error"]["code"] == -32600, reply
    reply = raw_rpc(l1, '{"jsonrpc":"2.0","id":"deep-2","method":"sendcustommsg","params":'
                        f'{{"node_id":"{l2.info["id"]}","msg":{deep}}}}}')
    assert reply["error"]["code"] == -32600, reply
    assert l1.rpc.call("custommsg-list") == {"messages": []}
    l1.rpc.sendcustommsg(l2.info["id"], "8001abcd")
    l2.daemon.wait_for_log("receiver got 8001abcd")


def test_calls_are_checked_against_the_schemas(node_factory):
    """pyln-testing validates every custommsg-* call of this tier against doc/schemas (conftest's
    jsonschemas): a request outside the schema is stopped before it leaves the test, and a test that
    means to send one says so with check_request_schemas."""
    import jsonschema

    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    with pytest.raises(jsonschema.ValidationError):
        l1.rpc.call("custommsg-list", {"limit": -1})
    l1.rpc.check_request_schemas = False
    with pytest.raises(RpcError) as refused:
        l1.rpc.call("custommsg-list", {"limit": -1})
    assert error_code(refused) == -32602
