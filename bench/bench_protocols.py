"""Typed protocols: the receiving plugin's CPU per message of a registered type (decoded, its fields
stored and notified) against an unregistered type of the same length (stored as bytes), in one run.

The receiver runs custommsg with doc/examples/swap.csv registered; the sender sends a swap_request
(42101: a sha256, a counted utf8 array, a short_channel_id, a u64, a point, a TLV stream of two
records) and the same body under type 32769, in alternating rounds, with native sendcustommsg.
"""

from __future__ import annotations

import os
import statistics
import time

from .conftest import PLUGIN_UNDER_TEST, UNLIMITED, CpuMeter, bench_node, interleaved, plugin_paths, rpc_of

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "500"))
SWAP_CSV = os.path.join(os.path.dirname(__file__), "..", "doc", "examples", "swap.csv")
BODY = (
    "5a" * 32 + "0003" "627463" "0000670000010000" "00000000000186a0" + "02" + "22" * 32
    + "01021388" "0309" + b"rebalance".hex()
)
REGISTERED = "a475" + BODY  # swap_request
UNREGISTERED = "8001" + BODY


def test_receive_cpu_registered_against_unregistered(node_factory):
    """sender sends to receiver (custommsg with the swap spec) rounds of swap_request and of type
    32769 with the same body, alternating; the receiver's plugin and lightningd CPU is summed per case."""
    sender = bench_node(node_factory)
    receiver = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **{"custommsg-protocol": SWAP_CSV},
                          **UNLIMITED)
    sender.connect(receiver)
    rpc, receiver_rpc = rpc_of(sender), rpc_of(receiver)
    stored = [0]

    def sends(msg: str):
        def run(count: int) -> float:
            started = time.perf_counter()
            for _ in range(count):
                rpc.call("sendcustommsg", {"node_id": receiver.info["id"], "msg": msg})
            stored[0] += count
            receiver_rpc.call("custommsg-wait", {"nextvalue": stored[0], "timeout": 120})
            return count / (time.perf_counter() - started)
        return run

    cases = {"registered (fields)": sends(REGISTERED), "unregistered (bytes)": sends(UNREGISTERED)}
    interleaved(cases, [], set(), 1, PER_ROUND // 5)  # warm-up, unmeasured
    cpu = CpuMeter()
    rates = interleaved(cases, [(cpu, receiver)], plugin_paths(PLUGIN_UNDER_TEST), ROUNDS, PER_ROUND)
    print(f"\nreceive, {ROUNDS} alternating rounds of {PER_ROUND} messages of {len(REGISTERED) // 2} bytes:")
    for name, values in rates.items():
        print(f"  {name:22s} {statistics.median(values):8.0f} msg/s")
    cpu.report("receiving node; plugin = custommsg")
    cpu.ratios("registered / unregistered", "registered (fields)", "unregistered (bytes)")
    last = receiver_rpc.call("custommsg-list", {"name": "swap_request"})["messages"][-1]
    assert last["fields"]["tlvs"]["label"] == {"text": "rebalance"}  # decoded, as measured
