"""The running plugin's state, and how a message gets from a method to lightningd.

:class:`CustomMsgService` owns what ``init`` builds (configuration, store, outbox,
counters, the receive pipeline, both RPC connections), the set of connected peers,
and the send path: from the main loop when the peer is connected as far as we know
(non-blocking), else from the sender thread. Which thread may touch what is written
in ``eventloop``. Acknowledged delivery's state and rules are ``delivery``'s; this
module gives it its sends and schedules its deliveries.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pyln.client import NodeVersion

from . import __version__, errors
from .ack import ACK_LEN, ACK_TYPES, ENVELOPE
from .delivery import AckedDelivery
from .errors import CustomMsgError, PeerError
from .eventloop import ConnectedPeers, EventLoopPlugin, SenderThread, TimerThread
from .lsps import LspsEndpoint
from .options import Config, parse_options
from .outbox import Outbox
from .policy import PeerRateLimiter
from .receive import Receiver
from .rpcclient import LOST, AsyncRpc, LightningdError, PersistentRpc, native_error, unreachable
from .schema import OutboxEntry
from .stats import Counters
from .store import Store
from .waiters import WaiterRegistry
from .wire import TYPE_LEN, Message, message_type

# custommsg and rpc_command hook filters (CLN PR #8677, lightningd/plugin_hook.c).
MIN_CLN_VERSION = "v25.12"
STORED_TOPIC = "custommsg_stored"
DELIVERED_TOPIC = "custommsg_delivered"

Done = Callable[[CustomMsgError | None], None]  # a send's outcome: None when lightningd took it


class CustomMsgService:
    def __init__(self, plugin: EventLoopPlugin):
        self.plugin = plugin
        self.ready = False  # set once init has built everything below
        self.started_at = time.time()
        self.own_id: str | None = None
        self.connected = ConnectedPeers()
        self.waiters = WaiterRegistry()
        self.waiters.on_callback_error = lambda text: plugin.log(f"custommsg waiter: {text}", level="warn")
        self.sender = SenderThread(plugin.log)
        self.timer = TimerThread(self.waiters, self.sweep, plugin.log)
        # Built by init:
        self.config: Config
        self.store: Store
        self.outbox: Outbox
        self.counters: Counters
        self.receiver: Receiver | None = None
        self.lsps: LspsEndpoint
        self.acked: AckedDelivery
        self._sender_rpc: PersistentRpc  # the sender thread's own

    # -- lifecycle ------------------------------------------------------------

    def on_init(self, options: dict[str, Any], configuration: dict[str, Any], plugin: Any, **kwargs: Any) -> Any:
        info = plugin.rpc.getinfo()
        version = str(info.get("version", ""))
        try:
            too_old = NodeVersion(version) < MIN_CLN_VERSION
        except ValueError:  # names no release we can compare: a source build
            too_old = False
        if too_old:
            return {"disable": f"custommsg needs Core Lightning {MIN_CLN_VERSION} or newer (hook filters); "
                    f"this node runs {version}"}
        lightning_dir = configuration["lightning-dir"]
        try:
            self.config = parse_options(options, lightning_dir, os.environ)
            self.store = Store(self.config.db_path)
        except CustomMsgError as exc:
            return {"disable": exc.message}
        self.outbox = Outbox(self.store, self.config.outbox_max)
        self.outbox.on_settled = self._settled
        self.counters = Counters(self.store)
        self.own_id = info["id"]
        rpc_path = os.path.join(lightning_dir, configuration["rpc-file"])
        self.plugin.attach_rpc(AsyncRpc(rpc_path))
        self._sender_rpc = PersistentRpc(rpc_path)
        for peer in plugin.rpc.listpeers()["peers"]:
            if peer.get("connected"):
                self.connected.add(peer["id"])
        self.sender.start()
        self.timer.start()
        if self.outbox.recover():
            plugin.log("outbox: queued again the messages a previous run was sending when it stopped")
        limiter = PeerRateLimiter(rate=self.config.peer_rate, burst=float(self.config.peer_burst))
        self.lsps = LspsEndpoint(self.store, self.send_now, plugin.log)
        self.acked = AckedDelivery(
            self.store, self.outbox, self._post, self.schedule,
            notify_delivered=lambda entry: plugin.notify(DELIVERED_TOPIC, entry.to_json()), log=plugin.log,
            hello_timeout=self.config.hello_timeout, retransmit_after=self.config.retransmit_after,
        )
        self.receiver = Receiver(
            self.config, self.store, self.counters, limiter, self.waiters, self.lsps,
            notify=lambda entry: plugin.notify(STORED_TOPIC, entry), log=plugin.log, acked=self.acked,
        )
        self.ready = True
        for peer_id in self.connected.snapshot():
            self.acked.connected(peer_id)
        self.deliver_to_connected()
        plugin.log(
            f"custommsg {__version__}: inbox {self.store.path} ({self.store.inbox_count} messages), "
            f"types {','.join(self.config.types.describe())}, guard {'on' if self.config.guard else 'off'}"
        )
        return None

    def _settled(self, entry: OutboxEntry) -> None:
        self.waiters.wake(("outbox", entry.id), entry)

    def shutdown(self) -> None:
        self.timer.stop()
        self.sender.stop()
        if self.ready:
            self.store.close()
        sys.exit(0)

    # -- peers ----------------------------------------------------------------

    def peer_connected(self, peer_id: str) -> None:
        self.connected.add(peer_id)
        if self.ready:
            self.lsps.connected(peer_id)
            self.acked.connected(peer_id)
        if self.ready and self.outbox.has_queued(peer_id):
            self.sender.put(peer_id, functools.partial(self.deliver, peer_id))

    def peer_disconnected(self, peer_id: str) -> None:
        self.connected.discard(peer_id)
        self.waiters.fail(lambda w: w.exclusive and w.peer_id == peer_id, "disconnected")
        if self.ready:
            self.lsps.disconnected(peer_id)
            self.acked.disconnected(peer_id)

    # -- sending --------------------------------------------------------------

    def send_now(
        self, peer_id: str, message: Message, done: Done, on_crash: Callable[[Exception], None], ordered: bool = True,
    ) -> None:
        """Hand ``message`` to lightningd, then call ``done``: from the main loop when the peer
        is connected as far as we know, else from the sender thread, after asking lightningd.
        Unless ``ordered`` is False (acknowledged delivery's hellos and acks), a message waits
        behind what the sender thread is sending to that peer."""
        if peer_id in self.connected and not (ordered and self.sender.busy(peer_id)):
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

        self.sender.put(peer_id, job, on_crash)

    def queue_delivery(self, peer_id: str) -> None:
        """Start draining the peer's outbox; if it is not connected as far as we know, ask
        lightningd first, in case it connected before its notification reached us."""
        deliver = self.deliver if peer_id in self.connected else self._probe_and_deliver
        self.sender.put(peer_id, functools.partial(deliver, peer_id))

    def _send_from_loop(self, peer_id: str, message: Message, done: Done) -> None:
        """Main thread only: write the call and return to the loop; ``done`` runs on the answer."""
        assert self.plugin.async_rpc is not None

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
            self.plugin.async_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": message.hex()}, on_answer)
        except OSError as exc:  # could not even connect
            done(unreachable(exc))

    def _native_send(self, peer_id: str, payload: bytes, counted: bool = True) -> None:
        """Sender thread only: hand one serialized message to lightningd, blocking. It is counted
        as sent under its type (an envelope: under its inner message's; hellos and acks: not)."""
        try:
            self._sender_rpc.call("sendcustommsg", {"node_id": peer_id, "msg": payload.hex()})
        except LightningdError as exc:
            raise self._native_failure(exc.error, peer_id) from None
        except (OSError, EOFError) as exc:
            raise unreachable(exc) from exc
        msg_type = message_type(payload)
        if msg_type == ENVELOPE:
            msg_type = message_type(payload[TYPE_LEN + ACK_LEN:])
        elif msg_type in ACK_TYPES:
            counted = False
        if counted:
            self.counters.count(peer_id, msg_type, "sent")

    def _post(self, peer_id: str, message: Message) -> None:
        """Any thread: send an acknowledged-delivery hello or ack; a failure is only logged. From the
        main thread without waiting; from another (the sweep's owed hello replies) on the sender thread."""

        def done(failure: CustomMsgError | None) -> None:
            if failure is not None:
                self.plugin.log(f"could not send type {message.type} to {peer_id}: {failure.message}", level="debug")

        def crashed(exc: Exception) -> None:
            done(CustomMsgError(errors.JSONRPC_INTERNAL_ERROR, repr(exc)))

        if threading.current_thread() is threading.main_thread():
            self.send_now(peer_id, message, done, crashed, ordered=False)
            return

        def job() -> None:
            try:
                self._native_send(peer_id, message.serialize())
            except CustomMsgError as exc:
                done(exc)

        self.sender.put(peer_id, job, crashed)

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
        for peer_id in self.store.peers_with_queued():
            if peer_id in self.connected and not self.sender.busy(peer_id):
                self.sender.put(peer_id, functools.partial(self.deliver, peer_id))

    def _probe_and_deliver(self, peer_id: str) -> None:
        try:
            self._check_peer(peer_id)
        except CustomMsgError:
            return  # not connected (or lightningd unreachable): the connect notification will come
        self.deliver(peer_id)

    def schedule(self, peer_id: str, retransmit: bool, force: bool) -> None:
        """Any thread: deliver the peer's outbox (sending its unacknowledged entries again first,
        with ``retransmit``) on the sender thread. With ``force`` (the peer just said hello, so it
        is connected whatever our notifications say) always; else only if it is connected and no
        delivery to it is under way already."""
        if force or (peer_id in self.connected and not self.sender.busy(peer_id)):
            self.sender.put(peer_id, functools.partial(self.deliver, peer_id, retransmit))

    def _send_queued(self, peer_id: str, payload: bytes) -> None:
        if message_type(payload) == ENVELOPE:
            self.acked.sending(peer_id, payload)
        self._native_send(peer_id, payload)

    def deliver(self, peer_id: str, retransmit: bool = False) -> None:
        """Sender thread only: hand the peer's outbox over (its unacknowledged entries first, with
        ``retransmit``)."""
        if retransmit and not self.acked.retransmit(peer_id, functools.partial(self._native_send, counted=False)):
            return  # the peer went away: its next connection starts over
        report = self.outbox.deliver(peer_id, self._send_queued, self.acked.ready)
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
        """Timer thread, once a second: expire queued messages, and restart cut-short deliveries."""
        if not self.ready:
            return
        self.lsps.expire()
        for entry in self.outbox.expire_due():
            self.plugin.log(f"outbox {entry.id} to {entry.peer_id} {entry.status}: {entry.reason}", level="info")
        self.acked.sweep()
        # A delivery cut short (the peer dropped and came back before we noticed)
        # would otherwise wait for the next connection.
        self.deliver_to_connected()
