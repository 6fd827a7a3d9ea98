"""The counters' queries: totals per (peer, type, name), written with the next transaction.

A row holds a counter's count and its bytes (in memory, the bytes go by the count's name and
``_bytes``, as ``custommsg-stats`` shows them).

Counting costs no commit of its own: an increment waits in memory until the next
transaction (whatever it writes) takes it along, so a write that fails (disk full)
loses no count. What a transaction itself does (a message stored, the oldest dropped to
make room) is counted with :meth:`CounterQueries.count_here`, inside it: the count commits
with the rows it counts, or not at all, so ``total.stored`` never lags the inbox (a
SIGKILL between the commit and the next transaction lost it before).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..core.records import BYTES_SUFFIX, CounterKey, CountsByPeerType, group_counts
from .query import Db, where

if TYPE_CHECKING:
    from .database import Store


class CounterQueries:
    def __init__(self, store: Store):
        self.store = store
        self._pending: Counter[CounterKey] = Counter()  # behind the store's lock
        self._here: Counter[CounterKey] = Counter()  # what the transaction under way counts

    def count(self, peer_id: str, msg_type: int, name: str, size: int, n: int = 1) -> None:
        """Add ``n`` messages of ``size`` bytes in all to a persistent counter; written with the next transaction."""
        with self.store.lock:
            self._pending[(peer_id, msg_type, name)] += n
            self._pending[(peer_id, msg_type, name + BYTES_SUFFIX)] += size

    def count_here(self, peer_id: str, msg_type: int, name: str, size: int, n: int = 1) -> None:
        """Inside a transaction: count what it does (``n`` messages of ``size`` bytes in all), written by it
        (and forgotten if it rolls back)."""
        self._here[(peer_id, msg_type, name)] += n
        self._here[(peer_id, msg_type, name + BYTES_SUFFIX)] += size

    def flush_into(self, db: Db) -> Counter[CounterKey]:
        """Inside a transaction: write the pending counts and the transaction's own; :meth:`written`
        forgets the pending ones once it commits."""
        flushed, rows = self.to_write()
        if rows:
            db.executemany(
                "INSERT INTO counters (peer_id, type, name, count, bytes) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (peer_id, type, name) DO UPDATE SET count = counters.count + excluded.count, "
                "bytes = counters.bytes + excluded.bytes",
                rows,
            )
        return flushed

    def to_write(self) -> tuple[Counter[CounterKey], list[tuple[bytes, int, str, int, int]]]:
        """Inside a transaction: the pending counts (for :meth:`written`), and the rows to add, the
        transaction's own counts with them: (peer_id, type, name, count, bytes), one per counter (a
        name's ``_bytes`` twin is its row's bytes)."""
        flushed = Counter(self._pending)
        rows: dict[CounterKey, list[int]] = {}
        for (peer_id, msg_type, name), value in (flushed + self._here).items():
            if name.endswith(BYTES_SUFFIX):
                rows.setdefault((peer_id, msg_type, name[: -len(BYTES_SUFFIX)]), [0, 0])[1] = value
            else:
                rows.setdefault((peer_id, msg_type, name), [0, 0])[0] = value
        return flushed, [(bytes.fromhex(p), t, n, count, size) for (p, t, n), (count, size) in rows.items()]

    def written(self, flushed: Counter[CounterKey]) -> None:
        self._pending.subtract(flushed)
        self._pending = +self._pending  # drop the zeros

    def restore(self, counts: Counter[CounterKey]) -> None:
        """Pending counts an unsure write took along (``StorageError.unsure_counts``) that it turned out not
        to have committed: pending again."""
        with self.store.lock:
            self._pending.update(counts)

    def transaction_ended(self) -> None:
        """Committed (and written) or rolled back: the transaction's own counts are done with either way."""
        self._here.clear()

    def totals(self, peer_id: str | None = None, msg_type: int | None = None) -> CountsByPeerType:
        """Totals per (peer, type), counts not yet written included.

        Reading needs no write, so this answers while the database cannot be
        written, which is when the storage-error counts matter most.
        """
        clauses, args = where(peer_id, type=msg_type)
        with self.store.lock:
            rows = self.store.read(
                "SELECT peer_id, type, name, count, bytes FROM counters" + (f" WHERE {clauses}" if clauses else ""),
                args,
            )
            pending: list[tuple[CounterKey, int]] = list(self._pending.items())
        as_counts = (
            counted for p, t, name, count, size in rows
            for counted in (((p.hex(), t, name), count), ((p.hex(), t, name + BYTES_SUFFIX), size))
        )
        written = group_counts(as_counts, None, None, {})
        return group_counts(pending, peer_id, msg_type, written)
