"""The byte budgets' cost on receiving: custommsg storing with its byte budgets on (set high enough that
nothing is dropped, so every message is checked against a peer bucket and the node's bucket) against
custommsg with them off (0 and 0), in alternating rounds of the same run, on two receiving nodes; beside
the rates, the CPU each receiving node's plugin and lightningd used per message.
"""

from __future__ import annotations

import os
import statistics

from .conftest import PLUGIN_UNDER_TEST, UNLIMITED, CpuMeter, Receiving, bench_node, receive_rounds, rpc_of, stored_by

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "500"))
MSG = "8001" + "ab" * 1024  # 1026 bytes: the budgets count bytes
BUDGETS_ON = {"custommsg-peer-kbps": 80_000_000, "custommsg-peer-burst-bytes": 10**12,
              "custommsg-global-kbps": 80_000_000, "custommsg-global-burst-bytes": 10**12}
BUDGETS_OFF = {"custommsg-peer-kbps": 0, "custommsg-peer-burst-bytes": 0,
               "custommsg-global-kbps": 0, "custommsg-global-burst-bytes": 0}


def test_receive_cpu_with_budgets_on_and_off(node_factory):
    """sender sends PER_ROUND messages as fast as one RPC connection goes to r_on, then to r_off, in
    alternating rounds; a round ends when the receiver has stored its last message (custommsg-wait)."""
    sender = bench_node(node_factory)
    r_on = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED, **BUDGETS_ON)
    r_off = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED, **BUDGETS_OFF)
    sender.connect(r_on)
    sender.connect(r_off)
    cases = {"budgets on": Receiving(r_on, stored_by(r_on)), "budgets off": Receiving(r_off, stored_by(r_off))}
    cpu = CpuMeter()
    rates, done = receive_rounds([rpc_of(sender)], cases, MSG, ROUNDS, PER_ROUND, cpu)
    print(f"\nreceive with byte budgets on and off, {ROUNDS} alternating rounds of {PER_ROUND} messages "
          f"of {len(MSG) // 2} bytes (median msg/s):")
    for name, values in rates.items():
        print(f"  {name:12s} {statistics.median(values):8.0f} msg/s")
    cpu.report("receiving node; plugin = custommsg")
    cpu.ratios("budgets on / off", "budgets on", "budgets off")
    for case in cases.values():
        session = rpc_of(case.node).call("custommsg-stats")["session"]
        assert session["stored"] == done["budgets on"] and session["dropped"]["peer_budget"] == 0
