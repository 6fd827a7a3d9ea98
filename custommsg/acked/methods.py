"""Acknowledged delivery's RPC method, ``custommsg-peers``, and the path of ``custommsg-send ack=true``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply``
are the method's, the docstring is its ``help``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.completion import PENDING, Reply
from ..core.envelope import ENVELOPE_OVERHEAD, check_inner
from ..core.errors import CustomMsgError, TransientError
from ..core.records import DELIVERED, FAILED, SENT, OutboxEntry
from ..core.validate import parse_peer_filter
from ..core.wire import Message

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def send_acked(runtime: Runtime, reply: Reply, peer_id: str, message: Message, ttl: float | None) -> Any:
    """custommsg-send with ack=true, once the common checks passed: into the outbox, and handed over
    at once if the peer said hello on this connection (answered "sent"), else "queued"."""
    check_inner(message)
    runtime.acked.check_supported(peer_id)
    if not runtime.acked.ready(peer_id):
        entry = runtime.outbox.enqueue(peer_id, message, ttl, ack=True)
        runtime.acked.ask(peer_id)  # if it is connected: its hello in answer starts the delivery
        return _result(entry, "queued")
    # While the sender thread has work for the peer (a resend the peer's hello asked for, a delivery),
    # the entry waits behind it: handed over with it, it would go twice. So does one over the peer's
    # send budget: the outbox's delivery pays for it when the budget has room.
    length = len(message) + ENVELOPE_OVERHEAD
    start = not runtime.sender.busy(peer_id) and runtime.spend_if_room(peer_id, length)
    try:
        entry = runtime.outbox.enqueue(peer_id, message, ttl, ack=True, start=start)
    except CustomMsgError:
        if start:
            runtime.refund(peer_id, length)
        raise
    if start and entry.status != SENT:
        runtime.refund(peer_id, length)  # queued behind others after all: its hand-off pays
    if entry.status == SENT:
        # First in line, with its seq: one write, and it goes as a plain send goes. The answer needs
        # nothing more: the entry is stored, in its stream, and goes again until acknowledged.
        runtime.send_started(entry, functools.partial(_started, runtime, entry), functools.partial(_crashed, runtime))
        return _result(entry, "sent")

    def job() -> None:
        runtime.deliver(peer_id)  # in order, behind whatever of the peer's outbox is before it
        now = runtime.store.outbox.outbox_entry(entry.id) or entry
        if now.status == FAILED:
            reply.error(_failed(now))
        else:
            reply.result(_result(entry, "sent" if now.status in (SENT, DELIVERED) else "queued"))

    runtime.sender.put(peer_id, job, reply.crash)
    return PENDING


def _started(runtime: Runtime, entry: OutboxEntry, failure: CustomMsgError | None) -> None:
    """lightningd answered for the envelope of an entry that entered the outbox ``sent``. If the peer
    went away meanwhile it stays ``sent``: it goes again once the peer says hello on its next
    connection, as every unacknowledged entry does. Refused for good: it fails (and with it the later
    entries of its stream), as custommsg-outbox-wait and custommsg-outbox then say."""
    if failure is None:
        return
    runtime.refund(entry.peer_id, len(entry.payload) + ENVELOPE_OVERHEAD)  # it did not go
    if isinstance(failure, TransientError):
        return
    for failed in runtime.outbox.fail(entry, failure.message):
        runtime.plugin.log(f"outbox {failed.id} to {failed.peer_id} failed: {failed.reason}", level="warn")


def _crashed(runtime: Runtime, exc: Exception) -> None:
    runtime.plugin.log(f"outbox: handing over an acknowledged entry: {exc!r}", level="warn")


def _failed(entry: OutboxEntry) -> CustomMsgError:
    return CustomMsgError(
        errors.SEND_FAILED, f"outbox entry {entry.id} failed: {entry.reason}",
        {"id": entry.id, "status": entry.status, "reason": entry.reason},
    )


def _result(entry: OutboxEntry, status: str) -> dict[str, Any]:
    return {"status": status, "peer_id": entry.peer_id, "type": entry.type, "length": len(entry.payload),
            "id": entry.id}


def peers(runtime: Runtime, reply: Reply, peer_id: Any = None) -> Any:
    """List peers and whether each speaks acknowledged delivery (custommsg-send ack=true).

    Returns {peers}: the connected peers, those seen this run, and those with acknowledged
    messages waiting; each with peer_id, connected, ack_support (yes: it announced the
    protocol on this connection; no: it left our announcement unanswered for 30 seconds; unknown),
    ack_version (of its last announcement), and its acknowledged messages queued and
    unacknowledged (handed over, no ack yet); receive_budget (what it may still send us now: messages,
    bytes, and dropped_in_episode, its messages dropped since it went over) and send_budget (bytes we
    may still send it now).
    """
    peer = parse_peer_filter(peer_id)
    rows = runtime.acked.describe(runtime.connected.snapshot(), peer)
    for row in rows:
        row["receive_budget"] = runtime.receiver.limiter.state(row["peer_id"])
        left = runtime.send_budget_left(row["peer_id"])
        if left is not None:
            row["send_budget"] = {"bytes": left}
    return {"peers": rows}


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-peers": peers,
}
