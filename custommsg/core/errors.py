"""Every error custommsg reports, with the stable numeric code a program can match on.

One exception root, :class:`CustomMsgError`. Each failure class has its own code in
the block 3300-3399, which no Core Lightning error uses (``common/jsonrpc_errors.h``
uses -32700..-1 and 200..2000). The plugin shell turns an error into a JSON-RPC
error object ``{"code", "message", "data"}`` unchanged, so the README's table, this
module and what a caller sees are the same thing.
"""

from __future__ import annotations

import math
from typing import Any

# -- sending: node id and message checks (custommsg-send, the sendcustommsg guard)
INVALID_NODE_ID = 3300
SELF_NODE_ID = 3301
MSG_NOT_HEX = 3302
MSG_TOO_SHORT = 3303
MSG_TOO_LONG = 3304
TYPE_INTERNAL = 3305
TYPE_EVEN = 3306
PEER_UNKNOWN = 3307
PEER_NOT_CONNECTED = 3308
SEND_FAILED = 3309
INVALID_PARAMETER = 3310
NOT_READY = 3311  # a method called before init finished (or after the plugin disabled itself)

# -- receiving: inbox
WAIT_TIMEOUT = 3330
STORAGE_ERROR = 3331
MESSAGE_NOT_FOUND = 3332

# -- reliable delivery and request/reply
OUTBOX_FULL = 3340
OUTBOX_NOT_FOUND = 3341
OUTBOX_NOT_QUEUED = 3342
REQUEST_TIMEOUT = 3343
REQUEST_PEER_DISCONNECTED = 3344
REPLY_TYPE_NOT_RECEIVED = 3345

# -- JSON-RPC over custom messages (bLIP-50, LSPS0 transport)
LSPS_PEER_ERROR = 3350  # the peer answered with a JSON-RPC error (data: its code, message, data)
LSPS_TIMEOUT = 3351
LSPS_PEER_DISCONNECTED = 3352
LSPS_PEER_MUTED = 3353  # the peer sent a malformed bLIP-50 message: no 37913 until it reconnects
LSPS_REQUEST_TOO_LARGE = 3354  # the request does not fit in one message
LSPS_REQUEST_NOT_FOUND = 3355  # no stored request with that (peer, id)
LSPS_ALREADY_ANSWERED = 3356
LSPS_REQUEST_OTHER_PEER = 3357  # a stored request has that id, but another peer sent it

# -- acknowledged delivery between two custommsg nodes
ACK_UNSUPPORTED = 3360  # the peer is connected and does not speak the acknowledged-delivery protocol
DELIVERY_WAIT_TIMEOUT = 3361  # custommsg-outbox-wait: the entry did not settle in time

# -- typed protocols (a protocol described in Core Lightning's wire CSV)
PROTOCOL_SPEC_INVALID = 3370  # the CSV does not parse, or breaks a rule (data: source, line, reason)
PROTOCOL_TYPE_REFUSED = 3371  # a type Core Lightning or this plugin reads itself
PROTOCOL_TYPE_TAKEN = 3372  # a type or message name another registered protocol uses
PROTOCOL_TYPE_EVEN = 3373  # an even type outside the protocols folder read at start
PROTOCOL_UNKNOWN_NAME = 3374  # custommsg-send / -request: no registered message has that name
PROTOCOL_FIELDS_INVALID = 3375  # fields missing, unknown, of the wrong type or out of range (data: name, field)

# -- budgets and bounds
SEND_OVER_BUDGET = 3380  # the peer's outgoing byte budget has no room now (data: retry_after, seconds)
TOO_MANY_WAITING = 3381  # a bound on calls waiting is reached (data: bound, max)

# JSON-RPC's own "invalid request" and "invalid params"; -32600 is what pyln and
# lightningd answer when a method fails on a bug.
JSONRPC_INVALID_REQUEST = -32600
# JSON-RPC's own "invalid params", used exactly where lightningd's list commands
# use it (pagination: "Can only specify {start} with {index}").
JSONRPC_INVALID_PARAMS = -32602
# JSON-RPC's "internal error": an answer we could not write as JSON lightningd reads (a bug).
JSONRPC_INTERNAL_ERROR = -32603


class CustomMsgError(Exception):
    """Root of every error custommsg raises on purpose.

    ``code`` is stable across releases; ``message`` is for a person; ``data`` is a
    JSON object for a program (for example ``{"type": 18, "name": "ping"}``).
    """

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            error["data"] = self.data
        return error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r}, {self.data!r})"


class ValidationError(CustomMsgError):
    """The caller asked for something we must refuse (h11's LocalProtocolError)."""


class TransientError(CustomMsgError):
    """Nothing is wrong with the message itself: the same send may work later."""


class PeerError(TransientError):
    """The peer is unknown, or known but not connected."""


class OverBudget(TransientError):
    """The peer's outgoing byte budget has no room for the message now: it fits ``retry_after`` seconds
    from now (``data``), if nothing else is sent to that peer meanwhile."""

    def __init__(self, peer_id: str, length: int, retry_after: float):
        wait = math.ceil(retry_after * 1000) / 1000
        super().__init__(
            SEND_OVER_BUDGET,
            f"{length} bytes to {peer_id} do not fit its send budget now (custommsg-peer-send-kbps, "
            f"custommsg-peer-send-burst-bytes): they would in {wait:g} seconds",
            {"peer_id": peer_id, "length": length, "retry_after": wait},
        )


class StorageError(CustomMsgError):
    """The database could not be opened, read or written. ``unsure``: a write whose answer was lost after it
    went to the server, which may have committed it (a connection lost, or a silent server given up on)."""

    def __init__(self, message: str, data: dict[str, Any] | None = None, unsure: bool = False):
        super().__init__(STORAGE_ERROR, message, data)
        self.unsure = unsure
        self.unsure_counts: Any = None  # an unsure write's counts, set aside until its outcome is known
