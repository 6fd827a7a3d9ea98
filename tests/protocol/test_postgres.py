"""The plugin on PostgreSQL: following lightningd's wallet, the password kept out of sight, the
server down in the middle of a flood, unreachable at start, and the SQLite file imported once.

(The receive, outbox and acknowledged-delivery tests run on PostgreSQL too: conftest.py.)
The outage tests run their own server (tools/pgserver, in a directory of their own), so
stopping it touches no other test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from custommsg.store.postgres import CALL_DEADLINE

from .. import pg
from ..pg import OwnServer
from .conftest import OFFLINE_PEER, PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, PluginCallError, wait_for
from .test_ack import STREAM, acks_to, envelope
from .test_receive import messages, payload, stats_row

STORAGE_ERROR = 3331


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    server = OwnServer()
    yield server
    server.remove()


def with_password(url: str, password: str) -> str:
    """The URL with a password (the test server trusts local connections, so any password works)."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def everything_the_plugin_said(ld: FakeLightningd) -> str:
    return repr(ld.logs) + ld.stderr.decode(errors="replace") + repr(ld.init_result)


def test_follows_the_wallet_into_schema_custommsg(make_ld: MakeLd, pg_url: str) -> None:
    """A node whose wallet is on PostgreSQL stores there, in schema custommsg, with no option set; the start
    line names the backend and not the wallet's password."""
    database = pg.create_database(pg_url)
    wallet = with_password(database, "walletsecret")
    try:
        ld = make_ld(wallet=wallet)
        line = ld.wait_log("custommsg 0.")
        assert "PostgreSQL" in line and "schema custommsg" in line and ":***@" in line
        ld.custommsg(PEER_A, payload(0x8001, "kept"))
        with psycopg.connect(database) as db:
            assert db.execute("SELECT COUNT(*) FROM custommsg.inbox").fetchone() == (1,)
        ld.stop()
        assert "walletsecret" not in everything_the_plugin_said(ld)
    finally:
        pg.drop_database(pg_url, database)


def test_unreachable_at_start_disables_the_plugin_naming_the_host(make_ld: MakeLd) -> None:
    ld = make_ld(start=False)
    started = time.monotonic()
    result = ld.start({"custommsg-db": "postgresql://ln:topsecret@127.0.0.1:9/custommsg"}, expect_disable=True)
    assert time.monotonic() - started < 20
    assert "127.0.0.1" in result["disable"] and "port 9" in result["disable"]
    assert "topsecret" not in everything_the_plugin_said(ld)


def stores_again(ld: FakeLightningd) -> None:
    """Storing resumed by itself: the envelope that could not be stored (seq 2), sent again as its sender
    would, is stored and acknowledged; then a plain message ("after") is stored."""

    def stored_again() -> bool:
        ld.custommsg(PEER_B, envelope(STREAM, 2, "8001bb"))
        return [a["seq"] for a in acks_to(ld, PEER_B)][-1:] == [2]

    wait_for(stored_again, timeout=30)
    assert ld.custommsg(PEER_A, payload(0x8005, "after")) == {"result": "continue"}


def test_server_stopped_mid_flood(make_ld: MakeLd, own_server: OwnServer) -> None:
    """The plugin's server (custommsg-db) stops in the middle of a flood of plain and enveloped messages:
    every hook answers continue at once, RPCs answer an error instead of hanging, what could not be stored
    is counted in dropped.storage and not acknowledged, and storing resumes by itself when it is back."""
    url = with_password(own_server.url, "dbsecret")
    ld = make_ld({"custommsg-db": url})
    ld.allowed_logs += ["cannot store messages", "custommsg timer", "custommsg sender", "cannot record"]
    ld.custommsg(PEER_A, payload(0x8001, "before"))
    ld.custommsg(PEER_B, envelope(STREAM, 1, "8001aa"))
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_B)] == [1])

    own_server.stop()
    dropped = 0
    for i in range(20):
        started = time.monotonic()
        assert ld.custommsg(PEER_A, payload(0x8003, bytes([i]))) == {"result": "continue"}
        assert ld.custommsg(PEER_B, envelope(STREAM, 2, "8001bb")) == {"result": "continue"}
        assert time.monotonic() - started < 5
        dropped += 1
    error = ld.call_error("custommsg-list", {}, timeout=30)
    assert error.code == STORAGE_ERROR and "dbsecret" not in str(error.error)
    assert [a["seq"] for a in acks_to(ld, PEER_B)] == [1]  # nothing enveloped was acknowledged meanwhile

    own_server.start()

    stores_again(ld)
    assert [m["payload"] for m in messages(ld)] == [payload(0x8001, "before"), "8001aa", "8001bb",
                                                    payload(0x8005, "after")]
    row = stats_row(ld.call("custommsg-stats"), PEER_A, 0x8003)
    assert row["total"]["dropped"]["storage"] == dropped and row["total"]["received"] == dropped
    assert ld.log_lines("storing messages again")
    assert len(ld.log_lines("cannot store messages")) == 1  # once per outage, not per message
    ld.stop()
    assert "dbsecret" not in everything_the_plugin_said(ld)


def test_server_silent_mid_flood(make_ld: MakeLd, own_server: OwnServer) -> None:
    """The plugin's server goes silent (stopped: connections are taken, nothing answers) in the middle of
    a flood from two peers: the call under way ends at its deadline, then every hook call is answered
    continue at once, RPCs answer an error, nothing unstored is acknowledged, the losses are counted, and
    storing resumes by itself once the server answers again, with no restart of the plugin."""
    ld = make_ld({"custommsg-db": own_server.url})
    ld.allowed_logs += ["cannot store messages", "custommsg timer", "custommsg sender", "custommsg watch",
                        "cannot record"]
    ld.custommsg(PEER_A, payload(0x8001, "before"))
    ld.custommsg(PEER_B, envelope(STREAM, 1, "8001aa"))
    wait_for(lambda: [a["seq"] for a in acks_to(ld, PEER_B)] == [1])

    with own_server.silent(rescue_after=60):
        started = time.monotonic()
        first = ld.custommsg_round([(PEER_A, payload(0x8003, b"\x00")), (PEER_B, envelope(STREAM, 2, "8001bb"))])
        assert [c.wait_response(timeout=30)["result"] for c in first] == [{"result": "continue"}] * 2
        assert time.monotonic() - started < CALL_DEADLINE + 2
        for i in range(1, 20):
            started = time.monotonic()
            assert ld.custommsg(PEER_A, payload(0x8003, bytes([i]))) == {"result": "continue"}
            assert ld.custommsg(PEER_B, envelope(STREAM, 2, "8001bb")) == {"result": "continue"}
            assert time.monotonic() - started < 1
        started = time.monotonic()
        assert ld.call_error("custommsg-list", {}, timeout=30).code == STORAGE_ERROR
        assert time.monotonic() - started < 1
        assert [a["seq"] for a in acks_to(ld, PEER_B)] == [1]

    stores_again(ld)
    # The round under way when the server fell silent had gone to it: the server ran it when it woke,
    # though its answer was lost. It is found and announced then, and counted once, as stored, not dropped.
    listed = messages(ld)
    late = [m for m in listed if m["type"] == 0x8003]
    assert [m["payload"] for m in listed if m["type"] != 0x8003] == [
        payload(0x8001, "before"), "8001aa", "8001bb", payload(0x8005, "after")]
    assert [m["payload"] for m in late] in ([], [payload(0x8003, b"\x00")])
    row = stats_row(ld.call("custommsg-stats"), PEER_A, 0x8003)
    assert row["total"]["received"] == 20
    assert row["total"]["dropped"]["storage"] == 20 - len(late)
    assert row["total"]["stored"] == row["session"]["stored"] == len(late)
    notified = [m["created_index"] for m in ld.notified("custommsg_stored")]
    assert all(m["created_index"] in notified for m in listed)
    assert len(ld.log_lines("cannot store messages")) == 1


def test_connection_lost_is_opened_again_by_itself(make_ld: MakeLd, pg_url: str) -> None:
    """The server ends the plugin's connection (as a restart or an administrator does): the next message
    may be dropped, and the ones after it are stored without restarting the plugin."""
    ld = make_ld(wallet=pg.create_database(pg_url))
    ld.allowed_logs.append("cannot store messages")
    ld.custommsg(PEER_A, payload(0x8001, "one"))
    assert ld.wallet is not None
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (ld.wallet.rsplit("/", 1)[1],))

    def stored(text: str) -> bool:
        ld.custommsg(PEER_A, payload(0x8001, text))
        return any(m["text"] == text for m in messages_or_none(ld))

    wait_for(lambda: stored("two"), timeout=20)
    ld.stop()
    pg.drop_database(pg_url, ld.wallet)


def messages_or_none(ld: FakeLightningd) -> list[dict[str, Any]]:
    try:
        return messages(ld)
    except PluginCallError:
        return []


def test_sqlite_file_imported_once_when_the_node_moves(make_ld: MakeLd, pg_url: str) -> None:
    """A node that ran on SQLite moves its wallet to PostgreSQL: its messages, outbox and counters come along,
    once (the log says so), with their indexes."""
    ld = make_ld(wallet=None)
    for text in ("one", "two"):
        ld.custommsg(PEER_A, payload(0x8001, text))
    queued = ld.call("custommsg-send", {"node_id": OFFLINE_PEER, "msg": "8001ff", "queue": True})
    before = messages(ld)
    ld.stop()
    database = pg.create_database(pg_url)
    try:
        ld.wallet = database
        ld.start()
        line = ld.wait_log("imported")
        assert "2 messages, 1 outbox entries" in line
        assert os.path.join(ld.lightning_dir, "custommsg", "custommsg.sqlite3") in line
        assert messages(ld) == before
        (entry,) = ld.call("custommsg-outbox")["outbox"]
        assert entry["id"] == queued["id"] and entry["status"] == "queued"
        ld.custommsg(PEER_A, payload(0x8001, "three"))
        assert [m["created_index"] for m in messages(ld)] == [1, 2, 3]
        ld.restart()
        assert len(ld.log_lines("imported")) == 1  # not again
        assert len(messages(ld)) == 3
        ld.stop()
    finally:
        pg.drop_database(pg_url, database)
