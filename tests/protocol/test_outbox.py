"""The outbox (queue=true, delivery on connect, ttl, cancel) and custommsg-request (request/reply)."""

from __future__ import annotations

import time
from typing import Any

from .conftest import OFFLINE_PEER, PEER_A, PEER_B, UNKNOWN_PEER, MakeLd
from .harness import FakeLightningd, wait_for
from .peerproto import app_sent, app_sent_to


def queue(ld: FakeLightningd, peer: str, msg: str, **extra: Any) -> dict[str, Any]:
    return ld.call("custommsg-send", {"node_id": peer, "msg": msg, "queue": True, **extra}, timeout=3)


def outbox(ld: FakeLightningd, **params: Any) -> list[dict[str, Any]]:
    return ld.call("custommsg-outbox", params)["outbox"]


def payload(msg_type: int, body: bytes | str = b"") -> str:
    raw = body.encode() if isinstance(body, str) else body
    return msg_type.to_bytes(2, "big").hex() + raw.hex()


# -- the outbox -----------------------------------------------------------------------


def test_queue_for_offline_peer(ld: FakeLightningd) -> None:
    """queue=true to a known but disconnected peer: "queued" with an id, listed as queued, nothing sent."""
    result = queue(ld, OFFLINE_PEER, "8001aa")
    assert result == {"status": "queued", "peer_id": OFFLINE_PEER, "type": 0x8001, "length": 3, "id": 1}
    (entry,) = outbox(ld)
    assert {"id": 1, "created_index": 1, "peer_id": OFFLINE_PEER, "type": 0x8001, "length": 3,
            "status": "queued"}.items() <= entry.items()
    assert "sent_at" not in entry
    assert app_sent(ld) == []


def test_queue_for_connected_peer_sends_now(ld: FakeLightningd) -> None:
    """queue=true to a connected peer with an empty outbox sends at once."""
    result = queue(ld, PEER_A, "8001aa")
    assert result["status"] == "sent" and "id" not in result
    assert app_sent(ld) == [(PEER_A, "8001aa")]
    assert outbox(ld) == []


def test_connect_delivers_in_order(ld: FakeLightningd) -> None:
    """A connect notification delivers the peer's queue, oldest first; the entries become "sent" with sent_at."""
    msgs = [f"8001{i:02x}" for i in range(5)]
    ids = [queue(ld, OFFLINE_PEER, m)["id"] for m in msgs]
    assert ids == [1, 2, 3, 4, 5]
    queue(ld, UNKNOWN_PEER, "8003")  # another peer's queue stays put
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: len(app_sent_to(ld, OFFLINE_PEER)) == 5, timeout=5)
    assert app_sent_to(ld, OFFLINE_PEER) == msgs
    entries = wait_for(lambda: [e for e in outbox(ld, peer_id=OFFLINE_PEER) if e["status"] == "sent"] if all(
        e["status"] == "sent" for e in outbox(ld, peer_id=OFFLINE_PEER)) else None, timeout=3)
    assert [e["id"] for e in entries] == ids
    assert all(isinstance(e["sent_at"], float) and e["sent_at"] >= e["created_at"] for e in entries)
    updated = [e["updated_index"] for e in entries]
    assert updated == sorted(updated) and len(set(updated)) == 5  # each move gets a new, higher updated_index
    assert [e["status"] for e in outbox(ld, peer_id=UNKNOWN_PEER)] == ["queued"]
    # Later sends with queue=true go straight out.
    assert queue(ld, OFFLINE_PEER, "8005")["status"] == "sent"
    assert app_sent_to(ld, OFFLINE_PEER)[-1] == "8005"


def test_outbox_filters_and_pages(ld: FakeLightningd) -> None:
    """custommsg-outbox filters by peer and status and pages by created or updated index."""
    for i in range(4):
        queue(ld, OFFLINE_PEER, f"8001{i:02x}")
    ld.call("custommsg-cancel", {"id": 3})
    ld.call("custommsg-cancel", [1])
    assert [e["id"] for e in outbox(ld, status="queued")] == [2, 4]
    assert [e["id"] for e in outbox(ld, status="cancelled")] == [1, 3]
    assert [e["id"] for e in outbox(ld, index="updated", start=1)] == [3, 1]
    assert [e["id"] for e in outbox(ld, index="created", start=2, limit=2)] == [2, 3]
    assert ld.call_error("custommsg-outbox", {"status": "lost"}).code == 3310
    assert ld.call_error("custommsg-outbox", {"start": 2}).code == -32602


def test_restart_delivers_queue(ld: FakeLightningd) -> None:
    """A queue left by a stopped plugin is delivered after init when listpeers shows the peer connected."""
    msgs = ["8001aa", "8001bb", "8001cc"]
    for m in msgs:
        queue(ld, OFFLINE_PEER, m)
    ld.stop()
    ld.peers[OFFLINE_PEER] = {"connected": True}  # it connected while the plugin was down
    ld.start()
    wait_for(lambda: len(app_sent_to(ld, OFFLINE_PEER)) == 3, timeout=5)
    assert app_sent_to(ld, OFFLINE_PEER) == msgs
    wait_for(lambda: all(e["status"] == "sent" for e in outbox(ld)), timeout=3)


def test_ttl_expiry(ld: FakeLightningd) -> None:
    """A queued message whose ttl passes is marked expired and never sent."""
    queue(ld, OFFLINE_PEER, "8001aa", ttl=1)
    queue(ld, OFFLINE_PEER, "8001bb", ttl=30)
    (entry, _) = outbox(ld)
    assert entry["expires_at"] - entry["created_at"] == 1
    started = time.monotonic()
    wait_for(lambda: outbox(ld)[0]["status"] == "expired", timeout=4, interval=0.05)
    assert 0.9 <= time.monotonic() - started <= 3.5
    expired, waiting = outbox(ld)
    assert expired["reason"] == "ttl passed" and "sent_at" not in expired
    assert waiting["status"] == "queued"
    ld.connect_peer(OFFLINE_PEER)
    # The delivery hands entries over oldest first and sends only queued ones: once the newer
    # entry is sent, the expired one has not gone before it and will not go after.
    wait_for(lambda: [e["status"] for e in outbox(ld)] == ["expired", "sent"], timeout=3)
    assert app_sent_to(ld, OFFLINE_PEER) == ["8001bb"]


def test_cancel(ld: FakeLightningd) -> None:
    """custommsg-cancel moves a queued message to cancelled; it is then never sent; errors 3341/3342."""
    first = queue(ld, OFFLINE_PEER, "8001aa")["id"]
    second = queue(ld, OFFLINE_PEER, "8001bb")["id"]
    cancelled = ld.call("custommsg-cancel", {"id": first})
    assert cancelled["id"] == first and cancelled["status"] == "cancelled"
    err = ld.call_error("custommsg-cancel", {"id": first})
    assert err.code == 3342 and err.data == {"id": first, "status": "cancelled"}
    err = ld.call_error("custommsg-cancel", {"id": 999})
    assert err.code == 3341 and err.data == {"id": 999}
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: app_sent_to(ld, OFFLINE_PEER) == ["8001bb"], timeout=3)
    wait_for(lambda: outbox(ld)[1]["status"] == "sent", timeout=3)
    err = ld.call_error("custommsg-cancel", {"id": second})
    assert err.code == 3342 and err.data["status"] == "sent"
    assert ld.call_error("custommsg-cancel", {"id": -1}).code == -32602


def test_outbox_full(make_ld: MakeLd) -> None:
    """With custommsg-outbox-max=2 a third queued message for one peer is refused with 3340."""
    ld = make_ld(options={"custommsg-outbox-max": 2})
    queue(ld, OFFLINE_PEER, "8001aa")
    queue(ld, OFFLINE_PEER, "8001bb")
    err = ld.call_error("custommsg-send", {"node_id": OFFLINE_PEER, "msg": "8001cc", "queue": True})
    assert err.code == 3340
    assert err.data == {"peer_id": OFFLINE_PEER, "max": 2}
    assert queue(ld, UNKNOWN_PEER, "8001cc")["status"] == "queued"  # the limit is per peer
    ld.call("custommsg-cancel", {"id": 1})
    assert queue(ld, OFFLINE_PEER, "8001dd")["status"] == "queued"  # only queued entries count


def test_queue_for_unknown_peer_then_connect(ld: FakeLightningd) -> None:
    """A peer lightningd does not know yet can be queued for; its first connection delivers."""
    assert queue(ld, UNKNOWN_PEER, "8001aa")["status"] == "queued"
    ld.connect_peer(UNKNOWN_PEER)
    wait_for(lambda: app_sent_to(ld, UNKNOWN_PEER) == ["8001aa"], timeout=3)


def test_disconnect_during_queue_send(ld: FakeLightningd) -> None:
    """queue=true when the plugin thinks the peer is connected but lightningd says not: queued, not failed."""
    ld.disconnect_peer(PEER_A, notify=False)
    result = queue(ld, PEER_A, "8001aa")
    assert result["status"] == "queued" and result["id"] == 1
    ld.connect_peer(PEER_A)
    wait_for(lambda: app_sent_to(ld, PEER_A) == ["8001aa"], timeout=3)


def test_cancel_during_delivery(ld: FakeLightningd) -> None:
    """A message cancelled while an earlier one of the same queue is being handed over is not sent.

    The fake lightningd holds the first sendcustommsg of the delivery; meanwhile
    custommsg-cancel succeeds on the third entry. The docstring of Outbox promises that
    "a cancelled message is never sent afterwards".
    """
    for m in ("8001aa", "8001bb", "8001cc"):
        queue(ld, OFFLINE_PEER, m)
    gate = ld.hold_sends()
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)  # the first entry
    assert ld.call("custommsg-cancel", {"id": 3}, timeout=2)["status"] == "cancelled"
    gate.set()
    # The delivery logs its count when it is over (it sent more than one): nothing of it can follow.
    (done,) = wait_for(lambda: ld.log_lines(f"expired for {OFFLINE_PEER}"), timeout=3)
    assert done == f"outbox: 2 sent, 0 expired for {OFFLINE_PEER}"
    assert app_sent_to(ld, OFFLINE_PEER) == ["8001aa", "8001bb"]
    assert [e["status"] for e in outbox(ld)] == ["sent", "sent", "cancelled"]


# -- request / reply --------------------------------------------------------------------


def test_request_reply(ld: FakeLightningd) -> None:
    """custommsg-request sends, then returns the peer's first reply of reply_type that starts with reply_prefix."""
    call = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001" + "c0ffee" + "00",
                                                "reply_type": 0x8003, "reply_prefix": "c0ffee", "timeout": 5})
    wait_for(lambda: app_sent_to(ld, PEER_A), timeout=3)
    assert app_sent_to(ld, PEER_A) == ["8001c0ffee00"]
    ld.custommsg(PEER_B, payload(0x8003, b"\xc0\xff\xee"))  # another peer
    ld.custommsg(PEER_A, payload(0x8005, b"\xc0\xff\xee"))  # another type
    ld.custommsg(PEER_A, payload(0x8003, b"\xc0\xff\xef"))  # another prefix
    ld.call("custommsg-stats")  # answered after the plugin handled the three hook calls before it
    assert not call.done()
    ld.custommsg(PEER_A, payload(0x8003, b"\xc0\xff\xee" + b"ok"))
    result = call.result(timeout=2)
    assert result["request"] == {"peer_id": PEER_A, "type": 0x8001, "length": 6}
    reply = result["reply"]
    assert {"created_index": 4, "peer_id": PEER_A, "type": 0x8003,
            "payload": payload(0x8003, b"\xc0\xff\xee" + b"ok")}.items() <= reply.items()


def test_request_positional_and_no_prefix(ld: FakeLightningd) -> None:
    """Positional params (node_id msg reply_type ...) and no prefix: any reply of that type from that peer."""
    call = ld.start_call("custommsg-request", [PEER_B, "8001", 0x8003, None, 5])
    wait_for(lambda: app_sent_to(ld, PEER_B), timeout=3)
    ld.custommsg(PEER_B, payload(0x8003))
    assert call.result(timeout=2)["reply"]["length"] == 2


def test_concurrent_requests_reverse_replies(ld: FakeLightningd) -> None:
    """Two requests to one peer with different prefixes each get their own reply, even in reverse order."""
    first = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "800101", "reply_type": 0x8003,
                                                 "reply_prefix": "01", "timeout": 5})
    second = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "800102", "reply_type": 0x8003,
                                                  "reply_prefix": "02", "timeout": 5})
    wait_for(lambda: len(app_sent_to(ld, PEER_A)) == 2, timeout=3)
    ld.custommsg(PEER_A, payload(0x8003, b"\x02second"))
    assert second.result(timeout=2)["reply"]["text"] == "\x02second"
    assert not first.done()
    ld.custommsg(PEER_A, payload(0x8003, b"\x01first"))
    assert first.result(timeout=2)["reply"]["text"] == "\x01first"


def test_same_prefix_requests_take_one_reply_each(ld: FakeLightningd) -> None:
    """Two requests waiting for the same reply shape are answered one reply each, first come first served."""
    calls = [ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003,
                                                  "timeout": 5}) for _ in range(2)]
    wait_for(lambda: len(app_sent_to(ld, PEER_A)) == 2, timeout=3)
    ld.custommsg(PEER_A, payload(0x8003, "r1"))
    assert calls[0].result(timeout=2)["reply"]["text"] == "r1"
    assert not calls[1].done()
    ld.custommsg(PEER_A, payload(0x8003, "r2"))
    assert calls[1].result(timeout=2)["reply"]["text"] == "r2"


def test_reply_before_send_returns(ld: FakeLightningd) -> None:
    """A reply that arrives while lightningd is still handling the sendcustommsg is not missed."""
    gate = ld.hold_sends()
    call = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003,
                                                "timeout": 5})
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)
    ld.custommsg(PEER_A, payload(0x8003, "quick"))
    gate.set()
    assert call.result(timeout=3)["reply"]["text"] == "quick"
    wait_for(lambda: app_sent_to(ld, PEER_A) == ["8001"], timeout=3)


def test_request_timeout(ld: FakeLightningd) -> None:
    """No reply within timeout=1: 3343, after about a second."""
    started = time.monotonic()
    err = ld.call_error("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003,
                                              "timeout": 1}, timeout=4)
    assert err.code == 3343
    assert err.data == {"peer_id": PEER_A, "reply_type": 0x8003, "timeout": 1}
    assert 0.9 <= time.monotonic() - started < 3
    # A late reply is just stored.
    ld.custommsg(PEER_A, payload(0x8003, "late"))
    assert ld.call("custommsg-list")["messages"][0]["text"] == "late"


def test_request_fails_on_disconnect(ld: FakeLightningd) -> None:
    """A disconnect notification for the peer fails its pending request at once with 3344; others go on."""
    call_a = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003,
                                                  "timeout": 10})
    call_b = ld.start_call("custommsg-request", {"node_id": PEER_B, "msg": "8001", "reply_type": 0x8003,
                                                  "timeout": 10})
    waiting = ld.start_call("custommsg-wait", {"nextvalue": 1, "peer_id": PEER_A})
    wait_for(lambda: len(app_sent(ld)) == 2, timeout=3)
    started = time.monotonic()
    ld.disconnect_peer(PEER_A)
    err = call_a.error(timeout=2)
    assert err.code == 3344 and err.data == {"peer_id": PEER_A, "reply_type": 0x8003}
    assert time.monotonic() - started < 1
    ld.call("custommsg-stats")  # answered after the plugin handled the disconnect notification
    assert not call_b.done() and not waiting.done()
    ld.custommsg(PEER_B, payload(0x8003))
    assert call_b.result(timeout=2)["reply"]["peer_id"] == PEER_B


def test_request_reply_type_not_stored(make_ld: MakeLd) -> None:
    """A reply_type the inbox does not keep could never be seen: 3345 at once, nothing sent."""
    ld = make_ld()
    for reply_type in (19533, 7, 0x7FFF):
        err = ld.call_error("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": reply_type})
        assert err.code == 3345 and err.data == {"reply_type": reply_type}
    ld2 = make_ld(options={"custommsg-type": "40000-40999"})
    err = ld2.call_error("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003})
    assert err.code == 3345
    assert app_sent(ld) == [] and app_sent(ld2) == []


def test_request_errors(ld: FakeLightningd) -> None:
    """Bad arguments and unreachable peers fail at once with the send codes."""
    cases = [
        ({"node_id": "x", "msg": "8001", "reply_type": 0x8003}, 3300),
        ({"node_id": PEER_A, "msg": "zz", "reply_type": 0x8003}, 3302),
        ({"node_id": PEER_A, "msg": "0012", "reply_type": 0x8003}, 3305),
        ({"node_id": PEER_A, "msg": "8000", "reply_type": 0x8003}, 3306),
        ({"node_id": PEER_A, "msg": "8001", "reply_type": 70000}, 3310),
        ({"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003, "timeout": 0}, 3310),
        ({"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003, "reply_prefix": "x"}, 3302),
        ({"node_id": UNKNOWN_PEER, "msg": "8001", "reply_type": 0x8003}, 3307),
        ({"node_id": OFFLINE_PEER, "msg": "8001", "reply_type": 0x8003}, 3308),
    ]
    for params, code in cases:
        started = time.monotonic()
        err = ld.call_error("custommsg-request", params, timeout=3)
        assert err.code == code, (params, err.error)
        assert time.monotonic() - started < 1
    assert app_sent(ld) == []
    # The failed requests left no waiter behind to steal a later reply.
    call = ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003,
                                                "timeout": 5})
    wait_for(lambda: app_sent(ld), timeout=3)
    ld.custommsg(PEER_A, payload(0x8003))
    assert call.result(timeout=2)["reply"]["created_index"] == 1


def test_refused_entry_fails_and_delivery_goes_on(ld: FakeLightningd) -> None:
    """An entry lightningd refuses for good becomes "failed" with the reason; the next entries still go."""
    ld.allowed_logs.append("failed")
    for m in ("8001aa", "8001bb", "8001cc"):
        queue(ld, OFFLINE_PEER, m)
    ld.refuse["8001bb"] = {"code": -1, "message": "connectd said no"}
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: app_sent_to(ld, OFFLINE_PEER) == ["8001aa", "8001cc"], timeout=3)
    entries = wait_for(lambda: (lambda es: es if es[2]["status"] == "sent" else None)(outbox(ld)), timeout=3)
    assert [e["status"] for e in entries] == ["sent", "failed", "sent"]
    assert "connectd said no" in entries[1]["reason"]


def test_disconnect_during_delivery(ld: FakeLightningd) -> None:
    """The peer drops while its queue is being delivered: nothing is lost or doubled; the next connection finishes."""
    for m in ("8001aa", "8001bb", "8001cc"):
        queue(ld, OFFLINE_PEER, m)
    gate = ld.hold_sends()
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)  # the first entry
    ld.disconnect_peer(OFFLINE_PEER, notify=False)  # lightningd will answer "Peer is not connected"
    gate.set()
    wait_for(lambda: ld.sends_waiting == 0, timeout=3)
    ld.disconnect_peer(OFFLINE_PEER)
    # A delivery that stops early logs so when it is over (lightningd refuses every send meanwhile).
    wait_for(lambda: ld.log_lines(f"0 sent, 0 expired for {OFFLINE_PEER} (interrupted by a disconnect)"), timeout=3)
    assert app_sent_to(ld, OFFLINE_PEER) == []
    wait_for(lambda: [e["status"] for e in outbox(ld)] == ["queued"] * 3, timeout=3)
    ld.connect_peer(OFFLINE_PEER)
    # One that sends more than one logs its count when it is over: nothing of it can follow.
    done = wait_for(lambda: [line for line in ld.log_lines(f"expired for {OFFLINE_PEER}") if "interrupted" not in line],
                    timeout=3)
    assert done == [f"outbox: 3 sent, 0 expired for {OFFLINE_PEER}"]
    assert app_sent_to(ld, OFFLINE_PEER) == ["8001aa", "8001bb", "8001cc"]


def test_ttl_passes_while_plugin_down(ld: FakeLightningd) -> None:
    """An entry whose ttl passed while the plugin was stopped is expired, not sent, when the peer is connected."""
    queue(ld, OFFLINE_PEER, "8001aa", ttl=0.3)
    queue(ld, OFFLINE_PEER, "8001bb")
    ld.stop()
    time.sleep(0.4)
    ld.peers[OFFLINE_PEER] = {"connected": True}
    ld.start()
    wait_for(lambda: app_sent_to(ld, OFFLINE_PEER) == ["8001bb"], timeout=3)
    wait_for(lambda: [e["status"] for e in outbox(ld)] == ["expired", "sent"], timeout=3)
    stats = ld.call("custommsg-stats")
    assert stats["session"]["sent"] == 1
    ld.restart()
    assert ld.call("custommsg-stats")["total"]["sent"] == 1


def test_killed_during_hand_off(ld: FakeLightningd) -> None:
    """The plugin is killed while lightningd holds an outbox message: the next run sends the rest.

    The message being handed over may arrive twice (lightningd executed it; the plugin
    never learnt it had), as the outbox documents; nothing is lost and every entry ends "sent".
    """
    for m in ("8001aa", "8001bb"):
        queue(ld, OFFLINE_PEER, m)
    gate = ld.hold_sends(2)
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: ld.sends_waiting == 1, timeout=3)  # the first entry
    ld.kill()
    gate.set()
    wait_for(lambda: ld.sends_waiting == 0, timeout=3)
    ld.start()  # listpeers says the peer is connected
    wait_for(lambda: "8001bb" in app_sent_to(ld, OFFLINE_PEER), timeout=3)
    sent = app_sent_to(ld, OFFLINE_PEER)
    assert sent in (["8001aa", "8001bb"], ["8001aa", "8001aa", "8001bb"]), sent
    wait_for(lambda: [e["status"] for e in outbox(ld)] == ["sent", "sent"], timeout=3)


def test_queue_for_peer_whose_connect_notification_is_late(ld: FakeLightningd) -> None:
    """The peer is connected in lightningd but its connect notification has not reached
    the plugin: a queued message is not left waiting for a connection that already happened."""
    ld.connect_peer(OFFLINE_PEER, notify=False)
    result = queue(ld, OFFLINE_PEER, "8001ab")
    assert result["status"] in ("queued", "sent")
    wait_for(lambda: app_sent(ld) == [(OFFLINE_PEER, "8001ab")])
    wait_for(lambda: [e["status"] for e in outbox(ld)] in (["sent"], []))


def test_delivery_resumes_when_lightningd_comes_back(ld: FakeLightningd) -> None:
    """A queued message whose hand-off found lightningd unreachable stays queued (not
    failed) and goes out on a later sweep while the peer is still connected."""
    ld.hangup_sendcustommsg = 1  # lightningd drops the connection instead of answering
    result = queue(ld, PEER_A, "8001cd")
    assert result["status"] == "queued"
    assert [e["status"] for e in outbox(ld)] == ["queued"]
    wait_for(lambda: app_sent(ld) == [(PEER_A, "8001cd")])
    wait_for(lambda: [e["status"] for e in outbox(ld)] == ["sent"])
