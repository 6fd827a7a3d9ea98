"""The byte budgets' cost on receiving: custommsg storing with its byte budgets on (set high enough that
nothing is dropped, so every message is checked against a peer bucket and the node's bucket) against
custommsg with them off (0 and 0), in alternating rounds of the same run, on two receiving nodes; beside
the rates, the CPU each receiving node's plugin and lightningd used per message.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time

from .conftest import PLUGIN_UNDER_TEST, CpuMeter, bench_node, plugin_paths, rpc_of

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "500"))
MSG = "8001" + "ab" * 1024  # 1026 bytes: the budgets count bytes
COUNTS_UNLIMITED = {"custommsg-peer-rate": "1000000000", "custommsg-peer-burst": 1000000000}
BUDGETS_ON = {"custommsg-peer-kbps": 80_000_000, "custommsg-peer-burst-bytes": 10**12,
              "custommsg-global-kbps": 80_000_000, "custommsg-global-burst-bytes": 10**12}
BUDGETS_OFF = {"custommsg-peer-kbps": 0, "custommsg-peer-burst-bytes": 0,
               "custommsg-global-kbps": 0, "custommsg-global-burst-bytes": 0}
CUSTOMMSG = plugin_paths(PLUGIN_UNDER_TEST)


def test_receive_cpu_with_budgets_on_and_off(node_factory):
    """sender sends PER_ROUND messages as fast as one RPC connection goes to r_on, then to r_off, in
    alternating rounds; a round ends when the receiver has stored its last message (custommsg-wait)."""
    sender = bench_node(node_factory)
    r_on = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **COUNTS_UNLIMITED, **BUDGETS_ON)
    r_off = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **COUNTS_UNLIMITED, **BUDGETS_OFF)
    sender.connect(r_on)
    sender.connect(r_off)
    rpc = rpc_of(sender)
    cases = {"budgets on": (r_on, rpc_of(r_on)), "budgets off": (r_off, rpc_of(r_off))}
    done = dict.fromkeys(cases, 0)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    cpu = CpuMeter()
    for round_number in range(ROUNDS + 1):  # round 0 warms up
        for name, (receiver, receiver_rpc) in cases.items():
            measured = cpu.window(name, receiver, CUSTOMMSG, PER_ROUND) if round_number else contextlib.nullcontext()
            with measured:
                params = {"node_id": receiver.info["id"], "msg": MSG}
                started = time.perf_counter()
                for _ in range(PER_ROUND):
                    rpc.call("sendcustommsg", params)
                receiver_rpc.call("custommsg-wait", {"nextvalue": done[name] + PER_ROUND, "timeout": 120})
                rate = PER_ROUND / (time.perf_counter() - started)
            done[name] += PER_ROUND
            if round_number:
                rates[name].append(rate)
    print(f"\nreceive with byte budgets on and off, {ROUNDS} alternating rounds of {PER_ROUND} messages "
          f"of {len(MSG) // 2} bytes (median msg/s):")
    for name, values in rates.items():
        print(f"  {name:12s} {statistics.median(values):8.0f} msg/s")
    cpu.report("receiving node; plugin = custommsg")
    cpu.ratios("budgets on / off", "budgets on", "budgets off")
    for _, receiver_rpc in cases.values():
        session = receiver_rpc.call("custommsg-stats")["session"]
        assert session["stored"] == done["budgets on"] and session["dropped"]["peer_budget"] == 0
