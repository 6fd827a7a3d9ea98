"""Receiving: the custommsg hook, the inbox, custommsg-list/-wait/-delete/-stats, and restarts.

lightningd calls the custommsg hook with ``{"payload": hex incl. type, "peer_id": id}``
and ``fatal()``s on any answer but ``{"result": "continue"}``; every hook answer in
this file is checked for that at teardown (conftest).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, wait_for
from .peerproto import app_sent


def payload(msg_type: int, body: bytes | str = b"") -> str:
    raw = body.encode() if isinstance(body, str) else body
    return msg_type.to_bytes(2, "big").hex() + raw.hex()


def messages(ld: FakeLightningd, **params: Any) -> list[dict[str, Any]]:
    return ld.call("custommsg-list", params)["messages"]


def stats_row(stats: dict[str, Any], peer_id: str, msg_type: int) -> dict[str, Any]:
    rows = [r for r in stats["peers"] if r["peer_id"] == peer_id and r["type"] == msg_type]
    assert len(rows) == 1, stats["peers"]
    return rows[0]


def test_receive_stores_in_order(ld: FakeLightningd) -> None:
    """Messages of the default range (32768-65535) are stored in arrival order, 1-based, with decoded fields."""
    sent = [
        (PEER_A, payload(0x8001, "hello")),
        (PEER_B, payload(0xFFFF, b"\xff\xfe\x00")),  # not UTF-8
        (PEER_A, payload(0x8000, "")),  # even types arrive too, if connectd let them in
        (PEER_B, payload(0x8001, "h\u00e9llo \u20ac")),
        (PEER_A, payload(0x8001, b"x" * 65533)),  # the BOLT #1 maximum
    ]
    for peer, hexmsg in sent:
        assert ld.custommsg(peer, hexmsg) == {"result": "continue"}
    listed = messages(ld)
    assert [m["created_index"] for m in listed] == [1, 2, 3, 4, 5]
    assert [(m["peer_id"], m["payload"]) for m in listed] == sent
    assert [m["type"] for m in listed] == [0x8001, 0xFFFF, 0x8000, 0x8001, 0x8001]
    assert [m["length"] for m in listed] == [7, 5, 2, 2 + len("h\u00e9llo \u20ac".encode()), 65535]
    assert listed[0]["text"] == "hello"
    assert "text" not in listed[1]
    assert listed[2]["text"] == ""
    assert listed[3]["text"] == "h\u00e9llo \u20ac"
    assert all(isinstance(m["received_at"], (int, float)) for m in listed)


def test_receive_ignores_other_types(ld: FakeLightningd) -> None:
    """Types outside the selection (commando, peer storage, below 32768) are not stored, and not counted."""
    for msg_type in (19533, 19535, 22859, 22861, 7, 9, 32767, 1000):
        assert ld.custommsg(PEER_A, payload(msg_type, "x")) == {"result": "continue"}
    assert messages(ld) == []
    assert ld.call("custommsg-stats")["peers"] == []
    assert ld.custommsg(PEER_A, payload(32768, "x")) == {"result": "continue"}
    assert [m["created_index"] for m in messages(ld)] == [1]
    assert ld.notifications[-1]["params"]["custommsg_stored"]["created_index"] == 1


@pytest.mark.parametrize("bad", ["", "01", "abc", "zz", "8001 zz"], ids=["empty", "one-byte", "odd", "zz", "junk"])
def test_receive_malformed_payload(ld: FakeLightningd, bad: str) -> None:
    """A payload shorter than 2 bytes or not hex is answered continue, counted as malformed, not stored."""
    assert ld.custommsg(PEER_A, bad) == {"result": "continue"}
    assert messages(ld) == []
    assert ld.call("custommsg-stats")["malformed"] == 1


def test_hook_with_odd_params(ld: FakeLightningd) -> None:
    """Missing or extra hook fields (an older or newer lightningd) still get continue."""
    for params in ({}, {"peer_id": PEER_A}, {"payload": payload(0x8001)},
                   {"payload": payload(0x8001, "x"), "peer_id": PEER_A, "message": "8001", "extra": [1]}):
        answer = ld.send_request("custommsg", params, f"cln:custommsg#x{len(ld.custommsg_answers)}").wait_response()
        assert answer.get("result") == {"result": "continue"}, answer
    # Only the call that named a peer is stored: a message from nobody cannot be answered or counted.
    assert [(m["peer_id"], m["text"]) for m in ld.call("custommsg-list")["messages"]] == [(PEER_A, "x")]


def test_custommsg_stored_notification(ld: FakeLightningd) -> None:
    """Each stored message is announced with custommsg_stored, carrying created_index and the decoded fields."""
    ld.custommsg(PEER_B, payload(0x9001, '{"hi":1}'))
    note = ld.wait_notification("custommsg_stored")
    expected = {
        "created_index": 1,
        "peer_id": PEER_B,
        "type": 0x9001,
        "payload": payload(0x9001, '{"hi":1}'),
        "length": 10,
        "text": '{"hi":1}',
    }
    # The entry once, as the object named after the topic (as lightningd writes its own notifications),
    # not also flattened beside it: lightningd reads every byte of every notification.
    assert list(note["params"]) == ["custommsg_stored"]
    assert expected.items() <= note["params"]["custommsg_stored"].items()
    ld.custommsg(PEER_B, payload(0x1234))  # not stored: no notification
    ld.custommsg(PEER_B, payload(0x9003))
    stored = [m["created_index"] for m in ld.notified("custommsg_stored")]
    assert stored == [1, 2]


def test_stored_notification_turned_off(make_ld: MakeLd) -> None:
    """custommsg-stored-notification=false: messages are stored, listed and waited for, and announced to no one."""
    ld = make_ld({"custommsg-stored-notification": False})
    waiting = ld.start_call("custommsg-wait", {"nextvalue": 2})
    ld.custommsg(PEER_B, payload(0x9001, "one"))
    ld.custommsg(PEER_B, payload(0x9002, "two"))
    assert waiting.wait_response()["result"]["text"] == "two"
    assert [m["text"] for m in ld.call("custommsg-list")["messages"]] == ["one", "two"]
    ld.call("custommsg-stats")  # a round trip after both: a notification would have been written before it
    assert [n for n in ld.notifications if n.get("method") == "custommsg_stored"] == []


def test_type_option_restricts_storage(make_ld: MakeLd) -> None:
    """custommsg-type=40000-40999 (plus a single 7) keeps those types only."""
    ld = make_ld(options={"custommsg-type": ["40000-40999", "7"]})
    for msg_type in (39999, 40000, 40500, 40999, 41000, 32769, 65535, 7, 9):
        assert ld.custommsg(PEER_A, payload(msg_type)) == {"result": "continue"}
    assert [m["type"] for m in messages(ld)] == [40000, 40500, 40999, 7]


@pytest.mark.parametrize(
    "value", [["18"], ["40999-40000"], ["abc"], ["70000"]], ids=["internal", "empty-range", "text", "too-big"]
)
def test_bad_type_option_disables(make_ld: MakeLd, value: list[str]) -> None:
    """A custommsg-type lightningd cannot deliver disables the plugin at init, with the reason."""
    ld = make_ld(start=False)
    result = ld.start({"custommsg-type": value}, expect_disable=True)
    assert "custommsg-type" in result["disable"]


def test_pagination(ld: FakeLightningd) -> None:
    """index=created with start (inclusive) and limit; start/limit without index are -32602, like listforwards."""
    for i in range(10):
        ld.custommsg(PEER_A if i % 2 else PEER_B, payload(0x8001 + 2 * (i % 3), bytes([i])))
    page = messages(ld, index="created", start=3, limit=4)
    assert [m["created_index"] for m in page] == [3, 4, 5, 6]
    assert [m["created_index"] for m in messages(ld, index="created", start=9)] == [9, 10]
    assert messages(ld, index="created", start=11) == []
    assert [m["created_index"] for m in messages(ld, index="created", limit=2)] == [1, 2]
    assert messages(ld, index="created", limit=0) == []
    assert [m["created_index"] for m in messages(ld, peer_id=PEER_A)] == [2, 4, 6, 8, 10]
    assert [m["created_index"] for m in messages(ld, type=0x8003)] == [2, 5, 8]
    assert [m["created_index"] for m in messages(ld, peer_id=PEER_A, type=0x8003, index="created", start=3)] == [8]
    for params, text in (({"start": 3}, "Can only specify {start} with {index}"),
                         ({"limit": 3}, "Can only specify {limit} with {index}"),
                         ({"index": "updated"}, "index"),
                         ({"index": "created", "start": -1}, "start"),
                         ({"peer_id": "nope"}, None),
                         ({"type": 70000}, None)):
        err = ld.call_error("custommsg-list", params)
        if text is None:
            assert err.code in (3300, 3310), err.error
        else:
            assert err.code == -32602, err.error
            assert text in err.message
    # positional: peer_id type index start limit
    assert [m["created_index"] for m in ld.call("custommsg-list", [None, None, "created", 5, 1])["messages"]] == [5]


def test_wait_returns_existing(ld: FakeLightningd) -> None:
    """custommsg-wait answers at once when a matching message is already stored."""
    ld.custommsg(PEER_A, payload(0x8001, "one"))
    ld.custommsg(PEER_B, payload(0x8003, "two"))
    assert ld.call("custommsg-wait", {"nextvalue": 1}, timeout=2)["created_index"] == 1
    assert ld.call("custommsg-wait", {"nextvalue": 1, "peer_id": PEER_B}, timeout=2)["text"] == "two"
    assert ld.call("custommsg-wait", [1, None, 0x8003], timeout=2)["created_index"] == 2
    assert ld.call("custommsg-wait", {"nextvalue": 0}, timeout=2)["created_index"] == 1


def test_wait_parks_until_match(ld: FakeLightningd) -> None:
    """A parked wait ignores other peers, other types and older indexes, and wakes on the first match."""
    ld.custommsg(PEER_B, payload(0x8003, "old"))  # index 1: below nextvalue
    waiting = ld.start_call("custommsg-wait", {"nextvalue": 2, "peer_id": PEER_B, "type": 0x8003})
    any_wait = ld.start_call("custommsg-wait", {"nextvalue": 3})
    ld.call("custommsg-stats")  # answered after the plugin handled both waits: neither was answered at once
    assert not waiting.done() and not any_wait.done()
    ld.custommsg(PEER_A, payload(0x8003, "wrong peer"))  # 2
    ld.custommsg(PEER_B, payload(0x8001, "wrong type"))  # 3
    assert any_wait.result(timeout=2)["created_index"] == 3
    assert not waiting.done()
    ld.custommsg(PEER_B, payload(0x8003, "yes"))  # 4
    result = waiting.result(timeout=2)
    assert (result["created_index"], result["text"]) == (4, "yes")


def test_wait_timeout(ld: FakeLightningd) -> None:
    """A wait with timeout fails with 3330 when nothing matching arrives; timeout=0 fails at once."""
    started = time.monotonic()
    err = ld.call_error("custommsg-wait", {"nextvalue": 1, "timeout": 0.3}, timeout=3)
    assert err.code == 3330
    assert err.data == {"nextvalue": 1, "timeout": 0.3}
    assert 0.25 <= time.monotonic() - started < 2.5
    err = ld.call_error("custommsg-wait", {"nextvalue": 1, "timeout": 0}, timeout=1)
    assert err.code == 3330
    for bad in ({"nextvalue": -1}, {"nextvalue": 1, "timeout": -1}, {"nextvalue": 1, "type": 70000}):
        assert ld.call_error("custommsg-wait", bad).code in (-32602, 3310)


def test_hundred_waiters(ld: FakeLightningd) -> None:
    """100 parked waits do not hold up other methods or hooks, and all wake on one matching message."""
    waits = [ld.start_call("custommsg-wait", {"nextvalue": 1, "peer_id": PEER_B}) for _ in range(100)]
    for _ in range(5):
        started = time.monotonic()
        ld.call("custommsg-list", {}, timeout=2)
        ld.call("custommsg-stats", {}, timeout=2)
        assert ld.custommsg(PEER_A, payload(0x8001, "not for them"), timeout=2) == {"result": "continue"}
        assert time.monotonic() - started < 1.0
    assert not any(w.done() for w in waits)
    ld.custommsg(PEER_B, payload(0x8005, "for everyone"))
    results = [w.result(timeout=5) for w in waits]
    assert {r["created_index"] for r in results} == {6}


def test_rate_limit(make_ld: MakeLd) -> None:
    """With rate 1/s and burst 5, 20 quick messages from one peer store 5, drop 15, and log the episode once."""
    ld = make_ld(options={"custommsg-peer-rate": "1", "custommsg-peer-burst": 5})
    calls = [ld.start_custommsg(PEER_A, payload(0x8001, bytes([i]))) for i in range(20)]  # pipelined: fast
    assert all(call.result() == {"result": "continue"} for call in calls)
    assert [m["payload"] for m in messages(ld)] == [payload(0x8001, bytes([i])) for i in range(5)]
    row = stats_row(ld.call("custommsg-stats"), PEER_A, 0x8001)
    assert row["session"]["received"] == 20
    assert row["session"]["stored"] == 5
    assert row["session"]["dropped"]["rate"] == 15
    assert row["total"]["dropped"]["rate"] == 15
    assert len(ld.log_lines("rate limit")) == 1
    # Another peer has its own bucket.
    ld.custommsg(PEER_B, payload(0x8001, "b"))
    assert messages(ld, peer_id=PEER_B)[0]["text"] == "b"


def test_bad_rate_options_disable(make_ld: MakeLd) -> None:
    """Rates and sizes that are not positive numbers disable the plugin at init."""
    for options in ({"custommsg-peer-rate": "0"}, {"custommsg-peer-rate": "fast"},
                    {"custommsg-peer-burst": 0}, {"custommsg-inbox-max": 0}, {"custommsg-outbox-max": -1}):
        ld = make_ld(start=False)
        result = ld.start(options, expect_disable=True)
        assert list(options)[0] in result["disable"]


def test_stats_per_peer_and_type(ld: FakeLightningd) -> None:
    """custommsg-stats counts sent, received and stored per peer and type, with totals, and filters."""
    for peer, msg_type in ((PEER_A, 0x8001), (PEER_A, 0x8001), (PEER_A, 0x8003), (PEER_B, 0x8001)):
        ld.custommsg(peer, payload(msg_type))
    ld.custommsg(PEER_B, payload(19533))  # not selected: not counted
    ld.call("custommsg-send", {"node_id": PEER_B, "msg": "8005aa"}, timeout=3)
    stats = ld.call("custommsg-stats")
    assert stats["inbox_count"] == 4
    none_dropped = {"rate": 0, "peer_budget": 0, "global_budget": 0, "retention": 0, "storage": 0, "malformed": 0,
                    "unanswered": 0}
    size = len(bytes.fromhex(payload(0x8001)))
    assert stats_row(stats, PEER_A, 0x8001)["session"] == {
        "sent": 0, "received": 2, "stored": 2, "dropped": none_dropped,
        "bytes": {"sent": 0, "received": 2 * size, "stored": 2 * size, "dropped": none_dropped}}
    assert stats_row(stats, PEER_B, 0x8005)["total"]["bytes"]["sent"] == 3
    assert stats_row(stats, PEER_A, 0x8003)["total"]["stored"] == 1
    assert stats_row(stats, PEER_B, 0x8001)["total"]["received"] == 1
    assert stats_row(stats, PEER_B, 0x8005)["total"]["sent"] == 1
    assert stats["total"]["received"] == 4 and stats["total"]["sent"] == 1
    only_a = ld.call("custommsg-stats", {"peer_id": PEER_A})
    assert {(r["peer_id"], r["type"]) for r in only_a["peers"]} == {(PEER_A, 0x8001), (PEER_A, 0x8003)}
    only_type = ld.call("custommsg-stats", {"type": 0x8001})
    assert {(r["peer_id"], r["type"]) for r in only_type["peers"]} == {(PEER_A, 0x8001), (PEER_B, 0x8001)}


def test_inbox_max_retention(make_ld: MakeLd) -> None:
    """custommsg-inbox-max=3 keeps the 3 newest messages and counts the rest as dropped for retention."""
    ld = make_ld(options={"custommsg-inbox-max": 3})
    for i in range(5):
        ld.custommsg(PEER_A, payload(0x8001, bytes([i])))
    assert [m["created_index"] for m in messages(ld)] == [3, 4, 5]
    stats = ld.call("custommsg-stats")
    assert stats["inbox_count"] == 3
    assert stats_row(stats, PEER_A, 0x8001)["total"]["dropped"]["retention"] == 2


def test_delete(ld: FakeLightningd) -> None:
    """custommsg-delete removes one message by created_index, or all up to an index; indexes are not reused."""
    for i in range(6):
        ld.custommsg(PEER_A, payload(0x8001, bytes([i])))
    assert ld.call("custommsg-delete", {"created_index": 2}) == {"deleted": 1}
    err = ld.call_error("custommsg-delete", {"created_index": 2})
    assert err.code == 3332 and err.data == {"created_index": 2}
    assert ld.call("custommsg-delete", {"up_to": 4}) == {"deleted": 3}  # 1, 3 and 4
    assert ld.call("custommsg-delete", {"up_to": 4}) == {"deleted": 0}
    assert [m["created_index"] for m in messages(ld)] == [5, 6]
    assert ld.call("custommsg-delete", [6]) == {"deleted": 1}
    for bad in ({}, {"created_index": 1, "up_to": 2}):
        assert ld.call_error("custommsg-delete", bad).code == 3310
    assert ld.call_error("custommsg-delete", {"up_to": -1}).code == -32602
    ld.custommsg(PEER_A, payload(0x8001))
    assert [m["created_index"] for m in messages(ld)] == [5, 7]
    assert ld.call("custommsg-stats")["inbox_count"] == 2


def test_restart_keeps_inbox(ld: FakeLightningd) -> None:
    """A new plugin process on the same lightning-dir lists the old messages and continues created_index."""
    for i in range(3):
        ld.custommsg(PEER_A, payload(0x8001, bytes([i])))
    ld.call("custommsg-delete", {"created_index": 3})
    before = messages(ld)
    first_pid = ld.proc.pid if ld.proc else None
    ld.restart()
    assert ld.proc is not None and ld.proc.pid != first_pid
    assert messages(ld) == before
    ld.custommsg(PEER_B, payload(0x8003, "after"))
    assert [m["created_index"] for m in messages(ld)] == [1, 2, 4]
    assert ld.call("custommsg-wait", {"nextvalue": 3}, timeout=2)["created_index"] == 4
    stats = ld.call("custommsg-stats")
    assert stats_row(stats, PEER_A, 0x8001)["total"]["stored"] == 3
    assert stats_row(stats, PEER_A, 0x8001)["session"]["stored"] == 0
    assert ld.exits[0] == (0, True)


def test_hooks_before_init(make_ld: MakeLd) -> None:
    """Hooks can arrive between getmanifest and init (``plugin start``): custommsg continues, the guard works."""
    ld = make_ld(start=False)
    ld.launch()
    ld.getmanifest()
    assert ld.custommsg(PEER_A, payload(0x8001, "early")) == {"result": "continue"}
    assert ld.rpc_command({"node_id": PEER_A, "msg": "zz"})["return"]["error"]["code"] == 3302
    assert ld.call_error("custommsg-list").code == 3311  # NOT_READY: its own code, not the storage error's
    assert ld.init(startup=False) is None
    assert messages(ld) == []


def test_database_unusable_at_init(make_ld: MakeLd) -> None:
    """custommsg-db under a regular file cannot be created: init disables the plugin and says why."""
    ld = make_ld(start=False)
    blocker = os.path.join(ld.lightning_dir, "not-a-dir")
    with open(blocker, "w") as f:
        f.write("x")
    result = ld.start({"custommsg-db": os.path.join(blocker, "sub", "inbox.sqlite3")}, expect_disable=True)
    assert "cannot open the custommsg database" in result["disable"]


def test_database_relative_path(make_ld: MakeLd) -> None:
    """A relative custommsg-db is relative to the lightning-dir, as lightningd's own paths are."""
    ld = make_ld(options={"custommsg-db": "elsewhere/inbox.sqlite3"})
    ld.custommsg(PEER_A, payload(0x8001))
    assert os.path.exists(os.path.join(ld.lightning_dir, "elsewhere", "inbox.sqlite3"))
    assert not os.path.exists(os.path.join(ld.lightning_dir, "custommsg"))


@contextlib.contextmanager
def storage_outage(ld: FakeLightningd) -> Iterator[None]:
    """Inside, every write past the first byte of a regular file fails with EFBIG in the plugin.

    Python ignores SIGXFSZ, so SQLite sees the error ("disk I/O error") instead of the
    process dying; pipes (the plugin's stdout) are not affected. Works as root, where
    permissions do not, and on an already-open database, where renaming or replacing the
    file does not (the plugin keeps its open descriptors).
    """
    assert ld.proc is not None
    pid = ld.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, old[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, old)


needs_prlimit = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
# The outage is the plugin's own writes to a file failing: SQLite's. PostgreSQL's outages (the server
# stopped, the connection lost) are in test_postgres.py.
file_outage = pytest.mark.sqlite_only


@needs_prlimit
@file_outage
def test_database_unusable_at_runtime(ld: FakeLightningd) -> None:
    """When the database cannot be written, the hook still continues, the loss is counted, and storing resumes."""
    ld.allowed_logs.append("cannot store messages")
    ld.custommsg(PEER_A, payload(0x8001, "before"))
    with storage_outage(ld):
        for i in range(3):
            assert ld.custommsg(PEER_A, payload(0x8003, bytes([i]))) == {"result": "continue"}
        assert len(ld.log_lines("cannot store messages")) == 1  # logged once, not per message
        assert [m["text"] for m in messages(ld)] == ["before"]  # reads still work
    assert ld.custommsg(PEER_A, payload(0x8005, "after")) == {"result": "continue"}
    assert ld.log_lines("storing messages again")
    assert [m["created_index"] for m in messages(ld)] == [1, 2]
    row = stats_row(ld.call("custommsg-stats"), PEER_A, 0x8003)
    assert row["total"]["dropped"]["storage"] == 3 and row["total"]["received"] == 3


@needs_prlimit
@file_outage
def test_database_error_names_its_cause(ld: FakeLightningd) -> None:
    """The "cannot store messages" log names SQLite's own error, not a secondary rollback failure."""
    ld.allowed_logs.append("cannot store messages")
    with storage_outage(ld):
        ld.custommsg(PEER_A, payload(0x8001))
    (line,) = ld.log_lines("cannot store messages")
    assert "cannot rollback" not in line
    assert "disk I/O error" in line


@needs_prlimit
@file_outage
def test_stats_during_storage_outage(ld: FakeLightningd) -> None:
    """custommsg-stats, the way to see dropped.storage, still answers while the database cannot be written."""
    ld.allowed_logs.append("cannot store messages")
    with storage_outage(ld):
        ld.custommsg(PEER_A, payload(0x8001))
        stats = ld.call("custommsg-stats")
    assert stats["session"]["dropped"]["storage"] == 1


def test_waiters_survive_shutdown(ld: FakeLightningd) -> None:
    """Parked waits and requests do not keep the plugin alive at shutdown."""
    for _ in range(10):
        ld.start_call("custommsg-wait", {"nextvalue": 1})
    ld.start_call("custommsg-request", {"node_id": PEER_A, "msg": "8001", "reply_type": 0x8003, "timeout": 30})
    wait_for(lambda: app_sent(ld), timeout=3)
    started = time.monotonic()
    assert ld.stop() == 0
    assert time.monotonic() - started < 3


def test_hook_throughput(ld: FakeLightningd) -> None:
    """1000 hook calls in flight at once (lightningd does not wait between peers' messages) are all answered.

    A slow custommsg hook throttles all inbound traffic from that peer (connectd/multiplex.c:
    read_body_from_peer_done waits until custommsg_completed), so
    the hook must stay fast: here well under 10 ms a message.
    """
    started = time.monotonic()
    calls = [ld.start_custommsg(PEER_A if i % 2 else PEER_B, payload(0x8001, i.to_bytes(2, "big")))
             for i in range(1000)]
    for call in calls:
        call.wait_response(timeout=20)
    elapsed = time.monotonic() - started
    assert all(a == {"result": "continue"} for a in ld.custommsg_answers)
    assert elapsed < 10, elapsed
    assert ld.call("custommsg-stats")["inbox_count"] == 1000
    listed = messages(ld, index="created", start=995)
    assert [m["payload"] for m in listed] == [payload(0x8001, i.to_bytes(2, "big")) for i in range(994, 1000)]


def test_method_params_that_look_like_a_hook(ld: FakeLightningd) -> None:
    """A custommsg-list call with stray "method"/"payload" params is answered as custommsg-list, not as the hook.

    lightningd passes a caller's params to plugin methods unchanged (``lightning-cli -k``).
    (Found here: the hook fast path once matched these anywhere in a request's first bytes.)
    """
    ld.allowed_logs.append("Traceback")  # pyln logs the binding error
    err = ld.call_error("custommsg-list", {"method": "custommsg", "payload": "0007aa"})
    assert err.message


_A = f'"{PEER_A}"'
INFINITE_SECONDS = [
    ("custommsg-wait", '{"nextvalue": 1, "timeout": 1e400}'),
    ("custommsg-send", '{"node_id": ' + _A + ', "msg": "8001", "queue": true, "ttl": 1e400}'),
    ("custommsg-send", '{"node_id": ' + _A + ', "msg": "8001", "ack": true, "ttl": -1e400}'),
    ("custommsg-request", '{"node_id": ' + _A + ', "msg": "8001", "reply_type": 32771, "timeout": 1e400}'),
    ("custommsg-lsps-call", '{"peer_id": ' + _A + ', "method": "m", "timeout": 1e400}'),
    ("custommsg-outbox-wait", '{"id": 1, "timeout": 1e400}'),
]


@pytest.mark.parametrize(("method", "params"), INFINITE_SECONDS)
def test_seconds_of_infinity_are_refused(ld: FakeLightningd, method: str, params: str) -> None:
    """lightningd forwards 1e400 (valid JSON), which Python reads as infinity: refused with 3310,
    so no ttl or deadline of infinity is stored, or written back as JSON lightningd cannot read."""
    error = ld.start_call_raw(method, params).error()
    assert error.code == 3310 and error.data["param"] in ("timeout", "ttl")
    assert ld.call("custommsg-outbox")["outbox"] == []


def test_hook_calls_read_together_are_stored_together_in_order(ld: FakeLightningd) -> None:
    """Hook calls from several peers that the plugin reads in one go (lightningd writes each as its message
    comes) are stored in one transaction, in the order written; each is answered continue, notified,
    counted, and a method written right after them finds them stored."""
    sent = [(peer, payload(0x8001, f"{peer[:4]}-{i}")) for i in range(4) for peer in (PEER_A, PEER_B)]
    calls = ld.custommsg_round(sent)
    listed = ld.call("custommsg-list")["messages"]  # written after the calls: read after they were stored
    assert [c.wait_response()["result"] for c in calls] == [{"result": "continue"}] * len(sent)
    assert [(m["created_index"], m["peer_id"], m["payload"]) for m in listed] == [
        (i, peer, hexmsg) for i, (peer, hexmsg) in enumerate(sent, start=1)
    ]
    ld.wait_notification("custommsg_stored", lambda n: n["params"]["custommsg_stored"]["created_index"] == len(sent))
    assert ld.notified("custommsg_stored")[-1]["payload"] == sent[-1][1]
    assert [m["created_index"] for m in ld.notified("custommsg_stored")] == list(
        range(1, len(sent) + 1))
    stats = ld.call("custommsg-stats")
    assert stats["total"]["stored"] == stats["session"]["stored"] == len(sent)


@pytest.mark.sqlite_only
def test_hook_answers_of_a_round_follow_its_commit(ld: FakeLightningd) -> None:
    """No hook call of a round is answered before the round's messages are committed: each answer, as it
    arrives, finds every message of the round in the database file, read by another connection."""
    path = os.path.join(ld.lightning_dir, "custommsg", "custommsg.sqlite3")
    ld.custommsg(PEER_A, payload(0x8001, "first"))  # the file exists
    for round_number in range(5):
        sent = [(peer, payload(0x8003, f"{round_number}-{i}")) for i in range(10) for peer in (PEER_A, PEER_B)]
        calls = ld.custommsg_round(sent)
        calls[0].wait_response()
        reader = sqlite3.connect(path)
        try:
            (count,) = reader.execute("SELECT COUNT(*) FROM inbox").fetchone()
        finally:
            reader.close()
        assert count == 1 + (round_number + 1) * len(sent)
        for call in calls:
            call.wait_response()


@needs_prlimit
@file_outage
def test_a_round_that_cannot_be_stored_is_counted_dropped(ld: FakeLightningd) -> None:
    """A round of hook calls whose transaction fails: every call is still answered continue, each message is
    counted in dropped.storage, the outage is logged once, and the next round is stored."""
    ld.allowed_logs.append("cannot store messages")
    sent = [(peer, payload(0x8001, str(i))) for i in range(3) for peer in (PEER_A, PEER_B)]
    with storage_outage(ld):
        calls = ld.custommsg_round(sent)
        assert [c.wait_response()["result"] for c in calls] == [{"result": "continue"}] * len(sent)
        assert len(ld.log_lines("cannot store messages")) == 1
    for call in ld.custommsg_round(sent):
        assert call.wait_response()["result"] == {"result": "continue"}
    assert [m["created_index"] for m in messages(ld)] == list(range(1, len(sent) + 1))
    stats = ld.call("custommsg-stats")
    assert stats["total"]["dropped"]["storage"] == len(sent) and stats["total"]["stored"] == len(sent)
