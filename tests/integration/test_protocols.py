"""Typed protocols between real lightningd nodes: a PeerSwap-shaped protocol spoken purely in fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyln.client import RpcError

from custommsg.core import errors

from .conftest import PLUGIN, REPO

SWAP_CSV = REPO / "doc" / "examples" / "swap.csv"
EVEN_CSV = "msgtype,even_hello,32800\nmsgdata,even_hello,nonce,u64,\n"
SWAP_ID = "5a" * 32
REQUEST = {
    "swap_id": SWAP_ID,
    "asset": "btc",
    "scid": "103x1x0",
    "amount_sat": 100000,
    "pubkey": "02" + "22" * 32,
    "tlvs": {"premium_limit": {"ppm": 5000}, "label": {"text": "rebalance"}},
}


def swap_node(node_factory: Any, even: bool = False) -> Any:
    """A node running custommsg with the swap spec (option), and with the even spec in its protocols folder."""
    node = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-protocol": str(SWAP_CSV)}, start=False)
    if even:
        network_dir = Path(node.daemon.lightning_dir) / node.daemon.opts.get("network", "regtest")
        folder = network_dir / "custommsg" / "protocols"
        folder.mkdir(parents=True)
        (folder / "even.csv").write_text(EVEN_CSV)
    node.start()
    return node


def test_two_nodes_speak_a_swap_protocol_in_fields(node_factory: Any, executor: Any) -> None:
    """l1 asks l2 for a swap, l2 answers, both only in fields; l3 (no plugin) sends l2 a swap_response
    that does not follow the spec, with native sendcustommsg.

    l1 and l2 run custommsg with doc/examples/swap.csv (option) and an even type from their protocols
    folder; l3 runs no plugin.
    """
    l1 = swap_node(node_factory, even=True)
    l2 = swap_node(node_factory, even=True)
    l3 = node_factory.get_node()
    l1.connect(l2)
    l3.connect(l2)

    # l1 asks (custommsg-request, in fields); l2 waits for the request, then answers in fields
    asking = executor.submit(l1.rpc.call, "custommsg-request", {
        "node_id": l2.info["id"], "name": "swap_request", "fields": REQUEST, "reply_type": "swap_response",
        "reply_prefix": SWAP_ID, "timeout": 60,
    })
    request = l2.rpc.call("custommsg-wait", {"nextvalue": 1, "name": "swap_request", "timeout": 60})
    assert (request["peer_id"], request["fields"]) == (l1.info["id"], REQUEST)
    response = {
        "swap_id": request["fields"]["swap_id"],
        "accepted": 1,
        "premium_sat": 120,
        "pubkey": "03" + "33" * 32,
        "hints": [{"scid": request["fields"]["scid"], "fee_ppm": 10}],
        "tlvs": {"expiry": {"blocks": 144}},
    }
    l2.rpc.call("custommsg-send", {"node_id": l1.info["id"], "name": "swap_response", "fields": response})
    answered = asking.result(timeout=60)
    assert (answered["reply"]["name"], answered["reply"]["fields"]) == ("swap_response", response)

    # an even type from the protocols folder: no allow_even, and l2 lets it in (no warning, no hang-up)
    l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "name": "even_hello", "fields": {"nonce": 7}})
    hello = l2.rpc.call("custommsg-wait", {"nextvalue": 1, "name": "even_hello", "timeout": 60})
    assert hello["fields"] == {"nonce": 7}
    assert not l2.daemon.is_in_log("Invalid unknown even msg")

    # l3 speaks no spec: a swap_response with an unknown even TLV record, then one cut short
    bad_tlv = "a477" + SWAP_ID + "01" + "00" * 8 + "03" + "33" * 32 + "00" + "0400"
    cut_short = "a477" + SWAP_ID + "01" + "0000"
    for msg in (bad_tlv, cut_short):
        l3.rpc.sendcustommsg(l2.info["id"], msg)
    wrong = l2.rpc.call("custommsg-wait", {"nextvalue": 1, "peer_id": l3.info["id"], "timeout": 60})
    assert (wrong["payload"], wrong["name"]) == (bad_tlv, "swap_response")
    assert "unknown even record 4" in wrong["decode_error"] and "fields" not in wrong
    wrong2 = l2.rpc.call("custommsg-wait", {"nextvalue": wrong["created_index"] + 1, "peer_id": l3.info["id"],
                                            "timeout": 60})
    assert "premium_sat: u64 needs 8 bytes" in wrong2["decode_error"]
    # the peer is only a peer that does not follow the spec: it stays connected
    assert l2.rpc.getpeer(l3.info["id"])["connected"]
    listed = l2.rpc.call("custommsg-list", {"name": "swap_response"})["messages"]
    assert [m["peer_id"] for m in listed] == [l3.info["id"]] * 2

    # refusals name the field, before anything is sent
    with pytest.raises(RpcError) as refused:
        l1.rpc.call("custommsg-send", {"node_id": l2.info["id"], "name": "swap_request",
                                       "fields": {**REQUEST, "scid": "1x2"}})
    assert refused.value.error["code"] == errors.PROTOCOL_FIELDS_INVALID
    assert refused.value.error["data"]["field"] == "scid"


def test_an_even_type_by_option_disables_the_plugin(node_factory: Any, tmp_path: Path) -> None:
    """l1 starts custommsg with an even type given by the option: the plugin disables itself, naming the
    protocols folder, and lightningd keeps running."""
    spec = tmp_path / "even.csv"
    spec.write_text(EVEN_CSV)
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-protocol": str(spec)})
    assert l1.daemon.is_in_log(r"disabled itself at init: .*type 32800 is even.*custommsg/protocols/")
    assert "custommsg-protocols" not in str(l1.rpc.help())
