"""The counters behind ``custommsg-stats``: this session's in memory, the totals in the store.

Counted from the main thread (receiving, sending from the loop) and the sender
thread (outbox drains), so the session's counts sit behind a lock; the store has
its own.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..core.records import BYTES_SUFFIX, COUNTER_NAMES, CounterKey, CountsByPeerType, group_counts

if TYPE_CHECKING:
    from ..store.database import Store


class Counters:
    def __init__(self, store: Store):
        self.store = store
        self._session: Counter[CounterKey] = Counter()
        self._lock = threading.Lock()

    def count(self, peer_id: str, msg_type: int, name: str, size: int) -> None:
        """Count one message of ``size`` bytes, for this session and in the store's totals (written with
        its next transaction)."""
        with self._lock:
            self._session[(peer_id, msg_type, name)] += 1
            self._session[(peer_id, msg_type, name + BYTES_SUFFIX)] += size
        self.store.counters.count(peer_id, msg_type, name, size)

    def count_session(self, name: str, counts: list[tuple[str, int, int]]) -> None:
        """Count (peer, type, size) under ``name`` for this session only: what the store has already
        counted itself."""
        with self._lock:
            for peer_id, msg_type, size in counts:
                self._session[(peer_id, msg_type, name)] += 1
                self._session[(peer_id, msg_type, name + BYTES_SUFFIX)] += size

    def report(self, peer_id: str | None, msg_type: int | None) -> dict[str, Any]:
        """``session`` and ``total`` sums, and ``peers``: one row per (peer, type), in that order."""
        totals = self.store.counters.totals(peer_id, msg_type)
        with self._lock:
            session_counts = list(self._session.items())
        session: CountsByPeerType = group_counts(session_counts, peer_id, msg_type, {})
        rows = [
            {
                "peer_id": p,
                "type": t,
                "session": _shape(session.get((p, t), Counter())),
                "total": _shape(totals.get((p, t), Counter())),
            }
            for p, t in sorted(set(totals) | set(session))
        ]
        return {"session": _shape(_sum(session)), "total": _shape(_sum(totals)), "peers": rows}


def _sum(counts: CountsByPeerType) -> Counter[str]:
    total: Counter[str] = Counter()
    for per_type in counts.values():
        total.update(per_type)
    assert set(COUNTER_NAMES) >= set(total)
    return total


def _shape(counts: Counter[str]) -> dict[str, Any]:
    """Messages, and the same counts in bytes under ``bytes``."""
    return {**_counts(counts, ""), "bytes": _counts(counts, BYTES_SUFFIX)}


def _counts(counts: Counter[str], suffix: str) -> dict[str, Any]:
    return {
        "sent": counts["sent" + suffix],
        "received": counts["received" + suffix],
        "stored": counts["stored" + suffix],
        "dropped": {cause: counts[f"dropped_{cause}{suffix}"] for cause in DROP_CAUSES},
    }


DROP_CAUSES = ("rate", "peer_budget", "global_budget", "retention", "storage", "malformed", "unanswered")
