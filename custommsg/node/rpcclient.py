"""JSON-RPC connections to lightningd that stay open between calls, and what its errors mean to us.

pyln's ``LightningRpc`` opens a new unix socket for every call (its own FIXME in
``contrib/pyln-client/pyln/client/lightning.py``); on the send path that connect is
a large part of the cost. lightningd serves any number of requests on one
connection and ends each answer with a blank line, so one long-lived socket per
thread is enough: :class:`PersistentRpc` blocks (the sender thread's), and
:class:`AsyncRpc` never does (the main loop's). Neither is thread-safe.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from ..core import errors, strictjson
from ..core.completion import call_safely
from ..core.errors import CustomMsgError, PeerError, TransientError, ValidationError

# lightningd ends every JSON object it writes, on its RPC socket and on a plugin's
# stdin, with a blank line (lightningd/jsonrpc.c, lightningd/plugin.c).
FRAME_END = b"\n\n"


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """``buffer`` -> (the complete, non-blank JSON texts in it, the incomplete rest)."""
    *complete, rest = buffer.split(FRAME_END)
    return [frame for frame in complete if frame.strip()], rest


def connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if len(os.fsencode(path)) < 100:
        sock.connect(path)
        return sock
    # A unix socket path is limited to ~107 bytes; reach a deeper one through its
    # directory's descriptor, as pyln's UnixSocket does.
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
    finally:
        os.close(directory)
    return sock


class LightningdError(Exception):
    """lightningd answered a call with a JSON-RPC error (``error`` is that object)."""

    def __init__(self, method: str, error: dict[str, Any]):
        super().__init__(f"{method}: {error.get('message')}")
        self.method = method
        self.error = error


def native_error(error: dict[str, Any], peer_id: str) -> CustomMsgError:
    """Map an error of native sendcustommsg (lightningd/connect_control.c) to our codes."""
    message = str(error.get("message", ""))
    data = {"peer_id": peer_id, "native": error}
    if "No such peer" in message:
        return PeerError(errors.PEER_UNKNOWN, f"unknown peer {peer_id}", data)
    if "not connected" in message:
        return PeerError(errors.PEER_NOT_CONNECTED, f"peer {peer_id} is not connected", data)
    if "Cannot send messages of type" in message:
        return ValidationError(errors.TYPE_INTERNAL, message, data)
    return CustomMsgError(errors.SEND_FAILED, f"sendcustommsg failed: {message}", data)


def unreachable(exc: BaseException) -> TransientError:
    """lightningd could not be asked at all: the same call may work later."""
    return TransientError(errors.SEND_FAILED, f"cannot reach lightningd: {exc}", {"reason": "rpc"})


class PersistentRpc:
    def __init__(self, path: str, id_prefix: str = "custommsg"):
        self.path = path
        self.id_prefix = id_prefix
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        self._buffer = b""
        return connect_unix(self.path)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """One request, one answer; reconnects once if lightningd closed the socket."""
        request_id = f"{self.id_prefix}:{method}#{next(self._ids)}"
        data = strictjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        for attempt in (1, 2):
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(data)
                reply = self._read_reply(request_id)
                break
            except (BrokenPipeError, ConnectionResetError, EOFError):
                self.close()
                if attempt == 2:
                    raise
        if "error" in reply:
            raise LightningdError(method, reply["error"])
        return reply.get("result")

    def _read_reply(self, request_id: str) -> dict[str, Any]:
        assert self._sock is not None
        while True:
            frames, self._buffer = split_frames(self._buffer)
            for position, raw in enumerate(frames):
                obj = json.loads(raw)
                if isinstance(obj, dict) and obj.get("id") == request_id:
                    # Keep whatever came after the answer for the next call.
                    self._buffer = b"".join(f + FRAME_END for f in frames[position + 1 :]) + self._buffer
                    return obj
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise EOFError("lightningd closed the RPC connection")
            self._buffer += chunk


Callback = Callable[[Any, "dict[str, Any] | None"], None]

# Marks the error a callback gets when the connection broke before lightningd answered.
LOST = "connection_lost"


class AsyncRpc:
    """Requests to lightningd whose answers the plugin's own event loop picks up.

    The send path needs this: its ``sendcustommsg`` goes through our own
    ``rpc_command`` guard, which the main loop must answer while the call is in
    flight. Sending from the main loop without blocking it, instead of handing the
    call to a thread and back, saves two thread switches per message. Used only
    from the main loop's thread.
    """

    def __init__(
        self, path: str, id_prefix: str = "custommsg", on_socket_change: Callable[[], None] = lambda: None,
        on_callback_error: Callable[[str], object] = sys.stderr.write,
    ):
        self.path = path
        self.id_prefix = id_prefix
        self._ids = itertools.count(1)
        self.sock: socket.socket | None = None
        self._inbuf = b""
        self._outbuf = bytearray()
        self._pending: dict[str, Callback] = {}
        self.on_socket_change = on_socket_change  # the event loop: watch the socket again
        self.on_callback_error = on_callback_error

    @property
    def wants_write(self) -> bool:
        return bool(self._outbuf)

    def call(self, method: str, params: dict[str, Any], callback: Callback) -> None:
        """Queue a request; ``callback(result, error)`` runs when lightningd answers."""
        if self.sock is None:
            self.sock = connect_unix(self.path)
            self.sock.setblocking(False)
            self._inbuf = b""
            self.on_socket_change()
        request_id = f"{self.id_prefix}:{method}#{next(self._ids)}"
        self._pending[request_id] = callback
        self._outbuf += strictjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        self.flush()

    def flush(self) -> None:
        assert self.sock is not None
        try:
            while self._outbuf:
                sent = self.sock.send(self._outbuf)
                del self._outbuf[:sent]
        except BlockingIOError:
            pass
        except OSError as exc:
            self._lost(exc)

    def on_readable(self) -> None:
        if self.sock is None:  # lost since the loop saw it readable
            return
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not chunk:
            self._lost(EOFError("lightningd closed the RPC connection"))
            return
        frames, self._inbuf = split_frames(self._inbuf + chunk)
        for raw in frames:
            reply = json.loads(raw)
            callback = self._pending.pop(reply.get("id"), None)
            if callback is not None:
                self._run(callback, reply.get("result"), reply.get("error"))

    def _run(self, callback: Callback, result: Any, error: dict[str, Any] | None) -> None:
        # One failing callback must not leave the others' requests unanswered.
        call_safely(callback, result, error, report=self.on_callback_error)

    def _lost(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        sock, self.sock = self.sock, None
        self._outbuf.clear()
        self.on_socket_change()  # the event loop lets go of the socket before it closes
        if sock is not None:
            sock.close()
        for callback in pending.values():
            # Not an answer from lightningd: the call may never have reached it.
            self._run(callback, None, {"message": f"lost the RPC connection to lightningd: {exc}", LOST: True})
