"""How a feature's method function becomes a pyln RPC method: the runtime bound, a :class:`Reply`
per call, failures answered with our codes.

A method function (``inbox.methods``, ``outbox.methods``, ``acked.methods``,
``lsps.methods``) takes the :class:`runtime.Runtime` and a ``Reply``, then its parameters;
it raises :class:`CustomMsgError` to fail, returns its result, or returns ``PENDING`` and
answers later through the Reply. :func:`rpc_method` turns it into what pyln registers: a
call before init is answered with NOT_READY, and a bug with an error answer (and a log
line) instead of a lost request.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.completion import PENDING
from ..core.errors import CustomMsgError
from .seam import Request, answer, answer_error

if TYPE_CHECKING:
    from .plugin import Node


def bug(method: str, exc: Exception) -> CustomMsgError:
    return CustomMsgError(errors.JSONRPC_INVALID_REQUEST, f"Error while processing {method}: {exc}")


class PylnReply:
    """A Reply over pyln's Request: one answer, the first."""

    __slots__ = ("request",)

    def __init__(self, request: Request):
        self.request = request

    def result(self, value: Any) -> None:
        answer(self.request, value)

    def error(self, error: CustomMsgError) -> None:
        answer_error(self.request, error)

    def crash(self, exc: Exception) -> None:
        answer_error(self.request, bug(self.request.method, exc))


def rpc_method(node: Node, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as pyln registers it: called with the runtime and a Reply, errors answered with our codes.

    Every method is "background" for pyln, and answered here at once unless it
    returns PENDING (then it answers later, from another thread or a waiter).
    """
    own = list(inspect.signature(func).parameters.values())[2:]  # after (runtime, reply)
    request_param = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.Signature([request_param, *own])

    @functools.wraps(func)
    def handler(request: Request, *args: Any, **kwargs: Any) -> None:
        reply = PylnReply(request)
        try:
            runtime = node.runtime
            if runtime is None:
                raise CustomMsgError(errors.NOT_READY, f"{request.method}: custommsg has not finished starting")
            result = func(runtime, reply, *args, **kwargs)
        except CustomMsgError as exc:
            reply.error(exc)
        except Exception as exc:  # a bug: say so, and keep serving
            node.plugin.log(f"{request.method} failed: {traceback.format_exc()}", level="warn")
            reply.crash(exc)
        else:
            if result is not PENDING:
                reply.result(result)

    # pyln binds parameters, and writes the usage, from the signature.
    handler.__signature__ = signature  # type: ignore[attr-defined]
    return handler
