"""Acknowledged delivery (custommsg-send ack=true), driven like lightningd; the test plays the peer's plugin.

The peer's side is written out by hand from the README's wire format: a hello is
``b947 || u16 version || u8 flags``, an envelope ``b949 || u64 stream || u64 seq || inner``,
an ack ``b94b || u64 stream || u64 seq``. The test reads what the plugin sent
(``acked_sent_to``) and answers through the custommsg hook (``ld.custommsg``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import OFFLINE_PEER, PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, wait_for
from .peerproto import ACK, ENVELOPE, ENVELOPE_MORE, HELLO, acked_sent_to, app_sent_to

HELLO_0, HELLO_1 = HELLO + "000100", HELLO + "000101"  # version 1, reply=0 / reply=1
STREAM = 0x0123456789ABCDEF


def u64(value: int) -> str:
    return value.to_bytes(8, "big").hex()


def envelope(stream: int, seq: int, inner: str, more: bool = False) -> str:
    """An envelope; with ``more``, as a sender with earlier ones in flight sends it (47437)."""
    return (ENVELOPE_MORE if more else ENVELOPE) + u64(stream) + u64(seq) + inner


def ack(stream: int, seq: int) -> str:
    return ACK + u64(stream) + u64(seq)


def send_acked(ld: FakeLightningd, peer: str, msg: str, **extra: Any) -> dict[str, Any]:
    """custommsg-send ack=true; when it answers "sent", lightningd may not have the envelope yet (the entry
    is stored and goes until acknowledged): wait until it has."""
    before = len(envelopes_to(ld, peer))
    result: dict[str, Any] = ld.call("custommsg-send", {"node_id": peer, "msg": msg, "ack": True, **extra}, timeout=5)
    if result["status"] == "sent":
        wait_for(lambda: len(envelopes_to(ld, peer)) > before)
    return result


def outbox(ld: FakeLightningd, **params: Any) -> list[dict[str, Any]]:
    return ld.call("custommsg-outbox", params)["outbox"]


def statuses(ld: FakeLightningd) -> list[str]:
    return [e["status"] for e in outbox(ld)]


def raw_envelopes_to(ld: FakeLightningd, peer: str) -> list[str]:
    """The envelopes sent to ``peer``, as the hex lightningd was given."""
    return [msg for msg in ld.sent_to(peer) if msg.startswith(ENVELOPE)]


def envelopes_to(ld: FakeLightningd, peer: str) -> list[dict[str, Any]]:
    return [m["envelope"] for m in acked_sent_to(ld, peer) if "envelope" in m]


def acks_to(ld: FakeLightningd, peer: str) -> list[dict[str, Any]]:
    return [m["ack"] for m in acked_sent_to(ld, peer) if "ack" in m]


def hello_from(ld: FakeLightningd, peer: str) -> None:
    """The peer's plugin says hello (reply=0), as it does on every connection."""
    ld.custommsg(peer, HELLO_0)


def inbox(ld: FakeLightningd) -> list[dict[str, Any]]:
    return ld.call("custommsg-list")["messages"]  # type: ignore[no-any-return]


# -- discovery ----------------------------------------------------------------------


def test_silent_to_peers_that_asked_for_nothing_and_the_answer(ld: FakeLightningd) -> None:
    """No hello to a peer connected at start or connecting while nothing acknowledged waits for it; a
    reply=1 to a peer's reply=0, nothing to a reply=1; none of it stored, counted or notified."""
    ld.connect_peer(OFFLINE_PEER)
    ld.call("custommsg-stats")  # answered after the connect notification: a hello would have gone first
    assert acked_sent_to(ld, PEER_A) == acked_sent_to(ld, PEER_B) == acked_sent_to(ld, OFFLINE_PEER) == []
    hello_from(ld, PEER_A)
    wait_for(lambda: len(acked_sent_to(ld, PEER_A)) == 1)
    assert acked_sent_to(ld, PEER_A)[0] == {"hello": 1, "reply": True}
    ld.custommsg(PEER_A, HELLO_1)
    time.sleep(1.1)  # the pace of our answers: one a second
    ld.custommsg(PEER_A, HELLO + "0002fe" + "beef")  # a later version, unknown flags and bytes: answered the same
    wait_for(lambda: len(acked_sent_to(ld, PEER_A)) == 2)
    # No later event marks "no answer to HELLO_1": the plugin wrote any answer before it answered
    # that hook call, and this is time for the fake lightningd to take it (a guard round trip, ~1 ms).
    time.sleep(0.1)
    assert len(acked_sent_to(ld, PEER_A)) == 2
    for malformed in (HELLO + "0001", HELLO + "000000", ACK + "00", ENVELOPE + u64(1) + u64(0) + "8001"):
        ld.custommsg(PEER_A, malformed)  # ignored
    assert inbox(ld) == []
    stats = ld.call("custommsg-stats")
    assert stats["peers"] == [] and stats["session"]["sent"] == 0
    assert not [n for n in ld.notifications if n.get("method") == "custommsg_stored"]


def test_hello_when_acknowledged_messages_wait(make_ld: MakeLd) -> None:
    """Our hello (reply=0) goes to a connected peer when an acknowledged message for it is sent, once a
    connection; to a peer that connects with one waiting; and at start to the connected peers with one."""
    ld = make_ld()
    assert send_acked(ld, PEER_A, "8001aa")["status"] == "queued"
    assert send_acked(ld, PEER_A, "8001bb")["status"] == "queued"
    wait_for(lambda: acked_sent_to(ld, PEER_A) == [{"hello": 1, "reply": False}])
    assert send_acked(ld, OFFLINE_PEER, "8001cc")["status"] == "queued"  # offline: nothing to say yet
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: acked_sent_to(ld, OFFLINE_PEER) == [{"hello": 1, "reply": False}])
    ld.disconnect_peer(PEER_A)
    ld.connect_peer(PEER_A)
    wait_for(lambda: acked_sent_to(ld, PEER_A) == [{"hello": 1, "reply": False}] * 2)
    ld.restart()
    wait_for(lambda: acked_sent_to(ld, PEER_A) == [{"hello": 1, "reply": False}] * 3)
    assert acked_sent_to(ld, PEER_B) == []
    ld.custommsg(PEER_A, HELLO_1)  # its answer: what waits goes
    wait_for(lambda: [e["inner"] for e in envelopes_to(ld, PEER_A)] == ["8001aa", "8001bb"])


def test_acknowledged_delivery_off(make_ld: MakeLd) -> None:
    """custommsg-acked-delivery=false: no hello sent or answered, envelopes neither stored nor
    acknowledged, and custommsg-send ack=true refused with 3310."""
    ld = make_ld({"custommsg-acked-delivery": False})
    hello_from(ld, PEER_A)
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))
    error = ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8001bb", "ack": True})
    assert error.code == 3310 and error.data == {"param": "ack"}
    assert acked_sent_to(ld, PEER_A) == [] and inbox(ld) == [] and outbox(ld) == []


def test_peers_lists_who_speaks_it(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """custommsg-peers: yes once the peer said hello on this connection, no after the hello timeout, else unknown."""
    monkeypatch.setenv("CUSTOMMSG_DEV_HELLO_TIMEOUT", "1")
    ld = make_ld()
    hello_from(ld, PEER_A)
    peers = {p["peer_id"]: p for p in ld.call("custommsg-peers")["peers"]}
    # a hello costs no receive budget: only what may be stored does
    assert peers[PEER_A] == {"peer_id": PEER_A, "connected": True, "ack_support": "yes", "ack_version": 1,
                             "queued": 0, "unacknowledged": 0,
                             "receive_budget": {"messages": 1000, "bytes": 2097152, "dropped_in_episode": 0},
                             "send_budget": {"bytes": 2097152}}
    assert peers[PEER_B]["ack_support"] == "unknown" and "ack_version" not in peers[PEER_B]
    time.sleep(1.1)  # not asked: not judged, however long it stays
    assert ld.call("custommsg-peers", {"peer_id": PEER_B})["peers"][0]["ack_support"] == "unknown"
    send_acked(ld, PEER_B, "8001aa")  # asked now: judged a second later
    wait_for(lambda: ld.call("custommsg-peers", {"peer_id": PEER_B})["peers"][0]["ack_support"] == "no", timeout=4)
    ld.disconnect_peer(PEER_A)
    (row,) = ld.call("custommsg-peers", [PEER_A])["peers"]
    assert row["connected"] is False and row["ack_support"] == "unknown" and row["ack_version"] == 1


# -- the sender ---------------------------------------------------------------------


def test_acknowledgement_marks_delivered(ld: FakeLightningd) -> None:
    """ack=true to a peer that said hello: one envelope (its stream, seq 1, the message); the entry is
    sent, then delivered with delivered_at on the peer's ack; custommsg_delivered and outbox-wait say so."""
    hello_from(ld, PEER_A)
    result = send_acked(ld, PEER_A, "8001aa")
    assert result == {"status": "sent", "peer_id": PEER_A, "type": 0x8001, "length": 3, "id": 1}
    (sent,) = envelopes_to(ld, PEER_A)
    assert sent["seq"] == 1 and sent["inner"] == "8001aa"
    assert app_sent_to(ld, PEER_A) == []  # the message went only inside the envelope
    (entry,) = outbox(ld)
    assert {"status": "sent", "ack": True, "seq": 1}.items() <= entry.items() and "delivered_at" not in entry
    waiting = ld.start_call("custommsg-outbox-wait", {"id": 1, "timeout": 5})
    ld.custommsg(PEER_A, ack(sent["stream"] + 1, 1))  # another stream's ack: ignored
    ld.custommsg(PEER_A, ack(sent["stream"], 2))  # beyond what was sent: ignored
    assert statuses(ld) == ["sent"]  # answered after the plugin handled both acks
    assert not waiting.done()
    ld.custommsg(PEER_A, ack(sent["stream"], 1))
    done = waiting.result(timeout=3)
    assert done["status"] == "delivered" and done["delivered_at"] >= done["sent_at"] >= done["created_at"]
    params = ld.wait_notification("custommsg_delivered")["params"]
    assert list(params) == ["custommsg_delivered"]  # the entry once, under the topic's name
    note = params["custommsg_delivered"]
    assert note["id"] == 1 and note["status"] == "delivered"
    assert ld.call("custommsg-outbox-wait", [1]) == done  # settled: answered at once
    stats = ld.call("custommsg-stats")
    assert stats["session"]["sent"] == 1 and stats["peers"][0]["type"] == 0x8001  # counted as the message


def test_queued_until_hello_then_sent_in_order(ld: FakeLightningd) -> None:
    """Before the peer's hello an acknowledged message waits (queued); its hello sends them, in order."""
    ids = [send_acked(ld, PEER_A, f"8001{i:02x}")["id"] for i in range(3)]
    assert statuses(ld) == ["queued"] * 3 and envelopes_to(ld, PEER_A) == []
    assert "seq" not in outbox(ld)[0]  # no seq until it is handed over
    hello_from(ld, PEER_A)
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) == 3)
    assert [(e["seq"], e["inner"]) for e in envelopes_to(ld, PEER_A)] == [(1, "800100"), (2, "800101"), (3, "800102")]
    stream = envelopes_to(ld, PEER_A)[0]["stream"]
    ld.custommsg(PEER_A, ack(stream, 3))  # cumulative
    wait_for(lambda: statuses(ld) == ["delivered"] * 3)
    assert [e["id"] for e in outbox(ld, status="delivered")] == ids


def test_retransmit_on_reconnect(ld: FakeLightningd) -> None:
    """Unacknowledged entries go again, byte for byte and in order, when the peer reconnects and says hello."""
    hello_from(ld, PEER_A)
    for i in range(3):
        send_acked(ld, PEER_A, f"8001{i:02x}")
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) == 3)
    # Our reply to the peer's hello goes out on its own time, maybe between the envelopes.
    first = raw_envelopes_to(ld, PEER_A)
    stream = envelopes_to(ld, PEER_A)[0]["stream"]
    ld.custommsg(PEER_A, ack(stream, 1))
    ld.disconnect_peer(PEER_A)
    ld.connect_peer(PEER_A)
    wait_for(lambda: acked_sent_to(ld, PEER_A)[-1] == {"hello": 1, "reply": False})
    # A retransmission would come from the sender thread on its own time, and nothing marks
    # that none is coming: this is time for one to be handed over (milliseconds) if it were.
    time.sleep(0.1)
    assert len(envelopes_to(ld, PEER_A)) == 3  # nothing before the peer's hello
    ld.custommsg(PEER_A, HELLO_1)  # its answer to our hello
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) == 5)
    assert raw_envelopes_to(ld, PEER_A)[-2:] == first[1:]
    ld.custommsg(PEER_A, ack(stream, 3))
    wait_for(lambda: statuses(ld) == ["delivered"] * 3)


def test_retransmit_after_timeout_while_connected(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """No ack within RETRANSMIT_AFTER (1 s here) while connected: sent again, until acknowledged."""
    monkeypatch.setenv("CUSTOMMSG_DEV_RETRANSMIT_AFTER", "1")
    ld = make_ld()
    hello_from(ld, PEER_A)
    send_acked(ld, PEER_A, "8001aa")
    started = time.monotonic()
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) == 2, timeout=4)
    assert time.monotonic() - started >= 0.9
    first, again = envelopes_to(ld, PEER_A)
    assert first == again
    ld.custommsg(PEER_A, ack(first["stream"], 1))
    wait_for(lambda: statuses(ld) == ["delivered"])
    # A true "nothing within the retransmit interval": a retransmission the ack failed to stop
    # would go within RETRANSMIT_AFTER (1 s) plus one sweep period (1 s) of the last envelope.
    time.sleep(2.2)
    assert len(envelopes_to(ld, PEER_A)) == 2


def test_restart_resends_unacknowledged(ld: FakeLightningd) -> None:
    """The plugin restarts with entries not acknowledged: after the peer's hello they go again, same stream and seq."""
    hello_from(ld, PEER_A)
    send_acked(ld, PEER_A, "8001aa")
    send_acked(ld, PEER_A, "8001bb")
    before = envelopes_to(ld, PEER_A)
    ld.restart()
    wait_for(lambda: acked_sent_to(ld, PEER_A)[-1] == {"hello": 1, "reply": False})
    ld.custommsg(PEER_A, HELLO_1)
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) == 4)
    assert envelopes_to(ld, PEER_A)[2:] == before
    send_acked(ld, PEER_A, "8001cc")  # the stream goes on
    assert envelopes_to(ld, PEER_A)[-1] == {**before[0], "seq": 3, "inner": "8001cc"}
    ld.custommsg(PEER_A, ack(before[0]["stream"], 3))
    wait_for(lambda: statuses(ld) == ["delivered"] * 3)


def test_killed_plugin_resends_what_it_was_handing_over(ld: FakeLightningd) -> None:
    """SIGKILL while lightningd holds an envelope: the next run sends it again, with the same seq."""
    hello_from(ld, PEER_A)
    # Our answer to that hello is written from the main loop after the hook answered: hold sends only
    # once lightningd has it, or the hold takes the answer instead of the envelope, the plugin dies
    # before custommsg-send has even queued it, and nothing is there to send again (1 run in 50 under load).
    wait_for(lambda: acked_sent_to(ld, PEER_A) == [{"hello": 1, "reply": True}])
    gate = ld.hold_sends(1)
    call = ld.start_call("custommsg-send", {"node_id": PEER_A, "msg": "8001aa", "ack": True})
    wait_for(lambda: ld.sends_waiting == 1)
    # The held send is the envelope; its entry entered the outbox "sent", with its seq, in one write.
    assert [(e["status"], e["seq"]) for e in outbox(ld)] == [("sent", 1)]
    ld.kill()
    gate.set()
    call.wait_response()  # the fake lightningd answers for the dead plugin
    ld.start()
    ld.custommsg(PEER_A, HELLO_0)
    wait_for(lambda: len(envelopes_to(ld, PEER_A)) >= 2)
    seqs = {e["seq"] for e in envelopes_to(ld, PEER_A)}
    assert seqs == {1} and {e["inner"] for e in envelopes_to(ld, PEER_A)} == {"8001aa"}
    ld.custommsg(PEER_A, ack(envelopes_to(ld, PEER_A)[0]["stream"], 1))
    wait_for(lambda: statuses(ld) == ["delivered"])


def test_peer_without_hello_fails_then_refused_at_once(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """A connected peer that says no hello within HELLO_TIMEOUT (1 s here): its acknowledged entries
    fail, saying why; the next ack=true to it fails at once with 3360; plain sends still work."""
    monkeypatch.setenv("CUSTOMMSG_DEV_HELLO_TIMEOUT", "1")
    ld = make_ld()
    assert send_acked(ld, PEER_B, "8001aa")["status"] == "queued"
    assert ld.call("custommsg-send", {"node_id": PEER_B, "msg": "8001bb", "queue": True})["status"] == "queued"
    wait_for(lambda: statuses(ld)[0] == "failed", timeout=4)
    failed = outbox(ld)[0]
    assert "does not speak" in failed["reason"] and "seq" not in failed
    wait_for(lambda: statuses(ld) == ["failed", "sent"])  # the plain one behind it went
    err = ld.call_error("custommsg-send", {"node_id": PEER_B, "msg": "8001cc", "ack": True})
    assert err.code == 3360 and err.data == {"peer_id": PEER_B}
    assert ld.call("custommsg-send", {"node_id": PEER_B, "msg": "8001dd"})["status"] == "sent"
    assert app_sent_to(ld, PEER_B) == ["8001bb", "8001dd"]
    hello_from(ld, PEER_B)  # it speaks it after all (its plugin was started)
    assert send_acked(ld, PEER_B, "8001ee")["status"] == "sent"
    assert envelopes_to(ld, PEER_B)[0]["seq"] == 1


def test_send_errors(ld: FakeLightningd) -> None:
    """Too long for the envelope: 3304 with the envelope's limit; bad ack, and ttl without queue or ack: 3310."""
    err = ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8001" + "00" * 65516, "ack": True})
    assert err.code == 3304 and err.data == {"length": 65518, "max": 65517}
    assert ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8001", "ack": "yes"}).code == 3310
    assert ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": "8001", "ttl": 5}).code == 3310
    hello_from(ld, PEER_A)
    assert send_acked(ld, PEER_A, "8001" + "00" * 65515)["length"] == 65517  # the largest fits
    assert len(envelopes_to(ld, PEER_A)[0]["inner"]) == 2 * 65517


def test_cancel_and_wait_timeout(ld: FakeLightningd) -> None:
    """A queued acknowledged entry can be cancelled; handed over, it cannot (3342); outbox-wait times out (3361)."""
    queued = send_acked(ld, PEER_A, "8001aa")["id"]  # no hello yet
    assert ld.call("custommsg-cancel", {"id": queued})["status"] == "cancelled"
    hello_from(ld, PEER_A)
    sent = send_acked(ld, PEER_A, "8001bb")["id"]
    err = ld.call_error("custommsg-cancel", {"id": sent})
    assert err.code == 3342 and err.data == {"id": sent, "status": "sent"} and "may be stored" in err.message
    started = time.monotonic()
    err = ld.call_error("custommsg-outbox-wait", {"id": sent, "timeout": 0.5})
    assert err.code == 3361 and err.data == {"id": sent, "status": "sent", "timeout": 0.5}
    assert 0.4 <= time.monotonic() - started < 2
    assert ld.call_error("custommsg-outbox-wait", {"id": sent, "timeout": 0}).code == 3361
    assert ld.call_error("custommsg-outbox-wait", {"id": 99}).code == 3341
    assert ld.call("custommsg-outbox-wait", {"id": queued})["status"] == "cancelled"
    assert [e["inner"] for e in envelopes_to(ld, PEER_A)] == ["8001bb"]  # the cancelled one never went


def test_ttl_of_a_sent_entry_breaks_the_stream(ld: FakeLightningd) -> None:
    """An entry sent but not acknowledged when its ttl passes expires; the later ones of its stream fail with it
    (the peer would take them for a gap); the next message starts a new stream at seq 1."""
    hello_from(ld, PEER_A)
    send_acked(ld, PEER_A, "8001aa", ttl=1)
    send_acked(ld, PEER_A, "8001bb")
    wait_for(lambda: statuses(ld) == ["expired", "failed"], timeout=4)
    expired, failed = outbox(ld)
    assert expired["reason"] == "ttl passed" and "outbox entry 1" in failed["reason"]
    old = envelopes_to(ld, PEER_A)[0]["stream"]
    send_acked(ld, PEER_A, "8001cc")
    new = envelopes_to(ld, PEER_A)[-1]
    assert new["stream"] != old and new["seq"] == 1
    ld.custommsg(PEER_A, ack(old, 2))  # a late ack of the old stream changes nothing settled
    ld.custommsg(PEER_A, ack(new["stream"], 1))
    wait_for(lambda: statuses(ld) == ["expired", "failed", "delivered"])


# -- the receiver -------------------------------------------------------------------


def test_duplicate_envelope_stored_once_and_acked_again(ld: FakeLightningd) -> None:
    """Envelopes are stored (their inner message, never the envelope) only in seq order: a copy is acked
    again and not stored; a gap is acked with the last stored; only stored messages are notified."""
    arrivals = [(1, "8001aa"), (1, "8001aa"), (3, "8001cc"), (2, "8001bb"), (3, "8001cc"), (2, "8001bb")]
    for count, (seq, inner) in enumerate(arrivals, 1):
        ld.custommsg(PEER_A, envelope(STREAM, seq, inner))
        wait_for(lambda n=count: len(acks_to(ld, PEER_A)) == n)  # at once, or delayed by ACK_DELAY (10 ms)
    assert [a["seq"] for a in acks_to(ld, PEER_A)] == [1, 1, 1, 2, 3, 3]
    assert all(a["stream"] == STREAM for a in acks_to(ld, PEER_A))
    messages = inbox(ld)
    assert [(m["type"], m["payload"]) for m in messages] == [(0x8001, "8001aa"), (0x8001, "8001bb"), (0x8001, "8001cc")]
    stored = [m["payload"] for m in ld.notified("custommsg_stored")]
    assert stored == ["8001aa", "8001bb", "8001cc"]
    (row,) = ld.call("custommsg-stats")["peers"]
    assert row["type"] == 0x8001 and row["session"]["received"] == 3 and row["session"]["stored"] == 3
    # the same seqs of another stream, and from another peer, are new messages
    ld.custommsg(PEER_A, envelope(STREAM + 1, 1, "8001dd"))
    ld.custommsg(PEER_B, envelope(STREAM, 1, "8001ee"))
    assert [m["payload"] for m in inbox(ld)][3:] == ["8001dd", "8001ee"]


def test_a_burst_is_acknowledged_by_few_cumulative_acks(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """An envelope sent on its own (47433) is acked at once; those sent with more in flight (47437)
    share one ack: after ACK_EVERY (32) owed envelopes, or ACK_DELAY after the first owed (1 s here)."""
    monkeypatch.setenv("CUSTOMMSG_DEV_ACK_DELAY", "1")
    ld = make_ld()
    for seq in range(1, 41):
        ld.custommsg(PEER_A, envelope(STREAM, seq, f"8001{seq:02x}", more=seq > 1))
    assert len(inbox(ld)) == 40  # each committed before its hook answered
    assert [a["seq"] for a in acks_to(ld, PEER_A)] == [1, 33]
    wait_for(lambda: len(acks_to(ld, PEER_A)) == 3, timeout=5)  # the owed one, when its delay passed
    assert [a["seq"] for a in acks_to(ld, PEER_A)] == [1, 33, 40]
    ld.custommsg(PEER_A, envelope(STREAM, 41, "8001ff"))  # on its own: at once
    wait_for(lambda: len(acks_to(ld, PEER_A)) == 4, timeout=0.5)
    assert acks_to(ld, PEER_A)[-1]["seq"] == 41


def test_sender_marks_envelopes_with_more_in_flight_for_a_peer_that_reads_them(ld: FakeLightningd) -> None:
    """To a peer whose hello set batch: the first envelope goes as 47433 (acked at once), the ones sent
    while it is unacknowledged as 47437; once all are acknowledged, the next goes as 47433 again. A
    peer whose hello did not set batch (a version-1 plugin) only ever gets 47433."""
    ld.custommsg(PEER_A, HELLO + "000102")  # version 1, reply=0, batch
    ld.custommsg(PEER_B, HELLO_0)
    for inner in ("8001aa", "8001bb", "8001cc"):
        send_acked(ld, PEER_A, inner)
        send_acked(ld, PEER_B, inner)
    assert [e.get("more", False) for e in envelopes_to(ld, PEER_A)] == [False, True, True]
    assert [e.get("more", False) for e in envelopes_to(ld, PEER_B)] == [False, False, False]
    ld.custommsg(PEER_A, ack(envelopes_to(ld, PEER_A)[0]["stream"], 3))
    wait_for(lambda: [e["status"] for e in outbox(ld) if e["peer_id"] == PEER_A] == ["delivered"] * 3)
    send_acked(ld, PEER_A, "8001dd")
    assert envelopes_to(ld, PEER_A)[-1] == {**envelopes_to(ld, PEER_A)[0], "seq": 4, "inner": "8001dd"}


def test_owed_acks_of_a_peer_that_disconnects_are_dropped(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    """What a disconnected peer was owed does not go (its sender sends the envelopes again on its
    next connection, and their copies are acknowledged)."""
    monkeypatch.setenv("CUSTOMMSG_DEV_ACK_DELAY", "0.3")
    ld = make_ld()
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))
    wait_for(lambda: acks_to(ld, PEER_A))  # at once
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb", more=True))  # owed, for 0.3 s
    ld.disconnect_peer(PEER_A)
    time.sleep(0.6)
    assert [a["seq"] for a in acks_to(ld, PEER_A)] == [1]
    ld.connect_peer(PEER_A)
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb"))
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_A)] == [1, 2])
    assert [m["payload"] for m in inbox(ld)] == ["8001aa", "8001bb"]


def test_enveloped_message_dropped_by_the_rate_limit_counts_once(make_ld: MakeLd) -> None:
    """A copy dropped by the rate limit is not acknowledged and counts as dropped; the copy that is stored
    later counts as received once, as the README says."""
    ld = make_ld({"custommsg-peer-rate": "0.001", "custommsg-peer-burst": 1})
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))  # the burst: stored
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb"))  # over the rate: dropped, not acked
    wait_for(lambda: len(acks_to(ld, PEER_A)) == 1)
    (row,) = ld.call("custommsg-stats")["peers"]
    assert row["session"]["received"] == 1 and row["session"]["dropped"]["rate"] == 1
    ld.restart({"custommsg-peer-rate": "0.001", "custommsg-peer-burst": 1})  # a fresh bucket
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb"))  # the sender's copy: stored now
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_A)][-1:] == [2])
    (row,) = ld.call("custommsg-stats")["peers"]
    assert row["total"]["received"] == 2 and row["total"]["stored"] == 2 and row["total"]["dropped"]["rate"] == 1
    assert [m["payload"] for m in inbox(ld)] == ["8001aa", "8001bb"]


def test_receiver_remembers_across_restarts(ld: FakeLightningd) -> None:
    """last per (peer, stream) is in the database: after a restart a copy is still a copy."""
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))
    # The ack goes out after the hook answers: a restart before it would lose it (the peer's
    # next copy is acknowledged again, which is what this test shows).
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_A)] == [1])
    ld.restart()
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb"))
    assert [m["payload"] for m in inbox(ld)] == ["8001aa", "8001bb"]
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_A)] == [1, 1, 2])


def test_inner_type_outside_custommsg_type_is_still_stored(make_ld: MakeLd) -> None:
    """The sender asked for acknowledged storage: an inner type custommsg-type does not keep is stored and acked."""
    ld = make_ld(options={"custommsg-type": "40001"})
    ld.custommsg(PEER_A, "8001aa")  # plain: not kept
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001bb"))
    assert [m["payload"] for m in inbox(ld)] == ["8001bb"]
    wait_for(lambda: acks_to(ld, PEER_A) == [{"stream": STREAM, "seq": 1}])


def test_rate_limited_envelope_is_not_acked(make_ld: MakeLd) -> None:
    """An envelope the rate limiter drops is neither stored nor acked, so the sender sends it again."""
    ld = make_ld(options={"custommsg-peer-rate": "0.001", "custommsg-peer-burst": 1})
    ld.custommsg(PEER_A, envelope(STREAM, 1, "8001aa"))
    ld.custommsg(PEER_A, envelope(STREAM, 2, "8001bb"))
    wait_for(lambda: acks_to(ld, PEER_A))
    # No later event marks "no ack for seq 2": the plugin wrote any such ack before it answered
    # that hook call, right after the first; this is time for the fake lightningd to take it.
    time.sleep(0.1)
    assert acks_to(ld, PEER_A) == [{"stream": STREAM, "seq": 1}]
    assert [m["payload"] for m in inbox(ld)] == ["8001aa"]
    assert ld.call("custommsg-stats")["session"]["dropped"]["rate"] == 1
