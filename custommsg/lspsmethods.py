"""The RPC surface of JSON-RPC over custom messages (bLIP-50): ``custommsg-lsps-call``
and ``custommsg-lsps-respond``.

Written as ``methods`` writes its own (``methods.METHODS`` lists these too): each
function's parameters after ``service`` and ``request`` are the method's, its docstring
is its ``help``; the bLIP-50 bookkeeping is ``lsps``'s.
"""

from __future__ import annotations

from typing import Any

from .blip50 import LSPS0_MESSAGE_TYPE
from .lsps import DEFAULT_CALL_TIMEOUT
from .pyln_seam import PENDING, Request, answer, answer_error
from .rpcmethod import crash_answer
from .service import CustomMsgService
from .validate import (
    check_not_self,
    check_reply_type,
    parse_json_object,
    parse_method,
    parse_node_id,
    parse_rpc_answer,
    parse_seconds,
)


def lsps_call(
    service: CustomMsgService, request: Request, peer_id: Any, method: Any, params: Any = None, timeout: Any = None,
) -> Any:
    """Call {method} on a peer over bLIP-50 (LSPS0: JSON-RPC in custom messages of type 37913).

    {params} is a JSON object (default {}); fails after {timeout} seconds (default 300).
    Returns the peer's result object; a JSON-RPC error from the peer fails with 3350 and
    its code, message (sanitised) and data.
    """
    peer = parse_node_id(peer_id, "peer_id")
    check_not_self(peer, service.own_id, "peer_id")
    rpc_method = parse_method(method)
    rpc_params = parse_json_object(params, "params")
    seconds = DEFAULT_CALL_TIMEOUT if timeout is None else parse_seconds(timeout, "timeout")
    check_reply_type(LSPS0_MESSAGE_TYPE, service.config.types)
    service.lsps.call(
        peer, rpc_method, rpc_params, seconds,
        on_result=lambda result: answer(request, result if isinstance(result, dict) else {"result": result}),
        on_error=lambda error: answer_error(request, error),
        on_crash=crash_answer(request),
    )
    return PENDING


def lsps_respond(
    service: CustomMsgService, request: Request, peer_id: Any, id: Any, result: Any = None, error: Any = None,
) -> Any:
    """Answer a peer's stored bLIP-50 request {id} with a {result}, or an {error} object (code, message, data).

    Each request is answered once. Returns the {peer_id}, {id}, the request's {created_index}
    and the answer's {length}.
    """
    peer = parse_node_id(peer_id, "peer_id")
    rpc_id = parse_method(id, "id")
    rpc_result, rpc_error = parse_rpc_answer(result, error)
    service.lsps.respond(
        peer, rpc_id, rpc_result, rpc_error,
        on_sent=lambda sent: answer(request, sent),
        on_error=lambda failure: answer_error(request, failure),
        on_crash=crash_answer(request),
    )
    return PENDING
