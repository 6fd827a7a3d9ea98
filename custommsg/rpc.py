"""A JSON-RPC connection to lightningd that stays open between calls.

pyln's ``LightningRpc`` opens a new unix socket for every call; on the send path
that connect is a large part of the cost. lightningd serves any number of requests
on one connection and separates its answers with a blank line, so one long-lived
socket per sending thread is enough. Not thread-safe: one instance per thread.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from typing import Any


class RpcError(Exception):
    def __init__(self, method: str, error: dict[str, Any]):
        super().__init__(f"{method}: {error.get('message')}")
        self.method = method
        self.error = error

    @property
    def code(self) -> int | None:
        code = self.error.get("code")
        return code if isinstance(code, int) else None


class PersistentRpc:
    def __init__(self, path: str, id_prefix: str = "custommsg"):
        self.path = path
        self.id_prefix = id_prefix
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buffer = b""
        if len(os.fsencode(self.path)) < 100:
            sock.connect(self.path)
            return sock
        # A unix socket path is limited to ~107 bytes; reach a deeper one through
        # its directory's descriptor, as pyln's UnixSocket does.
        directory = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            sock.connect(f"/proc/self/fd/{directory}/{os.path.basename(self.path)}")
        finally:
            os.close(directory)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """One request, one answer; reconnects once if lightningd closed the socket."""
        request_id = f"{self.id_prefix}:{method}#{next(self._ids)}"
        data = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        ).encode()
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
            raise RpcError(method, reply["error"])
        return reply.get("result")

    def _read_reply(self, request_id: str) -> dict[str, Any]:
        # lightningd ends every message it writes on the socket with "\n\n".
        assert self._sock is not None
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    raise EOFError("lightningd closed the RPC connection")
                self._buffer += chunk
                continue
            raw, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if raw.strip():
                obj = json.loads(raw)
                if isinstance(obj, dict) and obj.get("id") == request_id:
                    return obj
