"""Sending: ``custommsg-send`` (now, queued in the outbox, or acknowledged) and ``custommsg-request``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply``
are the method's, the docstring is its ``help``. Every check lightningd does not make
is ``core.validate``'s; the outbox and acknowledged delivery do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..acked.methods import send_acked
from ..core import errors
from ..core.completion import PENDING, Reply, Waiter
from ..core.errors import INVALID_PARAMETER, CustomMsgError, PeerError, TransientError, ValidationError
from ..core.records import StoredMessage
from ..core.validate import (
    DEFAULT_REQUEST_TIMEOUT,
    check_not_self,
    check_reply_type,
    check_send_request,
    decode_hex,
    parse_bool,
    parse_node_id,
    parse_seconds,
    parse_ttl,
)
from ..core.wire import Message

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def send(
    runtime: Runtime, reply: Reply, node_id: Any, msg: Any = None,
    allow_even: Any = False, queue: Any = False, ttl: Any = None, ack: Any = False,
    name: Any = None, fields: Any = None,
) -> Any:
    """Send a custom message to a peer, after checking everything lightningd does not.

    {msg} is hex: a 2-byte big-endian type then the body, as for sendcustommsg. Or, instead of
    {msg}, a registered protocol's message {name} and its {fields} (custommsg-protocols).
    With {queue}, a message to a peer that is not connected waits in the outbox
    until it connects (for at most {ttl} seconds, if given). With {ack} (both peers run
    custommsg), it goes through the outbox until the peer's plugin acknowledges it has
    stored it (outbox status delivered; see custommsg-outbox-wait), across disconnects and restarts.
    Returns {status} (sent or queued), {peer_id}, {type}, {length}, and the outbox {id} when queued or with {ack}.
    """
    peer_id, message = _checked_message(runtime, node_id, msg, allow_even, name, fields)
    queued = parse_bool(queue, "queue")
    acked = parse_bool(ack, "ack")
    ttl_seconds = parse_ttl(ttl, queued or acked)
    if acked:
        return send_acked(runtime, reply, peer_id, message, ttl_seconds)
    outbox = runtime.outbox
    if queued and (peer_id not in runtime.connected or outbox.has_queued(peer_id)
                   or not runtime.spend_if_room(peer_id, len(message))):
        # Behind the messages already waiting, so the peer gets them in order; and a message over the
        # peer's send budget waits in the outbox until the budget has room (the sweep tries each second).
        entry = outbox.enqueue(peer_id, message, ttl_seconds)
        runtime.queue_delivery(peer_id)
        return _sent(message, peer_id, "queued", entry.id)
    if not queued:
        runtime.spend(peer_id, len(message))  # OverBudget, with when it would fit

    def done(failure: CustomMsgError | None) -> None:
        if failure is None:
            reply.result(_sent(message, peer_id, "sent"))
            return
        runtime.refund(peer_id, len(message))  # it did not go
        if isinstance(failure, TransientError) and queued:
            # It went away under us (or lightningd did): keep the message for later.
            entry = outbox.enqueue(peer_id, message, ttl_seconds)
            reply.result(_sent(message, peer_id, "queued", entry.id))
        else:
            reply.error(failure)

    runtime.send_now(peer_id, message, done, reply.crash)
    return PENDING


def _checked_message(
    runtime: Runtime, node_id: Any, msg: Any, allow_even: Any, name: Any, fields: Any
) -> tuple[str, Message]:
    """The peer and the message, from {msg} or from a registered message's {name} and {fields}."""
    even = parse_bool(allow_even, "allow_even")
    if name is None:
        if fields is not None:
            raise ValidationError(
                INVALID_PARAMETER, "fields goes with name (a registered message)", {"param": "fields"}
            )
        if msg is None:
            raise ValidationError(INVALID_PARAMETER, "give msg (hex), or name and fields", {"param": "msg"})
        return check_send_request(node_id, msg, runtime.own_id, even)
    if msg is not None:
        raise ValidationError(INVALID_PARAMETER, "give msg or name, not both", {"param": "msg"})
    check_not_self(parse_node_id(node_id), runtime.own_id)  # the node id is checked first, as with msg
    raw = runtime.protocols.encode(name, fields)
    # A registered even type came from the protocols folder, so lightningd was told of it: no allow_even.
    return check_send_request(node_id, raw.hex(), runtime.own_id, allow_even=True)


def _sent(message: Message, peer_id: str, status: str, outbox_id: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"status": status, "peer_id": peer_id, "type": message.type, "length": len(message)}
    if outbox_id is not None:
        result["id"] = outbox_id
    return result


def request_reply(
    runtime: Runtime, reply: Reply, node_id: Any, msg: Any = None, reply_type: Any = None,
    reply_prefix: Any = None, timeout: Any = None, allow_even: Any = False, name: Any = None, fields: Any = None,
) -> Any:
    """Send {msg} and return the peer's first reply of type {reply_type} whose body starts with {reply_prefix}.

    Instead of {msg}, a registered message's {name} and {fields}; {reply_type} may then be a
    registered message's name too. Returns {request} (what was sent) and {reply} (the inbox
    entry). Fails after {timeout} seconds (default 60), or at once if the peer disconnects.
    """
    peer_id, message = _checked_message(runtime, node_id, msg, allow_even, name, fields)
    wanted = _reply_type(runtime, reply_type)
    prefix = b"" if reply_prefix is None else decode_hex(reply_prefix, "reply_prefix")
    seconds = DEFAULT_REQUEST_TIMEOUT if timeout is None else parse_seconds(timeout, "timeout")
    sent = {"peer_id": peer_id, "type": message.type, "length": len(message)}

    def on_reply(stored: StoredMessage) -> None:
        reply.result({"request": sent, "reply": stored.to_json()})

    def on_fail(reason: str) -> None:
        if reason == "timeout":
            error: CustomMsgError = CustomMsgError(
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
        reply.error(error)

    runtime.spend(peer_id, len(message))  # OverBudget, with when it would fit
    # Parked before the send, from the main thread, which also runs the hook:
    # no reply can slip in between the send and the wait.
    try:
        waiter = runtime.waiters.add(Waiter(
            min_index=runtime.store.inbox.last_index() + 1,
            on_message=on_reply,
            on_fail=on_fail,
            peer_id=peer_id,
            type=wanted,
            body_prefix=prefix,
            deadline=runtime.waiters.clock() + seconds,
            exclusive=True,
        ))
    except CustomMsgError:  # too many waiting: nothing goes
        runtime.refund(peer_id, len(message))
        raise

    def after_send(failure: CustomMsgError | None) -> None:
        if failure is None:
            return
        runtime.refund(peer_id, len(message))  # it did not go
        if runtime.waiters.remove(waiter):
            reply.error(failure)

    runtime.send_now(peer_id, message, after_send, reply.crash)
    return PENDING


def _reply_type(runtime: Runtime, reply_type: Any) -> int:
    """A stored type, or a registered message's name or type (stored whatever custommsg-type says)."""
    protocols = runtime.protocols
    if isinstance(reply_type, str) and reply_type in protocols.by_name:
        return protocols.by_name[reply_type].type
    if isinstance(reply_type, int) and not isinstance(reply_type, bool) and reply_type in protocols.by_type:
        return reply_type
    if reply_type is None:
        raise ValidationError(INVALID_PARAMETER, "reply_type is required", {"param": "reply_type"})
    return check_reply_type(reply_type, runtime.config.types)


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-send": send,
    "custommsg-request": request_reply,
}
