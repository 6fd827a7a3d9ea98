"""Benchmarks run on real lightningd nodes, found as the integration tier finds them.

Without lightningd they are skipped with the reason, and `make bench` exits 0.
BENCH_PLUGIN=/path/to/plugin.py measures another build of the plugin (a profiling
wrapper, an older checkout) in place of this one, in every benchmark; BENCH_ROUNDS,
BENCH_PER_ROUND and BENCH_INBOX_SIZES size the runs.

Rates swing on a shared machine; CPU seconds per message are steadier. Each benchmark
therefore also reports, from utime+stime in /proc/<pid>/stat, the CPU its plugin
process(es) and its lightningd used per message. "lightningd" there is the node's
lightningd and all its subdaemons (connectd, gossipd, hsmd, channeld, ...: the
descendants whose command is lightning_*); the built-in plugins are counted apart.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from custommsg.node.rpcclient import PersistentRpc
from tests.integration.conftest import PLUGIN, SKIP_REASON  # noqa: F401  (sets PATH up)

BENCH_PLUGINS = Path(__file__).resolve().parent / "plugins"
# A receiver's message-count limit out of the way, so that a benchmark measures the store, not the limiter.
UNLIMITED = {"custommsg-peer-rate": "1000000000", "custommsg-peer-burst": 1000000000}
# The plugin under test. Its process is found by this path: plugin.py re-executes
# itself into its venv as `.venv/bin/python3 <realpath of plugin.py>`.
PLUGIN_UNDER_TEST = Path(os.environ.get("BENCH_PLUGIN") or PLUGIN).resolve()
CLK_TCK = os.sysconf("SC_CLK_TCK")

if SKIP_REASON is None:
    from pyln.testing.fixtures import *  # noqa: E402,F401,F403


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    print(f"\nbench: plugin under test {PLUGIN_UNDER_TEST}")
    if SKIP_REASON is not None:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"benchmark needs lightningd: {SKIP_REASON}"))


def bench_node(node_factory, **options):
    """A node as pyln-testing makes it, less --dev-save-plugin-io, at log-level=info.

    pyln-testing turns that developer option on for every node; it writes two new
    files for every hook call, which on a disk costs about 2 ms a call and would be
    measured as the cost of any hook. It also logs at debug, where lightningd writes
    lines for every message and plugin call. Production nodes have neither.
    """
    node = node_factory.get_node(start=False, options=options)
    node.daemon.opts.pop("dev-save-plugin-io", None)
    node.daemon.opts["log-level"] = "info"
    node.start()
    return node


def rpc_of(node) -> PersistentRpc:
    """One long-lived JSON-RPC connection to ``node``'s lightningd."""
    return PersistentRpc(os.path.join(node.daemon.lightning_dir, "regtest", "lightning-rpc"), "bench")


def wait_until(predicate, timeout=120.0, interval=0.001) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(interval)


def proc_stat(pid: str) -> tuple[str, int, float, int] | None:
    """(command name, parent pid, utime+stime in seconds, start time) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
    return name, int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[19])


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def plugin_paths(*plugins: str | os.PathLike[str]) -> set[str]:
    """The strings a plugin's command line holds for it: the path as given and its realpath."""
    return {str(p) for p in plugins} | {os.path.realpath(p) for p in plugins}


def node_cpu(node, plugins: set[str]) -> dict[tuple[str, int], tuple[str, float]]:
    """CPU seconds (utime+stime) used so far by each process of ``node``'s tree, keyed by
    (pid, start time), with its part: ``plugin`` if its command line names one of
    ``plugins`` (see plugin_paths); ``lightningd`` for lightningd and its subdaemons;
    ``builtin`` for every other descendant (built-in plugins, and what they run)."""
    root = str(node.daemon.proc.pid)
    stats = {pid: s for pid in os.listdir("/proc") if pid.isdigit() and (s := proc_stat(pid)) is not None}
    children: dict[int, list[str]] = {}
    for pid, (_, ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    if root not in stats or not stats[root][0].startswith("lightningd"):
        raise LookupError(f"node's lightningd (pid {root}) not found, or not lightningd (valgrind?)")
    cpu = {(root, stats[root][3]): ("lightningd", stats[root][2])}
    todo = list(children.get(int(root), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(int(pid), []))
        name, _, seconds, started = stats[pid]
        if plugins.intersection(_cmdline(pid)):
            cpu[pid, started] = ("plugin", seconds)
        elif name.startswith("lightning_"):
            cpu[pid, started] = ("lightningd", seconds)
        else:
            cpu[pid, started] = ("builtin", seconds)
    return cpu


class CpuMeter:
    """Sums, per case, the CPU a node's process tree used inside that case's timed windows.

    Deltas are taken per process: /proc/<pid>/stat counts in clock ticks (10 ms), so
    each window is exact to a tick per process, and many windows average that out.

    ``with meter.window(case, node, plugins, messages):`` around each timed round, outside
    the code that takes the time (each snapshot scans /proc, and finds the processes afresh).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {}
        self.messages: dict[str, int] = {}

    @contextmanager
    def window(self, case: str, node, plugins: set[str], messages: int) -> Iterator[None]:
        before = node_cpu(node, plugins)
        yield
        after = node_cpu(node, plugins)
        total = self.seconds.setdefault(case, dict.fromkeys(("plugin", "lightningd", "builtin"), 0.0))
        # A process that started inside the window counts whole; one that ended inside it is lost.
        for key, (part, seconds) in after.items():
            total[part] += seconds - before.get(key, (part, 0.0))[1]
        self.messages[case] = self.messages.get(case, 0) + messages

    def per_message(self, case: str, part: str | None = None) -> float:
        """CPU seconds per message of ``part`` (plugin, lightningd, builtin), or of plugin + lightningd."""
        seconds = self.seconds[case]
        used = seconds[part] if part else seconds["plugin"] + seconds["lightningd"]
        return used / self.messages[case]

    def report(self, title: str, unit: str = "message") -> None:
        print(f"CPU per {unit}, same rounds ({title}; lightningd = lightningd + its subdaemons):")
        for case in self.seconds:
            p, ld, b = (self.per_message(case, part) for part in ("plugin", "lightningd", "builtin"))
            print(
                f"  {case:30s} plugin(s) {p * 1e6:8.1f} us  lightningd {ld * 1e6:8.1f} us  "
                f"sum {(p + ld) * 1e6:8.1f} us  (built-in plugins {b * 1e6:6.1f} us)"
                f"  [n={self.messages[case]}]"
            )

    def ratios(self, label: str, case: str, baseline: str, unit: str = "msg") -> None:
        """RATIO lines: plugin(s) + lightningd, then each part, of ``case`` over ``baseline``."""
        print(f"RATIO cpu/{unit} {label} = {self.per_message(case) / self.per_message(baseline):.2f}")
        for part in ("plugin", "lightningd"):
            ratio = self.per_message(case, part) / max(self.per_message(baseline, part), 1e-12)
            print(f"RATIO cpu/{unit} {part} {label} = {ratio:.2f}")


def interleaved(
    cases: dict[str, Callable[[int], float]], meters: list[tuple[CpuMeter, object]], plugins: set[str],
    rounds: int, per_round: int,
) -> dict[str, list[float]]:
    """Each round runs every case in turn on ``per_round`` messages (a case returns its rate),
    inside a CPU window of each (meter, node) in ``meters``; returns the rates, per case."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            with ExitStack() as windows:
                for meter, node in meters:
                    windows.enter_context(meter.window(name, node, plugins, per_round))
                samples[name].append(run(per_round))
    return samples


@dataclass
class Receiving:
    """One case of :func:`receive_rounds`: a receiving node, ``until(n)`` returning once it has handled
    its n-th message of the run, the plugins whose CPU counts as the plugin's, and ``beside``, a context
    entered around each measured round as well (a PostgreSQL server's CPU, say)."""

    node: Any
    until: Callable[[int], None]
    plugins: set[str] = field(default_factory=lambda: plugin_paths(PLUGIN_UNDER_TEST))
    beside: Callable[[], AbstractContextManager[Any]] = nullcontext


def stored_by(node) -> Callable[[int], None]:
    """``until`` for a custommsg receiver: custommsg-wait blocks in the plugin until the n-th message is
    stored, so waiting puts no polling load on it."""
    node_rpc = rpc_of(node)
    return lambda n: node_rpc.call("custommsg-wait", {"nextvalue": n, "timeout": 120})


def receive_rounds(
    senders: list[PersistentRpc], cases: dict[str, Receiving], msg: str, rounds: int, per_round: int, cpu: CpuMeter,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Alternating rounds: the senders send each case's receiver ``per_round`` copies of ``msg`` in all with
    native sendcustommsg, each as fast as its RPC connection goes, all at once (a thread each when there are
    several: several peers flooding one node); a round's rate is messages over the time until the receiver
    handled the last. Round 0 warms up; the others are measured, inside ``cpu``'s window. Returns the rates
    per case, and how many messages each receiver was sent."""
    shares = [per_round // len(senders) + (i < per_round % len(senders)) for i in range(len(senders))]
    done = dict.fromkeys(cases, 0)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(rounds + 1):
        for name, case in cases.items():
            with ExitStack() as measured:
                if round_number:
                    measured.enter_context(case.beside())
                    measured.enter_context(cpu.window(name, case.node, case.plugins, per_round))
                params = {"node_id": case.node.info["id"], "msg": msg}

                def send(rpc: PersistentRpc, count: int, params: dict[str, str] = params) -> None:
                    for _ in range(count):
                        rpc.call("sendcustommsg", params)

                started = time.perf_counter()
                if len(senders) == 1:
                    send(senders[0], per_round)
                else:
                    with ThreadPoolExecutor(len(senders)) as pool:
                        list(pool.map(send, senders, shares))  # re-raises a sender's failure
                case.until(done[name] + per_round)
                rate = per_round / (time.perf_counter() - started)
            done[name] += per_round
            if round_number:
                rates[name].append(rate)
    return rates, done


def report_rates(rates: dict[str, list[float]], rounds: int, per_round: int, label: str = "{}") -> dict[str, float]:
    """Print each case's median rate over its rounds (``label`` formats the case's name); return them."""
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nreceive rate, {rounds} alternating rounds of {per_round} messages (median msg/s):")
    for name, value in median.items():
        print(f"  {label.format(name):32s} {value:8.0f} msg/s")
    return median
