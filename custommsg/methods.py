"""The RPC surface: every ``custommsg-*`` method, its parameters and its help.

One function per method. Its parameters are the method's, in order (``service``
and ``request`` are not: :func:`rpc_method` binds the first, pyln the second); its
docstring is what ``lightning-cli help`` prints. A function checks its input with
``validate``, raises :class:`CustomMsgError` to fail, and returns the result, or
``PENDING`` when it will answer later (a send in flight, a parked wait);
``rpcmethod`` turns it into what pyln registers. :data:`METHODS` is the whole
surface: the methods of bLIP-50 (``lspsmethods``) and of acknowledged delivery
(``ackmethods``) are listed here with the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .ackmethods import outbox_wait, peers, send_acked
from .errors import CustomMsgError, PeerError, TransientError
from .lspsmethods import lsps_call, lsps_respond
from .pyln_seam import PENDING, Request, answer, answer_error
from .rpcmethod import crash_answer
from .schema import StoredMessage
from .service import CustomMsgService
from .validate import (
    DEFAULT_REQUEST_TIMEOUT,
    check_exactly_one,
    check_reply_type,
    check_send_request,
    decode_hex,
    optional,
    parse_bool,
    parse_method,
    parse_outbox_status,
    parse_page,
    parse_peer_filter,
    parse_seconds,
    parse_ttl,
    parse_type_filter,
    parse_uint,
)
from .waiters import Waiter
from .wire import Message


def send(
    service: CustomMsgService, request: Request, node_id: Any, msg: Any,
    allow_even: Any = False, queue: Any = False, ttl: Any = None, ack: Any = False,
) -> Any:
    """Send a custom message to a peer, after checking everything lightningd does not.

    {msg} is hex: a 2-byte big-endian type then the body, as for sendcustommsg.
    With {queue}, a message to a peer that is not connected waits in the outbox
    until it connects (for at most {ttl} seconds, if given). With {ack} (both peers run
    custommsg), it goes through the outbox until the peer's plugin acknowledges it has
    stored it (outbox status delivered; see custommsg-outbox-wait), across disconnects and restarts.
    Returns {status} (sent or queued), {peer_id}, {type}, {length}, and the outbox {id} when queued or with {ack}.
    """
    peer_id, message = check_send_request(node_id, msg, service.own_id, parse_bool(allow_even, "allow_even"))
    queued = parse_bool(queue, "queue")
    acked = parse_bool(ack, "ack")
    ttl_seconds = parse_ttl(ttl, queued or acked)
    if acked:
        return send_acked(service, request, peer_id, message, ttl_seconds, crash_answer(request))
    outbox = service.outbox
    if queued and (peer_id not in service.connected or outbox.has_queued(peer_id)):
        # Behind the messages already waiting, so the peer gets them in order.
        entry = outbox.enqueue(peer_id, message, ttl_seconds)
        service.queue_delivery(peer_id)
        return _sent(message, peer_id, "queued", entry.id)

    def done(failure: CustomMsgError | None) -> None:
        if failure is None:
            answer(request, _sent(message, peer_id, "sent"))
        elif isinstance(failure, TransientError) and queued:
            # It went away under us (or lightningd did): keep the message for later.
            entry = outbox.enqueue(peer_id, message, ttl_seconds)
            answer(request, _sent(message, peer_id, "queued", entry.id))
        else:
            answer_error(request, failure)

    service.send_now(peer_id, message, done, crash_answer(request))
    return PENDING


def _sent(message: Message, peer_id: str, status: str, outbox_id: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"status": status, "peer_id": peer_id, "type": message.type, "length": len(message)}
    if outbox_id is not None:
        result["id"] = outbox_id
    return result


def list_messages(
    service: CustomMsgService, request: Request, peer_id: Any = None, type: Any = None,
    index: Any = None, start: Any = None, limit: Any = None, method: Any = None,
) -> Any:
    """List stored messages, oldest first; paginate with {index}=created, {start} and {limit}.

    {method} keeps the bLIP-50 requests and notifications of that method. Returns {messages}:
    each with created_index, peer_id, type, payload (hex), length, received_at, text, and for
    bLIP-50 messages kind, method and the decoded json.
    """
    page = parse_page(index, start, limit)
    rpc_method = optional(method, parse_method)
    messages = service.store.list_messages(parse_peer_filter(peer_id), parse_type_filter(type), page, rpc_method)
    return {"messages": [m.to_json() for m in messages]}


def wait_message(
    service: CustomMsgService, request: Request, nextvalue: Any, peer_id: Any = None, type: Any = None,
    timeout: Any = None, method: Any = None,
) -> Any:
    """Wait for the first stored message with created_index >= {nextvalue} (matching {peer_id}, {type}, {method}).

    Returns that message at once if it is stored, else when it arrives; with {timeout}
    (seconds), fails when none comes in time.
    """
    start = parse_uint("nextvalue", nextvalue)
    peer, msg_type = parse_peer_filter(peer_id), parse_type_filter(type)
    rpc_method = optional(method, parse_method)
    seconds = optional(timeout, lambda v: parse_seconds(v, "timeout", allow_zero=True))
    found = service.store.first_message(start, peer, msg_type, rpc_method)
    if found is not None:
        return found.to_json()
    if seconds == 0:
        raise _wait_timeout(start, 0)
    service.waiters.add(
        Waiter(
            min_index=start,
            on_message=lambda m: answer(request, m.to_json()),
            on_fail=lambda reason: answer_error(request, _wait_timeout(start, seconds or 0)),
            peer_id=peer,
            type=msg_type,
            method=rpc_method,
            deadline=None if seconds is None else service.waiters.clock() + seconds,
        )
    )
    return PENDING


def _wait_timeout(start: int, seconds: float) -> CustomMsgError:
    return CustomMsgError(
        errors.WAIT_TIMEOUT,
        f"no message with created_index >= {start} arrived within {seconds:g} seconds",
        {"nextvalue": start, "timeout": seconds},
    )


def delete_messages(service: CustomMsgService, request: Request, created_index: Any = None, up_to: Any = None) -> Any:
    """Delete one stored message ({created_index}), or every message up to and including {up_to}.

    Returns {deleted}, the number of messages deleted.
    """
    check_exactly_one(created_index=created_index, up_to=up_to)
    if created_index is not None:
        index = parse_uint("created_index", created_index)
        if service.store.delete_messages(created_index=index) == 0:
            raise CustomMsgError(
                errors.MESSAGE_NOT_FOUND, f"no stored message with created_index {index}", {"created_index": index}
            )
        return {"deleted": 1}
    return {"deleted": service.store.delete_messages(up_to=parse_uint("up_to", up_to))}


def stats(service: CustomMsgService, request: Request, peer_id: Any = None, type: Any = None) -> Any:
    """Count messages sent, received, stored and dropped, per peer and type: this session and in total.

    Returns {session}, {total} and {peers} (per peer and type), with inbox_count, malformed
    (payloads too short to have a type) and waiting (parked waits and requests).
    """
    report = service.counters.report(parse_peer_filter(peer_id), parse_type_filter(type))
    receiver = service.receiver
    return {
        "started_at": round(service.started_at, 3),
        "inbox_count": service.store.inbox_count,
        "malformed": receiver.malformed if receiver is not None else 0,
        "waiting": len(service.waiters),
        **report,
    }


def list_outbox(
    service: CustomMsgService, request: Request, peer_id: Any = None, status: Any = None,
    index: Any = None, start: Any = None, limit: Any = None,
) -> Any:
    """List outbox entries (queued, sending, sent, delivered, expired, cancelled, failed); paginate like listforwards.

    Returns {outbox}: each entry with id, peer_id, type, length, status and its times; with ack, its seq.
    """
    page = parse_page(index, start, limit, ("created", "updated"))
    peer = parse_peer_filter(peer_id)
    entries = service.store.list_outbox(peer, parse_outbox_status(status), page)
    return {"outbox": [e.to_json() for e in entries]}


def cancel(service: CustomMsgService, request: Request, id: Any) -> Any:
    """Cancel a queued outbox message by its {id}; returns its entry, now cancelled.

    A message sent with ack cannot be cancelled once handed to lightningd (the peer may have stored it).
    """
    return service.outbox.cancel(parse_uint("id", id)).to_json()


def request_reply(
    service: CustomMsgService, request: Request, node_id: Any, msg: Any, reply_type: Any,
    reply_prefix: Any = None, timeout: Any = None, allow_even: Any = False,
) -> Any:
    """Send {msg} and return the peer's first reply of type {reply_type} whose body starts with {reply_prefix}.

    Returns {request} (what was sent) and {reply} (the inbox entry). Fails after
    {timeout} seconds (default 60), or at once if the peer disconnects.
    """
    peer_id, message = check_send_request(node_id, msg, service.own_id, parse_bool(allow_even, "allow_even"))
    wanted = check_reply_type(reply_type, service.config.types)
    prefix = b"" if reply_prefix is None else decode_hex(reply_prefix, "reply_prefix")
    seconds = DEFAULT_REQUEST_TIMEOUT if timeout is None else parse_seconds(timeout, "timeout")
    sent = {"peer_id": peer_id, "type": message.type, "length": len(message)}

    def on_reply(reply: StoredMessage) -> None:
        answer(request, {"request": sent, "reply": reply.to_json()})

    def on_fail(reason: str) -> None:
        if reason == "timeout":
            error = CustomMsgError(
                errors.REQUEST_TIMEOUT,
                f"no reply of type {wanted} from {peer_id} within {seconds:g} seconds",
                {"peer_id": peer_id, "reply_type": wanted, "timeout": seconds},
            )
        else:
            error = PeerError(
                errors.REQUEST_PEER_DISCONNECTED,
                f"peer {peer_id} disconnected before replying",
                {"peer_id": peer_id, "reply_type": wanted},
            )
        answer_error(request, error)

    # Parked before the send, from the main thread, which also runs the hook:
    # no reply can slip in between the send and the wait.
    waiter = service.waiters.add(
        Waiter(
            min_index=service.store.last_index() + 1,
            on_message=on_reply,
            on_fail=on_fail,
            peer_id=peer_id,
            type=wanted,
            body_prefix=prefix,
            deadline=service.waiters.clock() + seconds,
            exclusive=True,
        )
    )

    def after_send(failure: CustomMsgError | None) -> None:
        if failure is not None and service.waiters.remove(waiter):
            answer_error(request, failure)

    service.send_now(peer_id, message, after_send, crash_answer(request))
    return PENDING


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-send": send,
    "custommsg-list": list_messages,
    "custommsg-wait": wait_message,
    "custommsg-delete": delete_messages,
    "custommsg-stats": stats,
    "custommsg-outbox": list_outbox,
    "custommsg-cancel": cancel,
    "custommsg-request": request_reply,
    "custommsg-lsps-call": lsps_call,
    "custommsg-lsps-respond": lsps_respond,
    "custommsg-outbox-wait": outbox_wait,
    "custommsg-peers": peers,
}
