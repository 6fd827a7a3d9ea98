"""bLIP-50 (LSPS0) calls per second, one at a time and 16 in flight, against custommsg-request, same run.

Two nodes, both running custommsg, connected (no channel). The server node is driven from
this process, as an LSP script would drive it: one thread per protocol follows the inbox
with ``custommsg-wait`` (``type=37913 method=lsps0.list_protocols`` for the bLIP-50
requests, ``type=40001`` for the plain ones) and hands each request to a pool of
responder threads, each with its own RPC connection, which answer it:
``custommsg-lsps-respond`` with ``{"protocols": [1, 2]}``, or ``custommsg-send`` of a
type-40003 reply that starts with the request's 16-byte id.

The client calls, in interleaved rounds of PER_ROUND calls each:

* ``custommsg-lsps-call lsps0.list_protocols`` one at a time, then with CONCURRENCY in
  flight (CONCURRENCY threads, each with its own RPC connection, taking calls until the
  round's are gone);
* ``custommsg-request`` the same ways, with a type-40001 message of exactly the size of
  the bLIP-50 request message (type included), whose reply has exactly the size of the
  bLIP-50 response message. Each request starts with a fresh random 16-byte id, given as
  ``reply_prefix`` (a bLIP-50 id is 128 bits too), so that with many in flight each
  reply answers its own request.

The ratios lsps-call / custommsg-request of the median rates are what counts. CPU per
call, from /proc over the same timed windows, is given per node and summed over both
(the server's part includes the responders' own RPC calls to their lightningd). Both
nodes' rate limits are raised out of the way (the default, 100 messages a second from
one peer, would drop requests or replies): this measures the protocol, not the limit.
BENCH_ROUNDS, BENCH_PER_ROUND and BENCH_CONCURRENCY size the run.
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from custommsg.core import errors
from custommsg.core.blip50 import Request, Response
from custommsg.node.rpcclient import LightningdError

from .conftest import (
    PLUGIN_UNDER_TEST,
    CpuMeter,
    PersistentRpc,
    bench_node,
    interleaved,
    plugin_paths,
    rpc_of,
    wait_until,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "160"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
UNLIMITED = {"custommsg-peer-rate": "1000000", "custommsg-peer-burst": 1000000}
WAIT_SECONDS = 1  # the server's custommsg-wait calls, so that it stops soon after the test

LSPS_TYPE = 37913
METHOD, PARAMS, RESULT = "lsps0.list_protocols", {}, {"protocols": [1, 2]}
REQUEST_TYPE, REPLY_TYPE = 40001, 40003  # odd: no allow_even
ID_BYTES = 16
# What goes over the wire for one bLIP-50 call (2-byte type + JSON body; ids are 32 hex digits).
LSPS_REQUEST_LEN = 2 + len(Request("0" * 2 * ID_BYTES, METHOD, PARAMS).serialize())
LSPS_RESPONSE_LEN = 2 + len(Response("0" * 2 * ID_BYTES, RESULT).serialize())


def plain_message(msg_type: int, request_id: str, length: int) -> str:
    """Hex of a ``length``-byte message: type, the id, then padding."""
    pad = length - 2 - ID_BYTES
    assert pad >= 0, length
    return f"{msg_type:04x}{request_id}" + "ab" * pad


class Server:
    """Answers both protocols on ``node``: a follower thread per protocol, ``responders`` threads answering."""

    def __init__(self, node: Any, responders: int):
        self.node = node
        self.stop = threading.Event()
        self.todo: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.answered = {"lsps": 0, "plain": 0}
        self.failures: list[BaseException] = []
        self._count = threading.Lock()
        self.threads = [
            threading.Thread(target=self._follow, args=("lsps", {"type": LSPS_TYPE, "method": METHOD}), daemon=True),
            threading.Thread(target=self._follow, args=("plain", {"type": REQUEST_TYPE}), daemon=True),
        ] + [threading.Thread(target=self._answer, daemon=True) for _ in range(responders)]
        for thread in self.threads:
            thread.start()

    def _follow(self, kind: str, wanted: dict[str, Any]) -> None:
        rpc, nextvalue = rpc_of(self.node), 1
        try:
            while not self.stop.is_set():
                try:
                    entry = rpc.call("custommsg-wait", {"nextvalue": nextvalue, "timeout": WAIT_SECONDS, **wanted})
                except LightningdError as exc:
                    if exc.error.get("code") == errors.WAIT_TIMEOUT:
                        continue
                    raise
                nextvalue = entry["created_index"] + 1
                if kind == "plain" or entry.get("kind") == "request":
                    self.todo.put((kind, entry))
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            if not self.stop.is_set():
                self.failures.append(exc)

    def _answer(self) -> None:
        rpc = rpc_of(self.node)
        try:
            while (job := self.todo.get()) is not None:
                kind, entry = job
                if kind == "lsps":
                    rpc.call("custommsg-lsps-respond",
                             {"peer_id": entry["peer_id"], "id": entry["json"]["id"], "result": RESULT})
                else:
                    request_id = entry["payload"][4 : 4 + 2 * ID_BYTES]
                    rpc.call("custommsg-send", {"node_id": entry["peer_id"],
                                                "msg": plain_message(REPLY_TYPE, request_id, LSPS_RESPONSE_LEN)})
                with self._count:
                    self.answered[kind] += 1
        except BaseException as exc:  # noqa: BLE001
            if not self.stop.is_set():
                self.failures.append(exc)

    def close(self) -> None:
        self.stop.set()
        for _ in self.threads[2:]:
            self.todo.put(None)
        for thread in self.threads:
            thread.join(timeout=WAIT_SECONDS + 5)


def lsps_call(rpc: PersistentRpc, peer: str) -> None:
    result = rpc.call("custommsg-lsps-call", {"peer_id": peer, "method": METHOD, "params": PARAMS, "timeout": 60})
    assert result == RESULT, result


def plain_request(rpc: PersistentRpc, peer: str) -> None:
    request_id = os.urandom(ID_BYTES).hex()
    result = rpc.call("custommsg-request", {
        "node_id": peer, "msg": plain_message(REQUEST_TYPE, request_id, LSPS_REQUEST_LEN),
        "reply_type": REPLY_TYPE, "reply_prefix": request_id, "timeout": 60,
    })
    reply = result["reply"]["payload"]
    assert reply.startswith(f"{REPLY_TYPE:04x}{request_id}") and len(reply) == 2 * LSPS_RESPONSE_LEN, reply


Call = Callable[[PersistentRpc, str], None]


class Clients:
    """``in_flight`` threads, each with its own RPC connection, that share a round's calls."""

    def __init__(self, node: Any, peer: str, in_flight: int):
        self.peer = peer
        self.failures: list[BaseException] = []
        self.go = [threading.Semaphore(0) for _ in range(in_flight)]
        self.done = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.left = 0
        self.call: Call | None = None
        self.threads = [threading.Thread(target=self._run, args=(rpc_of(node), go), daemon=True) for go in self.go]
        for thread in self.threads:
            thread.start()

    def _run(self, rpc: PersistentRpc, go: threading.Semaphore) -> None:
        while True:
            go.acquire()
            call = self.call
            if call is None:
                return
            try:
                while True:
                    with self.lock:
                        if self.left == 0:
                            break
                        self.left -= 1
                    call(rpc, self.peer)
            except BaseException as exc:  # noqa: BLE001
                self.failures.append(exc)
                with self.lock:
                    self.left = 0
            finally:
                self.done.release()

    def rate(self, call: Call, count: int) -> float:
        self.call, self.left = call, count
        started = time.perf_counter()
        for go in self.go:
            go.release()
        for _ in self.go:
            self.done.acquire()
        elapsed = time.perf_counter() - started
        assert not self.failures, self.failures
        return count / elapsed

    def close(self) -> None:
        self.call = None
        for go in self.go:
            go.release()
        for thread in self.threads:
            thread.join(timeout=10)


def one_at_a_time(rpc: PersistentRpc, peer: str, call: Call, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call(rpc, peer)
    return count / (time.perf_counter() - started)


def both_nodes(client: CpuMeter, server: CpuMeter) -> CpuMeter:
    """One meter with each case's CPU summed over both nodes, per call (the client's count)."""
    total = CpuMeter()
    for case, seconds in client.seconds.items():
        total.seconds[case] = {part: used + server.seconds[case][part] for part, used in seconds.items()}
        total.messages[case] = client.messages[case]
    return total


def test_lsps_call_rate(node_factory):
    client = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED)
    server = bench_node(node_factory, plugin=str(PLUGIN_UNDER_TEST), **UNLIMITED)
    client.connect(server)
    peer = server.info["id"]
    rpc = rpc_of(client)
    wait_until(lambda: rpc.call("custommsg-peers", {"peer_id": peer})["peers"][0]["connected"], 30)
    plugins = plugin_paths(PLUGIN_UNDER_TEST)
    serving = Server(server, CONCURRENCY)
    pool = Clients(client, peer, CONCURRENCY)
    try:
        calls = {"lsps-call": lsps_call, "custommsg-request": plain_request}
        cases: dict[str, Callable[[int], float]] = {}
        for name, call in calls.items():
            cases[f"{name}, 1 at a time"] = lambda count, call=call: one_at_a_time(rpc, peer, call, count)
        for name, call in calls.items():
            cases[f"{name}, {CONCURRENCY} in flight"] = lambda count, call=call: pool.rate(call, count)
        for run in cases.values():  # warm up: connections, caches, threads
            run(2 * CONCURRENCY)

        cpu = {"client": CpuMeter(), "server": CpuMeter()}
        samples = interleaved(
            cases, [(cpu["client"], client), (cpu["server"], server)], plugins, ROUNDS, PER_ROUND
        )
        assert not serving.failures, serving.failures
    finally:
        pool.close()
        serving.close()

    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\nbLIP-50 calls against custommsg-request, {ROUNDS} interleaved rounds of {PER_ROUND} calls; "
          f"request {LSPS_REQUEST_LEN} bytes, reply {LSPS_RESPONSE_LEN} bytes (type included) both ways "
          f"(median calls/s):")
    for name, value in median.items():
        print(f"  {name:34s} {value:8.0f} calls/s  (min {min(samples[name]):.0f}, max {max(samples[name]):.0f})")
    total = both_nodes(cpu["client"], cpu["server"])
    for side, meter in (*cpu.items(), ("both", total)):
        meter.report(f"{side} node{'s' if side == 'both' else ''}", unit="call")
    for in_flight in ("1 at a time", f"{CONCURRENCY} in flight"):
        lsps, plain = f"lsps-call, {in_flight}", f"custommsg-request, {in_flight}"
        print(f"RATIO lsps-call / custommsg-request, {in_flight} = {median[lsps] / median[plain]:.2f}")
    for in_flight in ("1 at a time", f"{CONCURRENCY} in flight"):
        lsps, plain = f"lsps-call, {in_flight}", f"custommsg-request, {in_flight}"
        total.ratios(f"both nodes lsps-call / custommsg-request, {in_flight}", lsps, plain, unit="call")
    lsps_speedup = median[f"lsps-call, {CONCURRENCY} in flight"] / median["lsps-call, 1 at a time"]
    plain_speedup = median[f"custommsg-request, {CONCURRENCY} in flight"] / median["custommsg-request, 1 at a time"]
    print(f"RATIO lsps-call {CONCURRENCY} in flight / 1 at a time = {lsps_speedup:.2f}")
    print(f"RATIO custommsg-request {CONCURRENCY} in flight / 1 at a time = {plain_speedup:.2f}")

    per_kind = 2 * (2 * CONCURRENCY + ROUNDS * PER_ROUND)  # warm-up and rounds, at each concurrency
    assert serving.answered == {"lsps": per_kind, "plain": per_kind}, serving.answered
    assert rpc.call("custommsg-stats")["waiting"] == 0
    for node in (client, server):  # nothing lost to the rate limit, or anything else
        dropped = rpc_of(node).call("custommsg-stats")["session"]["dropped"]
        assert not any(dropped.values()), dropped
