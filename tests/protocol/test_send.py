"""custommsg-send: checked here, then handed to lightningd's sendcustommsg from the sender thread.

The fake lightningd runs the plugin's own rpc_command hook before executing every
sendcustommsg, exactly as lightningd does, so a plugin that sent from its main loop
would never get an answer: each successful send here is also the no-deadlock proof.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import OFFLINE_PEER, PEER_A, PEER_B, PEER_C, UNKNOWN_PEER, MakeLd
from .harness import OWN_ID, FakeLightningd, wait_for
from .peerproto import app_send_hooks, app_sent, app_sent_to

SEND_TIMEOUT = 3.0  # a deadlock shows as a timeout: keep it short


def send_params(form: str, node_id: Any, msg: Any, *rest: Any) -> Any:
    """custommsg-send's params as an object (pyln, lightning-cli -k) or a positional array (lightning-cli)."""
    if form == "array":
        return [node_id, msg, *rest]
    names = ("allow_even", "queue", "ttl")
    return {"node_id": node_id, "msg": msg, **dict(zip(names, rest, strict=False))}


@pytest.mark.parametrize("form", ["object", "array"])
def test_send_to_connected_peer(ld: FakeLightningd, form: str) -> None:
    """A connected peer gets the message; lightningd ran our rpc_command hook on it, which said continue."""
    msg = "8001" + b"hello".hex()
    result = ld.call("custommsg-send", send_params(form, PEER_A, msg), timeout=SEND_TIMEOUT)
    assert result == {"status": "sent", "peer_id": PEER_A, "type": 0x8001, "length": 7}
    assert app_sent(ld) == [(PEER_A, msg)]
    assert len(app_send_hooks(ld)) == 1
    request, answer = app_send_hooks(ld)[0]
    assert request["method"] == "sendcustommsg"
    assert request["params"] == {"node_id": PEER_A, "msg": msg}
    assert answer == {"result": "continue"}


BAD_NODE_IDS = [
    "nonsense",
    "04" + "11" * 32,  # wrong prefix
    "02" + "00" * 32,  # 66 hex digits, not a point on the curve
    PEER_A[:-2],  # too short
    12345,
]


@pytest.mark.parametrize("form", ["object", "array"])
@pytest.mark.parametrize("node_id", BAD_NODE_IDS, ids=["text", "prefix", "off-curve", "short", "number"])
def test_send_invalid_node_id(shared_ld: FakeLightningd, form: str, node_id: Any) -> None:
    """An invalid node id is 3300, before anything reaches lightningd."""
    ld = shared_ld
    before = (len(app_send_hooks(ld)), len(ld.listpeers_calls))
    err = ld.call_error("custommsg-send", send_params(form, node_id, "8001"))
    assert err.code == 3300
    assert (len(app_send_hooks(ld)), len(ld.listpeers_calls)) == before


MSG_ERRORS = [
    # (msg, code, data subset)
    ("zz", 3302, {"reason": "not hex"}),
    ("abc", 3302, {"reason": "odd length"}),
    ("0x8001", 3302, {"reason": "not hex"}),
    (1.5, 3302, {"reason": "not a string"}),
    ("", 3303, {"length": 0}),
    ("01", 3303, {"length": 1}),
    ("8001" + "00" * 65534, 3304, {"length": 65536, "max": 65535}),
    ("0012", 3305, {"type": 18, "name": "ping"}),
    ("0201" + "00" * 4, 3305, {"type": 513, "name": "onion_message"}),
    ("8000aa", 3306, {"type": 32768}),
]


@pytest.mark.parametrize("form", ["object", "array"])
@pytest.mark.parametrize(
    ("msg", "code", "data"), MSG_ERRORS,
    ids=["zz", "odd", "0x", "float", "empty", "one-byte", "65536-bytes", "ping", "onion", "even"],
)
def test_send_message_errors(
    shared_ld: FakeLightningd, form: str, msg: Any, code: int, data: dict[str, Any]
) -> None:
    """Each malformed or forbidden message has its own code and data; none reaches lightningd."""
    ld = shared_ld
    before = len(app_send_hooks(ld))
    err = ld.call_error("custommsg-send", send_params(form, PEER_A, msg))
    assert err.code == code, err.error
    assert isinstance(err.data, dict) and data.items() <= err.data.items(), err.data
    assert len(app_send_hooks(ld)) == before


@pytest.mark.parametrize("form", ["object", "array"])
def test_send_own_id(shared_ld: FakeLightningd, form: str) -> None:
    """Sending to this node's own id is 3301 (lightningd would say "No such peer")."""
    before = len(app_send_hooks(shared_ld))
    err = shared_ld.call_error("custommsg-send", send_params(form, OWN_ID, "8001"))
    assert err.code == 3301
    assert err.data == {"node_id": OWN_ID}
    assert len(app_send_hooks(shared_ld)) == before


@pytest.mark.parametrize("form", ["object", "array"])
def test_send_even_type_with_allow_even(ld: FakeLightningd, form: str) -> None:
    """allow_even=true lets an even type through."""
    result = ld.call("custommsg-send", send_params(form, PEER_A, "8000aa", True), timeout=SEND_TIMEOUT)
    assert result["status"] == "sent" and result["type"] == 0x8000
    assert app_sent(ld) == [(PEER_A, "8000aa")]


@pytest.mark.parametrize("form", ["object", "array"])
def test_send_unknown_and_offline_peers(ld: FakeLightningd, form: str) -> None:
    """An unknown peer is 3307, a known but disconnected one 3308; lightningd's listpeers tells them apart."""
    err = ld.call_error("custommsg-send", send_params(form, UNKNOWN_PEER, "8001"))
    assert err.code == 3307 and err.data["peer_id"] == UNKNOWN_PEER
    err = ld.call_error("custommsg-send", send_params(form, OFFLINE_PEER, "8001"))
    assert err.code == 3308 and err.data["peer_id"] == OFFLINE_PEER
    assert ld.listpeers_calls[1:] == [UNKNOWN_PEER, OFFLINE_PEER]
    assert app_sent(ld) == []


def test_send_peer_gone_without_notification(ld: FakeLightningd) -> None:
    """The peer disconnected but no notification arrived yet: lightningd's "Peer is not connected" becomes 3308."""
    ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=SEND_TIMEOUT)
    ld.disconnect_peer(PEER_A, notify=False)
    err = ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8003"})
    assert err.code == 3308
    assert err.data["native"]["message"] == "Peer is not connected"
    ld.disconnect_peer(PEER_A, notify=False, forget=True)
    err = ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8003"})
    assert err.code == 3307


def test_connect_notification_makes_peer_sendable(ld: FakeLightningd) -> None:
    """After a connect notification the peer is sendable at once, without asking listpeers."""
    calls = len(ld.listpeers_calls)
    ld.connect_peer(PEER_C)
    result = ld.call("custommsg-send", {"node_id": PEER_C, "msg": "8001ff"}, timeout=SEND_TIMEOUT)
    assert result["status"] == "sent"
    assert app_sent(ld) == [(PEER_C, "8001ff")]
    assert len(ld.listpeers_calls) == calls


def test_disconnect_notification_then_send(ld: FakeLightningd) -> None:
    """After a disconnect notification the plugin asks lightningd again, and reports 3308."""
    ld.disconnect_peer(PEER_B)
    err = ld.call_error("custommsg-send", {"node_id": PEER_B, "msg": "8001"})
    assert err.code == 3308
    assert ld.listpeers_calls[-1] == PEER_B


def test_many_sends_in_order(ld: FakeLightningd) -> None:
    """200 sends issued back to back all succeed, arrive in order, over one long-lived RPC connection."""
    messages = [f"8001{i:04x}" for i in range(200)]
    started = time.monotonic()
    calls = [ld.start_call("custommsg-send", {"node_id": PEER_A, "msg": m}) for m in messages]
    results = [c.result(timeout=10) for c in calls]
    assert all(r["status"] == "sent" for r in results)
    assert app_sent_to(ld, PEER_A) == messages
    assert all(answer == {"result": "continue"} for _, answer in app_send_hooks(ld))
    assert len(app_send_hooks(ld)) == 200
    connections = {number for number, method, _ in ld.rpc.requests if method == "sendcustommsg"}
    assert len(connections) == 1
    assert time.monotonic() - started < 10


def test_send_largest_message(ld: FakeLightningd) -> None:
    """65535 bytes, type included, is the BOLT #1 maximum and goes through untouched."""
    msg = "8001" + "ab" * 65533
    result = ld.call("custommsg-send", {"node_id": PEER_A, "msg": msg}, timeout=SEND_TIMEOUT)
    assert result["length"] == 65535
    assert app_sent(ld) == [(PEER_A, msg)]


def test_send_uppercase_hex_and_peer_id(ld: FakeLightningd) -> None:
    """Upper-case hex is accepted, and the peer id is answered in lightningd's lower case."""
    result = ld.call("custommsg-send", {"node_id": PEER_A.upper(), "msg": "8001ABCD"}, timeout=SEND_TIMEOUT)
    assert result["peer_id"] == PEER_A
    assert app_sent(ld) == [(PEER_A, "8001abcd")]


def test_send_bad_flags(ld: FakeLightningd) -> None:
    """allow_even/queue must be booleans and ttl a positive number with queue=true: 3310."""
    for params in (
        {"node_id": PEER_A, "msg": "8001", "allow_even": "yes"},
        {"node_id": PEER_A, "msg": "8001", "queue": 1},
        {"node_id": PEER_A, "msg": "8001", "ttl": 5},
        {"node_id": PEER_A, "msg": "8001", "queue": True, "ttl": 0},
        {"node_id": PEER_A, "msg": "8001", "queue": True, "ttl": "5"},
    ):
        err = ld.call_error("custommsg-send", params)
        assert err.code == 3310, (params, err.error)
    assert app_sent(ld) == []


def test_send_survives_rpc_reconnect(ld: FakeLightningd) -> None:
    """lightningd closed the sender's RPC connection: the next send reconnects and succeeds."""
    ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=SEND_TIMEOUT)
    ld.rpc.drop_connections()
    time.sleep(0.05)
    result = ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8003"}, timeout=SEND_TIMEOUT)
    assert result["status"] == "sent"
    assert app_sent_to(ld, PEER_A) == ["8001", "8003"]


def test_main_loop_free_while_lightningd_busy(ld: FakeLightningd) -> None:
    """While lightningd holds a sendcustommsg, the plugin still answers hooks and methods at once."""
    gate = ld.hold_sends()
    call = ld.start_call("custommsg-send", {"node_id": PEER_A, "msg": "8001"})
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)
    started = time.monotonic()
    assert ld.custommsg(PEER_B, "8003aa", timeout=1) == {"result": "continue"}
    assert ld.rpc_command({"node_id": PEER_A, "msg": "zz"}, timeout=1)["return"]["error"]["code"] == 3302
    assert ld.call("custommsg-list", timeout=1)["messages"][0]["payload"] == "8003aa"
    assert time.monotonic() - started < 1
    assert not call.done()
    gate.set()
    assert call.result(timeout=3)["status"] == "sent"


@pytest.mark.parametrize(
    ("failure", "path"),
    [
        ("hangup", "connected"),
        ("hangup", "via-listpeers"),
        ("socket-gone", "connected"),
        ("socket-gone", "via-listpeers"),
    ],
)
def test_send_when_lightningd_unreachable(make_ld: MakeLd, failure: str, path: str) -> None:
    """lightningd hangs up on every sendcustommsg, or its socket is gone: custommsg-send fails with 3309, at once.

    "connected": a peer the plugin knows is connected. "via-listpeers": one it must first
    ask lightningd about (connected, but no connect notification seen).
    """
    ld = make_ld()
    peer = PEER_A
    if path == "via-listpeers":
        peer = PEER_C
        ld.connect_peer(PEER_C, notify=False)
    ld.call("custommsg-send", {"node_id": PEER_B, "msg": "8001"}, timeout=SEND_TIMEOUT)  # the connection is up
    if failure == "hangup":
        ld.hangup_sendcustommsg = 1000
    else:
        ld.rpc.stop()
    err = ld.call_error("custommsg-send", {"node_id": peer, "msg": "8003"}, timeout=SEND_TIMEOUT)
    assert err.code == 3309, err.error
    assert not [line for line in ld.log_lines() if "Traceback" in line]
    # Once lightningd is back, sending works again.
    ld.hangup_sendcustommsg = 0
    if failure == "socket-gone":
        ld.rpc.start()
    assert ld.call("custommsg-send", {"node_id": peer, "msg": "8005"}, timeout=SEND_TIMEOUT)["status"] == "sent"


def test_send_after_one_hangup(ld: FakeLightningd) -> None:
    """One dropped connection costs at most that one message (3309) and never a hang; the next send goes."""
    ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=SEND_TIMEOUT)
    ld.hangup_sendcustommsg = 1
    call = ld.start_call("custommsg-send", {"node_id": PEER_A, "msg": "8003"})
    response = call.wait_response(SEND_TIMEOUT)
    assert response.get("result", {}).get("status") == "sent" or response["error"]["code"] == 3309, response
    assert ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8005"}, timeout=SEND_TIMEOUT)["status"] == "sent"
    assert app_sent_to(ld, PEER_A)[-1] == "8005"


def test_sends_in_order_to_peer_learned_via_listpeers(ld: FakeLightningd) -> None:
    """Two sends to a connected peer the plugin has not seen connect yet arrive in the order they were made.

    The first has to ask listpeers (sender thread), which marks the peer connected; lightningd
    holds that first sendcustommsg a moment; the second send must not overtake it.
    (Seen without the hold, too: 50 back-to-back sends arrived as 0, 25, 26, ... 1, 2, ...)
    """
    ld.connect_peer(PEER_C, notify=False)
    gate = ld.hold_sends(1)
    first = ld.start_call("custommsg-send", {"node_id": PEER_C, "msg": "8001aa"})
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)
    second = ld.start_call("custommsg-send", {"node_id": PEER_C, "msg": "8001bb"})
    time.sleep(0.2)
    gate.set()
    assert first.result(timeout=3)["status"] == "sent" and second.result(timeout=3)["status"] == "sent"
    assert app_sent_to(ld, PEER_C) == ["8001aa", "8001bb"]


def test_queued_then_direct_sends_keep_order(ld: FakeLightningd) -> None:
    """Messages queued for a peer go out before a later send to it, even when that send is not queued.

    lightningd holds the outbox's first sendcustommsg; a send made meanwhile must wait its turn.
    """
    for m in ("8001aa", "8001bb"):
        ld.call("custommsg-send", {"node_id": OFFLINE_PEER, "msg": m, "queue": True}, timeout=SEND_TIMEOUT)
    gate = ld.hold_sends(1)
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)  # the outbox is delivering 8001aa
    later = ld.start_call("custommsg-send", {"node_id": OFFLINE_PEER, "msg": "8001cc"})
    time.sleep(0.2)
    gate.set()
    assert later.result(timeout=5)["status"] == "sent"
    wait_for(lambda: len(app_sent_to(ld, OFFLINE_PEER)) == 3, timeout=5)
    assert app_sent_to(ld, OFFLINE_PEER) == ["8001aa", "8001bb", "8001cc"]


def test_many_large_sends(ld: FakeLightningd) -> None:
    """20 maximum-size messages sent back to back (megabytes through the RPC socket) all arrive intact, in order."""
    messages = [f"8001{i:02x}" + f"{i:02x}" * 65532 for i in range(20)]
    calls = [ld.start_call("custommsg-send", {"node_id": PEER_A, "msg": m}) for m in messages]
    assert all(c.result(timeout=20)["length"] == 65535 for c in calls)
    assert app_sent_to(ld, PEER_A) == messages


@pytest.mark.parametrize(
    "params, words",
    [
        ({"msg": "8001"}, "missing a required argument: 'node_id'"),
        ({"node_id": PEER_A, "msg": "8001", "nodeid": PEER_A}, "unexpected keyword argument 'nodeid'"),
        ([PEER_A, "8001", False, False, None, False, None, None, "extra"], "too many positional arguments"),
    ],
    ids=["missing", "unknown", "too-many"],
)
def test_parameter_binding_errors_are_invalid_params(shared_ld: FakeLightningd, params: Any, words: str) -> None:
    """A missing, misspelt or extra parameter is -32602, as lightningd answers it, with no traceback logged."""
    ld = shared_ld
    before = len(app_sent(ld))
    err = ld.call_error("custommsg-send", params)
    assert err.code == -32602
    assert words in err.error["message"] and "traceback" not in err.error
    assert len(app_sent(ld)) == before
