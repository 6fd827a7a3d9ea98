"""The outbox's RPC methods: ``custommsg-outbox``, ``-cancel`` and ``-outbox-wait``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply``
are the method's, the docstring is its ``help``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.completion import PENDING, Reply, Waiter
from ..core.errors import CustomMsgError
from ..core.records import OutboxEntry
from ..core.validate import optional, parse_outbox_status, parse_page, parse_peer_filter, parse_seconds, parse_uint

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def list_outbox(
    runtime: Runtime, reply: Reply, peer_id: Any = None, status: Any = None,
    index: Any = None, start: Any = None, limit: Any = None,
) -> Any:
    """List outbox entries (queued, sending, sent, delivered, expired, cancelled, failed); paginate like listforwards.

    Returns {outbox}: each entry with id, peer_id, type, length, status and its times; with ack, its seq.
    """
    page = parse_page(index, start, limit, ("created", "updated"))
    peer = parse_peer_filter(peer_id)
    entries = runtime.store.outbox.list_outbox(peer, parse_outbox_status(status), page)
    return {"outbox": [e.to_json() for e in entries]}


def cancel(runtime: Runtime, reply: Reply, id: Any) -> Any:
    """Cancel a queued outbox message by its {id}; returns its entry, now cancelled.

    A message sent with ack cannot be cancelled once handed to lightningd (the peer may have stored it).
    """
    return runtime.outbox.cancel(parse_uint("id", id)).to_json()


def outbox_wait(runtime: Runtime, reply: Reply, id: Any, timeout: Any = None) -> Any:
    """Wait until outbox entry {id} is settled, and return it.

    Settled: delivered (acknowledged by the peer), failed, expired or cancelled; a message
    sent without ack is settled once sent. Without {timeout} it waits as long as it takes;
    with it (seconds; 0 answers at once), it fails with 3361 if the entry is not settled by then.
    """
    entry_id = parse_uint("id", id)
    seconds = optional(timeout, lambda v: parse_seconds(v, "timeout", allow_zero=True))
    outbox = runtime.store.outbox

    def on_fail(reason: str) -> None:
        reply.error(_not_settled(entry_id, outbox.outbox_entry(entry_id), seconds or 0))

    waiter = runtime.waiters.add(
        Waiter(
            min_index=0,
            on_message=lambda entry: reply.result(entry.to_json()),
            on_fail=on_fail,
            key=("outbox", entry_id),
            deadline=None if seconds is None else runtime.waiters.clock() + seconds,
        )
    )
    # Parked first, then read: an entry that settles in between (on another thread) wakes the waiter.
    try:
        entry = outbox.outbox_entry(entry_id)
    except CustomMsgError:
        runtime.waiters.remove(waiter)
        raise
    if entry is not None and not entry.settled and seconds != 0:
        return PENDING
    if not runtime.waiters.remove(waiter):
        return PENDING  # it settled meanwhile, and the waiter answered
    if entry is None:
        raise CustomMsgError(errors.OUTBOX_NOT_FOUND, f"no outbox entry {entry_id}", {"id": entry_id})
    if entry.settled:
        return entry.to_json()
    raise _not_settled(entry_id, entry, 0)


def _not_settled(entry_id: int, entry: OutboxEntry | None, seconds: float) -> CustomMsgError:
    status = entry.status if entry is not None else "unknown"
    return CustomMsgError(
        errors.DELIVERY_WAIT_TIMEOUT,
        f"outbox entry {entry_id} is still {status} after {seconds:g} seconds",
        {"id": entry_id, "status": status, "timeout": seconds},
    )


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-outbox": list_outbox,
    "custommsg-cancel": cancel,
    "custommsg-outbox-wait": outbox_wait,
}
