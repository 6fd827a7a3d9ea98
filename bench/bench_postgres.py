"""The store on PostgreSQL against SQLite: receive rate and CPU per message in the same run, and
custommsg-list by inbox size on PostgreSQL.

The server is the tests' (tests/pg.py: CUSTOMMSG_PG_URL, or one tools/pgserver starts for the
session), on this machine: a commit waits for its fsync as on SQLite (WAL, synchronous=NORMAL
there; synchronous_commit=on here, PostgreSQL's default). Besides the plugin and lightningd,
the CPU of the plugin's PostgreSQL backend process (the server's side of its connection) is
reported per message. BENCH_PG_ROUNDS, BENCH_PG_PER_ROUND and BENCH_PG_SIZES size the runs;
BENCH_PG_SENDERS lists how many peers send at once in the receive runs (one run each).

With one sending peer, every message waits for its own commit: lightningd reads that peer's
next message only once the hook answered (connectd's read pause). With several, the hook
calls of the others gather while a commit is under way, and share the next one (the
receiver's group commit): the case the server's commit latency matters most for.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator

import psycopg
import pytest

from custommsg.core.dsn import node_schema
from tests import pg
from tests.conftest import pg_url  # noqa: F401  (the session's server, a fixture)

from .conftest import (
    PLUGIN_UNDER_TEST,
    UNLIMITED,
    CpuMeter,
    Receiving,
    bench_node,
    proc_stat,
    receive_rounds,
    report_rates,
    rpc_of,
    stored_by,
)

ROUNDS = int(os.environ.get("BENCH_PG_ROUNDS", "4"))
PER_ROUND = int(os.environ.get("BENCH_PG_PER_ROUND", "500"))
SIZES = sorted(int(n) for n in os.environ.get("BENCH_PG_SIZES", "10000,1000000").split(","))
SENDERS = [int(n) for n in os.environ.get("BENCH_PG_SENDERS", "1,4").split(",")]
MSG = "8001" + "ab" * 64
UNFLUSHED = "PostgreSQL, synchronous_commit=off"


def backend_cpu(url: str, database: str) -> float:
    """CPU seconds (utime+stime) the server's processes serving custommsg in ``database`` used so far."""
    with psycopg.connect(url, autocommit=True) as db:
        pids = [row[0] for row in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'custommsg' AND datname = %s", (database,))]
    total = 0.0
    for pid in pids:
        stat = proc_stat(str(pid))
        assert stat is not None, f"the plugin's backend {pid} is gone"
        total += stat[2]
    return total


def commits(url: str, database: str) -> int:
    """Transactions committed in ``database`` so far, as the server's statistics have them (each backend
    reports its own within a second: read after the run has been idle that long)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT pg_stat_clear_snapshot()")
        row = db.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
    return int(row[0])


@pytest.mark.parametrize("senders", SENDERS, ids=[f"{n}-senders" for n in SENDERS])
def test_receive_rate_postgres_against_sqlite(node_factory, pg_url, senders):  # noqa: F811
    """``senders`` sending peers, three receivers running custommsg: one on SQLite (its file), one on
    PostgreSQL (custommsg-db: a fresh database), and one on a database whose commits do not wait for the
    WAL flush (``synchronous_commit=off``, set on the database by its operator: SQLite's durability in
    WAL mode with synchronous=NORMAL, which does not sync at commit either), in alternating rounds; each
    round's rate is messages over the time until the receiver has stored the last one (custommsg-wait)."""
    database = pg.create_database(pg_url)
    database_name = database.rsplit("/", 1)[1]
    unflushed = pg.create_database(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{unflushed.rsplit("/", 1)[1]}" SET synchronous_commit = off')
        sending = [bench_node(node_factory) for _ in range(senders)]
        r_sqlite = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED)
        r_pg = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **{"custommsg-db": database}, **UNLIMITED)
        r_off = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **{"custommsg-db": unflushed}, **UNLIMITED)
        for sender in sending:
            for receiver in (r_sqlite, r_pg, r_off):
                sender.connect(receiver)
        server_seconds = 0.0

        @contextlib.contextmanager
        def server_cpu() -> Iterator[None]:
            nonlocal server_seconds
            before = backend_cpu(pg_url, database_name)
            yield
            server_seconds += backend_cpu(pg_url, database_name) - before

        cases = {"SQLite": Receiving(r_sqlite, stored_by(r_sqlite)),
                 "PostgreSQL": Receiving(r_pg, stored_by(r_pg), beside=server_cpu),
                 UNFLUSHED: Receiving(r_off, stored_by(r_off))}
        cpu = CpuMeter()
        time.sleep(1.5)
        committed = commits(pg_url, database_name)
        rates, done = receive_rounds([rpc_of(s) for s in sending], cases, MSG, ROUNDS, PER_ROUND, cpu)
        time.sleep(1.5)
        committed = commits(pg_url, database_name) - committed
        print(f"\n{senders} sending peer(s)")
        median = report_rates(rates, ROUNDS, PER_ROUND, "custommsg on {}")
        cpu.report("receiving node; plugin = custommsg")
        print(f"  PostgreSQL server (the plugin's backend): {server_seconds / (ROUNDS * PER_ROUND) * 1e6:8.1f} us/msg")
        print(f"  PostgreSQL transactions committed per message stored: {committed / done['PostgreSQL']:.2f}"
              " (the plugin's, the benchmark's few reads among them)")
        print(f"RATIO receive PostgreSQL / SQLite, {senders} sender(s) = {median['PostgreSQL'] / median['SQLite']:.2f}")
        print(f"RATIO receive PostgreSQL synchronous_commit=off / SQLite, {senders} sender(s) = "
              f"{median[UNFLUSHED] / median['SQLite']:.2f}")
        cpu.ratios("PostgreSQL / SQLite", "PostgreSQL", "SQLite")
        for name, case in cases.items():
            assert rpc_of(case.node).call("custommsg-stats")["session"]["stored"] == done[name], name
    finally:
        pg.drop_database(pg_url, database)
        pg.drop_database(pg_url, unflushed)


def fill(url: str, schema: str, count: int, peers: list[str]) -> None:
    """``count`` messages spread over ``peers``, written by the server itself (generate_series)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            f'INSERT INTO "{schema}".inbox (peer_id, type, payload, received_at) '
            "SELECT decode((%s::text[])[1 + g %% %s], 'hex'), 32769, decode(%s, 'hex'), 1.7e9 + g "
            "FROM generate_series(0, %s - 1) AS g",
            (peers, len(peers), MSG, count),
        )
        db.execute(f'ANALYZE "{schema}".inbox')


def test_list_latency_by_inbox_size_on_postgres(node_factory, pg_url):  # noqa: F811
    """One node; for each inbox size the plugin is started on a PostgreSQL database of that size
    (20 peers) and custommsg-list with a peer filter and limit=100 is timed from the start and from
    the middle of the inbox. The largest inbox is compared with the smallest."""
    node = bench_node(node_factory)
    rpc = rpc_of(node)
    peers = [f"02{i:064x}" for i in range(1, 21)]
    schema = node_schema(node.info["id"])
    results = []
    for size in SIZES:
        database = pg.create_database(pg_url)
        try:
            options = {"custommsg-db": database, "custommsg-inbox-max": SIZES[-1] * 2}
            node.rpc.plugin_start(str(PLUGIN_UNDER_TEST), **options)  # makes the schema
            node.rpc.plugin_stop(str(PLUGIN_UNDER_TEST))
            filled = time.perf_counter()
            fill(database, schema, size, peers)
            filled = time.perf_counter() - filled
            node.rpc.plugin_start(str(PLUGIN_UNDER_TEST), **options)
            peer = peers[7]
            latencies = []
            for start in (0, size // 2):
                params = {"peer_id": peer, "index": "created", "start": start, "limit": 100}
                for _ in range(20):
                    rpc.call("custommsg-list", params)
                for _ in range(200):
                    started = time.perf_counter()
                    page = rpc.call("custommsg-list", params)["messages"]
                    latencies.append(time.perf_counter() - started)
                assert len(page) == 100 and {m["peer_id"] for m in page} == {peer}
            results.append((size, statistics.median(latencies), filled))
            node.rpc.plugin_stop(str(PLUGIN_UNDER_TEST))
        finally:
            pg.drop_database(pg_url, database)
    smallest, largest = results[0], results[-1]
    print("\ncustommsg-list on PostgreSQL, peer filter, limit=100 (median of 400 calls):")
    for size, latency, filled in results:
        print(f"  {size:>8} stored: {latency * 1000:6.2f} ms  ({latency / smallest[1]:4.2f} of {smallest[0]})"
              f"  [filled in {filled:.1f} s]")
    print(f"RATIO list latency on PostgreSQL {largest[0]} / {smallest[0]} = {largest[1] / smallest[1]:.2f}")
