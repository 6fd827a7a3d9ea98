"""Acknowledged delivery: messages per second until ``delivered``, against plain custommsg-send, same run.

Two nodes, both running custommsg, connected (no channel). In each interleaved round the
sender sends PER_ROUND messages to the receiver with plain ``custommsg-send``, timed until
the receiver's inbox holds the last of them (``custommsg-wait`` on the receiver: a plain
send returns when lightningd took the message, long before the peer stored it), then
PER_ROUND with ``ack=true``, timed until the last one is ``delivered`` (the receiver's
plugin stored each and acknowledged it; acks are cumulative, so ``custommsg-outbox-wait``
on the last id covers them all). The ratio of
the two rates is what counts. Then LATENCY_SAMPLES single acknowledged messages, one at a
time, each timed from the send call to ``custommsg-outbox-wait`` returning ``delivered``, in
turn with as many pings between two more nodes running ``plugins/echo.py``, each timed until
its pong came back: the floor of any acknowledged message between two Python plugins on
lightningd (one message each way, nothing stored, checked or guarded).

The receiver's rate limit is raised out of the way (its default, 100 messages a second
from one peer, would drop envelopes, which then wait 10 s to go again): this measures the
protocol, not the limit. CPU per message, from /proc, is summed over both nodes.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

from .conftest import (
    BENCH_PLUGINS,
    PLUGIN_UNDER_TEST,
    CpuMeter,
    PersistentRpc,
    bench_node,
    interleaved,
    plugin_paths,
    rpc_of,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "200"))
LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "100"))
MSG = "8001" + "ab" * 64
PLAIN = "plain custommsg-send, until stored"
FLOOR = "a ping and its pong between two do-nothing plugins"
GUARDED_FLOOR = "the same with a do-nothing guard on each node"
ACKED = "custommsg-send ack=true, until delivered"


class ReceiverInbox:
    """The receiver's created_index, followed: nothing is deleted and the inbox never fills in a
    run, so the n-th message stored has created_index n."""

    def __init__(self, rpc: PersistentRpc):
        self.rpc = rpc
        self.last = int(rpc.call("custommsg-stats")["inbox_count"])

    def stored(self, count: int) -> None:
        self.last += count

    def wait_stored(self, count: int) -> None:
        self.stored(count)
        self.rpc.call("custommsg-wait", {"nextvalue": self.last, "timeout": 60})


def plain(rpc: PersistentRpc, inbox: ReceiverInbox, peer: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        rpc.call("custommsg-send", {"node_id": peer, "msg": MSG})
    inbox.wait_stored(count)
    return count / (time.perf_counter() - started)


def acknowledged(rpc: PersistentRpc, inbox: ReceiverInbox, peer: str, count: int) -> float:
    started = time.perf_counter()
    last = None
    for _ in range(count):
        last = rpc.call("custommsg-send", {"node_id": peer, "msg": MSG, "ack": True})
    assert last is not None
    settled = rpc.call("custommsg-outbox-wait", {"id": last["id"], "timeout": 60})
    elapsed = time.perf_counter() - started
    assert settled["status"] == "delivered", settled
    inbox.stored(count)
    return count / elapsed


def one_delivered(rpc: PersistentRpc, peer: str) -> float:
    started = time.perf_counter()
    sent = rpc.call("custommsg-send", {"node_id": peer, "msg": MSG, "ack": True})
    settled = rpc.call("custommsg-outbox-wait", {"id": sent["id"], "timeout": 60})
    assert settled["status"] == "delivered", settled
    return time.perf_counter() - started


def one_echoed(rpc: PersistentRpc, peer: str, number: int) -> float:
    started = time.perf_counter()
    rpc.call("echo-ping", {"node_id": peer, "body": f"{number:08x}" + MSG[12:]})
    return time.perf_counter() - started


def test_acknowledged_delivery_rate(node_factory):
    sender = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST))
    receiver = bench_node(
        node_factory, plugin=str(PLUGIN_UNDER_TEST),
        **{"custommsg-peer-rate": "1000000", "custommsg-peer-burst": 1000000},
    )
    sender.connect(receiver)
    peer = receiver.info["id"]
    rpc = rpc_of(sender)
    one_delivered(rpc, peer)  # the first acknowledged send is the discovery: neither says hello unasked
    plugins = plugin_paths(PLUGIN_UNDER_TEST)
    inbox = ReceiverInbox(rpc_of(receiver))
    plain(rpc, inbox, peer, 50)  # warm up: connections, caches, the first stream
    acknowledged(rpc, inbox, peer, 50)

    cases = {PLAIN: plain, ACKED: acknowledged}
    cpu = {"sender": CpuMeter(), "receiver": CpuMeter()}
    samples = interleaved(
        {name: functools.partial(run, rpc, inbox, peer) for name, run in cases.items()},
        [(cpu["sender"], sender), (cpu["receiver"], receiver)], plugins, ROUNDS, PER_ROUND,
    )
    # The floor of a lone acknowledged message: a ping and its pong between two plugins that store and
    # check nothing (bench/plugins/echo.py); and the same with a do-nothing guard on each node
    # (guardonly.py). Each timed in turn with the acknowledged sends.
    echo, guard = str(BENCH_PLUGINS / "echo.py"), str(BENCH_PLUGINS / "guardonly.py")
    pairs = {}
    for name, plugin in ((FLOOR, echo), (GUARDED_FLOOR, [echo, guard])):
        pinger, ponger = bench_node(node_factory, plugin=plugin), bench_node(node_factory, plugin=plugin)
        pinger.connect(ponger)
        pairs[name] = functools.partial(one_echoed, rpc_of(pinger), ponger.info["id"])
        pairs[name](0)
    latencies: list[float] = []
    floors: dict[str, list[float]] = {name: [] for name in pairs}
    for number in range(1, LATENCY_SAMPLES + 1):
        latencies.append(one_delivered(rpc, peer))
        for name, ping in pairs.items():
            floors[name].append(ping(number))
    latencies.sort()

    median = {name: statistics.median(values) for name, values in samples.items()}
    rate_plain, rate_ack = median[PLAIN], median[ACKED]
    print(f"\nacknowledged delivery, {ROUNDS} interleaved rounds of {PER_ROUND} messages of "
          f"{len(MSG) // 2} bytes (median msg/s):")
    for name, value in median.items():
        print(f"  {name:42s} {value:8.0f} msg/s  (min {min(samples[name]):.0f}, max {max(samples[name]):.0f})")
    p50, p90 = statistics.median(latencies), latencies[int(0.9 * (len(latencies) - 1))]
    print(f"send -> delivered, one at a time, {LATENCY_SAMPLES} messages: median {p50 * 1e3:.1f} ms, "
          f"p90 {p90 * 1e3:.1f} ms")
    for side, meter in cpu.items():
        meter.report(f"{side} node")
    print(f"RATIO ack=true until delivered / plain until stored = {rate_ack / rate_plain:.2f}")
    for name, values in floors.items():
        print(f"{name}, in turn with those: median {statistics.median(values) * 1e3:.1f} ms")
    print(f"MEDIAN send to delivered = {p50 * 1e3:.1f} ms")
    for name, values in floors.items():
        print(f"RATIO send to delivered / {name} (medians) = {p50 / statistics.median(values):.2f}")
    for side, meter in cpu.items():
        meter.ratios(f"{side} ack / plain", ACKED, PLAIN)
    stored = receiver.rpc.call("custommsg-stats")["inbox_count"]
    assert stored == 2 * (50 + ROUNDS * PER_ROUND) + LATENCY_SAMPLES + 1  # and the discovery
