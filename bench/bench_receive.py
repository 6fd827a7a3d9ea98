"""Receive side: store rate against a do-nothing hook, list latency and memory by inbox size,
and how fast custommsg-wait wakes up.

Every figure is printed next to the one it is compared with, measured in the same run.
"""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import statistics
import time

from custommsg.rpc import PersistentRpc
from custommsg.store import Store

from .conftest import BENCH_PLUGINS, PLUGIN, bench_node

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "500"))
SIZES = [int(n) for n in os.environ.get("BENCH_INBOX_SIZES", "10000,100000,1000000").split(",")]
UNLIMITED = {"custommsg-peer-rate": "1000000000", "custommsg-peer-burst": 1000000000}
MSG = "8001" + "ab" * 64


def rpc_of(node) -> PersistentRpc:
    return PersistentRpc(os.path.join(node.daemon.lightning_dir, "regtest", "lightning-rpc"), "bench")


def wait_until(predicate, timeout=120.0, interval=0.001) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(interval)


def plugin_rss_kib(node) -> int:
    """Resident memory of the custommsg plugin process that ``node``'s lightningd started."""
    parent = str(node.daemon.proc.pid)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == parent and str(PLUGIN).encode() in cmdline:
            return int(fields["VmRSS"].split()[0])
    raise LookupError("custommsg plugin process not found")


def test_receive_rate(node_factory):
    """sender sends as fast as one RPC connection goes to r_store (custommsg) and to
    r_null (a hook that only counts), in alternating rounds; each round's rate is
    messages over the time until the receiver has handled the last one."""
    sender = bench_node(node_factory)
    r_store = bench_node(node_factory, plugin=os.environ.get("BENCH_PLUGIN", str(PLUGIN)), **UNLIMITED)
    r_null = bench_node(node_factory, plugin=str(BENCH_PLUGINS / "nullhook.py"))
    sender.connect(r_store)
    sender.connect(r_null)
    rpc, store_rpc, null_rpc = rpc_of(sender), rpc_of(r_store), rpc_of(r_null)

    stored = 0

    def until_stored(target: int) -> None:
        # Blocks in the plugin until the message exists: no polling load on the plugin.
        store_rpc.call("custommsg-wait", {"nextvalue": target, "timeout": 120})

    def until_counted(target: int) -> None:
        wait_until(lambda: null_rpc.call("nullhook-count")["received"] >= target, interval=0.002)

    counted = 0

    def round_rate(receiver, until, done_before: int) -> float:
        params = {"node_id": receiver.info["id"], "msg": MSG}
        started = time.perf_counter()
        for _ in range(PER_ROUND):
            rpc.call("sendcustommsg", params)
        until(done_before + PER_ROUND)
        return PER_ROUND / (time.perf_counter() - started)

    rates: dict[str, list[float]] = {"custommsg (stores)": [], "do-nothing hook": []}
    for round_number in range(ROUNDS + 1):  # round 0 warms up
        store_rate = round_rate(r_store, until_stored, stored)
        stored += PER_ROUND
        null_rate = round_rate(r_null, until_counted, counted)
        counted += PER_ROUND
        if round_number:
            rates["custommsg (stores)"].append(store_rate)
            rates["do-nothing hook"].append(null_rate)
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nreceive rate, {ROUNDS} alternating rounds of {PER_ROUND} messages (median msg/s):")
    for name, value in median.items():
        print(f"  {name:20s} {value:8.0f} msg/s")
    print(f"RATIO custommsg receive / do-nothing hook = {median['custommsg (stores)'] / median['do-nothing hook']:.2f}")
    assert store_rpc.call("custommsg-stats")["session"]["stored"] == stored


def fill_inbox(path: str, count: int, peers: list[str]) -> None:
    """``count`` messages spread over ``peers``, written straight into the database."""
    Store(path).close()  # the schema
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
    and limit=100 is timed from the start and from the middle of the inbox."""
    node = bench_node(node_factory)
    rpc = rpc_of(node)
    peers = [f"02{i:064x}" for i in range(1, 21)]
    # Valid-looking ids are not needed by the database; the filter only compares bytes.
    results = []
    for size in SIZES:
        path = str(tmp_path / f"inbox-{size}.sqlite3")
        fill_inbox(path, size, peers)
        node.rpc.plugin_start(str(PLUGIN), **{"custommsg-db": path, "custommsg-inbox-max": max(SIZES) * 2})
        peer = peers[7]
        latencies = []
        for start in (0, size // 2):
            params = {"peer_id": peer, "index": "created", "start": start, "limit": 100}
            for _ in range(20):  # warm up the page cache
                rpc.call("custommsg-list", params)
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
        results.append((size, statistics.median(latencies), statistics.median(baseline), plugin_rss_kib(node)))
        node.rpc.plugin_stop(str(PLUGIN))

    smallest = results[0]
    print("\ncustommsg-list, peer filter, limit=100 (median of 400 calls):")
    for size, latency, baseline, rss in results:
        print(
            f"  {size:>8} stored: {latency * 1000:6.2f} ms  ({latency / smallest[1]:4.2f} of {smallest[0]}; "
            f"a trivial plugin call {baseline * 1000:5.2f} ms)  plugin RSS {rss / 1024:6.1f} MiB "
            f"({rss / smallest[3]:4.2f} of {smallest[0]})"
        )
    print(f"RATIO list latency {results[-1][0]} / {smallest[0]} = {results[-1][1] / smallest[1]:.2f}")
    print(f"RATIO plugin memory {results[-1][0]} / {smallest[0]} = {results[-1][3] / smallest[3]:.2f}")


def test_wait_wakeup_latency(node_factory):
    """receiver parks custommsg-wait for the next message; sender sends it. The time from
    the send to the wait's return is compared with the send's own round trip."""
    sender = bench_node(node_factory)
    receiver = bench_node(node_factory, plugin=str(PLUGIN), **UNLIMITED)
    sender.connect(receiver)
    send_rpc, wait_rpc = rpc_of(sender), rpc_of(receiver)
    params = {"node_id": receiver.info["id"], "msg": MSG}
    wakeups, sends = [], []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for i in range(1, 101):
            pending = pool.submit(wait_rpc.call, "custommsg-wait", {"nextvalue": i, "timeout": 30})
            wait_until(lambda: rpc_of(receiver).call("custommsg-stats")["waiting"] == 1)
            started = time.perf_counter()
            send_rpc.call("sendcustommsg", params)
            sends.append(time.perf_counter() - started)
            assert pending.result(30)["created_index"] == i
            wakeups.append(time.perf_counter() - started)
    wake, send = statistics.median(wakeups), statistics.median(sends)
    print(f"\ncustommsg-wait wake-up: median {wake * 1000:.2f} ms after the send was issued; "
          f"the send's own round trip {send * 1000:.2f} ms")
    print(f"RATIO wait wake-up / send round trip = {wake / send:.2f}")
