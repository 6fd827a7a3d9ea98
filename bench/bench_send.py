"""Send rate and CPU per message: custommsg-send against native sendcustommsg and a pass-through plugin.

Two senders share one receiver: A runs custommsg (guard on) and the pass-through
plugin, B runs only the pass-through plugin (so no guard). Every method is timed in
interleaved rounds over one long-lived RPC connection per node, so that machine
noise hits all of them alike; the printed ratios are what counts. Over the same
rounds, the CPU (utime+stime) of the sending node's bench plugins (custommsg and
pass-through) and of its lightningd with its subdaemons is summed and divided by the
messages: custommsg-send's against the pass-through plugin's is the second ratio.
"""

from __future__ import annotations

import os
import time

from .conftest import BENCH_PLUGINS, PLUGIN_UNDER_TEST, CpuMeter, PersistentRpc, bench_node, plugin_paths, rpc_of

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "200"))
MSG = "8001" + "ab" * 64


def rate(rpc: PersistentRpc, method: str, peer: str, count: int) -> float:
    params = {"node_id": peer, "msg": MSG}
    started = time.perf_counter()
    for _ in range(count):
        rpc.call(method, params)
    return count / (time.perf_counter() - started)


def test_send_rate(node_factory):
    passthrough = str(BENCH_PLUGINS / "passthrough.py")
    a = bench_node(node_factory, plugin=[str(PLUGIN_UNDER_TEST), passthrough])
    b = bench_node(node_factory, plugin=passthrough)
    receiver = bench_node(node_factory)
    a.connect(receiver)
    b.connect(receiver)
    peer = receiver.info["id"]
    rpc_a, rpc_b = rpc_of(a), rpc_of(b)
    plugins = plugin_paths(PLUGIN_UNDER_TEST, passthrough)

    cases = {
        "native (no plugin)": (b, rpc_b, "sendcustommsg"),
        "pass-through plugin": (b, rpc_b, "passthrough-send"),
        "custommsg-send": (a, rpc_a, "custommsg-send"),
        "native, custommsg guard on": (a, rpc_a, "sendcustommsg"),
        "pass-through, guard on": (a, rpc_a, "passthrough-send"),
    }
    for _, rpc, method in cases.values():  # warm up: connections, caches
        rate(rpc, method, peer, 50)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    cpu = CpuMeter()
    for _ in range(ROUNDS):
        for name, (node, rpc, method) in cases.items():
            with cpu.window(name, node, plugins, PER_ROUND):
                samples[name].append(rate(rpc, method, peer, PER_ROUND))

    median = {name: sorted(values)[len(values) // 2] for name, values in samples.items()}
    native = median["native (no plugin)"]
    passthrough_rate = median["pass-through plugin"]
    print(f"\nsend rate, {ROUNDS} interleaved rounds of {PER_ROUND} messages of {len(MSG) // 2} bytes (median msg/s):")
    for name, value in median.items():
        print(
            f"  {name:30s} {value:8.0f} msg/s  {value / native:5.2f} of native  "
            f"{value / passthrough_rate:5.2f} of pass-through"
        )
    cpu.report("sending node; plugin(s) = custommsg + pass-through processes")
    print(f"RATIO custommsg-send / pass-through = {median['custommsg-send'] / passthrough_rate:.2f}")
    print(f"RATIO custommsg-send / native = {median['custommsg-send'] / native:.2f}")
    cpu.ratios("custommsg-send / pass-through", "custommsg-send", "pass-through plugin")
    assert all(value > 0 for value in median.values())
