"""Real lightningd nodes whose wallet is on PostgreSQL: the plugin's state follows the node.

pyln-testing's own PostgresDbProvider runs initdb as the current user, which PostgreSQL
refuses as root; this module's ``db_provider`` puts every node's wallet in a database of
its own on the session's server instead (tests/pg.py: CUSTOMMSG_PG_URL, or one
tools/pgserver starts, its data directory owned by ``postgres`` outside pyln's test
directory, its port and socket directory in postgresql.conf). lightningd must be built
with PostgreSQL support (libpq); a lightningd without it is skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from pyln.testing.utils import TEST_NETWORK, wait_for

from .. import pg
from .conftest import PLUGIN

PLAIN, ACKED = 0x8001, 0x8003


class PgWallet:
    """One node's wallet database (pyln-testing's db interface: get_dsn, query, stop)."""

    provider: Any = None

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.url = pg.create_database(server_url)

    def get_dsn(self) -> str:
        return self.url

    def query(self, query: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.url) as db:
            cursor = db.execute(query)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(query, params)

    def stop(self) -> None:
        pg.drop_database(self.server_url, self.url)


class PgWalletProvider:
    def __init__(self, server_url: str):
        self.server_url = server_url
        self.wallets: list[PgWallet] = []

    def start(self) -> None:
        pass

    def get_db(self, node_directory: str, testname: str, node_id: int) -> PgWallet:
        self.wallets.append(PgWallet(self.server_url))
        return self.wallets[-1]

    def stop(self) -> None:
        for wallet in self.wallets:
            wallet.stop()


def _lightningd_has_postgres() -> bool:
    lightningd = shutil.which("lightningd")
    if lightningd is None:
        return True  # the tier skips anyway, with its own reason
    with open(lightningd, "rb") as binary:
        return b"libpq.so" in binary.read()  # configure links libpq when it finds it


pytestmark = pytest.mark.skipif(not _lightningd_has_postgres(),
                                reason="this lightningd was built without PostgreSQL (libpq-dev missing at configure)")


@pytest.fixture
def db_provider(pg_url: str):
    provider = PgWalletProvider(pg_url)
    yield provider
    provider.stop()


def inbox(node: Any, **params: Any) -> list[dict[str, Any]]:
    return node.rpc.call("custommsg-list", params)["messages"]


def outbox(node: Any, **params: Any) -> list[dict[str, Any]]:
    return node.rpc.call("custommsg-outbox", params)["outbox"]


def send(node: Any, peer: str, msg: str, **params: Any) -> dict[str, Any]:
    return node.rpc.call("custommsg-send", {"node_id": peer, "msg": msg, **params})


def connect(l1: Any, l2: Any) -> None:
    """Connect, and wait until both sides have the peer connected (l2's side may lag l1's answer)."""
    l1.connect(l2)
    for node, peer in ((l1, l2), (l2, l1)):
        wait_for(lambda node=node, peer=peer: any(p["connected"] for p in node.rpc.listpeers(peer.info["id"])["peers"]))


def disconnect(l1: Any, l2: Any) -> None:
    l1.rpc.disconnect(l2.info["id"], force=True)
    wait_for(lambda: not any(p["connected"] for p in l1.rpc.listpeers(l2.info["id"])["peers"]))


def test_the_plugin_stores_in_the_wallets_database(node_factory):
    """No option set: the plugin's tables are in schema custommsg of the node's own wallet database."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    connect(l1, l2)
    send(l2, l1.info["id"], "8001" + "aa")
    wait_for(lambda: len(inbox(l1)) == 1)
    assert l1.daemon.is_in_log(r"custommsg .*inbox PostgreSQL postgres.* schema custommsg")
    assert l1.db.query("SELECT COUNT(*) AS n FROM custommsg.inbox") == [{"n": 1}]


def test_peers_flooding_at_once_are_stored_in_order_once_each(node_factory):
    """Three peers flood one node at once (lightningd hands the plugin their messages as they come, so
    rounds of several are stored together): every message is stored once, each peer's in the order
    sent, and the counters match the rows."""
    receiver = node_factory.get_node(options={"plugin": str(PLUGIN)})
    senders = node_factory.get_nodes(3)
    for sender in senders:
        sender.rpc.connect(receiver.info["id"], "localhost", receiver.port)
    wait_for(lambda: len(receiver.rpc.listpeers()["peers"]) == 3)

    def flood(sender: Any) -> None:
        for i in range(150):
            sender.rpc.sendcustommsg(receiver.info["id"], f"{PLAIN:04x}{i:04x}")

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(flood, senders))
    wait_for(lambda: len(inbox(receiver)) == 450, timeout=120)
    stored = inbox(receiver)
    for sender in senders:
        mine = [m["payload"] for m in stored if m["peer_id"] == sender.info["id"]]
        assert mine == [f"{PLAIN:04x}{i:04x}" for i in range(150)]
    assert [m["created_index"] for m in stored] == sorted({m["created_index"] for m in stored})
    stats = receiver.rpc.call("custommsg-stats")
    assert stats["total"]["stored"] == stats["total"]["received"] == 450
    assert stats["total"]["dropped"]["storage"] == 0


def test_failover_to_a_fresh_lightning_dir_with_the_same_wallet(node_factory):
    """Node A (wallet on PostgreSQL) holds stored messages, queued entries, and acknowledged entries
    handed over but not acknowledged (B's rate limit dropped them). A's lightning-dir is lost; a new
    lightningd with A's hsm_secret and the same wallet starts in a fresh directory: every message and
    entry is there, the queued ones go out in order, and B stores nothing twice."""
    a = node_factory.get_node(options={"plugin": str(PLUGIN)},
                              allow_warning=True)  # lightningd warns when its peer's plugin drops
    b = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-peer-rate": "0.001",
                                       "custommsg-peer-burst": 1})
    connect(a, b)
    b_id = b.info["id"]
    for i in range(3):  # B -> A: stored in A's inbox
        send(b, a.info["id"], f"8001{i:02x}")
    wait_for(lambda: len(inbox(a)) == 3)
    # A -> B acknowledged: the first fills B's burst and is acknowledged; the next two B drops (rate)
    for i in range(3):
        send(a, b_id, f"8003{i:02x}", ack=True)
    wait_for(lambda: [e["status"] for e in outbox(a)] == ["delivered", "sent", "sent"])
    disconnect(a, b)
    send(a, b_id, "800110", queue=True)  # plain, queued
    send(a, b_id, "800311", ack=True)  # acknowledged, queued
    before_inbox = inbox(a)
    before_outbox = outbox(a)
    assert [e["status"] for e in before_outbox] == ["delivered", "sent", "sent", "queued", "queued"]

    # A is lost with its directory; B gets a fresh rate bucket (a restart)
    wallet = a.db.get_dsn()
    hsm_secret = open(os.path.join(a.daemon.lightning_dir, TEST_NETWORK, "hsm_secret"), "rb").read()
    a.stop()
    node_factory.nodes.remove(a)  # pyln reads every node's lightning-dir at teardown
    shutil.rmtree(a.daemon.lightning_dir)
    b.stop()
    b.daemon.opts["custommsg-peer-rate"] = "100"
    b.daemon.opts["custommsg-peer-burst"] = 1000
    b.start()

    standby = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False, allow_warning=True)
    with open(os.path.join(standby.daemon.lightning_dir, TEST_NETWORK, "hsm_secret"), "wb") as out:
        out.write(hsm_secret)
    standby.daemon.opts["wallet"] = wallet
    standby.start()
    assert standby.info["id"] == a.info["id"]
    assert inbox(standby) == before_inbox
    assert [e["id"] for e in outbox(standby)] == [e["id"] for e in before_outbox]

    connect(standby, b)
    wait_for(lambda: [e["status"] for e in outbox(standby)] == ["delivered", "delivered", "delivered", "sent",
                                                               "delivered"], timeout=60)
    # B stored each acknowledged message exactly once, in the order A sent them, and the plain queued one
    # (plain and acknowledged messages keep no order between them: the resent ones wait for B's hello)
    from_a = [m["payload"] for m in inbox(b, peer_id=a.info["id"])]
    assert [p for p in from_a if p.startswith("8003")] == ["800300", "800301", "800302", "800311"]
    assert [p for p in from_a if p.startswith("8001")] == ["800110"]


class OwnServer:
    """A PostgreSQL server of the test's own (the one custommsg-db names), to stop and start."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="custommsg-pg-", dir="/var/tmp")
        self.url = self._run("start")

    def _run(self, command: str) -> str:
        return subprocess.run([str(pg.PGSERVER), command, self.directory], check=True, capture_output=True,
                              text=True).stdout.strip()


def test_plugin_server_stopped_mid_flood(node_factory):
    """The plugin's server (custommsg-db: not the wallet's) stops for a few seconds while B floods A with
    plain and acknowledged messages: nothing acknowledged is lost or stored twice, the plugin and the node
    stay up, storing resumes by itself, and what was lost is counted in dropped.storage."""
    server = OwnServer()
    try:
        # The outage is logged as broken, once, with libpq's reason (two lines)
        a = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-db": server.url},
                                  broken_log="cannot store messages|Is the server running", allow_warning=True)
        b = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False)
        b.daemon.env["CUSTOMMSG_DEV_RETRANSMIT_AFTER"] = "1"  # what A could not store comes again soon
        b.start()
        connect(a, b)
        a_id = a.info["id"]
        plain = 0
        for i in range(60):
            if i == 20:
                server._run("stop")
                stopped_at = time.monotonic()
            if i == 40:
                while time.monotonic() - stopped_at < 3:  # the outage lasts a few seconds of the flood
                    send(b, a_id, f"{PLAIN:04x}{i:04x}ff")
                    plain += 1
                server._run("start")
            send(b, a_id, f"{PLAIN:04x}{i:04x}")
            send(b, a_id, f"{ACKED:04x}{i:04x}", ack=True)
            plain += 1
        wait_for(lambda: all(e["status"] == "delivered" for e in outbox(b)), timeout=120)
        stored = [m["payload"] for m in inbox(a, type=ACKED)]
        assert stored == [f"{ACKED:04x}{i:04x}" for i in range(60)]
        stats = a.rpc.call("custommsg-stats", {"type": PLAIN})["total"]
        assert stats["received"] == plain and stats["dropped"]["storage"] > 0
        # stored moves with the rows it counts; a round whose answer the stopping server never sent is
        # looked for once the server is back, and counted as stored or as dropped: once
        assert stats["stored"] == len(inbox(a, type=PLAIN))
        assert stats["stored"] + stats["dropped"]["storage"] == plain
        # an enveloped message counts as received once, when stored, whatever copies were dropped first
        acked = a.rpc.call("custommsg-stats", {"type": ACKED})["total"]
        assert acked["received"] == acked["stored"] == 60
        assert a.daemon.is_in_log("storing messages again")
        assert any(p["name"] == str(PLUGIN) and p["active"] for p in a.rpc.plugin("list")["plugins"])
    finally:
        server._run("remove")


def test_two_nodes_share_one_server(node_factory, pg_url):
    """Two nodes follow their own wallets on one server, and two more share one database through
    custommsg-db: each keeps to its own rows (a schema per node in the shared database)."""
    shared = pg.create_database(pg_url)
    try:
        l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
        l2 = node_factory.get_node(options={"plugin": str(PLUGIN)})
        l3 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-db": shared})
        l4 = node_factory.get_node(options={"plugin": str(PLUGIN), "custommsg-db": shared})
        for sender, receiver in ((l1, l2), (l2, l1), (l3, l4), (l4, l3), (l1, l3)):
            connect(sender, receiver)
            send(sender, receiver.info["id"], "8001" + sender.info["id"][:8])
        wait_for(lambda: [len(inbox(n)) for n in (l1, l2, l3, l4)] == [1, 1, 2, 1])
        for node, senders in ((l1, [l2]), (l2, [l1]), (l3, [l4, l1]), (l4, [l3])):
            assert [m["peer_id"] for m in inbox(node)] == [s.info["id"] for s in senders]
        with psycopg.connect(shared) as db:
            schemas = {row[0] for row in db.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'custommsg%'")}
        assert schemas == {"custommsg_" + l3.info["id"][:40], "custommsg_" + l4.info["id"][:40]}
        # the URL may carry a password: listconfigs conceals it
        assert l3.rpc.listconfigs("custommsg-db")["configs"]["custommsg-db"]["value_str"] == "..."
    finally:
        pg.drop_database(pg_url, shared)
