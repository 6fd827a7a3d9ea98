"""The plugin shell: binds lightningd's RPC methods, hooks and notifications to the core.

Threads, and why:

* The *main loop* (:class:`EventLoopPlugin`) waits on lightningd's pipe and on one
  long-lived RPC socket. It answers both hooks straight from the pipe, runs every
  method, and sends to connected peers: it writes the ``sendcustommsg`` and goes
  back to the pipe, where lightningd then asks our own ``rpc_command`` guard about
  that very call (a plugin that waited for the answer instead would deadlock:
  cln-facts §5). The answer is handled when it comes back on the socket.
* One *sender* thread does what may block: draining a peer's outbox, and sends to a
  peer our connection state does not know (it asks lightningd with ``listpeers``
  first). While it has work for a peer, later sends to that peer queue behind it,
  so each peer's messages keep their order.
* One *timer* thread ends waits and requests at their deadline and marks expired
  outbox entries.

Methods answer through :meth:`CustomMsgPlugin._method`, which turns a
:class:`CustomMsgError` into a JSON-RPC error with its code and ``data``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import queue
import re
import selectors
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from pyln.client import Plugin
from pyln.client.plugin import Request, RequestState

from . import __version__, errors
from .errors import CustomMsgError, PeerError, StorageError, TransientError, ValidationError
from .guard import check_native_call, loads_marking_escapes
from .outbox import Outbox
from .paging import U64_MAX, parse_page, parse_uint
from .policy import PeerRateLimiter, TypeSelection
from .rpc import LOST, AsyncRpc, PersistentRpc, RpcError
from .store import COUNTER_NAMES, OUTBOX_STATUSES, Store, StoredMessage
from .waiters import Waiter, WaiterRegistry
from .wire import Message, check_send_request, decode_hex, parse_node_id

MIN_CLN_VERSION = (25, 12)  # custommsg and rpc_command hook filters (CLN PR #8677)
STORED_TOPIC = "custommsg_stored"
DEFAULT_REQUEST_TIMEOUT = 60.0
SWEEP_INTERVAL = 1.0


PENDING = object()  # a method's return value: "I will answer this request later"

# A hook call as lightningd writes it: "jsonrpc", "id", "method", then "params"
# (whose first member, for custommsg, is "payload"). Anchored at the start, so only
# the request's own method can match, never a string inside some method's params;
# anything written otherwise takes the general path.
_HOOK_CALL = re.compile(
    rb'\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)\s*,'
    rb'\s*"method"\s*:\s*"(custommsg|rpc_command)"\s*,\s*"params"\s*:\s*\{'
    rb'(?:\s*"payload"\s*:\s*"([0-9a-fA-F]{4}))?'
)


def parse_version(version: str) -> tuple[int, int] | None:
    """``v26.06-258-g090f4b0e6`` -> (26, 6); ``None`` when it names no release."""
    match = re.match(r"v?(\d+)\.(\d+)", version or "")
    return (int(match[1]), int(match[2])) if match else None


def _finish(request: Request, state: RequestState, body: dict[str, Any]) -> None:
    # Written here rather than by pyln's set_result/set_exception: those have no room
    # for an error's ``data``, and format a stack trace for every answer (a tenth of
    # the cost of a send). One answer per request, as pyln enforces it.
    if request.state != RequestState.PENDING:
        return
    request._write_result({"jsonrpc": "2.0", "id": request.id, **body})
    request.state = state
    request.termination_tb = "(answered by custommsg)"


def answer_error(request: Request, error: CustomMsgError) -> None:
    """Fail ``request`` with ``error``'s code, message and data."""
    _finish(request, RequestState.FAILED, {"error": error.to_json()})


def answer(request: Request, result: Any) -> None:
    _finish(request, RequestState.FINISHED, {"result": result})


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(errors.INVALID_PARAMETER, f"{name} must be true or false", {"param": name})
    return value


def _seconds(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(
            errors.INVALID_PARAMETER,
            f"{name} must be a number of seconds {'>= 0' if allow_zero else '> 0'}",
            {"param": name},
        )
    return float(value)


def _msg_type(value: Any, name: str = "type") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValidationError(errors.INVALID_PARAMETER, f"{name} must be an integer from 0 to 65535", {"param": name})
    return value


def _optional(value: Any, parse: Callable[[Any], Any]) -> Any:
    """A filter parameter: ``None`` when not given, else parsed (and so checked)."""
    return None if value is None else parse(value)


def native_error(exc: RpcError, peer_id: str) -> CustomMsgError:
    """Map an error of native sendcustommsg (connect_control.c) to our codes."""
    message = str(exc.error.get("message", ""))
    data = {"peer_id": peer_id, "native": exc.error}
    if "No such peer" in message:
        return PeerError(errors.PEER_UNKNOWN, f"unknown peer {peer_id}", data)
    if "not connected" in message:
        return PeerError(errors.PEER_NOT_CONNECTED, f"peer {peer_id} is not connected", data)
    if "Cannot send messages of type" in message:
        return ValidationError(errors.TYPE_INTERNAL, message, data)
    return CustomMsgError(errors.SEND_FAILED, f"sendcustommsg failed: {message}", data)


class EventLoopPlugin(Plugin):  # type: ignore[misc]  # pyln-client ships no type hints
    """pyln's Plugin with a main loop that serves lightningd's pipe and our RPC socket.

    pyln's own ``run()`` blocks reading stdin, so an answer on another socket would
    need a thread to wait for it. This loop waits on both: the send path writes its
    ``sendcustommsg`` and goes back to serving stdin (where lightningd asks our
    guard about that very call), and the answer is handled when it comes.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.async_rpc: AsyncRpc | None = None
        # Hooks answered straight from the loop. Each is called for every message a
        # peer sends (custommsg) or every native send (rpc_command), and connectd
        # waits for the answer before it reads that peer's next message: pyln's
        # generic dispatch (signature binding, a formatted stack trace per answer)
        # costs more than the work itself. The handlers never raise.
        self.fast_hooks: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.wants_type: Callable[[int], bool] | None = None
        self._selector = selectors.DefaultSelector()
        self._watched: Any = None  # the socket registered with the selector, and how

    def _watch_rpc_socket(self) -> None:
        rpc = self.async_rpc
        sock = rpc.sock if rpc is not None else None
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if rpc is not None and rpc.wants_write else 0)
        wanted = (sock, events) if sock is not None else None
        if wanted == self._watched:
            return
        if self._watched is not None:
            try:
                self._selector.unregister(self._watched[0])
            except (KeyError, ValueError):
                pass
        if sock is not None:
            self._selector.register(sock, events, "rpc")
        self._watched = wanted

    def run(self) -> None:
        if os.environ.get("LIGHTNINGD_PLUGIN") != "1":
            self.print_usage()
            return
        stdin = self.stdin.fileno()
        self._selector.register(stdin, selectors.EVENT_READ, "stdin")
        partial = b""
        while True:
            self._watch_rpc_socket()
            for key, events in self._selector.select():
                if key.data == "stdin":
                    chunk = os.read(stdin, 1 << 16)
                    if not chunk:
                        return  # lightningd closed our stdin: it is gone
                    partial += chunk
                    if b"\n\n" in partial:
                        *messages, partial = partial.split(b"\n\n")
                        for message in messages:
                            self._dispatch_one(message)
                elif self.async_rpc is not None:
                    if events & selectors.EVENT_READ:
                        self.async_rpc.on_readable()
                    if events & selectors.EVENT_WRITE and self.async_rpc.sock is not None:
                        self.async_rpc.flush()

    def _exec_func(self, func: Callable[..., Any], request: Request) -> Any:
        try:
            return super()._exec_func(func, request)
        except TypeError as exc:
            # Our methods catch everything they raise, so a TypeError here is pyln
            # binding the parameters: a missing, unknown or extra one. lightningd
            # answers that with -32602, and so do we (pyln: -32600 and a traceback).
            if not request.method.startswith("custommsg-"):
                raise
            answer_error(request, CustomMsgError(errors.JSONRPC_INVALID_PARAMS, f"{request.method}: {exc}"))
            return None

    def _dispatch_one(self, message: bytes) -> None:
        if not message.strip():
            return
        try:
            if self.fast_hooks and self._fast_dispatch(message):
                return
            if b'"rpc_command"' in message:
                # The guard must see which strings were written with escapes.
                request = self._parse_request(loads_marking_escapes(message))
                if request.id is not None:
                    self._dispatch_request(request)
                else:
                    self._dispatch_notification(request)
            else:
                self._multi_dispatch([message, b""])
        except Exception:
            # pyln lets a request it cannot parse escape run(), which would end the
            # plugin (and, for a guard call, let lightningd run it unchecked).
            self.log(f"cannot handle a request from lightningd: {traceback.format_exc()}", level="warn")

    def _fast_dispatch(self, message: bytes) -> bool:
        call = _HOOK_CALL.match(message)
        if call is None or call[2].decode() not in self.fast_hooks:
            return False
        name = call[2].decode()
        handler = self.fast_hooks[name]
        if name == "custommsg" and call[3] is not None and self.wants_type is not None:
            if not self.wants_type(int(call[3], 16)):
                # Most messages of other protocols (commando's 65 kB frames, peer
                # storage) are not ours: answer from their first bytes, unparsed.
                with self.write_lock:
                    self.stdout.buffer.write(
                        b'{"jsonrpc":"2.0","id":' + call[1] + b',"result":{"result":"continue"}}\n\n'
                    )
                    self.stdout.flush()
                return True
        # rpc_command: the guard must see which strings were written with escapes.
        request = loads_marking_escapes(message) if name == "rpc_command" else json.loads(message)
        if request.get("method") != name or "id" not in request:
            return False
        result = handler(request.get("params") or {})
        self._write_locked({"jsonrpc": "2.0", "id": request["id"], "result": result})
        return True


def _unreachable(exc: BaseException) -> CustomMsgError:
    return TransientError(errors.SEND_FAILED, f"cannot reach lightningd: {exc}", {"reason": "rpc"})


class CustomMsgPlugin:
    def __init__(self, plugin: EventLoopPlugin):
        self.plugin: EventLoopPlugin = plugin
        self.ready = False
        self.guard_enabled = True
        self.own_id: str | None = None
        self.connected: set[str] = set()
        self.types = TypeSelection.default()
        self.inbox_max = 100000
        self.store: Store | None = None
        self.outbox: Outbox | None = None
        self.limiter = PeerRateLimiter(rate=100.0, burst=1000.0)
        self.waiters = WaiterRegistry()
        self.waiters.on_callback_error = lambda text: self.plugin.log(f"custommsg waiter: {text}", level="warn")
        self.session: Counter[tuple[str, int, str]] = Counter()
        self._count_lock = threading.Lock()
        self._sender_busy: Counter[str] = Counter()  # sender-thread jobs pending, per peer
        self._busy_lock = threading.Lock()
        self.started_at = time.time()
        self.malformed = 0
        self._storage_failing = False
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._register()

    # -- registration ---------------------------------------------------------

    def _register(self) -> None:
        p = self.plugin
        p.add_option("custommsg-guard", True, "Refuse malformed calls to native sendcustommsg", opt_type="bool")
        p.add_option(
            "custommsg-type",
            None,
            "Message type (N) or range (N-M) to keep in the inbox; repeatable. Default: 32768-65535",
            opt_type="string",
            multi=True,
        )
        p.add_option(
            "custommsg-db",
            "",
            "Inbox database file. Default: custommsg/custommsg.sqlite3 in the node's network directory",
        )
        p.add_option("custommsg-inbox-max", 100000, "Messages kept in the inbox; the oldest go first", opt_type="int")
        p.add_option("custommsg-peer-rate", "100", "Messages per second one peer may add to the inbox")
        p.add_option("custommsg-peer-burst", 1000, "Messages one peer may add at once above its rate", opt_type="int")
        p.add_option("custommsg-outbox-max", 1000, "Queued messages per peer in the outbox", opt_type="int")
        p.add_notification_topic(STORED_TOPIC)

        # No filters: lightningd reads them from the manifest, before it tells a
        # plugin its options, so they could not follow custommsg-type; and it scans
        # a filter list linearly for every message (a list of every forwarded type
        # cut the receive rate to 0.37 of a do-nothing hook's). One unfiltered hook
        # and a set lookup here is right for any custommsg-type, and the fastest.
        p.add_hook("custommsg", self.on_custommsg)
        p.wants_type = lambda msg_type: self.ready and msg_type in self.types
        p.add_hook("rpc_command", self.on_rpc_command, filters=["sendcustommsg"])
        p.fast_hooks["custommsg"] = lambda params: self.on_custommsg(p, **params)
        p.fast_hooks["rpc_command"] = lambda params: self.on_rpc_command(p, **params)
        p.add_subscription("connect", self.on_connect)
        p.add_subscription("disconnect", self.on_disconnect)
        p.add_subscription("shutdown", self.on_shutdown)
        p.init()(self.on_init)

        for name, func in (
            ("custommsg-send", self.send),
            ("custommsg-list", self.list),
            ("custommsg-wait", self.wait),
            ("custommsg-delete", self.delete),
            ("custommsg-stats", self.stats),
            ("custommsg-outbox", self.list_outbox),
            ("custommsg-cancel", self.cancel),
            ("custommsg-request", self.request),
        ):
            p.add_method(name, self._method(func), background=True)

    def _method(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``func`` so that its errors carry our codes and data.

        Every method is "background" for pyln, and answered here at once unless it
        returns PENDING (then it answers later, from another thread or a waiter).
        """
        signature = inspect.signature(func)

        @functools.wraps(func)
        def handler(*args: Any, **kwargs: Any) -> None:
            request = signature.bind(*args, **kwargs).arguments["request"]
            try:
                if not self.ready:
                    raise CustomMsgError(errors.STORAGE_ERROR, "custommsg is not initialized")
                result = func(*args, **kwargs)
            except CustomMsgError as exc:
                answer_error(request, exc)
            except Exception as exc:  # a bug: say so, and keep serving
                self.plugin.log(f"{request.method} failed: {traceback.format_exc()}", level="warn")
                answer_error(request, CustomMsgError(-32600, f"Error while processing {request.method}: {exc}"))
            else:
                if result is not PENDING:
                    answer(request, result)

        handler.__signature__ = signature  # type: ignore[attr-defined]  # pyln binds by it
        return handler

    # -- lifecycle ------------------------------------------------------------

    def on_init(self, options: dict[str, Any], configuration: dict[str, Any], plugin: Plugin, **kwargs: Any) -> Any:
        info = plugin.rpc.getinfo()
        version = parse_version(str(info.get("version", "")))
        if version is not None and version < MIN_CLN_VERSION:
            return {
                "disable": f"custommsg needs Core Lightning v{MIN_CLN_VERSION[0]}.{MIN_CLN_VERSION[1]} or newer "
                f"(hook filters); this node runs {info.get('version')}"
            }
        try:
            self._configure(options, configuration)
        except CustomMsgError as exc:
            return {"disable": exc.message}
        self.own_id = info["id"]
        self.rpc_path = os.path.join(configuration["lightning-dir"], configuration["rpc-file"])
        self.plugin.async_rpc = AsyncRpc(self.rpc_path)
        self.plugin.async_rpc.on_callback_error = lambda text: plugin.log(f"custommsg: {text}", level="warn")
        self.plugin.async_rpc.on_socket_change = self.plugin._watch_rpc_socket
        for peer in plugin.rpc.listpeers()["peers"]:
            if peer.get("connected"):
                self.connected.add(peer["id"])
        threading.Thread(target=self._sender_loop, name="custommsg-sender", daemon=True).start()
        threading.Thread(target=self._timer_loop, name="custommsg-timer", daemon=True).start()
        assert self.outbox is not None
        if self.outbox.recover():
            plugin.log("outbox: queued again the messages a previous run was sending when it stopped")
        self.ready = True
        self._deliver_to_connected()
        plugin.log(
            f"custommsg {__version__}: inbox {self.store.path if self.store else '?'} "
            f"({self.store.inbox_count if self.store else 0} messages), types {','.join(self.types.describe())}, "
            f"guard {'on' if self.guard_enabled else 'off'}"
        )
        return None

    def _configure(self, options: dict[str, Any], configuration: dict[str, Any]) -> None:
        self.guard_enabled = bool(options.get("custommsg-guard", True))
        self.types = TypeSelection.parse(options.get("custommsg-type") or [])
        self.inbox_max = self._positive_option(options, "custommsg-inbox-max")
        try:
            rate = float(options["custommsg-peer-rate"])
        except (TypeError, ValueError):
            rate = -1
        if not rate > 0:
            raise ValidationError(
                errors.INVALID_PARAMETER, "custommsg-peer-rate must be a number of messages per second above 0"
            )
        burst = self._positive_option(options, "custommsg-peer-burst")
        self.limiter = PeerRateLimiter(rate=rate, burst=float(burst))
        path = options.get("custommsg-db") or os.path.join(
            configuration["lightning-dir"], "custommsg", "custommsg.sqlite3"
        )
        if not os.path.isabs(path):  # relative to lightningd's working directory, as CLN's own paths
            path = os.path.join(configuration["lightning-dir"], path)
        self.store = Store(path)
        self.outbox = Outbox(self.store, self._positive_option(options, "custommsg-outbox-max"))

    @staticmethod
    def _positive_option(options: dict[str, Any], name: str) -> int:
        value = options.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(errors.INVALID_PARAMETER, f"{name} must be a whole number above 0")
        return value

    def on_shutdown(self, plugin: Plugin, **kwargs: Any) -> None:
        self._stopping.set()
        self._jobs.put(None)
        if self.store is not None:
            self.store.close()
        sys.exit(0)

    # -- peers ----------------------------------------------------------------

    @staticmethod
    def _peer_of(notification: Any, kwargs: dict[str, Any]) -> str | None:
        # v24.05+: {"connect": {"id": ...}}; older: {"id": ...} at the top.
        if isinstance(notification, dict):
            return notification.get("id")
        return kwargs.get("id")

    def on_connect(self, plugin: Plugin, connect: Any = None, **kwargs: Any) -> None:
        peer_id = self._peer_of(connect, kwargs)
        if peer_id is None:
            return
        self.connected.add(peer_id)
        if self.ready and self.outbox is not None and self.outbox.has_queued(peer_id):
            self._put_job(peer_id, functools.partial(self._deliver, peer_id))

    def on_disconnect(self, plugin: Plugin, disconnect: Any = None, **kwargs: Any) -> None:
        peer_id = self._peer_of(disconnect, kwargs)
        if peer_id is None:
            return
        self.connected.discard(peer_id)
        self.waiters.fail(lambda w: w.exclusive and w.peer_id == peer_id, "disconnected")

    # -- the sender thread ----------------------------------------------------

    def _sender_loop(self) -> None:
        self.sender_rpc = PersistentRpc(self.rpc_path)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                self.plugin.log(f"custommsg sender: {traceback.format_exc()}", level="warn")

    def _native_send(self, peer_id: str, payload: bytes) -> None:
        """Hand one message to lightningd (sender thread only)."""
        try:
            self.sender_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": payload.hex()})
        except RpcError as exc:
            raise self._native_failure(exc, peer_id) from None
        except (OSError, EOFError) as exc:
            raise _unreachable(exc) from exc
        self._count(peer_id, int.from_bytes(payload[:2], "big"), "sent")

    def _native_failure(self, exc: RpcError, peer_id: str) -> CustomMsgError:
        failure = native_error(exc, peer_id)
        if isinstance(failure, PeerError):
            self.connected.discard(peer_id)  # lightningd knows better than our notifications did
        return failure

    def _send_from_loop(
        self, peer_id: str, message: Message, done: Callable[[CustomMsgError | None], None]
    ) -> None:
        """Hand one message to lightningd without blocking the main loop (main thread only)."""
        assert self.plugin.async_rpc is not None

        def on_answer(result: Any, error: dict[str, Any] | None) -> None:
            if error is None:
                self._count(peer_id, message.type, "sent")
                done(None)
                return
            if error.get(LOST):
                done(_unreachable(ConnectionError(error.get("message"))))
                return
            done(self._native_failure(RpcError("sendcustommsg", error), peer_id))

        try:
            self.plugin.async_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": message.hex()}, on_answer)
        except OSError as exc:  # could not even connect
            done(_unreachable(exc))

    def _check_peer(self, peer_id: str) -> None:
        """Our connection state said no: ask lightningd, which also tells unknown from offline."""
        try:
            peers = self.sender_rpc.call("listpeers", {"id": peer_id})["peers"]
        except (OSError, EOFError, RpcError) as exc:
            raise _unreachable(exc) from exc
        if not peers:
            raise PeerError(
                errors.PEER_UNKNOWN, f"unknown peer {peer_id}: not connected and no channel", {"peer_id": peer_id}
            )
        if not peers[0].get("connected"):
            raise PeerError(
                errors.PEER_NOT_CONNECTED,
                f"peer {peer_id} is known (it has a channel) but not connected",
                {"peer_id": peer_id},
            )
        self.connected.add(peer_id)

    def _deliver_to_connected(self) -> None:
        """Start delivery for every connected peer with queued messages and no delivery under way."""
        assert self.store is not None
        for peer_id in self.store.peers_with_queued():
            if peer_id in self.connected and not self._sender_busy[peer_id]:
                self._put_job(peer_id, functools.partial(self._deliver, peer_id))

    def _probe_and_deliver(self, peer_id: str) -> None:
        try:
            self._check_peer(peer_id)
        except CustomMsgError:
            return  # not connected (or lightningd unreachable): the connect notification will come
        self._deliver(peer_id)

    def _deliver(self, peer_id: str) -> None:
        assert self.outbox is not None
        report = self.outbox.deliver(peer_id, self._native_send)
        for entry in report.failed:
            self.plugin.log(f"outbox {entry.id} to {peer_id} failed: {entry.reason}", level="warn")
        if report.sent or report.expired:
            self.plugin.log(
                f"outbox: {len(report.sent)} sent, {len(report.expired)} expired for {peer_id}"
                + (" (interrupted by a disconnect)" if report.interrupted else ""),
                level="debug",
            )

    # -- the timer thread -----------------------------------------------------

    def _timer_loop(self) -> None:
        next_sweep = 0.0
        while not self._stopping.is_set():
            with self.waiters.changed:
                deadline = self.waiters.next_deadline()
                now = self.waiters.clock()
                timeout = SWEEP_INTERVAL if deadline is None else min(SWEEP_INTERVAL, max(0.0, deadline - now))
                if timeout > 0:
                    self.waiters.changed.wait(timeout)
            try:
                self.waiters.expire()
                if time.monotonic() >= next_sweep and self.outbox is not None:
                    next_sweep = time.monotonic() + SWEEP_INTERVAL
                    for entry in self.outbox.expire_due():
                        self.plugin.log(f"outbox {entry.id} to {entry.peer_id} expired", level="info")
                    # A delivery cut short (the peer dropped and came back before
                    # we noticed) would otherwise wait for the next connection.
                    self._deliver_to_connected()
            except Exception:
                self.plugin.log(f"custommsg timer: {traceback.format_exc()}", level="warn")

    # -- counters -------------------------------------------------------------

    def _count(self, peer_id: str, msg_type: int, name: str, n: int = 1) -> None:
        with self._count_lock:  # the main and the sender thread both count
            self.session[(peer_id, msg_type, name)] += n
        if self.store is not None:
            self.store.count(peer_id, msg_type, name, n)

    # -- hooks ----------------------------------------------------------------

    def on_custommsg(self, plugin: Plugin, peer_id: str = "", payload: str = "", **kwargs: Any) -> dict[str, str]:
        # lightningd exits on any answer but this one (connect_control.c:
        # custommsg_cb), so every path returns it, whatever happened.
        try:
            self._receive(peer_id, payload)
        except Exception:
            plugin.log(f"custommsg hook: {traceback.format_exc()}", level="warn")
        return {"result": "continue"}

    def _receive(self, peer_id: str, payload_hex: str) -> None:
        if not self.ready or self.store is None:
            return
        try:
            raw = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) < 2:
            self.malformed += 1
            self.plugin.log(f"ignoring a malformed message from {peer_id}: {payload_hex[:20]!r}", level="debug")
            return
        msg_type = int.from_bytes(raw[:2], "big")
        if msg_type not in self.types:
            return
        self._count(peer_id, msg_type, "received")
        verdict = self.limiter.check(peer_id)
        if verdict.episode_ended_after is not None:
            self.plugin.log(
                f"peer {peer_id} is back under the rate limit; {verdict.episode_ended_after} messages were dropped",
                level="info",
            )
        if not verdict.allowed:
            self._count(peer_id, msg_type, "dropped_rate")
            if verdict.episode_started:
                self.plugin.log(
                    f"peer {peer_id} is over the rate limit ({self.limiter.rate:g}/s, burst "
                    f"{self.limiter.burst:g}): dropping its messages until it slows down",
                    level="info",
                )
            return
        try:
            message, dropped = self.store.add_message(peer_id, raw, msg_type, round(time.time(), 3), self.inbox_max)
        except StorageError as exc:
            self._count(peer_id, msg_type, "dropped_storage")
            if not self._storage_failing:
                self._storage_failing = True
                self.plugin.log(f"cannot store messages: {exc.message}", level="broken")
            return
        if self._storage_failing:
            self._storage_failing = False
            self.plugin.log("storing messages again", level="info")
        self._count(peer_id, msg_type, "stored")
        with self._count_lock:
            for old_peer, old_type in dropped:
                self.session[(old_peer, old_type, "dropped_retention")] += 1
        if len(self.limiter) > 1000:
            self.limiter.forget_idle()
        entry = message.to_json()
        self.plugin.notify(STORED_TOPIC, entry)
        self.waiters.offer(message)

    def on_rpc_command(self, plugin: Plugin, rpc_command: Any = None, **kwargs: Any) -> dict[str, Any]:
        if not self.guard_enabled or not isinstance(rpc_command, dict):
            return {"result": "continue"}
        try:
            refusal = check_native_call(rpc_command.get("params"))
        except Exception:
            # Fail closed: a bug here must not let a node-killing call through.
            plugin.log(f"sendcustommsg guard: {traceback.format_exc()}", level="broken")
            refusal = CustomMsgError(-32600, "custommsg guard failed to check this call; refusing it")
        if refusal is None:
            return {"result": "continue"}
        return {"return": {"error": refusal.to_json()}}

    # -- methods --------------------------------------------------------------

    def send(
        self,
        request: Request,
        node_id: Any,
        msg: Any,
        allow_even: Any = False,
        queue: Any = False,
        ttl: Any = None,
    ) -> Any:
        """Send a custom message to a peer, after checking everything lightningd does not.

        {msg} is hex: a 2-byte big-endian type then the body, as for sendcustommsg.
        With {queue}, a message to a peer that is not connected waits in the outbox
        until it connects (for at most {ttl} seconds, if given).
        """
        peer_id, message = check_send_request(node_id, msg, self.own_id, _bool(allow_even, "allow_even"))
        queued = _bool(queue, "queue")
        ttl_seconds = None if ttl is None else _seconds(ttl, "ttl")
        if ttl_seconds is not None and not queued:
            raise ValidationError(errors.INVALID_PARAMETER, "ttl only applies with queue=true", {"param": "ttl"})
        assert self.outbox is not None
        outbox = self.outbox
        if queued and (peer_id not in self.connected or outbox.has_queued(peer_id)):
            # Behind the messages already waiting, so the peer gets them in order.
            entry = outbox.enqueue(peer_id, message, ttl_seconds)
            # Connected as far as we know: deliver now. Otherwise ask lightningd,
            # in case the peer connected before its notification reached us.
            deliver = self._deliver if peer_id in self.connected else self._probe_and_deliver
            self._put_job(peer_id, functools.partial(deliver, peer_id))
            return self._send_result("queued", peer_id, message, entry.id)

        def done(failure: CustomMsgError | None) -> None:
            if failure is None:
                answer(request, self._send_result("sent", peer_id, message))
            elif isinstance(failure, TransientError) and queued:
                # It went away under us (or lightningd did): keep the message for later.
                entry = outbox.enqueue(peer_id, message, ttl_seconds)
                answer(request, self._send_result("queued", peer_id, message, entry.id))
            else:
                answer_error(request, failure)

        self._send(request, peer_id, message, done)
        return PENDING

    def _send(
        self, request: Request, peer_id: str, message: Message, done: Callable[[CustomMsgError | None], None]
    ) -> None:
        """Send now: from the main loop when the peer is connected as far as we know,
        else from the sender thread, after asking lightningd about the peer."""
        if peer_id in self.connected and not self._sender_busy[peer_id]:
            self._send_from_loop(peer_id, message, done)
            return

        def job() -> None:
            try:
                if peer_id not in self.connected:
                    self._check_peer(peer_id)
                self._native_send(peer_id, message.serialize())
            except CustomMsgError as exc:
                done(exc)
            else:
                done(None)

        self._put_job(peer_id, self._guarded(request, job))

    def _put_job(self, peer_id: str, job: Callable[[], None]) -> None:
        """Queue work for the sender thread that sends to ``peer_id``.

        While any is pending, later sends to that peer queue behind it instead of
        going out from the main loop, so they cannot overtake it.
        """
        with self._busy_lock:
            self._sender_busy[peer_id] += 1

        def run() -> None:
            try:
                job()
            finally:
                with self._busy_lock:
                    self._sender_busy[peer_id] -= 1
                    if not self._sender_busy[peer_id]:
                        del self._sender_busy[peer_id]

        self._jobs.put(run)

    def _guarded(self, request: Request, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception as exc:
                self.plugin.log(f"{request.method}: {traceback.format_exc()}", level="warn")
                answer_error(request, CustomMsgError(-32600, f"Error while processing {request.method}: {exc}"))

        return run

    @staticmethod
    def _send_result(status: str, peer_id: str, message: Message, outbox_id: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"status": status, "peer_id": peer_id, "type": message.type, "length": len(message)}
        if outbox_id is not None:
            result["id"] = outbox_id
        return result

    def list(
        self,
        request: Request,
        peer_id: Any = None,
        type: Any = None,
        index: Any = None,
        start: Any = None,
        limit: Any = None,
    ) -> Any:
        """List stored messages, oldest first; paginate with {index}=created, {start} and {limit}."""
        assert self.store is not None
        page = parse_page(index, start, limit)
        peer = _optional(peer_id, lambda v: parse_node_id(v, "peer_id"))
        msg_type = _optional(type, _msg_type)
        return {"messages": [m.to_json() for m in self.store.list_messages(peer, msg_type, page)]}

    def wait(
        self, request: Request, nextvalue: Any, peer_id: Any = None, type: Any = None, timeout: Any = None
    ) -> Any:
        """Wait for the first stored message with created_index >= {nextvalue} (matching {peer_id}, {type}).

        Returns at once if one is stored; with {timeout} (seconds), fails when none comes in time.
        """
        assert self.store is not None
        start = parse_uint("nextvalue", nextvalue, U64_MAX)
        peer = _optional(peer_id, lambda v: parse_node_id(v, "peer_id"))
        msg_type = _optional(type, _msg_type)
        seconds = None if timeout is None else _seconds(timeout, "timeout", allow_zero=True)
        found = self.store.first_message(start, peer, msg_type)
        if found is not None:
            return found.to_json()
        if seconds == 0:
            raise self._wait_timeout(start, 0)

        def on_fail(reason: str) -> None:
            answer_error(request, self._wait_timeout(start, seconds or 0))

        self.waiters.add(
            Waiter(
                min_index=start,
                on_message=lambda m: answer(request, m.to_json()),
                on_fail=on_fail,
                peer_id=peer,
                type=msg_type,
                deadline=None if seconds is None else self.waiters.clock() + seconds,
            )
        )
        return PENDING

    @staticmethod
    def _wait_timeout(start: int, seconds: float) -> CustomMsgError:
        return CustomMsgError(
            errors.WAIT_TIMEOUT,
            f"no message with created_index >= {start} arrived within {seconds:g} seconds",
            {"nextvalue": start, "timeout": seconds},
        )

    def delete(self, request: Request, created_index: Any = None, up_to: Any = None) -> Any:
        """Delete one stored message ({created_index}), or every message up to and including {up_to}."""
        assert self.store is not None
        if (created_index is None) == (up_to is None):
            raise ValidationError(
                errors.INVALID_PARAMETER, "give exactly one of created_index and up_to", {"param": "created_index"}
            )
        if created_index is not None:
            index = parse_uint("created_index", created_index, U64_MAX)
            if self.store.delete_messages(created_index=index) == 0:
                raise CustomMsgError(
                    errors.MESSAGE_NOT_FOUND, f"no stored message with created_index {index}", {"created_index": index}
                )
            return {"deleted": 1}
        return {"deleted": self.store.delete_messages(up_to=parse_uint("up_to", up_to, U64_MAX))}

    def stats(self, request: Request, peer_id: Any = None, type: Any = None) -> Any:
        """Messages sent, received, stored and dropped, per peer and type: this session and in total."""
        assert self.store is not None
        peer = _optional(peer_id, lambda v: parse_node_id(v, "peer_id"))
        msg_type = _optional(type, _msg_type)
        totals = self.store.counters(peer, msg_type)
        session: dict[tuple[str, int], Counter[str]] = {}
        with self._count_lock:
            session_counts = list(self.session.items())
        for (p, t, name), count in session_counts:
            if (peer is None or p == peer) and (msg_type is None or t == msg_type):
                session.setdefault((p, t), Counter())[name] += count

        def shape(counts: Counter[str]) -> dict[str, Any]:
            return {
                "sent": counts["sent"],
                "received": counts["received"],
                "stored": counts["stored"],
                "dropped": {
                    "rate": counts["dropped_rate"],
                    "retention": counts["dropped_retention"],
                    "storage": counts["dropped_storage"],
                },
            }

        rows = [
            {
                "peer_id": p,
                "type": t,
                "session": shape(session.get((p, t), Counter())),
                "total": shape(totals.get((p, t), Counter())),
            }
            for p, t in sorted(set(totals) | set(session))
        ]
        sum_session: Counter[str] = Counter()
        sum_total: Counter[str] = Counter()
        for counts in session.values():
            sum_session.update(counts)
        for counts in totals.values():
            sum_total.update(counts)
        assert set(COUNTER_NAMES) >= set(sum_total) | set(sum_session)
        return {
            "started_at": round(self.started_at, 3),
            "inbox_count": self.store.inbox_count,
            "malformed": self.malformed,
            "waiting": len(self.waiters),
            "session": shape(sum_session),
            "total": shape(sum_total),
            "peers": rows,
        }

    def list_outbox(
        self,
        request: Request,
        peer_id: Any = None,
        status: Any = None,
        index: Any = None,
        start: Any = None,
        limit: Any = None,
    ) -> Any:
        """List outbox entries (queued, sending, sent, expired, cancelled, failed); paginate like listforwards."""
        assert self.store is not None
        page = parse_page(index, start, limit, ("created", "updated"))
        peer = _optional(peer_id, lambda v: parse_node_id(v, "peer_id"))
        if status is not None and status not in OUTBOX_STATUSES:
            raise ValidationError(
                errors.INVALID_PARAMETER, f"status must be one of {', '.join(OUTBOX_STATUSES)}", {"param": "status"}
            )
        return {"outbox": [e.to_json() for e in self.store.list_outbox(peer, status, page)]}

    def cancel(self, request: Request, id: Any) -> Any:
        """Cancel a queued outbox message by its {id}."""
        assert self.outbox is not None
        return self.outbox.cancel(parse_uint("id", id, U64_MAX)).to_json()

    def request(
        self,
        request: Request,
        node_id: Any,
        msg: Any,
        reply_type: Any,
        reply_prefix: Any = None,
        timeout: Any = None,
        allow_even: Any = False,
    ) -> Any:
        """Send {msg} and return the peer's first reply of type {reply_type} whose body starts with {reply_prefix}.

        Fails after {timeout} seconds (default 60), or at once if the peer disconnects.
        """
        assert self.store is not None
        peer_id, message = check_send_request(node_id, msg, self.own_id, _bool(allow_even, "allow_even"))
        wanted = _msg_type(reply_type, "reply_type")
        if wanted not in self.types:
            raise ValidationError(
                errors.REPLY_TYPE_NOT_RECEIVED,
                f"reply_type {wanted} is not kept in the inbox (custommsg-type is {','.join(self.types.describe())}), "
                "so a reply could never be seen",
                {"reply_type": wanted},
            )
        prefix = b"" if reply_prefix is None else decode_hex(reply_prefix, "reply_prefix")
        seconds = DEFAULT_REQUEST_TIMEOUT if timeout is None else _seconds(timeout, "timeout")
        sent = {"peer_id": peer_id, "type": message.type, "length": len(message)}

        def on_reply(reply: StoredMessage) -> None:
            answer(request, {"request": sent, "reply": reply.to_json()})

        def on_fail(reason: str) -> None:
            if reason == "timeout":
                error = CustomMsgError(
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
            answer_error(request, error)

        # Parked before the send, from the main thread, which also runs the hook:
        # no reply can slip in between the send and the wait.
        waiter = self.waiters.add(
            Waiter(
                min_index=self.store.last_index() + 1,
                on_message=on_reply,
                on_fail=on_fail,
                peer_id=peer_id,
                type=wanted,
                body_prefix=prefix,
                deadline=self.waiters.clock() + seconds,
                exclusive=True,
            )
        )

        def after_send(failure: CustomMsgError | None) -> None:
            if failure is not None and self.waiters.remove(waiter):
                answer_error(request, failure)

        self._send(request, peer_id, message, after_send)
        return PENDING


def build_plugin(**plugin_args: Any) -> Plugin:
    """The Plugin with every method, hook and option registered; nothing runs until ``run()``."""
    plugin = EventLoopPlugin(**plugin_args)
    CustomMsgPlugin(plugin)
    return plugin
