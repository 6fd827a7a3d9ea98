"""The counters behind ``custommsg-stats``: this session's in memory, the totals in the store.

Counted from the main thread (receiving, sending from the loop) and the sender
thread (outbox drains), so the session's counts sit behind a lock; the store has
its own.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..core.records import COUNTER_NAMES, CounterKey, CountsByPeerType, group_counts

if TYPE_CHECKING:
    from ..store.database import Store


class Counters:
    def __init__(self, store: Store):
        self.store = store
        self._session: Counter[CounterKey] = Counter()
        self._lock = threading.Lock()

    def count(self, peer_id: str, msg_type: int, name: str, n: int = 1) -> None:
        """Count for this session and in the store's totals (written with its next transaction)."""
        with self._lock:
            self._session[(peer_id, msg_type, name)] += n
        self.store.counters.count(peer_id, msg_type, name, n)

    def count_session(self, counts: list[CounterKey]) -> None:
        """Count for this session only: what the store has already counted itself."""
        with self._lock:
            self._session.update(counts)

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
    return {
        "sent": counts["sent"],
        "received": counts["received"],
        "stored": counts["stored"],
        "dropped": {
            "rate": counts["dropped_rate"],
            "retention": counts["dropped_retention"],
            "storage": counts["dropped_storage"],
            "malformed": counts["dropped_malformed"],
        },
    }
