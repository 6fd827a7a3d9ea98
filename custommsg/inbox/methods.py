"""The inbox's RPC methods: ``custommsg-list``, ``-wait``, ``-delete`` and ``-stats``.

Each function's parameters after ``runtime`` and ``reply`` are the method's, in order;
its docstring is what ``lightning-cli help`` prints. It checks its input with
``core.validate``, raises :class:`CustomMsgError` to fail, and returns the result, or
``PENDING`` when it answers later through ``reply`` (``node.rpcmethod`` registers it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.completion import PENDING, Reply, Waiter
from ..core.errors import CustomMsgError
from ..core.validate import (
    check_exactly_one,
    optional,
    parse_message_name,
    parse_method,
    parse_page,
    parse_peer_filter,
    parse_seconds,
    parse_type_filter,
    parse_uint,
)

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def list_messages(
    runtime: Runtime, reply: Reply, peer_id: Any = None, type: Any = None,
    index: Any = None, start: Any = None, limit: Any = None, method: Any = None, name: Any = None,
) -> Any:
    """List stored messages, oldest first; paginate with {index}=created, {start} and {limit}.

    {method} keeps the bLIP-50 requests and notifications of that method, {name} the messages of
    that registered protocol message. Returns {messages}: each with created_index, peer_id, type,
    payload (hex), length, received_at, text; for bLIP-50 messages kind, method and the decoded
    json; for a registered protocol's messages name, and fields or decode_error.
    """
    page = parse_page(index, start, limit)
    rpc_method = optional(method, parse_method)
    message_name = optional(name, parse_message_name)
    inbox = runtime.store.inbox
    messages = inbox.list_messages(
        parse_peer_filter(peer_id), parse_type_filter(type), page, rpc_method, message_name
    )
    return {"messages": [m.to_json() for m in messages]}


def wait_message(
    runtime: Runtime, reply: Reply, nextvalue: Any, peer_id: Any = None, type: Any = None,
    timeout: Any = None, method: Any = None, name: Any = None,
) -> Any:
    """Wait for the first stored message with created_index >= {nextvalue} matching {peer_id}, {type}, {method}, {name}.

    Returns that message at once if it is stored, else when it arrives; with {timeout}
    (seconds), fails when none comes in time.
    """
    start = parse_uint("nextvalue", nextvalue)
    peer, msg_type = parse_peer_filter(peer_id), parse_type_filter(type)
    rpc_method = optional(method, parse_method)
    message_name = optional(name, parse_message_name)
    seconds = optional(timeout, lambda v: parse_seconds(v, "timeout", allow_zero=True))
    found = runtime.store.inbox.first_message(start, peer, msg_type, rpc_method, message_name)
    if found is not None:
        return found.to_json()
    if seconds == 0:
        raise _wait_timeout(start, 0)
    runtime.waiters.add(
        Waiter(
            min_index=start,
            on_message=lambda m: reply.result(m.to_json()),
            on_fail=lambda reason: reply.error(_wait_timeout(start, seconds or 0)),
            peer_id=peer,
            type=msg_type,
            method=rpc_method,
            name=message_name,
            deadline=None if seconds is None else runtime.waiters.clock() + seconds,
        )
    )
    return PENDING


def _wait_timeout(start: int, seconds: float) -> CustomMsgError:
    return CustomMsgError(
        errors.WAIT_TIMEOUT,
        f"no message with created_index >= {start} arrived within {seconds:g} seconds",
        {"nextvalue": start, "timeout": seconds},
    )


def delete_messages(runtime: Runtime, reply: Reply, created_index: Any = None, up_to: Any = None) -> Any:
    """Delete one stored message ({created_index}), or every message up to and including {up_to}.

    Returns {deleted}, the number of messages deleted.
    """
    check_exactly_one(created_index=created_index, up_to=up_to)
    inbox = runtime.store.inbox
    if created_index is not None:
        index = parse_uint("created_index", created_index)
        if inbox.delete_messages(created_index=index) == 0:
            raise CustomMsgError(
                errors.MESSAGE_NOT_FOUND, f"no stored message with created_index {index}", {"created_index": index}
            )
        return {"deleted": 1}
    return {"deleted": inbox.delete_messages(up_to=parse_uint("up_to", up_to))}


def stats(runtime: Runtime, reply: Reply, peer_id: Any = None, type: Any = None) -> Any:
    """Count messages sent, received, stored and dropped, per peer and type: this session and in total.

    Returns {session}, {total} and {peers} (per peer and type; each in messages and, under bytes,
    in bytes), with inbox_count, malformed (payloads too short to have a type), waiting (parked
    waits and requests), global_budget (what the node's receive budget holds, when it is on) and
    bounds (each bound on what peers can make the plugin keep: max, now, and how often it was passed).
    """
    report = runtime.counters.report(parse_peer_filter(peer_id), parse_type_filter(type))
    result = {
        "started_at": round(runtime.started_at, 3),
        "inbox_count": runtime.store.inbox.count,
        "malformed": runtime.receiver.malformed,
        "waiting": len(runtime.waiters) - len(runtime.lsps.calls),  # parked waits and requests
        **report,
        "bounds": runtime.bounds(),
    }
    global_budget = runtime.receiver.limiter.global_state()
    if global_budget is not None:
        result["global_budget"] = global_budget
    return result


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-list": list_messages,
    "custommsg-wait": wait_message,
    "custommsg-delete": delete_messages,
    "custommsg-stats": stats,
}
