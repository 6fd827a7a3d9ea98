"""Acknowledged delivery's RPC method, ``custommsg-peers``, and the path of ``custommsg-send ack=true``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply``
are the method's, the docstring is its ``help``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.completion import PENDING, Reply
from ..core.envelope import check_inner
from ..core.errors import CustomMsgError
from ..core.records import DELIVERED, FAILED, SENT, OutboxEntry
from ..core.validate import parse_peer_filter
from ..core.wire import Message

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def send_acked(runtime: Runtime, reply: Reply, peer_id: str, message: Message, ttl: float | None) -> Any:
    """custommsg-send with ack=true, once the common checks passed: into the outbox, then handed
    over at once if the peer said hello on this connection (answered "sent"), else "queued"."""
    check_inner(message)
    runtime.acked.check_supported(peer_id)
    entry = runtime.outbox.enqueue(peer_id, message, ttl, ack=True)
    if not runtime.acked.ready(peer_id):
        runtime.acked.ask(peer_id)  # if it is connected: its hello in answer starts the delivery
        return _result(entry, "queued")

    def job() -> None:
        runtime.deliver(peer_id)  # in order, behind whatever of the peer's outbox is before it
        now = runtime.store.outbox.outbox_entry(entry.id) or entry
        if now.status == FAILED:
            reply.error(CustomMsgError(
                errors.SEND_FAILED, f"outbox entry {entry.id} failed: {now.reason}",
                {"id": entry.id, "status": now.status, "reason": now.reason},
            ))
        else:
            reply.result(_result(entry, "sent" if now.status in (SENT, DELIVERED) else "queued"))

    runtime.sender.put(peer_id, job, reply.crash)
    return PENDING


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
