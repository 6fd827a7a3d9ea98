"""How a method function becomes a pyln RPC method: ``service`` bound, failures answered with our codes.

The functions in ``methods``, ``lspsmethods`` and ``ackmethods`` raise
:class:`CustomMsgError` or return a result (or ``PENDING``); :func:`rpc_method` turns that
into pyln's answer, and a bug into an error answer (and a log line) instead of a
lost request.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from . import errors
from .errors import CustomMsgError
from .pyln_seam import PENDING, Request, answer, answer_error
from .service import CustomMsgService


def bug(request: Request, exc: Exception) -> CustomMsgError:
    return CustomMsgError(errors.JSONRPC_INVALID_REQUEST, f"Error while processing {request.method}: {exc}")


def crash_answer(request: Request) -> Callable[[Exception], None]:
    """What answers ``request`` if the sender thread's job for it fails on a bug."""
    return lambda exc: answer_error(request, bug(request, exc))


def rpc_method(service: CustomMsgService, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as pyln registers it: ``service`` bound, errors answered with our codes and data.

    Every method is "background" for pyln, and answered here at once unless it
    returns PENDING (then it answers later, from another thread or a waiter).
    """
    signature = inspect.signature(functools.partial(func, service))

    @functools.wraps(func)
    def handler(*args: Any, **kwargs: Any) -> None:
        request = signature.bind(*args, **kwargs).arguments["request"]
        try:
            if not service.ready:
                raise CustomMsgError(errors.STORAGE_ERROR, "custommsg is not initialized")
            result = func(service, *args, **kwargs)
        except CustomMsgError as exc:
            answer_error(request, exc)
        except Exception as exc:  # a bug: say so, and keep serving
            service.plugin.log(f"{request.method} failed: {traceback.format_exc()}", level="warn")
            answer_error(request, bug(request, exc))
        else:
            if result is not PENDING:
                answer(request, result)

    # pyln binds parameters, and writes the usage, from the signature.
    handler.__signature__ = signature  # type: ignore[attr-defined]
    return handler
