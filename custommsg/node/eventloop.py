"""The plugin's threads (three, and a fourth on PostgreSQL), what each may touch, and the main loop.

* The **main thread** runs :class:`EventLoopPlugin`: it waits on lightningd's pipe
  and on one long-lived RPC socket (``rpcclient.AsyncRpc``). It answers both hooks
  straight from the pipe, runs every RPC method and notification handler, and sends
  to connected peers: it writes the ``sendcustommsg`` and goes back to the pipe,
  where lightningd then asks our own ``rpc_command`` guard about that very call
  (lightningd/jsonrpc.c runs the hook before the command, whoever called it; a
  plugin that waited for the answer instead would deadlock). The answer is handled
  when it comes back on the socket. It never makes a blocking call to lightningd
  after ``init``.
* The **sender thread** (:class:`SenderThread`) does what may block: draining a
  peer's outbox, and a send to a peer our connection state does not know (it asks
  lightningd with ``listpeers`` first), over its own ``rpcclient.PersistentRpc``.
  While it has work for a peer, the main thread queues later sends to that peer
  behind it (:meth:`SenderThread.busy`), so each peer's messages keep their order.
* What the main thread writes to lightningd while it handles a round of input (hook
  answers, notifications, method answers, log lines) is held and written at once
  before the loop waits again: one write, and one wake-up of lightningd, for a
  message's ``custommsg_stored`` notification and its hook answer together.
* **Group commit**: before it writes a round's answers, and before it handles anything
  but a hook call, the loop calls ``settle`` (``inbox.Receiver.settle``), which stores
  the plain messages the hook calls held, in one transaction. Calls from several peers
  that came in one read share one commit, each hook answer still goes out only after
  its message is committed, and a method called after them finds them stored.
* The main loop also keeps one **alarm** (:meth:`EventLoopPlugin.wake_at`): the
  receiver's delayed acknowledgements, due within milliseconds, go out from the loop
  itself when it rings, with no thread to wake.
* On PostgreSQL, the **watch thread** (:class:`WatchThread`) calls the store's ``watch``
  four times a second: it ends a call that waited on the server too long (a silent server
  would otherwise hold the main thread, and every peer's messages, behind it), and opens a
  lost connection again, so no other thread ever waits on a connect. It takes no lock.
* The **timer thread** (:class:`TimerThread`) ends every parked wait at its deadline
  (``custommsg-wait``, ``-request``, ``-outbox-wait``, bLIP-50 calls: one
  ``WaiterRegistry``), sleeping until the earliest one, and once a second runs the
  runtime's sweep (outbox expiry, acknowledged delivery's resends and owed hellos,
  cut-short deliveries). What it sends goes through the sender thread.

Who may touch what:

=========================================  ==========================================
state                                      owner
=========================================  ==========================================
lightningd's pipe (reading), the           main thread only
``AsyncRpc`` and its socket, the
selector, ``fast_hooks``, the alarm; so
``Runtime.send_now`` and ``_send_from_loop``
``Receiver`` (its rate limiter, its        main thread only: the hook, ``settle``, and
malformed count, the messages it holds     the methods that read them
for ``settle``), ``LspsEndpoint`` but
its calls and muted peers
lightningd's pipe (writing)                any thread, under ``Plugin.write_lock``
                                           (``seam.answer`` and ``write_*`` take it)
the ``PersistentRpc``, so                  sender thread only
``Runtime._native_send``
``Store`` (and its query parts),           any thread: each has its own lock
``WaiterRegistry`` (and the bLIP-50 calls
in it), ``MutedPeers``, ``Counters``,
``ConnectedPeers``, ``AckedDelivery``
``SenderThread``'s queue and busy counts   any thread, behind its lock
the ``Runtime`` itself, its configuration  built by ``init`` on the main thread before
and ``own_id``                             any other thread starts; read-only after
=========================================  ==========================================

This module starts every thread the plugin has, and knows nothing of what the jobs
do: the runtime hands it callables.
"""

from __future__ import annotations

import json
import os
import queue
import re
import selectors
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..core import errors, strictjson
from ..core.completion import WaiterRegistry, call_safely
from ..core.errors import CustomMsgError, StorageError
from ..core.guard import loads_marking_escapes
from .rpcclient import AsyncRpc, split_frames
from .seam import Request, SeamPlugin, answer_error

Log = Callable[..., None]  # plugin.log(message, level=...)

# The head of every request lightningd writes: "jsonrpc", "id", then "method"
# (lightningd/jsonrpc.c: jsonrpc_request_start_), the id captured as written.
_HEAD = rb'\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)\s*,\s*"method"\s*:\s*'
_REQUEST_HEAD = re.compile(_HEAD + rb'"([A-Za-z0-9_.:-]+)"')
# A hook call: that head, then "params" (whose first member, for custommsg, is
# "payload"): lightningd/plugin_hook.c and connect_control.c. Anchored at the start,
# so only the request's own method can match, never a string inside some method's
# params; anything written otherwise takes the general path.
_HOOK_CALL = re.compile(
    _HEAD + rb'"(custommsg|rpc_command)"\s*,\s*"params"\s*:\s*\{(?:\s*"payload"\s*:\s*"([0-9a-fA-F]{4}))?'
)
# The answer's members after the id that let a hook call go on, ready-made: the custommsg
# hook answers it from the first bytes of every message not ours, and the guard to every
# call it lets through.
_CONTINUE = b'"result":{"result":"continue"}'
_CONTINUE_RESULT = {"result": "continue"}


class EventLoopPlugin(SeamPlugin):
    """The main loop: lightningd's pipe and our RPC socket, served from one thread."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.async_rpc: AsyncRpc | None = None
        # Hooks answered straight from the loop. Each is called for every message a
        # peer sends (custommsg) or every native send (rpc_command), and connectd
        # waits for the answer before it reads that peer's next message: pyln's
        # generic dispatch (signature binding, a formatted stack trace per answer)
        # costs more than the work itself. The handlers never raise.
        self.fast_hooks: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.wants_type: Callable[[int], bool] = lambda msg_type: True
        # The alarm: wake_at(t) has alarm() called at time.monotonic() t; it returns its next time.
        self.alarm: Callable[[], float | None] = lambda: None
        # Group commit: store what this round's hook calls held, before the round's answers are written.
        self.settle: Callable[[], None] = lambda: None
        self._alarm_at: float | None = None
        self._held: list[bytes] | None = None  # the main thread's writes this round (serve() sets it)
        self._loop_thread: int | None = None
        self._selector = selectors.DefaultSelector()
        self._watched: tuple[Any, int] | None = None  # the socket registered with the selector, and how

    def attach_rpc(self, rpc: AsyncRpc) -> None:
        """Serve ``rpc``'s answers from this loop (once, from ``init``); ``rpc`` was built with
        :meth:`rpc_socket_changed` as its ``on_socket_change``."""
        self.async_rpc = rpc
        self._watch_rpc_socket()

    def rpc_socket_changed(self) -> None:
        """The AsyncRpc opened or lost its socket, or has something to write: watch it accordingly."""
        self._watch_rpc_socket()

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

    def wake_at(self, when: float) -> None:
        """Main thread: have ``alarm`` called at ``when`` (``time.monotonic()``), or sooner if asked sooner."""
        if self._alarm_at is None or when < self._alarm_at:
            self._alarm_at = when

    def _ring(self) -> None:
        self._alarm_at = None
        try:
            later = self.alarm()
        except Exception:
            self.log(f"custommsg alarm: {traceback.format_exc()}", level="warn")
            return
        if later is not None:
            self.wake_at(later)

    def _settle(self) -> None:
        try:
            self.settle()
        except Exception:
            self.log(f"custommsg: storing a round's messages: {traceback.format_exc()}", level="warn")

    def write_raw(self, data: bytes) -> None:
        if self._held is not None and threading.get_ident() == self._loop_thread:
            self._held.append(data)  # written before the loop waits again (_release)
            return
        super().write_raw(data)

    def _release(self) -> None:
        held, self._held = self._held, []
        if held:
            super().write_raw(b"".join(held))

    def serve(self, stdin: int) -> None:
        self._loop_thread, self._held = threading.get_ident(), []
        try:
            self._serve(stdin)
        finally:
            self._settle()
            self._release()  # a shutdown leaves by SystemExit: what it answered still goes
            self._held = None

    def _serve(self, stdin: int) -> None:
        self._selector.register(stdin, selectors.EVENT_READ, "stdin")
        partial = b""
        while True:
            self._watch_rpc_socket()
            self._release()
            timeout = None if self._alarm_at is None else max(0.0, self._alarm_at - time.monotonic())
            for key, events in self._selector.select(timeout):
                if key.data == "stdin":
                    chunk = os.read(stdin, 1 << 16)
                    if not chunk:
                        return  # lightningd closed our stdin: it is gone
                    messages, partial = split_frames(partial + chunk)
                    for message in messages:
                        self._handle(message)
                    self._settle()
                elif self.async_rpc is not None and key.fileobj is self.async_rpc.sock:
                    # Not when handling stdin earlier in this round lost (or replaced) the socket.
                    if events & selectors.EVENT_READ:
                        self.async_rpc.on_readable()
                    if events & selectors.EVENT_WRITE and self.async_rpc.sock is not None:
                        self.async_rpc.flush()
            if self._alarm_at is not None and time.monotonic() >= self._alarm_at:
                self._ring()

    def on_unbound_params(self, request: Request, exc: TypeError) -> bool:
        # Our methods catch everything they raise, so a TypeError here is pyln
        # binding the parameters: a missing, unknown or extra one. lightningd
        # answers that with -32602, and so do we.
        if not request.method.startswith("custommsg-"):
            return False
        answer_error(request, CustomMsgError(errors.JSONRPC_INVALID_PARAMS, f"{request.method}: {exc}"))
        return True

    def _handle(self, message: bytes) -> None:
        try:
            if self.fast_hooks and self._fast_dispatch(message):
                return
            self._settle()  # a method or notification after hook calls sees their messages stored
            if b'"rpc_command"' in message:
                # The guard must see which strings were written with escapes.
                self.dispatch_decoded(loads_marking_escapes(message))
            else:
                self.dispatch_raw(message)
        except Exception as exc:
            # pyln lets a request it cannot parse escape its loop, which would end the
            # plugin (and, for a guard call, let lightningd run it unchecked).
            self.log(f"cannot handle a request from lightningd: {traceback.format_exc()}", level="warn")
            self._answer_unreadable(message, exc)

    def _answer_unreadable(self, message: bytes, exc: Exception) -> None:
        """Answer a request that could not be read, if its head can be, so no caller waits forever.

        JSON nested deeper than Python's recursion limit is valid to lightningd (jsmn has no
        depth limit), which forwards it to us. A custommsg hook call still gets continue, a
        guard call is refused (fail closed), and a method call gets -32600.
        """
        head = _REQUEST_HEAD.match(message)
        if head is None:
            return
        request_id, method = head[1], head[2].decode()
        if method == "custommsg":
            self._answer(request_id, _CONTINUE)
            return
        if method == "rpc_command":
            refusal = CustomMsgError(
                errors.JSONRPC_INVALID_REQUEST, "custommsg guard could not read this call; refusing it"
            )
            answer: dict[str, Any] = {"result": {"return": {"error": refusal.to_json()}}}
        else:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else "unreadable"
            answer = {"error": {"code": errors.JSONRPC_INVALID_REQUEST, "message": f"{method}: request {reason}"}}
        self._answer(request_id, strictjson.dumps(answer)[1:-1])

    def _answer(self, request_id: bytes, members: bytes) -> None:
        """Answer the request whose id is ``request_id``, kept exactly as it was written (a JSON
        string or number), with ``members``: the answer's "result" or "error" member as JSON."""
        self.write_raw(b'{"jsonrpc":"2.0","id":' + request_id + b"," + members + b"}\n\n")

    def _fast_dispatch(self, message: bytes) -> bool:
        call = _HOOK_CALL.match(message)
        if call is None:
            return False
        name = call[2].decode()
        handler = self.fast_hooks.get(name)
        if handler is None:
            return False
        if name == "custommsg" and call[3] is not None and not self.wants_type(int(call[3], 16)):
            # Most messages of other protocols (commando's 65 kB frames, peer
            # storage) are not ours: answer from their first bytes, unparsed.
            self._answer(call[1], _CONTINUE)
            return True
        # rpc_command: the guard must see which strings were written with escapes.
        request = loads_marking_escapes(message) if name == "rpc_command" else json.loads(message)
        if request.get("method") != name or "id" not in request:
            return False
        result = handler(request.get("params") or {})
        if name == "custommsg" or result == _CONTINUE_RESULT:  # the ready-made answer, with the id as written
            self._answer(call[1], _CONTINUE)
        else:
            self.write_json({"jsonrpc": "2.0", "id": request["id"], "result": result})
        return True


def what_failed(exc: Exception) -> str:
    """A thread's failure, for the log: the database's (a server down, a full disk) in one line, since
    it repeats until the database is back; anything else (a bug) with its traceback."""
    if isinstance(exc, StorageError):
        return exc.message
    return traceback.format_exc()


class SenderThread:
    """Jobs that may block on lightningd, run one at a time in the order given."""

    NAME = "custommsg-sender"

    def __init__(self, log: Log):
        self._log = log
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._busy: Counter[str] = Counter()  # jobs not finished, per peer
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name=self.NAME, daemon=True).start()

    def stop(self) -> None:
        self._jobs.put(None)

    def busy(self, peer_id: str) -> bool:
        """True while a job for ``peer_id`` is queued or running: a later send to it must queue too."""
        with self._lock:
            return self._busy[peer_id] > 0

    def put(self, peer_id: str, job: Callable[[], None], on_crash: Callable[[Exception], None] | None = None) -> None:
        """Queue ``job`` for ``peer_id``; ``on_crash`` answers for it if it raises (a bug)."""
        with self._lock:
            self._busy[peer_id] += 1

        def run() -> None:
            try:
                job()
            except Exception as exc:
                self._report(what_failed(exc))
                if on_crash is not None:
                    call_safely(on_crash, exc, report=self._report)
            finally:
                with self._lock:
                    self._busy[peer_id] -= 1
                    if not self._busy[peer_id]:
                        del self._busy[peer_id]

        self._jobs.put(run)

    def _report(self, text: str) -> None:
        self._log(f"custommsg sender: {text}", level="warn")

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()  # run() reports whatever it raises


class WatchThread:
    """Calls ``watch`` every ``interval`` seconds until stopped; a failure is logged, once until it changes."""

    NAME = "custommsg-watch"

    def __init__(self, watch: Callable[[], None], log: Log, interval: float = 0.25):
        self._watch = watch
        self._log = log
        self._interval = interval
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name=self.NAME, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        failing = ""
        while not self._stopping.wait(self._interval):
            try:
                self._watch()
                failing = ""
            except Exception as exc:
                text = what_failed(exc)
                if text != failing:
                    self._log(f"custommsg watch: {text}", level="warn")
                failing = text


class TimerThread:
    """Ends waits at their deadline; runs ``sweep`` every ``interval`` seconds."""

    def __init__(self, waiters: WaiterRegistry, sweep: Callable[[], None], log: Log, interval: float = 1.0):
        self._waiters = waiters
        self._sweep = sweep
        self._log = log
        self._interval = interval
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="custommsg-timer", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        next_sweep = 0.0
        failing = ""  # the last failure logged, until a sweep succeeds
        waiters = self._waiters
        while not self._stopping.is_set():
            with waiters.changed:  # notified when a wait with an earlier deadline is parked
                deadline = waiters.next_deadline()
                timeout = self._interval if deadline is None else min(self._interval, deadline - waiters.clock())
                if timeout > 0:
                    waiters.changed.wait(timeout)
            try:
                waiters.expire()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._interval
                    self._sweep()
                failing = ""
            except Exception as exc:
                text = what_failed(exc)
                if text != failing:  # a database outage fails every sweep the same way: said once
                    self._log(f"custommsg timer: {text}", level="warn")
                failing = text


class ConnectedPeers:
    """Peers connected as far as lightningd's notifications (and its own errors) told us."""

    def __init__(self, peers: list[str] | None = None) -> None:
        self._peers: set[str] = set(peers or ())
        self._lock = threading.Lock()

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers  # a set lookup is atomic; writers hold the lock

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self._peers)

    def add(self, peer_id: str) -> None:
        with self._lock:
            self._peers.add(peer_id)

    def discard(self, peer_id: str) -> None:
        with self._lock:
            self._peers.discard(peer_id)
