"""The RPC surface of acknowledged delivery: ``custommsg-send ack=true``'s path,
``custommsg-outbox-wait`` and ``custommsg-peers``.

Written as ``methods`` writes its own (``methods.METHODS`` lists these too): each
function's parameters after ``service`` and ``request`` are the method's, its docstring
is its ``help``, it raises :class:`CustomMsgError` to fail and returns ``PENDING`` to
answer later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .ack import check_inner
from .errors import CustomMsgError
from .pyln_seam import PENDING, Request, answer, answer_error
from .schema import DELIVERED, FAILED, SENT, OutboxEntry
from .service import CustomMsgService
from .validate import optional, parse_peer_filter, parse_seconds, parse_uint
from .waiters import Waiter
from .wire import Message


def send_acked(
    service: CustomMsgService, request: Request, peer_id: str, message: Message, ttl: float | None,
    on_crash: Callable[[Exception], None],
) -> Any:
    """custommsg-send with ack=true, once the common checks passed: into the outbox, then handed
    over at once if the peer said hello on this connection (answered "sent"), else "queued"."""
    check_inner(message)
    service.acked.check_supported(peer_id)
    entry = service.outbox.enqueue(peer_id, message, ttl, ack=True)
    if not service.acked.ready(peer_id):
        return _result(entry, "queued")  # its hello (after it connects) starts the delivery

    def job() -> None:
        service.deliver(peer_id)  # in order, behind whatever of the peer's outbox is before it
        now = service.store.outbox_entry(entry.id) or entry
        if now.status == FAILED:
            answer_error(request, CustomMsgError(
                errors.SEND_FAILED, f"outbox entry {entry.id} failed: {now.reason}",
                {"id": entry.id, "status": now.status, "reason": now.reason},
            ))
        else:
            answer(request, _result(entry, "sent" if now.status in (SENT, DELIVERED) else "queued"))

    service.sender.put(peer_id, job, on_crash)
    return PENDING


def _result(entry: OutboxEntry, status: str) -> dict[str, Any]:
    return {"status": status, "peer_id": entry.peer_id, "type": entry.type, "length": len(entry.payload),
            "id": entry.id}


def outbox_wait(service: CustomMsgService, request: Request, id: Any, timeout: Any = None) -> Any:
    """Wait until outbox entry {id} is settled, and return it.

    Settled: delivered (acknowledged by the peer), failed, expired or cancelled; a message
    sent without ack is settled once sent. Without {timeout} it waits as long as it takes;
    with it (seconds; 0 answers at once), it fails with 3361 if the entry is not settled by then.
    """
    entry_id = parse_uint("id", id)
    seconds = optional(timeout, lambda v: parse_seconds(v, "timeout", allow_zero=True))

    def on_fail(reason: str) -> None:
        entry = service.store.outbox_entry(entry_id)
        answer_error(request, _not_settled(entry_id, entry, seconds or 0))

    waiter = service.waiters.add(
        Waiter(
            min_index=0,
            on_message=lambda entry: answer(request, entry.to_json()),
            on_fail=on_fail,
            key=("outbox", entry_id),
            deadline=None if seconds is None else service.waiters.clock() + seconds,
        )
    )
    # Parked first, then read: an entry that settles in between (on another thread) wakes the waiter.
    try:
        entry = service.store.outbox_entry(entry_id)
    except CustomMsgError:
        service.waiters.remove(waiter)
        raise
    if entry is not None and not entry.settled and seconds != 0:
        return PENDING
    if not service.waiters.remove(waiter):
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


def peers(service: CustomMsgService, request: Request, peer_id: Any = None) -> Any:
    """List peers and whether each speaks acknowledged delivery (custommsg-send ack=true).

    Returns {peers}: the connected peers, those seen this run, and those with acknowledged
    messages waiting; each with peer_id, connected, ack_support (yes: it announced the
    protocol on this connection; no: connected long enough without announcing it; unknown),
    ack_version (of its last announcement), and its acknowledged messages queued and
    unacknowledged (handed over, no ack yet).
    """
    peer = parse_peer_filter(peer_id)
    return {"peers": service.acked.describe(service.connected.snapshot(), peer)}
