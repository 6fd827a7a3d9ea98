"""Byte budgets and bounds, with plugin.py as a subprocess: what is stored, counted, logged and shown
when a peer sends more bytes than its budget, and what a send over this node's send budget does."""

from __future__ import annotations

import time

from .conftest import PEER_A, PEER_B, MakeLd
from .harness import wait_for
from .test_ack import STREAM, acks_to, envelope

BIG = 40000  # bytes of body: two of them are more than a 65535-byte burst


def big(msg_type: int, fill: int, size: int = BIG) -> str:
    return msg_type.to_bytes(2, "big").hex() + bytes([fill]).hex() * size


def test_peer_byte_budget_holds_one_peer_and_not_another(make_ld: MakeLd) -> None:
    """With 8 kbps (1000 bytes a second) and a 65535-byte burst per peer: of A's three 40002-byte
    messages sent at once, the first is stored, the next two are dropped (peer_budget), counted in
    messages and bytes, and the episode logged once; B's message, sent between them, is stored;
    custommsg-peers shows A's bucket and its episode's drops."""
    ld = make_ld(options={"custommsg-peer-kbps": 8, "custommsg-peer-burst-bytes": 65535})
    for fill in (1, 2):
        ld.custommsg(PEER_A, big(0x8001, fill))
    ld.custommsg(PEER_B, big(0x8001, 9))
    ld.custommsg(PEER_A, big(0x8001, 3))
    stored = ld.call("custommsg-list")["messages"]
    assert [(m["peer_id"], m["payload"][4:6]) for m in stored] == [(PEER_A, "01"), (PEER_B, "09")]
    totals = ld.call("custommsg-stats", {"peer_id": PEER_A})["session"]
    assert (totals["received"], totals["stored"], totals["dropped"]["peer_budget"]) == (3, 1, 2)
    assert totals["bytes"]["received"] == 3 * (BIG + 2)
    assert totals["bytes"]["stored"] == BIG + 2
    assert totals["bytes"]["dropped"]["peer_budget"] == 2 * (BIG + 2)
    assert len(ld.log_lines("over its byte budget")) == 1
    (row,) = ld.call("custommsg-peers", {"peer_id": PEER_A})["peers"]
    assert row["receive_budget"]["dropped_in_episode"] == 2
    assert row["receive_budget"]["bytes"] < 65535 - BIG + 100  # about 25533 and what refilled since


def test_global_budget_holds_all_peers_together(make_ld: MakeLd) -> None:
    """With a node budget of 1000 bytes a second and a 65535-byte burst (peers unlimited in bytes), A's
    40002 bytes are stored and B's next 40002 are not (global_budget); stats show the node's bucket."""
    ld = make_ld(options={"custommsg-peer-kbps": 0, "custommsg-peer-burst-bytes": 0,
                          "custommsg-global-kbps": 8, "custommsg-global-burst-bytes": 65535})
    ld.custommsg(PEER_A, big(0x8001, 1))
    ld.custommsg(PEER_B, big(0x8001, 2))
    stats = ld.call("custommsg-stats")
    assert (stats["session"]["stored"], stats["session"]["dropped"]["global_budget"]) == (1, 1)
    assert stats["global_budget"]["dropped_in_episode"] == 1
    assert len(ld.log_lines("the node is over the node's byte budget")) == 1
    (row,) = ld.call("custommsg-peers", {"peer_id": PEER_B})["peers"]
    assert "bytes" not in row["receive_budget"] and row["receive_budget"]["dropped_in_episode"] == 0


def test_burst_below_65535_disables_naming_the_option(make_ld: MakeLd) -> None:
    for option in ("custommsg-peer-burst-bytes", "custommsg-global-burst-bytes", "custommsg-peer-send-burst-bytes"):
        ld = make_ld(start=False)
        result = ld.start({option: 65534}, expect_disable=True)
        assert option in result["disable"] and "65535" in result["disable"]


def test_send_over_budget_fails_with_when_it_fits_or_waits_in_the_outbox(make_ld: MakeLd) -> None:
    """With a send budget of 40000 bytes a second (320 kbps) and a 65535-byte burst: a second 40002-byte
    send at once fails with 3380 and retry_after about 0.36 s; with queue, three go into the outbox and
    out in order as the budget refills, nothing lost."""
    ld = make_ld(options={"custommsg-peer-send-kbps": 320, "custommsg-peer-send-burst-bytes": 65535})
    assert ld.call("custommsg-send", {"node_id": PEER_A, "msg": big(0x8001, 1)})["status"] == "sent"
    error = ld.call_error("custommsg-send", {"node_id": PEER_A, "msg": big(0x8001, 2)})
    assert error.code == 3380
    assert error.data["peer_id"] == PEER_A and error.data["length"] == BIG + 2
    assert 0.3 < error.data["retry_after"] <= 0.37
    assert len(ld.sent_to(PEER_A)) == 1
    # B has its own budget
    assert ld.call("custommsg-send", {"node_id": PEER_B, "msg": big(0x8001, 9)})["status"] == "sent"
    started = time.monotonic()
    results = [ld.call("custommsg-send", {"node_id": PEER_A, "msg": big(0x8001, n), "queue": True})
               for n in (3, 4, 5)]
    assert [r["status"] for r in results] == ["queued"] * 3
    wait_for(lambda: len(ld.sent_to(PEER_A)) == 4, timeout=15)
    assert time.monotonic() - started > 2 * BIG / 40000 - 0.5  # held to the budget: not all at once
    assert [m[4:6] for m in ld.sent_to(PEER_A)] == ["01", "03", "04", "05"]
    outbox = ld.call("custommsg-outbox", {"peer_id": PEER_A})["outbox"]
    assert [e["status"] for e in outbox] == ["sent"] * 3


def test_envelope_over_the_byte_budget_is_not_acknowledged(make_ld: MakeLd) -> None:
    """An envelope is charged its full size (the message and 18 bytes): with a 65535-byte burst, one
    carrying 40002 bytes is stored and acknowledged; the next is dropped (peer_budget), not
    acknowledged, so its sender sends it again; after a restart (a fresh bucket) that copy is stored."""
    options = {"custommsg-peer-kbps": 1, "custommsg-peer-burst-bytes": 65535}
    ld = make_ld(options=options)
    ld.custommsg(PEER_A, envelope(STREAM, 1, big(0x8001, 1)))
    ld.custommsg(PEER_A, envelope(STREAM, 2, big(0x8001, 2)))
    wait_for(lambda: len(acks_to(ld, PEER_A)) == 1)
    assert acks_to(ld, PEER_A)[0]["seq"] == 1
    dropped = ld.call("custommsg-stats")["session"]
    assert dropped["dropped"]["peer_budget"] == 1 and dropped["bytes"]["dropped"]["peer_budget"] == BIG + 2 + 18
    ld.restart(options)
    ld.custommsg(PEER_A, envelope(STREAM, 2, big(0x8001, 2)))
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_A)][-1:] == [2])
    assert [m["payload"][4:6] for m in ld.call("custommsg-list")["messages"]] == ["01", "02"]
