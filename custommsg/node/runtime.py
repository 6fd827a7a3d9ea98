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
from typing import Any

from pyln.client import NodeVersion

from .. import __version__
from ..acked.delivery import AckedDelivery
from ..core import errors
from ..core.completion import WaiterRegistry
from ..core.envelope import ACK_TYPES, Envelope
from ..core.errors import CustomMsgError, PeerError
from ..core.options import Config, parse_options
from ..core.policy import PeerRateLimiter
from ..core.records import OutboxEntry
from ..core.wire import Message
from ..inbox.counters import Counters
from ..inbox.receiver import Receiver
from ..lsps.endpoint import LspsEndpoint
from ..outbox.machine import Outbox, envelope_of, message_of
from ..store.database import Store
from .eventloop import ConnectedPeers, EventLoopPlugin, SenderThread, TimerThread
from .rpcclient import LOST, AsyncRpc, LightningdError, PersistentRpc, native_error, unreachable

# custommsg and rpc_command hook filters (CLN PR #8677, lightningd/plugin_hook.c).
MIN_CLN_VERSION = "v25.12"
STORED_TOPIC = "custommsg_stored"
DELIVERED_TOPIC = "custommsg_delivered"

Done = Callable[[CustomMsgError | None], None]  # a send's outcome: None when lightningd took it


MAIN_THREAD = "MainThread"


def _owned_by(thread_name: str) -> None:
    """The table in ``eventloop``, enforced where breaking it would corrupt a connection."""
    if threading.current_thread().name != thread_name:
        raise RuntimeError(f"called on {threading.current_thread().name}: {thread_name} only")


class Disabled(Exception):
    """init cannot build the runtime: lightningd is told to disable the plugin, with this reason."""


def wallet_of(plugin: EventLoopPlugin) -> str | None:
    """lightningd's ``wallet`` option, when it is set (listconfigs has no entry for the default, a
    SQLite file). Asked only to follow it: the plugin never shows it (it may hold a password)."""
    configs = plugin.rpc.listconfigs().get("configs", {})
    wallet = configs.get("wallet")
    value = wallet.get("value_str") if isinstance(wallet, dict) else None
    return value if isinstance(value, str) else None


class Runtime:
    def __init__(self, plugin: EventLoopPlugin, config: Config, store: Store, own_id: str, rpc_path: str,
                 connected: list[str]):
        log = plugin.log
        self.plugin = plugin
        self.config = config
        self.store = store
        self.own_id = own_id
        self.started_at = time.time()
        self.connected = ConnectedPeers(connected)
        self.waiters = WaiterRegistry(on_callback_error=lambda text: log(f"custommsg waiter: {text}", level="warn"))
        self.counters = Counters(store)
        self.outbox = Outbox(store, config.outbox_max, on_settled=self._settled)
        self.receiver = Receiver(
            store, self.counters, PeerRateLimiter(rate=config.peer_rate, burst=float(config.peer_burst)),
            self.waiters, config.inbox_max, notify=lambda entry: plugin.notify(STORED_TOPIC, entry), log=log,
        )
        self.lsps = LspsEndpoint(store, self.receiver, self.waiters, self.send_now, log, clock=self.waiters.clock)
        self.acked = AckedDelivery(
            store, self.outbox, self.receiver, self._post, self.deliver_soon,
            notify_delivered=lambda entry: plugin.notify(DELIVERED_TOPIC, entry.to_json()), log=log,
            hello_timeout=config.hello_timeout, retransmit_after=config.retransmit_after,
            enabled=config.acked_delivery,
        )
        self.sender = SenderThread(log)
        self.timer = TimerThread(self.waiters, self.sweep, log)
        self.async_rpc = AsyncRpc(
            rpc_path, on_socket_change=plugin.rpc_socket_changed,
            on_callback_error=lambda text: log(f"custommsg: {text}", level="warn"),
        )
        self._sender_rpc = PersistentRpc(rpc_path)  # the sender thread's own

    # -- lifecycle ------------------------------------------------------------

    @classmethod
    def build(cls, plugin: EventLoopPlugin, options: dict[str, Any], configuration: dict[str, Any]) -> Runtime:
        """Everything init needs, asked of lightningd and built; Disabled if the plugin cannot run."""
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
        try:
            config = parse_options(options, lightning_dir, os.environ, wallet_of(plugin), info["id"])
            store = Store(config.db_path, config.db_schema, config.import_from)
        except CustomMsgError as exc:
            raise Disabled(exc.message) from None
        if store.imported:
            plugin.log(f"imported {store.imported} from {config.import_from} into {store.describe()} "
                       "(once: the file is left as it was)")
        connected = [peer["id"] for peer in plugin.rpc.listpeers()["peers"] if peer.get("connected")]
        rpc_path = os.path.join(lightning_dir, configuration["rpc-file"])
        return cls(plugin, config, store, info["id"], rpc_path, connected)

    def start(self) -> None:
        """Main thread, once, at the end of init: the threads start, and the work a start owes begins."""
        self.plugin.attach_rpc(self.async_rpc)
        if self.outbox.recover():
            self.plugin.log("outbox: queued again the messages a previous run was sending when it stopped")
        self.sender.start()
        self.timer.start()
        for peer_id in self.connected.snapshot():
            self.acked.connected(peer_id)
        self.deliver_to_connected()
        self.plugin.log(
            f"custommsg {__version__}: inbox {self.store.describe()} ({self.store.inbox.count} messages), "
            f"types {','.join(self.config.types.describe())}, guard {'on' if self.config.guard else 'off'}"
        )

    def stop(self) -> None:
        self.timer.stop()
        self.sender.stop()
        self.store.close()

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

    def send_now(
        self, peer_id: str, message: Message, done: Done, on_crash: Callable[[Exception], None], ordered: bool = True,
    ) -> None:
        """Any thread: hand ``message`` to lightningd, then call ``done``. From the main loop when
        called on it and the peer is connected as far as we know; else from the sender thread,
        after asking lightningd if the peer is not. Unless ``ordered`` is False (acknowledged
        delivery's hellos and acks), a message waits behind what the sender thread is sending to
        that peer."""
        on_main = threading.current_thread().name == MAIN_THREAD
        if on_main and peer_id in self.connected and not (ordered and self.sender.busy(peer_id)):
            self._send_from_loop(peer_id, message, done)
            return

        def job() -> None:
            try:
                if peer_id not in self.connected:
                    self._check_peer(peer_id)
                self._native_send(peer_id, message, counted_as=message.type)
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

    def _send_from_loop(self, peer_id: str, message: Message, done: Done) -> None:
        """Main thread only: write the call and return to the loop; ``done`` runs on the answer."""
        _owned_by(MAIN_THREAD)

        def on_answer(result: Any, error: dict[str, Any] | None) -> None:
            if error is None:
                if message.type not in ACK_TYPES:
                    self.counters.count(peer_id, message.type, "sent")
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
            self.counters.count(peer_id, counted_as, "sent")

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
        """Sender thread: one outbox entry to lightningd, an acknowledged one as its envelope."""
        if entry.ack:
            envelope = envelope_of(entry)
            self.acked.sending(peer_id, envelope)
            self._native_send(peer_id, envelope.message(), counted_as=entry.type)
        else:
            self._native_send(peer_id, message_of(entry), counted_as=entry.type)

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
        if report.expired or report.interrupted or len(report.sent) > 1:
            self.plugin.log(
                f"outbox: {len(report.sent)} sent, {len(report.expired)} expired for {peer_id}"
                + (" (interrupted by a disconnect)" if report.interrupted else ""),
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
