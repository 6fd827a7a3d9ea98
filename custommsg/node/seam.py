"""Every private part of pyln-client that custommsg uses, and the only module that uses any.

pyln-client's ``Plugin`` reads lightningd's pipe in a blocking loop, answers a
request through ``set_result``/``set_exception``, and binds parameters itself.
custommsg needs three things it offers no public way to do: a main loop that also
waits on an RPC socket (so a send can be in flight while our own ``rpc_command``
guard is asked about it), answers that carry an error's ``data`` without a stack
trace formatted for each one, and the guard's call parsed by a decoder that marks
JSON escapes. Each private name, in ``contrib/pyln-client/pyln/client/plugin.py``:

=========================================  ===================================================
pyln-client                                why custommsg needs it
=========================================  ===================================================
``Plugin.run`` (overridden)                our loop (``eventloop``) replaces the stdin-only one
``Plugin._exec_func`` (overridden)         it binds parameters with ``inspect``; a TypeError
                                           out of it is a missing, unknown or extra one, which
                                           lightningd answers with -32602 (pyln: -32600 and a
                                           logged traceback)
``Plugin._parse_request``                  turns a decoded request into a ``Request``, params
                                           untouched: the guard's escape marks must survive
``Plugin._dispatch_request``,              run a parsed request or notification, for the
``Plugin._dispatch_notification``          guard's call decoded by ``guard.loads_marking_escapes``
``Plugin._multi_dispatch``                 parse and run every other request (the last list
                                           element is an unparsed remainder)
``Plugin._write_locked``,                  write one answer to lightningd; every writer to the
``Plugin.write_lock``, ``Plugin.stdout``   pipe holds the lock
``Plugin.stdin``                           the pipe our loop waits on
``Request._write_result``,                 answer a request once, with ``data`` in its error and
``Request.state``, ``Request.termination_tb``  no stack capture (``set_result`` formats one per
``RequestState``                           answer, a tenth of the cost of a send)
``pyln.client.plugin.Request``,            not exported by ``pyln.client``
``RequestState``
=========================================  ===================================================

:func:`missing_seams` checks that each is still there with the shape relied on; a unit
test runs it, so a pyln-client that changed one fails naming it. ``pyproject.toml``
bounds pyln-client to the releases the tests pass on.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from pyln.client import Plugin
from pyln.client.plugin import Request, RequestState

from ..core import strictjson
from ..core.errors import JSONRPC_INTERNAL_ERROR, CustomMsgError

__all__ = ["Request", "SeamPlugin", "answer", "answer_error", "missing_seams"]


class SeamPlugin(Plugin):  # type: ignore[misc]  # pyln-client ships no type hints
    """pyln's Plugin, with its read loop and its parameter-binding errors handed to a subclass."""

    def run(self) -> None:
        if os.environ.get("LIGHTNINGD_PLUGIN") != "1":
            self.print_usage()  # run by hand: say what this is, as pyln does
            return
        self.serve(self.stdin.fileno())

    def serve(self, stdin: int) -> None:
        """Read requests from lightningd's pipe (file descriptor ``stdin``) until it closes."""
        raise NotImplementedError

    def on_unbound_params(self, request: Request, exc: TypeError) -> bool:
        """The parameters did not fit ``request``'s method; True if this answered it."""
        return False

    def _exec_func(self, func: Callable[..., Any], request: Request) -> Any:
        try:
            return super()._exec_func(func, request)
        except TypeError as exc:
            if self.on_unbound_params(request, exc):
                return None
            raise

    def dispatch_decoded(self, message: dict[str, Any]) -> None:
        """Run one request (or notification) that is already decoded."""
        request = self._parse_request(message)
        if request.id is not None:
            self._dispatch_request(request)
        else:
            self._dispatch_notification(request)

    def dispatch_raw(self, message: bytes) -> None:
        """Decode and run one request (or notification), as pyln's own loop does."""
        self._multi_dispatch([message, b""])

    def write_json(self, obj: Any) -> None:
        self._write_locked(obj)

    def _write_locked(self, obj: Any) -> None:
        """Every answer, notification and log line pyln or we write: through ``strictjson.dumps``, so
        nothing lightningd's parser refuses can reach the pipe (it would kill the plugin). A value that
        cannot be written (a bug: values from peers are checked at the door) becomes an error answer,
        or, for a notification, a log line saying what was dropped."""
        try:
            data = strictjson.dumps(obj)
        except (ValueError, TypeError, RecursionError) as exc:
            data = strictjson.dumps(_unwritable(obj, exc))
        self.write_raw(data + b"\n\n")

    def write_raw(self, data: bytes) -> None:
        """Write bytes that are already one framed JSON object."""
        with self.write_lock:
            self.stdout.buffer.write(data)
            self.stdout.flush()


def _unwritable(obj: Any, exc: BaseException) -> dict[str, Any]:
    what = f"custommsg: cannot write JSON that lightningd reads ({type(exc).__name__}: {exc})"
    request_id = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(request_id, str | int) and not isinstance(request_id, bool):
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": JSONRPC_INTERNAL_ERROR, "message": what}}
    method = obj.get("method") if isinstance(obj, dict) else None
    dropped = f"{what}; dropped the {method!r} notification" if isinstance(method, str) else what
    return {"jsonrpc": "2.0", "method": "log", "params": {"level": "broken", "message": repr(dropped)[1:-1]}}


def _finish(request: Request, state: RequestState, body: dict[str, Any]) -> None:
    if request.state != RequestState.PENDING:
        return  # one answer per request, as pyln enforces it
    request._write_result({"jsonrpc": "2.0", "id": request.id, **body})
    request.state = state
    # pyln's set_result asserts a request that is no longer pending says where it ended.
    request.termination_tb = "(answered by custommsg)"


def answer(request: Request, result: Any) -> None:
    _finish(request, RequestState.FINISHED, {"result": result})


def answer_error(request: Request, error: CustomMsgError) -> None:
    """Fail ``request`` with ``error``'s code, message and data."""
    _finish(request, RequestState.FAILED, {"error": error.to_json()})


# -- the check ------------------------------------------------------------------


def _parameters(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def _instance_attributes() -> list[str]:
    plugin = Plugin(autopatch=False)
    missing = [f"Plugin().{name}" for name in ("stdin", "stdout", "write_lock") if not hasattr(plugin, name)]

    class Marked(str):
        pass

    request = plugin._parse_request({"id": 1, "method": "m", "params": {"msg": Marked("8001")}})
    if type(request.params.get("msg")) is not Marked:
        missing.append("Plugin._parse_request keeps param values as given")
    for name in ("state", "termination_tb", "id", "method"):
        if not hasattr(request, name):
            missing.append(f"Request().{name}")
    return missing


_SIGNATURES: tuple[tuple[type, str, list[str]], ...] = (
    (Plugin, "run", ["self"]),
    (Plugin, "print_usage", ["self"]),
    (Plugin, "_exec_func", ["self", "func", "request"]),
    (Plugin, "_parse_request", ["self", "jsrequest"]),
    (Plugin, "_dispatch_request", ["self", "request"]),
    (Plugin, "_dispatch_notification", ["self", "request"]),
    (Plugin, "_multi_dispatch", ["self", "msgs"]),
    (Plugin, "_write_locked", ["self", "obj"]),
    (Request, "_write_result", ["self", "result"]),
)


def missing_seams() -> list[str]:
    """The private parts of pyln-client listed above that are gone or changed shape; [] when all is well."""
    missing = [
        f"{owner.__name__}.{name}({', '.join(expected)})"
        for owner, name, expected in _SIGNATURES
        if not callable(getattr(owner, name, None)) or _parameters(getattr(owner, name)) != expected
    ]
    missing += [f"RequestState.{s}" for s in ("PENDING", "FINISHED", "FAILED") if not hasattr(RequestState, s)]
    return missing + _instance_attributes()
