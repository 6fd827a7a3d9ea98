"""Receive side: store rate against a do-nothing hook, list latency and memory by inbox size,
and how fast custommsg-wait wakes up; beside each, the CPU (utime+stime) the receiving
node's plugin process and its lightningd with subdaemons used per message or call.

Every figure is printed next to the one it is compared with, measured in the same run.
BENCH_PLUGIN=/path/to/plugin.py measures that build of custommsg in every benchmark here.
"""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import statistics
import time

from tests.integration.conftest import plugin_rss_kib

from .conftest import (
    BENCH_PLUGINS,
    PLUGIN_UNDER_TEST,
    UNLIMITED,
    CpuMeter,
    Receiving,
    bench_node,
    plugin_paths,
    receive_rounds,
    report_rates,
    rpc_of,
    stored_by,
    wait_until,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "500"))
SIZES = sorted(int(n) for n in os.environ.get("BENCH_INBOX_SIZES", "10000,100000,1000000").split(","))
QUIET = "custommsg, no custommsg_stored"
DURABLE = "hook committing each message"
NOTHING = "do-nothing hook"
MSG = "8001" + "ab" * 64
CUSTOMMSG = plugin_paths(PLUGIN_UNDER_TEST)


def test_receive_rate(node_factory, tmp_path):
    """sender sends as fast as one RPC connection goes to r_store (custommsg), r_quiet
    (custommsg with custommsg-stored-notification=false), r_null (a hook that only counts)
    and r_durable (a hook that commits each message to SQLite before it answers, and does
    nothing else: the floor of keeping what peers send), in alternating rounds; each round's
    rate is messages over the time until the receiver has handled the last one. Over the
    same rounds, the receiver's plugin and lightningd CPU per message are summed: custommsg
    storing against the do-nothing hook, and against the committing one."""
    nullhook = str(BENCH_PLUGINS / "nullhook.py")
    sender = bench_node(node_factory)
    r_store = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED)
    r_quiet = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED,
                         **{"custommsg-stored-notification": False})
    r_null = bench_node(node_factory, plugin=nullhook)
    r_durable = bench_node(node_factory, plugin=nullhook, **{"nullhook-db": str(tmp_path / "durable.sqlite3")})
    for receiver in (r_store, r_quiet, r_null, r_durable):
        sender.connect(receiver)

    def counted_by(node):
        node_rpc = rpc_of(node)
        return lambda n: node_rpc.call("nullhook-wait", {"target": n})

    cases = {
        "custommsg (stores)": Receiving(r_store, stored_by(r_store)),
        QUIET: Receiving(r_quiet, stored_by(r_quiet)),
        NOTHING: Receiving(r_null, counted_by(r_null), plugin_paths(nullhook)),
        DURABLE: Receiving(r_durable, counted_by(r_durable), plugin_paths(nullhook)),
    }
    cpu = CpuMeter()
    rates, done = receive_rounds([rpc_of(sender)], cases, MSG, ROUNDS, PER_ROUND, cpu)
    median = report_rates(rates, ROUNDS, PER_ROUND)
    cpu.report("receiving node; plugin(s) = custommsg, or the baseline hook")
    print(f"RATIO custommsg receive / do-nothing hook = {median['custommsg (stores)'] / median[NOTHING]:.2f}")
    print(f"RATIO custommsg receive, no notification / do-nothing hook = {median[QUIET] / median[NOTHING]:.2f}")
    print(f"RATIO hook committing each message / do-nothing hook = {median[DURABLE] / median[NOTHING]:.2f}")
    print(f"RATIO custommsg receive, no notification / hook committing each message = "
          f"{median[QUIET] / median[DURABLE]:.2f}")
    cpu.ratios("custommsg receive / do-nothing hook", "custommsg (stores)", NOTHING)
    cpu.ratios("custommsg receive, no notification / do-nothing hook", QUIET, NOTHING)
    cpu.ratios("hook committing each message / do-nothing hook", DURABLE, NOTHING)
    cpu.ratios("custommsg receive, no notification / hook committing each message", QUIET, DURABLE)
    assert rpc_of(r_store).call("custommsg-stats")["session"]["stored"] == done["custommsg (stores)"]


def fill_inbox(node, path: str, count: int, peers: list[str]) -> None:
    """``count`` messages spread over ``peers``, written straight into the database, whose
    schema the plugin under test makes (started once on it, then stopped)."""
    node.rpc.plugin_start(str(PLUGIN_UNDER_TEST), **{"custommsg-db": path})
    node.rpc.plugin_stop(str(PLUGIN_UNDER_TEST))
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO inbox (peer_id, type, payload, received_at) VALUES (?, ?, ?, ?)",
            (
                (bytes.fromhex(peers[i % len(peers)]), 32769, bytes.fromhex(MSG), 1.7e9 + i)
                for i in range(count)
            ),
        )
    db.close()


def test_list_latency_and_memory_by_inbox_size(node_factory, tmp_path):
    """One node; for each inbox size the plugin is started on a database of that size
    (20 peers, so a peer filter keeps 1 in 20) and custommsg-list with a peer filter
    and limit=100 is timed from the start and from the middle of the inbox; the CPU
    of the plugin and of lightningd over those calls is summed. The largest inbox is
    compared with the smallest."""
    node = bench_node(node_factory)
    rpc = rpc_of(node)
    peers = [f"02{i:064x}" for i in range(1, 21)]
    # Valid-looking ids are not needed by the database; the filter only compares bytes.
    results = []
    cpu = CpuMeter()
    for size in SIZES:
        path = str(tmp_path / f"inbox-{size}.sqlite3")
        fill_inbox(node, path, size, peers)
        node.rpc.plugin_start(str(PLUGIN_UNDER_TEST), **{"custommsg-db": path, "custommsg-inbox-max": SIZES[-1] * 2})
        peer = peers[7]
        latencies = []
        for start in (0, size // 2):
            params = {"peer_id": peer, "index": "created", "start": start, "limit": 100}
            for _ in range(20):  # warm up the page cache
                rpc.call("custommsg-list", params)
            with cpu.window(f"list, {size} stored", node, CUSTOMMSG, 200):
                for _ in range(200):
                    started = time.perf_counter()
                    page = rpc.call("custommsg-list", params)["messages"]
                    latencies.append(time.perf_counter() - started)
            assert len(page) == 100 and {m["peer_id"] for m in page} == {peer}
        baseline = []
        for _ in range(200):
            started = time.perf_counter()
            rpc.call("custommsg-stats", {"peer_id": peer, "type": 1})
            baseline.append(time.perf_counter() - started)
        memory = plugin_rss_kib(node, CUSTOMMSG)
        results.append((size, statistics.median(latencies), statistics.median(baseline), memory))
        node.rpc.plugin_stop(str(PLUGIN_UNDER_TEST))

    smallest, largest = results[0], results[-1]
    print("\ncustommsg-list, peer filter, limit=100 (median of 400 calls):")
    for size, latency, baseline, rss in results:
        print(
            f"  {size:>8} stored: {latency * 1000:6.2f} ms  ({latency / smallest[1]:4.2f} of {smallest[0]}; "
            f"a trivial plugin call {baseline * 1000:5.2f} ms)  plugin RSS {rss / 1024:6.1f} MiB "
            f"({rss / smallest[3]:4.2f} of {smallest[0]})"
        )
    cpu.report("the plugin = custommsg", unit="custommsg-list call")
    print(f"RATIO list latency {largest[0]} / {smallest[0]} = {largest[1] / smallest[1]:.2f}")
    print(f"RATIO plugin memory {largest[0]} / {smallest[0]} = {largest[3] / smallest[3]:.2f}")
    label = f"list {largest[0]} / {smallest[0]}"
    cpu.ratios(label, f"list, {largest[0]} stored", f"list, {smallest[0]} stored", unit="call")


def test_wait_wakeup_latency(node_factory):
    """receiver parks custommsg-wait for the next message; sender sends it. The time from
    the send to the wait's return is compared with the send's own round trip. The
    receiver's CPU is summed from just before each send to the wake-up (the polls that
    see the wait parked are outside)."""
    sender = bench_node(node_factory)
    receiver = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED)
    sender.connect(receiver)
    send_rpc, wait_rpc, stats_rpc = rpc_of(sender), rpc_of(receiver), rpc_of(receiver)
    params = {"node_id": receiver.info["id"], "msg": MSG}
    wakeups, sends = [], []
    cpu = CpuMeter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for i in range(1, 101):
            pending = pool.submit(wait_rpc.call, "custommsg-wait", {"nextvalue": i, "timeout": 30})
            wait_until(lambda: stats_rpc.call("custommsg-stats")["waiting"] == 1)
            with cpu.window("wait wake-up (receiver)", receiver, CUSTOMMSG, 1):
                started = time.perf_counter()
                send_rpc.call("sendcustommsg", params)
                sends.append(time.perf_counter() - started)
                assert pending.result(30)["created_index"] == i
                wakeups.append(time.perf_counter() - started)
    wake, send = statistics.median(wakeups), statistics.median(sends)
    print(f"\ncustommsg-wait wake-up: median {wake * 1000:.2f} ms after the send was issued; "
          f"the send's own round trip {send * 1000:.2f} ms")
    cpu.report("receiving node; the plugin = custommsg")
    print(f"RATIO wait wake-up / send round trip = {wake / send:.2f}")
