"""The running plugin: everything ``init`` builds, built in one step, and how a message gets to lightningd.

:meth:`Runtime.build` asks lightningd what it needs (``getinfo``, the connected peers),
reads the options, opens the database and builds every part; only then does
:meth:`Runtime.start` start the threads, so no thread ever sees a part half built.
Until ``init`` has run there is no runtime at all: ``node.plugin`` answers a method
call with NOT_READY, and the hooks with what is safe (``continue``; the guard refuses
what would crash the node).

The send path: from the main loop when the peer is connected as far as we know
(non-blocking), else from the sender thread. Which thread may touch what is written
in ``eventloop``.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyln.client import NodeVersion

from .. import __version__
from ..acked.delivery import AckedDelivery
from ..core import errors
from ..core.blip50 import LSPS0_MESSAGE_TYPE
from ..core.completion import WaiterRegistry
from ..core.envelope import ACK_TYPES, Envelope
from ..core.errors import CustomMsgError, OverBudget, PeerError, TransientError
from ..core.options import Config, parse_options
from ..core.policy import Budget, ReceiveLimiter, SendBudget
from ..core.protocols import PROTOCOLS_FOLDER, Protocols, Spec
from ..core.records import OutboxEntry
from ..core.wire import Message
from ..inbox.counters import Counters
from ..inbox.receiver import Receiver
from ..lsps.endpoint import LspsEndpoint
from ..outbox.machine import Outbox, envelope_of, message_of
from ..protocols.files import folder_specs, read_spec
from ..store.acked import MAX_STREAMS_PER_PEER
from ..store.database import Store
from ..store.inbox import IN_ALL as LSPS_REQUESTS
from ..store.inbox import PER_PEER as LSPS_REQUESTS_PER_PEER
from .eventloop import ConnectedPeers, EventLoopPlugin, SenderThread, TimerThread, WatchThread
from .rpcclient import LOST, AsyncRpc, LightningdError, PersistentRpc, native_error, unreachable

# custommsg and rpc_command hook filters (CLN PR #8677, lightningd/plugin_hook.c).
MIN_CLN_VERSION = "v25.12"
STORED_TOPIC = "custommsg_stored"
DELIVERED_TOPIC = "custommsg_delivered"

Done = Callable[[CustomMsgError | None], None]  # a send's outcome: None when lightningd took it


MAIN_THREAD = "MainThread"


def _silent(entry: dict[str, Any]) -> None:
    """custommsg-stored-notification=false: lightningd reads, checks and copies every notification a plugin
    writes (lightningd/plugin.c, plugin_notification_handle), subscribers or not."""


def _owned_by(thread_name: str) -> None:
    """The table in ``eventloop``, enforced where breaking it would corrupt a connection."""
    if threading.current_thread().name != thread_name:
        raise RuntimeError(f"called on {threading.current_thread().name}: {thread_name} only")


class Disabled(Exception):
    """init cannot build the runtime: lightningd is told to disable the plugin, with this reason."""


# Types this plugin reads itself, before any registered protocol could see them.
OWN_TYPES: dict[int, str] = {
    **{t: "acknowledged delivery" for t in ACK_TYPES},
    LSPS0_MESSAGE_TYPE: "bLIP-50, custommsg-lsps-call",
}


@dataclass
class Folder:
    """The protocols folder, as read when lightningd asked for the manifest: its specs, or why it could not be."""

    specs: list[Spec] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def read(cls, network_dir: str | None = None) -> Folder:
        """The folder's specs under ``network_dir`` (default: the working directory), checked together
        as they will be registered at init."""
        try:
            specs = folder_specs(os.getcwd() if network_dir is None else network_dir)
            trial = Protocols(OWN_TYPES)
            for spec in specs:
                trial.register(spec)
        except CustomMsgError as exc:
            return cls(error=exc.message)
        except OSError as exc:  # no working directory (it was removed)
            return cls(error=f"cannot be read: {exc}")
        return cls(specs)

    def even_types(self) -> list[int]:
        return sorted({m.type for spec in self.specs for m in spec.messages if m.type % 2 == 0})


def register_protocols(folder: Folder, paths: tuple[str, ...]) -> tuple[Protocols, list[str]]:
    """The folder's specs, then the option's files (a file of the folder named again is skipped);
    SpecError if one is refused; else the registry and the warnings to log."""
    protocols = Protocols(OWN_TYPES)
    warnings: list[str] = []
    for spec in folder.specs:
        warnings += protocols.register(spec)
    registered = {os.path.realpath(spec.source) for spec in folder.specs}
    for path in paths:
        if os.path.realpath(path) not in registered:  # a file given twice is registered once
            registered.add(os.path.realpath(path))
            warnings += protocols.register(read_spec(path))
    return protocols, warnings


def wallet_of(plugin: EventLoopPlugin) -> str | None:
    """lightningd's ``wallet`` option, when it is set (listconfigs has no entry for the default, a
    SQLite file). Asked only to follow it: the plugin never shows it (it may hold a password)."""
    configs = plugin.rpc.listconfigs().get("configs", {})
    wallet = configs.get("wallet")
    value = wallet.get("value_str") if isinstance(wallet, dict) else None
    return value if isinstance(value, str) else None


class Runtime:
    def __init__(self, plugin: EventLoopPlugin, config: Config, store: Store, own_id: str, rpc_path: str,
                 connected: list[str], protocols: Protocols | None = None, network_dir: str = ""):
        log = plugin.log
        self.plugin = plugin
        self.config = config
        self.store = store
        self.own_id = own_id
        self.started_at = time.time()
        self.network_dir = network_dir
        self.protocols = protocols or Protocols(OWN_TYPES)
        self.connected = ConnectedPeers(connected)
        self.waiters = WaiterRegistry(on_callback_error=lambda text: log(f"custommsg waiter: {text}", level="warn"))
        self.counters = Counters(store)
        self.outbox = Outbox(store, config.outbox_max, on_settled=self._settled)
        limiter = ReceiveLimiter(Budget(config.peer_rate, float(config.peer_burst)), config.peer_bytes,
                                 config.global_bytes)
        self.receiver = Receiver(
            store, self.counters, limiter,
            self.waiters, config.inbox_max, log=log,
            notify=functools.partial(self._notify, STORED_TOPIC) if config.stored_notification else _silent,
            protocols=self.protocols,
        )
        self.send_budget = SendBudget(config.send_bytes)
        self._budget_lock = threading.Lock()  # the send budget is spent from the main loop and the sender thread
        self.lsps = LspsEndpoint(store, self.receiver, self.waiters, self.send_now, log, clock=self.waiters.clock,
                                 spend=self.spend)
        self.acked = AckedDelivery(
            store, self.outbox, self.receiver, self._post, self.deliver_soon,
            notify_delivered=lambda entry: self._notify(DELIVERED_TOPIC, entry.to_json()), log=log,
            hello_timeout=config.hello_timeout, retransmit_after=config.retransmit_after, ack_delay=config.ack_delay,
            enabled=config.acked_delivery, wake_at=plugin.wake_at,
        )
        self.sender = SenderThread(log)
        self.timer = TimerThread(self.waiters, self.sweep, log)
        self.watcher = None if store.watch is None else WatchThread(store.watch, log)
        self.async_rpc = AsyncRpc(
            rpc_path, on_socket_change=plugin.rpc_socket_changed,
            on_callback_error=lambda text: log(f"custommsg: {text}", level="warn"),
        )
        self._sender_rpc = PersistentRpc(rpc_path)  # the sender thread's own

    # -- lifecycle ------------------------------------------------------------

    @classmethod
    def build(cls, plugin: EventLoopPlugin, options: dict[str, Any], configuration: dict[str, Any],
              folder: Folder | None = None) -> Runtime:
        """Everything init needs, asked of lightningd and built; Disabled if the plugin cannot run.
        ``folder``: the protocols folder as the manifest was built from it."""
        info = plugin.rpc.getinfo()
        version = str(info.get("version", ""))
        try:
            too_old = NodeVersion(version) < MIN_CLN_VERSION
        except ValueError:  # names no release we can compare: a source build
            too_old = False
        if too_old:
            raise Disabled(f"custommsg needs Core Lightning {MIN_CLN_VERSION} or newer (hook filters); "
                           f"this node runs {version}")
        lightning_dir = configuration["lightning-dir"]
        folder = folder or Folder()
        if folder.error is not None:
            raise Disabled(f"{PROTOCOLS_FOLDER}: {folder.error}")
        try:
            config = parse_options(options, lightning_dir, os.environ, wallet_of(plugin), info["id"])
            protocols, warnings = register_protocols(folder, config.protocol_paths)
            store = Store(config.db_path, config.db_schema, config.import_from)
        except CustomMsgError as exc:
            raise Disabled(exc.message) from None
        for warning in warnings:
            plugin.log(warning, level="warn")
        if store.imported:
            plugin.log(f"imported {store.imported} from {config.import_from} into {store.describe()} "
                       "(once: the file is left as it was)")
        connected = [peer["id"] for peer in plugin.rpc.listpeers()["peers"] if peer.get("connected")]
        rpc_path = os.path.join(lightning_dir, configuration["rpc-file"])
        return cls(plugin, config, store, info["id"], rpc_path, connected, protocols, lightning_dir)

    def start(self) -> None:
        """Main thread, once, at the end of init: the threads start, and the work a start owes begins."""
        self.plugin.attach_rpc(self.async_rpc)
        self.plugin.alarm = self.acked.owed_acks
        self.plugin.settle = self.receiver.settle
        self.receiver.batched = True
        if self.outbox.recover():
            self.plugin.log("outbox: queued again the messages a previous run was sending when it stopped")
        self.sender.start()
        self.timer.start()
        if self.watcher is not None:
            self.watcher.start()
        for peer_id in self.connected.snapshot():
            self.acked.connected(peer_id)
        self.deliver_to_connected()
        self.plugin.log(
            f"custommsg {__version__}: inbox {self.store.describe()} ({self.store.inbox.count} messages), "
            f"types {','.join(self.config.types.describe())}, guard {'on' if self.config.guard else 'off'}, "
            f"{len(self.protocols.by_type)} protocol messages"
        )

    def stop(self) -> None:
        """Main thread (the shutdown notification): what the round held is stored before the store closes."""
        self.receiver.settle()
        self.timer.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.sender.stop()
        self.store.close()

    def _notify(self, topic: str, entry: dict[str, Any]) -> None:
        """Emit ``topic`` with ``entry`` as the object named ``topic`` in its params, as lightningd's own
        notifications are written, and only so: pyln's ``notify`` would also copy the entry's fields
        beside it, doubling what lightningd reads for every notification, subscribed or not
        (lightningd/plugin.c: plugin_notification_handle)."""
        self.plugin.notify(topic, {topic: entry})

    def _settled(self, entry: OutboxEntry) -> None:
        self.waiters.wake(("outbox", entry.id), entry)

    # -- peers (main thread) ----------------------------------------------------

    def peer_connected(self, peer_id: str) -> None:
        self.connected.add(peer_id)
        self.lsps.connected(peer_id)
        self.acked.connected(peer_id)
        if self.outbox.has_queued(peer_id):
            self.sender.put(peer_id, functools.partial(self.deliver, peer_id))

    def peer_disconnected(self, peer_id: str) -> None:
        self.connected.discard(peer_id)
        self.waiters.fail(lambda w: w.exclusive and w.peer_id == peer_id, "disconnected")
        self.lsps.disconnected(peer_id)
        self.acked.disconnected(peer_id)

    # -- sending --------------------------------------------------------------

    def spend(self, peer_id: str, length: int) -> None:
        """Any thread: take ``length`` bytes from the peer's send budget, or raise OverBudget (taking nothing)."""
        with self._budget_lock:
            wait = self.send_budget.take(peer_id, length)
        if wait:
            raise OverBudget(peer_id, length, wait)

    def spend_if_room(self, peer_id: str, length: int) -> bool:
        """Any thread: :meth:`spend`, saying False (taking nothing) instead of raising when there is no room."""
        with self._budget_lock:
            return not self.send_budget.take(peer_id, length)

    def refund(self, peer_id: str, length: int) -> None:
        """Any thread: a message :meth:`spend` paid for did not go."""
        with self._budget_lock:
            self.send_budget.give_back(peer_id, length)

    def send_budget_left(self, peer_id: str) -> int | None:
        with self._budget_lock:
            return self.send_budget.left(peer_id)

    def send_now(
        self, peer_id: str, message: Message, done: Done, on_crash: Callable[[Exception], None], ordered: bool = True,
        counted_as: int | None = None,
    ) -> None:
        """Any thread: hand ``message`` to lightningd, then call ``done``. From the main loop when
        called on it and the peer is connected as far as we know; else from the sender thread,
        after asking lightningd if the peer is not. Unless ``ordered`` is False (acknowledged
        delivery's hellos and acks), a message waits behind what the sender thread is sending to
        that peer. It counts as sent under its type, or ``counted_as`` (an envelope: its inner one's)."""
        counted = message.type if counted_as is None else counted_as
        on_main = threading.current_thread().name == MAIN_THREAD
        if on_main and peer_id in self.connected and not (ordered and self.sender.busy(peer_id)):
            self._send_from_loop(peer_id, message, done, counted)
            return

        def job() -> None:
            try:
                if peer_id not in self.connected:
                    self._check_peer(peer_id)
                self._native_send(peer_id, message, counted_as=counted)
            except CustomMsgError as exc:
                done(exc)
            else:
                done(None)

        self.sender.put(peer_id, job, on_crash)

    def queue_delivery(self, peer_id: str) -> None:
        """Start draining the peer's outbox; if it is not connected as far as we know, ask
        lightningd first, in case it connected before its notification reached us."""
        deliver = self.deliver if peer_id in self.connected else self._probe_and_deliver
        self.sender.put(peer_id, functools.partial(deliver, peer_id))

    def _send_from_loop(self, peer_id: str, message: Message, done: Done, counted_as: int) -> None:
        """Main thread only: write the call and return to the loop; ``done`` runs on the answer."""
        _owned_by(MAIN_THREAD)

        def on_answer(result: Any, error: dict[str, Any] | None) -> None:
            if error is None:
                if counted_as not in ACK_TYPES:
                    self.counters.count(peer_id, counted_as, "sent", len(message))
                done(None)
            elif error.get(LOST):
                done(unreachable(ConnectionError(error.get("message"))))
            else:
                done(self._native_failure(error, peer_id))

        try:
            self.async_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": message.hex()}, on_answer)
        except OSError as exc:  # could not even connect
            done(unreachable(exc))

    def _native_send(self, peer_id: str, message: Message, counted_as: int | None) -> None:
        """Sender thread only: hand one message to lightningd, blocking; counted as sent under the
        type ``counted_as`` (an envelope: its inner message's; hellos, acks and resends: None)."""
        _owned_by(SenderThread.NAME)
        try:
            self._sender_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": message.hex()})
        except LightningdError as exc:
            raise self._native_failure(exc.error, peer_id) from None
        except (OSError, EOFError) as exc:
            raise unreachable(exc) from exc
        if counted_as is not None and counted_as not in ACK_TYPES:
            self.counters.count(peer_id, counted_as, "sent", len(message))

    def _post(self, peer_id: str, message: Message) -> None:
        """Any thread: send an acknowledged-delivery hello or ack; a failure is only logged."""

        def done(failure: CustomMsgError | None) -> None:
            if failure is not None:
                self.plugin.log(f"could not send type {message.type} to {peer_id}: {failure.message}", level="debug")

        def crashed(exc: Exception) -> None:
            done(CustomMsgError(errors.JSONRPC_INTERNAL_ERROR, repr(exc)))

        self.send_now(peer_id, message, done, crashed, ordered=False)

    def _native_failure(self, error: dict[str, Any], peer_id: str) -> CustomMsgError:
        failure = native_error(error, peer_id)
        if isinstance(failure, PeerError):
            self.connected.discard(peer_id)  # lightningd knows better than our notifications did
        return failure

    def _check_peer(self, peer_id: str) -> None:
        """Sender thread only. Our connection state said no: ask lightningd, which also tells
        unknown from offline."""
        try:
            peers = self._sender_rpc.call("listpeers", {"id": peer_id})["peers"]
        except (OSError, EOFError, LightningdError) as exc:
            raise unreachable(exc) from exc
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

    # -- bounds -----------------------------------------------------------------

    def bounds(self) -> dict[str, dict[str, int]]:
        """custommsg-stats: each bound on what peers and callers can make the plugin keep, its ``max``, what it
        holds ``now`` where that is one number, and how often something went past it this run (``over``)."""
        limiter, calls, support = self.receiver.limiter, self.lsps.calls, self.acked.support
        refused = self.lsps.refused_requests
        return {
            "receive_limiter_peers": {"max": limiter.max_peers, "now": len(limiter), "over": limiter.evicted},
            "send_budget_peers": {"max": self.send_budget.max_peers, "now": len(self.send_budget),
                                  "over": self.send_budget.evicted},
            "waits": {"max": self.waiters.max_waiters, "now": len(self.waiters), "over": self.waiters.refused},
            "lsps_calls": {"max": calls.total_max, "now": len(calls), "over": calls.refused_total},
            "lsps_calls_per_peer": {"max": calls.per_peer_max, "over": calls.refused_per_peer},
            "lsps_requests": {"max": self.lsps.request_bounds[1], "over": refused[LSPS_REQUESTS]},
            "lsps_requests_per_peer": {"max": self.lsps.request_bounds[0], "over": refused[LSPS_REQUESTS_PER_PEER]},
            "acked_streams_per_peer": {"max": MAX_STREAMS_PER_PEER, "over": self.acked.streams_forgotten},
            "acked_peers": {"max": support.max_peers, "now": len(support), "over": support.forgotten},
        }

    # -- the outbox -----------------------------------------------------------

    def deliver_to_connected(self) -> None:
        """Start delivery for every connected peer with queued messages and no delivery under way."""
        for peer_id in self.store.outbox.peers_with_queued():
            if peer_id in self.connected and not self.sender.busy(peer_id):
                self.sender.put(peer_id, functools.partial(self.deliver, peer_id))

    def _probe_and_deliver(self, peer_id: str) -> None:
        try:
            self._check_peer(peer_id)
        except CustomMsgError:
            return  # not connected (or lightningd unreachable): the connect notification will come
        self.deliver(peer_id)

    def deliver_soon(self, peer_id: str, *, resend_unacknowledged: bool, even_if_busy: bool) -> None:
        """Any thread: deliver the peer's outbox on the sender thread, sending its unacknowledged
        entries again first if asked. With ``even_if_busy`` (the peer just said hello, so it is
        connected whatever our notifications say) always; else only if it is connected and no
        delivery to it is under way already."""
        if even_if_busy or (peer_id in self.connected and not self.sender.busy(peer_id)):
            self.sender.put(peer_id, functools.partial(self.deliver, peer_id, resend_unacknowledged))

    def _hand_over(self, peer_id: str, entry: OutboxEntry) -> None:
        """Sender thread: one outbox entry to lightningd, an acknowledged one as its envelope, paid from the
        peer's send budget (OverBudget: it waits, and the sweep tries again)."""
        message: Message = envelope_of(entry).message() if entry.ack else message_of(entry)
        self.spend(peer_id, len(message))
        if entry.ack:
            message = self.acked.sending(peer_id, envelope_of(entry)).message()  # as 47437 if more are in flight
        try:
            self._native_send(peer_id, message, counted_as=entry.type)
        except TransientError:
            self.refund(peer_id, len(message))
            raise

    def send_started(self, entry: OutboxEntry, done: Done, on_crash: Callable[[Exception], None]) -> None:
        """Main thread: the envelope of an entry that entered the outbox ``sent`` (first in line, with
        its seq, its bytes already paid from the send budget) goes as a plain send goes: from the loop,
        unless the sender thread is busy with the peer (then behind that, in order). Every copy of it
        carries the same seq, so a resend racing it is harmless: the receiver stores the seq once."""
        envelope = self.acked.sending(entry.peer_id, envelope_of(entry))
        self.send_now(entry.peer_id, envelope.message(), done, on_crash, counted_as=entry.type)

    def _resend(self, peer_id: str, envelope: Envelope) -> None:
        self._native_send(peer_id, envelope.message(), counted_as=None)  # counted at its first hand-off

    def deliver(self, peer_id: str, resend_unacknowledged: bool = False) -> None:
        """Sender thread only: hand the peer's outbox over (its unacknowledged entries first, if asked)."""
        if resend_unacknowledged and not self.acked.resend(peer_id, self._resend):
            return  # the peer went away: its next connection starts over
        report = self.outbox.deliver(peer_id, self._hand_over, self.acked.ready)
        for entry in report.failed:
            self.plugin.log(f"outbox {entry.id} to {peer_id} failed: {entry.reason}", level="warn")
        # Not for the one entry an ack=true send hands over: a log line per message would cost
        # more than the message (lightningd writes debug lines at the log levels tests use).
        if report.expired or report.interrupted or report.over_budget or len(report.sent) > 1:
            self.plugin.log(
                f"outbox: {len(report.sent)} sent, {len(report.expired)} expired for {peer_id}"
                + (" (interrupted by a disconnect)" if report.interrupted else "")
                + (" (the rest waits for its send budget)" if report.over_budget else ""),
                level="debug",
            )

    def sweep(self) -> None:
        """Timer thread, once a second: expire queued messages, and restart cut-short deliveries.
        (Waits and calls end at their own deadlines: the timer thread expires them first.)"""
        for entry in self.outbox.expire_due():
            self.plugin.log(f"outbox {entry.id} to {entry.peer_id} {entry.status}: {entry.reason}", level="info")
        self.acked.sweep()
        # A delivery cut short (the peer dropped and came back before we noticed)
        # would otherwise wait for the next connection.
        self.deliver_to_connected()
