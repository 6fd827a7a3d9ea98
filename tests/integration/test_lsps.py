"""JSON-RPC over custom messages (bLIP-50) between real lightningd nodes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from custommsg.core import errors

from .conftest import PLUGIN, TEST_PLUGINS

LSPS = 37913


class Server:
    """Serves bLIP-50 requests on ``node`` through custommsg-wait and custommsg-lsps-respond, like an LSP script."""

    def __init__(self, node: Any):
        self.node = node
        self.stop = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        nextvalue = 1
        while not self.stop.is_set():
            try:
                entry = self.node.rpc.call("custommsg-wait", {"nextvalue": nextvalue, "type": LSPS, "timeout": 1})
            except RpcError as exc:
                assert exc.error["code"] == errors.WAIT_TIMEOUT, exc.error
                continue
            nextvalue = entry["created_index"] + 1
            if entry.get("kind") != "request":
                continue
            request = entry["json"]
            answer: dict[str, Any] = {"peer_id": entry["peer_id"], "id": request["id"]}
            if request["method"] == "lsps0.list_protocols":
                answer["result"] = {"protocols": [1, 2]}
            elif request["method"] == "echo":
                answer["result"] = request["params"]
            else:
                answer["error"] = {"code": -32601, "message": "method not found"}
            self.node.rpc.call("custommsg-lsps-respond", answer)
            self.answered += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_calls_served_by_a_peer(node_factory):
    """l1 (custommsg) calls l2 (custommsg, serving from this test); l3 runs no plugin and ignores requests.

    20 concurrent calls each get their own answer; an unknown method fails with the peer's error.
    """
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l3 = node_factory.get_node()
    l1.connect(l2)
    l1.connect(l3)
    server = Server(l2)
    try:
        peer = l2.info["id"]
        call = l1.rpc.call
        assert call("custommsg-lsps-call", {"peer_id": peer, "method": "lsps0.list_protocols"}) == {
            "protocols": [1, 2]}

        def echo(n: int) -> dict[str, Any]:
            return call("custommsg-lsps-call", {"peer_id": peer, "method": "echo", "params": {"n": n}})

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(echo, range(20)))
        assert results == [{"n": n} for n in range(20)]

        with pytest.raises(RpcError) as caught:
            call("custommsg-lsps-call", {"peer_id": peer, "method": "lsps1.get_info"})
        assert caught.value.error["code"] == errors.LSPS_PEER_ERROR
        assert caught.value.error["data"]["code"] == -32601

        with pytest.raises(RpcError) as caught:
            call("custommsg-lsps-call", {"peer_id": l3.info["id"], "method": "lsps0.list_protocols", "timeout": 3})
        assert caught.value.error["code"] == errors.LSPS_TIMEOUT
        assert server.answered == 22
    finally:
        server.close()


def test_malformed_message_mutes_until_reconnect(node_factory):
    """l2 sends l1 a malformed 37913 with native sendcustommsg: l1 answers -32700 and mutes l2 until it reconnects."""
    l1, l2 = node_factory.get_nodes(2, opts={"plugin": str(PLUGIN)})
    l1.connect(l2)
    peer = l2.info["id"]
    l2.rpc.sendcustommsg(l1.info["id"], LSPS.to_bytes(2, "big").hex() + b"[1]".hex())
    l1.daemon.wait_for_log("malformed bLIP-50 message")
    parse_error = l2.rpc.call("custommsg-wait", {"nextvalue": 1, "type": LSPS, "timeout": 30})
    assert parse_error["kind"] == "error"
    assert parse_error["json"] == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    assert l1.rpc.call("custommsg-list", {"type": LSPS})["messages"] == []

    with pytest.raises(RpcError) as caught:
        l1.rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": "echo"})
    assert caught.value.error["code"] == errors.LSPS_PEER_MUTED

    l1.rpc.disconnect(peer, force=True)
    wait_for(lambda: not l1.rpc.listpeers(peer)["peers"])
    l1.connect(l2)
    server = Server(l2)
    try:
        assert l1.rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": "echo", "params": {"a": 1}}) == {"a": 1}
    finally:
        server.close()


def test_beside_another_bLIP50_client_on_the_same_node(node_factory):
    """l1 runs custommsg and a second client made like CLN's LSPS client (plugins/lsps_client.py:
    its own custommsg hook on 37913, matching by id); l2 serves. Calls from both, at once, each get
    their own answer: custommsg leaves the other's responses to it, and the other sees ours go by."""
    stand_in = str(TEST_PLUGINS / "lsps_client.py")
    l1 = node_factory.get_node(options={"plugin": [str(PLUGIN), stand_in]})
    l2 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l1.connect(l2)
    server = Server(l2)
    peer = l2.info["id"]
    try:
        def ours(n: int) -> Any:
            return l1.rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": "echo", "params": {"n": n}})

        def theirs(n: int) -> Any:
            return l1.rpc.call("lspsclient-call", {"peer_id": peer, "method": "lsps0.list_protocols"})

        with ThreadPoolExecutor(20) as pool:
            our_results = pool.map(ours, range(10))
            their_results = pool.map(theirs, range(10))
            assert list(our_results) == [{"n": n} for n in range(10)]
            assert list(their_results) == [{"protocols": [1, 2]}] * 10
        assert l1.rpc.call("lspsclient-stats") == {"foreign": 10}
        assert server.answered == 20
    finally:
        server.close()
