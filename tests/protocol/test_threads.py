"""The three threads at once: RPC calls, hook calls and timer sweeps, from several callers, for a few seconds.

The table in ``custommsg/node/eventloop.py`` says which thread may touch what, and the
runtime refuses, with a traceback in the log, a send from the wrong thread; this drives
every path that crosses threads together: plain and acknowledged sends (main and sender
threads), waits and bLIP-50 calls that end at their deadlines (timer thread), resends
every 0.2 s (timer and sender threads), and messages, hellos, envelopes and acks arriving
through the hook (main thread). At teardown the harness checks that every hook was
answered with continue, nothing was logged as a bug, and the plugin exited cleanly.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, PluginCallError, wait_for
from .peerproto import ACK, ENVELOPE, HELLO

LSPS = 37913
SECONDS = 4.0


def u64(value: int) -> str:
    return value.to_bytes(8, "big").hex()


def run_for(seconds: float, workers: list[Callable[[int], None]]) -> list[BaseException]:
    """Each worker called with 0, 1, 2... on its own thread until ``seconds`` pass; what they raised."""
    stop = time.monotonic() + seconds
    failures: list[BaseException] = []

    def loop(work: Callable[[int], None]) -> None:
        for n in itertools.count():
            if time.monotonic() >= stop:
                return
            try:
                work(n)
            except BaseException as exc:  # reported to the test, which fails with it
                failures.append(exc)
                return

    threads = [threading.Thread(target=loop, args=(work,), daemon=True) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return failures


def test_rpc_calls_hooks_and_sweeps_at_once(monkeypatch: pytest.MonkeyPatch, make_ld: MakeLd) -> None:
    monkeypatch.setenv("CUSTOMMSG_DEV_RETRANSMIT_AFTER", "0.2")  # the sweep resends all the time
    ld: FakeLightningd = make_ld()
    ld.custommsg(PEER_A, HELLO + "000100")  # A speaks acknowledged delivery and never acknowledges
    acked_ids: list[int] = []

    def acked_sends(n: int) -> None:
        result = ld.call("custommsg-send", {"node_id": PEER_A, "msg": f"8001{n:08x}", "ack": True}, timeout=10)
        acked_ids.append(result["id"])

    def plain_sends(n: int) -> None:
        assert ld.call("custommsg-send", {"node_id": PEER_B, "msg": f"8003{n:08x}"}, timeout=10)["status"] == "sent"

    def short_waits(n: int) -> None:
        with pytest.raises(PluginCallError) as caught:
            ld.call("custommsg-wait", {"nextvalue": 10**9, "timeout": 0.05}, timeout=10)
        assert caught.value.code == 3330

    def short_calls(n: int) -> None:  # bLIP-50 calls nobody answers: the timer thread ends them
        with pytest.raises(PluginCallError) as caught:
            ld.call("custommsg-lsps-call", {"peer_id": PEER_B, "method": "m", "timeout": 0.05}, timeout=10)
        assert caught.value.code == 3351

    def arrivals(n: int) -> None:
        kind = n % 4
        if kind == 0:
            ld.custommsg(PEER_B, f"8005{n:08x}")
        elif kind == 1:
            ld.custommsg(PEER_B, ENVELOPE + u64(7) + u64(n // 4 + 1) + "8007")
        elif kind == 2:
            ld.custommsg(PEER_A, HELLO + "000100")  # its plugin restarting: paced resends
        else:
            ld.custommsg(PEER_A, ACK + u64(1) + u64(1))  # an ack for a stream it was never sent: ignored

    def reads(n: int) -> None:
        ld.call("custommsg-stats", timeout=10)
        ld.call("custommsg-list", {"index": "created", "start": max(0, n - 5), "limit": 5}, timeout=10)
        ld.call("custommsg-peers", timeout=10)

    failures = run_for(SECONDS, [acked_sends, plain_sends, short_waits, short_calls, arrivals, reads])
    assert failures == []
    assert acked_ids, "no acknowledged send went through"
    # then everything it stored lists, and the counts agree with the rows
    stats: dict[str, Any] = ld.call("custommsg-stats")
    listed = ld.call("custommsg-list")["messages"]
    assert stats["inbox_count"] == len(listed) == stats["total"]["stored"]
    assert stats["waiting"] == 0  # every wait and call ended
    # and the acknowledged entries still wait for A's acknowledgement, in seq order, resent meanwhile
    outbox = [e for e in ld.call("custommsg-outbox", {"peer_id": PEER_A})["outbox"] if e.get("ack")]
    assert [e["seq"] for e in outbox] == list(range(1, len(outbox) + 1))
    wait_for(lambda: sum(1 for _, m in ld.sent if m.startswith(ENVELOPE)) > len(outbox))
