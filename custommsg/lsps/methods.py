"""JSON-RPC over custom messages (bLIP-50)'s RPC methods: ``custommsg-lsps-call`` and ``custommsg-lsps-respond``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply``
are the method's, the docstring is its ``help``; the bookkeeping is ``endpoint``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.blip50 import LSPS0_MESSAGE_TYPE
from ..core.completion import PENDING, Reply
from ..core.validate import (
    check_not_self,
    check_reply_type,
    parse_json_object,
    parse_method,
    parse_node_id,
    parse_request_id,
    parse_rpc_answer,
    parse_seconds,
)
from .endpoint import DEFAULT_CALL_TIMEOUT

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def lsps_call(
    runtime: Runtime, reply: Reply, peer_id: Any, method: Any, params: Any = None, timeout: Any = None,
) -> Any:
    """Call {method} on a peer over bLIP-50 (LSPS0: JSON-RPC in custom messages of type 37913).

    {params} is a JSON object (default {}); fails after {timeout} seconds (default 300).
    Returns the peer's result object; a JSON-RPC error from the peer fails with 3350 and
    its code, message (sanitised) and data.
    """
    peer = parse_node_id(peer_id, "peer_id")
    check_not_self(peer, runtime.own_id, "peer_id")
    rpc_method = parse_method(method)
    rpc_params = parse_json_object(params, "params")
    seconds = DEFAULT_CALL_TIMEOUT if timeout is None else parse_seconds(timeout, "timeout")
    check_reply_type(LSPS0_MESSAGE_TYPE, runtime.config.types)
    runtime.lsps.call(
        peer, rpc_method, rpc_params, seconds,
        on_result=lambda result: reply.result(result if isinstance(result, dict) else {"result": result}),
        on_error=reply.error,
        on_crash=reply.crash,
    )
    return PENDING


def lsps_respond(
    runtime: Runtime, reply: Reply, peer_id: Any, id: Any, result: Any = None, error: Any = None,
) -> Any:
    """Answer a peer's stored bLIP-50 request {id} with a {result}, or an {error} object (code, message, data).

    Each request is answered once. Returns the {peer_id}, {id}, the request's {created_index}
    and the answer's {length}.
    """
    peer = parse_node_id(peer_id, "peer_id")
    rpc_id = parse_request_id(id)
    rpc_result, rpc_error = parse_rpc_answer(result, error)
    runtime.lsps.respond(
        peer, rpc_id, rpc_result, rpc_error,
        on_sent=reply.result,
        on_error=reply.error,
        on_crash=reply.crash,
    )
    return PENDING


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-lsps-call": lsps_call,
    "custommsg-lsps-respond": lsps_respond,
}
