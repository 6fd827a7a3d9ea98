"""JSON-RPC over custom messages (bLIP-50, the LSPS0 transport): our calls to peers, our answers to theirs.

* As a client, :meth:`LspsEndpoint.call` sends a request with a fresh random id and
  completes when *that peer* answers *that id*: a response is matched on (peer, id),
  so a peer cannot answer for another, and a response we did not ask for is left to
  whoever did (CLN's own LSPS client listens on 37913 too).
* As a server, :meth:`LspsEndpoint.respond` answers a request stored in the inbox,
  once.
* The ``custommsg`` hook hands every 37913 message of a kept type here
  (:meth:`receive`): a valid one is stored, then may complete a call; a malformed
  one is refused (:meth:`on_malformed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.blip50 import (
    LSPS0_MESSAGE_TYPE,
    ErrorResponse,
    Frame,
    MalformedFrame,
    Request,
    Response,
    new_request_id,
    parse_error_response,
    parse_frame,
    sanitize,
)
from ..core.completion import WaiterRegistry
from ..core.errors import CustomMsgError, PeerError, StorageError
from ..core.records import JsonRpcTag
from ..core.wire import Message, message_body
from ..inbox.receiver import Receiver
from ..store.inbox import IN_ALL, MAX_UNANSWERED, MAX_UNANSWERED_PER_PEER, PER_PEER, RequestRoom
from .calls import MutedPeers, Outcome, PendingCalls

if TYPE_CHECKING:
    from ..store.database import Store

Done = Callable[[CustomMsgError | None], None]
# Runtime.send_now: hand a message to lightningd, then call done; on_crash answers for a bug.
Send = Callable[[str, Message, Done, Callable[[Exception], None]], None]
OnError = Callable[[CustomMsgError], None]
# Runtime.spend: take a message's bytes from the peer's send budget, or raise OverBudget.
Spend = Callable[[str, int], None]
OnResult = Callable[[Any], None]

DEFAULT_CALL_TIMEOUT = 300.0  # bLIP-50: timeouts "on the scale of minutes"


def tag(frame: Frame) -> JsonRpcTag:
    """What the inbox records of a valid frame."""
    return JsonRpcTag(frame.kind, getattr(frame, "method", None), getattr(frame, "id", None))


class LspsEndpoint:
    def __init__(
        self, store: Store, receiver: Receiver, waiters: WaiterRegistry, send: Send, log: Callable[..., None],
        clock: Callable[[], float] = time.monotonic, spend: Spend = lambda peer_id, length: None,
    ):
        self.store = store
        self.spend = spend
        self.receiver = receiver
        self.send = send
        self.log = log
        self.clock = clock
        self.calls = PendingCalls(waiters)
        self.muted = MutedPeers()
        self.request_bounds = (MAX_UNANSWERED_PER_PEER, MAX_UNANSWERED)
        self.refused_requests = {PER_PEER: 0, IN_ALL: 0}  # requests not stored past each bound, this run
        self._requests_over: set[str] = set()  # peers logged as past a bound, until one is stored again

    # -- receiving (main thread) ------------------------------------------------

    def receive(self, peer_id: str, raw: bytes) -> None:
        """A 37913 message, when the inbox keeps that type: checked against bLIP-50 first. A valid one
        is kept like any message (with what it is: :func:`tag`), then may answer one of our calls."""
        if not self.receiver.admit(peer_id, LSPS0_MESSAGE_TYPE, len(raw)):
            return
        try:
            frame = parse_frame(message_body(raw))
        except MalformedFrame as exc:
            self.receiver.counters.count(peer_id, LSPS0_MESSAGE_TYPE, "dropped_malformed", len(raw))
            self.on_malformed(peer_id, exc)
            return
        room = RequestRoom(peer_id, *self.request_bounds) if isinstance(frame, Request) else None
        try:
            kept = self.receiver.keep(peer_id, raw, LSPS0_MESSAGE_TYPE, tag(frame), gate=room)
        except StorageError:
            kept = None  # counted and logged; a call waiting for it is answered all the same
        if room is not None and room.full is not None and kept is None:
            self._refused_request(peer_id, room.full, len(raw))
        elif room is not None:
            self._requests_over.discard(peer_id)
        self.on_frame(peer_id, frame)

    def _refused_request(self, peer_id: str, bound: str, size: int) -> None:
        """A request past a bound on unanswered requests: not stored, counted, and logged once per peer
        until one of its requests is stored again. It is not answered: an answer to each of a flood
        would make us send as much as we are sent."""
        self.receiver.counters.count(peer_id, LSPS0_MESSAGE_TYPE, "dropped_unanswered", size)
        self.refused_requests[bound] += 1
        if peer_id not in self._requests_over:
            self._requests_over.add(peer_id)
            limit = self.request_bounds[0 if bound == PER_PEER else 1]
            whose = "this peer's" if bound == PER_PEER else "all peers'"
            self.log(f"not storing bLIP-50 requests from {peer_id}: {limit} of {whose} requests are unanswered",
                     level="info")

    def on_frame(self, peer_id: str, frame: Frame) -> None:
        if isinstance(frame, Response | ErrorResponse):
            self.calls.match(peer_id, frame)

    def on_malformed(self, peer_id: str, error: MalformedFrame) -> None:
        reason = error.data.get("reason")
        self.calls.fail_peer(peer_id, f"peer sent a malformed bLIP-50 message ({reason})", errors.LSPS_PEER_MUTED)
        if not self.muted.mute(peer_id):
            # Muted already: no second answer on this connection. A 3-byte malformed message
            # answered each time would make us send 25 times what the peer sends.
            return
        # bLIP-50: the client "SHOULD log this as an unusual event" and "SHOULD NOT send
        # further BOLT8 messages with ID 37913 to the peer on this connection session".
        self.log(f"peer {peer_id} sent a malformed bLIP-50 message ({reason}): no more "
                 f"{LSPS0_MESSAGE_TYPE} to it until it reconnects", level="unusual")
        # bLIP-50, the LSP: "MUST respond with a JSON-RPC 2.0 error response with the reason
        # "parse error" (`code` = `-32700`, `id` = `null`)": once per connection, the first time.
        answer = Message(LSPS0_MESSAGE_TYPE, parse_error_response().serialize())
        self.send(peer_id, answer, self._logged("parse error answer", peer_id), self._logged_crash)

    # -- as a client ------------------------------------------------------------

    def call(
        self, peer_id: str, method: str, params: dict[str, Any], timeout: float,
        on_result: OnResult, on_error: OnError, on_crash: Callable[[Exception], None],
    ) -> str:
        """Send ``method`` to the peer; ``on_result`` gets its ``result``, ``on_error`` everything else."""
        if peer_id in self.muted:
            raise PeerError(
                errors.LSPS_PEER_MUTED,
                f"peer {peer_id} sent a malformed bLIP-50 message: no requests to it until it reconnects",
                {"peer_id": peer_id},
            )
        request = Request(new_request_id(), method, params)
        message = Message(LSPS0_MESSAGE_TYPE, request.serialize())  # refuses what does not fit
        what = {"peer_id": peer_id, "method": method, "id": request.id}

        def on_done(outcome: Outcome) -> None:
            if isinstance(outcome, Response):
                on_result(outcome.result)
            elif isinstance(outcome, ErrorResponse):
                on_error(_peer_error(outcome, what))
            else:
                on_error(_no_answer(outcome, what, timeout))

        # Parked before the send, from the main thread, which also runs the hook.
        self.calls.add(peer_id, request.id, on_done, self.clock() + timeout)
        try:
            self.spend(peer_id, len(message))
        except CustomMsgError:
            self.calls.remove(peer_id, request.id)
            raise

        def after_send(failure: CustomMsgError | None) -> None:
            if failure is not None and self.calls.remove(peer_id, request.id):
                on_error(failure)

        self.send(peer_id, message, after_send, on_crash)
        return request.id

    # -- as a server ------------------------------------------------------------

    def respond(
        self, peer_id: str, request_id: str, result: Any, error: dict[str, Any] | None,
        on_sent: OnResult, on_error: OnError, on_crash: Callable[[Exception], None],
    ) -> None:
        """Answer the peer's stored request ``request_id``, once."""
        stored = self.store.inbox.requests_with_id(request_id)
        theirs = [m for m in stored if m.peer_id == peer_id]
        if not theirs:
            code, text = (
                (errors.LSPS_REQUEST_OTHER_PEER, f"request {request_id!r} came from another peer, not {peer_id}")
                if stored else (errors.LSPS_REQUEST_NOT_FOUND, f"no stored request {request_id!r} from {peer_id}")
            )
            raise CustomMsgError(code, text, {"peer_id": peer_id, "id": request_id})
        open_requests = [m for m in theirs if m.answered_at is None]
        if not open_requests:
            raise CustomMsgError(
                errors.LSPS_ALREADY_ANSWERED, f"request {request_id!r} from {peer_id} was answered already",
                {"peer_id": peer_id, "id": request_id, "created_index": theirs[0].created_index},
            )
        created_index = open_requests[0].created_index
        frame = Response(request_id, result) if error is None else ErrorResponse(
            request_id, error["code"], error["message"], error.get("data"))
        message = Message(LSPS0_MESSAGE_TYPE, frame.serialize())  # refuses what does not fit
        self.spend(peer_id, len(message))
        if not self.store.inbox.set_answered(created_index, round(time.time(), 3)):
            raise CustomMsgError(errors.LSPS_ALREADY_ANSWERED, f"request {request_id!r} was answered already",
                                 {"peer_id": peer_id, "id": request_id, "created_index": created_index})

        def after_send(failure: CustomMsgError | None) -> None:
            if failure is None:
                on_sent({"peer_id": peer_id, "id": request_id, "created_index": created_index, "length": len(message)})
            else:
                self.store.inbox.set_answered(created_index, None)  # not answered after all: it may be tried again
                on_error(failure)

        self.send(peer_id, message, after_send, on_crash)

    # -- peers and time ---------------------------------------------------------

    def connected(self, peer_id: str) -> None:
        self.muted.unmute(peer_id)  # bLIP-50: "SHOULD re-attempt this on reconnection"

    def disconnected(self, peer_id: str) -> None:
        self.calls.fail_peer(peer_id, "disconnected")
        # Its next connection starts unmuted anyway: forgetting it now keeps the set to connected peers.
        self.muted.unmute(peer_id)
        self._requests_over.discard(peer_id)

    def _logged(self, what: str, peer_id: str) -> Done:
        def done(failure: CustomMsgError | None) -> None:
            if failure is not None:
                self.log(f"could not send the {what} to {peer_id}: {failure.message}", level="debug")

        return done

    def _logged_crash(self, exc: Exception) -> None:
        self.log(f"custommsg lsps: {exc!r}", level="warn")


def _peer_error(answer: ErrorResponse, what: dict[str, Any]) -> CustomMsgError:
    # bLIP-50: an error message comes from a remote party: "filter ... before displaying".
    message = sanitize(answer.message)
    data = {**what, "code": answer.code, "message": message}
    if answer.data is not None:
        data["data"] = answer.data
    return CustomMsgError(
        errors.LSPS_PEER_ERROR, f"{what['method']}: the peer answered with error {answer.code}: {message}", data
    )


def _no_answer(failure: CustomMsgError, what: dict[str, Any], timeout: float) -> CustomMsgError:
    peer, method = what["peer_id"], what["method"]
    text = {
        errors.LSPS_TIMEOUT: f"no answer from {peer} to {method} within {timeout:g} seconds",
        errors.LSPS_PEER_DISCONNECTED: f"peer {peer} disconnected before answering {method}",
    }.get(failure.code, f"{method}: {failure.message}")
    data = {**what, "timeout": timeout} if failure.code == errors.LSPS_TIMEOUT else what
    return type(failure)(failure.code, text, data)
