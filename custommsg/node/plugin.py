"""The wiring: the plugin's options, hooks, subscriptions and methods, registered with pyln, and the runtime's holder.

Nothing here decides anything. :class:`Node` holds the :class:`runtime.Runtime` once
``init`` has built it (``None`` before: the hooks and methods answer for that case);
each feature's methods come from its own ``methods`` module, listed in :data:`METHODS`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..acked import methods as acked_methods
from ..core.options import (
    DEFAULT_GLOBAL_BURST_BYTES,
    DEFAULT_GLOBAL_KBPS,
    DEFAULT_PEER_BURST_BYTES,
    DEFAULT_PEER_KBPS,
)
from ..inbox import methods as inbox_methods
from ..lsps import methods as lsps_methods
from ..outbox import methods as outbox_methods
from ..protocols import methods as protocols_methods
from ..send import methods as send_methods
from .eventloop import EventLoopPlugin
from .hooks import Hooks
from .rpcmethod import rpc_method
from .runtime import DELIVERED_TOPIC, STORED_TOPIC, Disabled, Folder, Runtime

# Every custommsg-* method, from the folder of the capability it belongs to.
METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-send": send_methods.send,
    "custommsg-list": inbox_methods.list_messages,
    "custommsg-wait": inbox_methods.wait_message,
    "custommsg-delete": inbox_methods.delete_messages,
    "custommsg-stats": inbox_methods.stats,
    "custommsg-outbox": outbox_methods.list_outbox,
    "custommsg-cancel": outbox_methods.cancel,
    "custommsg-request": send_methods.request_reply,
    "custommsg-lsps-call": lsps_methods.lsps_call,
    "custommsg-lsps-respond": lsps_methods.lsps_respond,
    "custommsg-outbox-wait": outbox_methods.outbox_wait,
    "custommsg-peers": acked_methods.peers,
    "custommsg-protocol-add": protocols_methods.protocol_add,
    "custommsg-protocols": protocols_methods.list_protocols,
}
assert METHODS == {
    **send_methods.METHODS, **inbox_methods.METHODS, **outbox_methods.METHODS,
    **lsps_methods.METHODS, **acked_methods.METHODS, **protocols_methods.METHODS,
}, "each feature's METHODS, all of them here"

# name, default, description, type, repeatable (read and checked in options.parse_options)
OPTIONS: tuple[tuple[str, Any, str, str, bool], ...] = (
    ("custommsg-guard", True, "Refuse malformed calls to native sendcustommsg", "bool", False),
    (
        "custommsg-type",
        None,
        "Message type (N) or range (N-M) to keep in the inbox; repeatable. Default: 32768-65535",
        "string",
        True,
    ),
    (
        "custommsg-db",
        "",
        "Where the inbox, outbox and delivery state live: a SQLite file, or a PostgreSQL URL "
        "(postgres://user@host:port/db). Default: lightningd's wallet database when it is PostgreSQL "
        "(schema custommsg), else custommsg/custommsg.sqlite3 in the node's network directory",
        "string",
        False,
    ),
    ("custommsg-inbox-max", 100000, "Messages kept in the inbox; the oldest go first", "int", False),
    ("custommsg-peer-rate", "100", "Messages per second one peer may add to the inbox", "string", False),
    ("custommsg-peer-burst", 1000, "Messages one peer may add at once above its rate", "int", False),
    (
        "custommsg-peer-kbps",
        DEFAULT_PEER_KBPS,
        "Kilobits per second (125 bytes) one peer may add to the inbox; 0 with custommsg-peer-burst-bytes=0: no limit",
        "int",
        False,
    ),
    (
        "custommsg-peer-burst-bytes",
        DEFAULT_PEER_BURST_BYTES,
        "Bytes one peer may add at once above its kbps; at least 65535 (or 0)",
        "int",
        False,
    ),
    (
        "custommsg-global-kbps",
        DEFAULT_GLOBAL_KBPS,
        "Kilobits per second all peers together may add to the inbox; 0 with custommsg-global-burst-bytes=0: no limit",
        "int",
        False,
    ),
    (
        "custommsg-global-burst-bytes",
        DEFAULT_GLOBAL_BURST_BYTES,
        "Bytes all peers together may add at once above custommsg-global-kbps; at least 65535 (or 0)",
        "int",
        False,
    ),
    (
        "custommsg-peer-send-kbps",
        DEFAULT_PEER_KBPS,
        "Kilobits per second this node may send one peer (custommsg-send, -request, -lsps-*, the outbox); "
        "0 with custommsg-peer-send-burst-bytes=0: no limit",
        "int",
        False,
    ),
    (
        "custommsg-peer-send-burst-bytes",
        DEFAULT_PEER_BURST_BYTES,
        "Bytes this node may send one peer at once above custommsg-peer-send-kbps; at least 65535 (or 0)",
        "int",
        False,
    ),
    ("custommsg-outbox-max", 1000, "Queued messages per peer in the outbox", "int", False),
    (
        "custommsg-protocol",
        None,
        "A protocol described in Core Lightning's wire CSV (a file; relative to the network directory); repeatable. "
        "Its messages are stored with their fields, and sent by name (even types: see custommsg/protocols/)",
        "string",
        True,
    ),
    (
        "custommsg-stored-notification",
        True,
        "Emit custommsg_stored for each stored message; false saves lightningd reading each notification (about "
        "a seventh of what a stored message costs it) when no plugin subscribes",
        "bool",
        False,
    ),
    (
        "custommsg-acked-delivery",
        True,
        "Acknowledged delivery (custommsg-send ack=true) with other custommsg nodes; false: no hellos sent or answered",
        "bool",
        False,
    ),
)


CONCEALED_OPTION = "custommsg-db"


class Node:
    """The plugin and, once init has built it, its runtime."""

    def __init__(self, plugin: EventLoopPlugin, folder: Folder | None = None):
        self.plugin = plugin
        self.folder = folder or Folder()
        self.runtime: Runtime | None = None

    def on_init(self, options: dict[str, Any], configuration: dict[str, Any], plugin: Any, **kwargs: Any) -> Any:
        try:
            runtime = Runtime.build(self.plugin, options, configuration, self.folder)
        except Disabled as exc:
            return {"disable": str(exc)}
        self.runtime = runtime
        runtime.start()
        return None

    def shutdown(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        sys.exit(0)


def build_plugin(**plugin_args: Any) -> EventLoopPlugin:
    """The Plugin with every method, hook and option registered; nothing runs until ``run()``."""
    plugin = EventLoopPlugin(**plugin_args)
    # lightningd starts plugins in the network directory (lightningd/options.c) and reads the manifest's
    # custommessages before it gives a plugin its options: the protocols folder is read now, so that
    # its even types reach connectd; a folder that cannot be read disables the plugin at init.
    folder = Folder.read()
    if folder.even_types():
        plugin.custom_msgs = folder.even_types()
    node = Node(plugin, folder)
    hooks = Hooks(node)

    for name, default, description, opt_type, multi in OPTIONS:
        plugin.add_option(name, default, description, opt_type=opt_type, multi=multi)
    # A PostgreSQL URL may carry a password: lightningd shows "..." for it in listconfigs
    # (lightningd/plugin.c: "string-conceal", lightningd/configs.c: OPT_CONCEAL); pyln's
    # add_option knows only four types, so the field it declares is set here.
    plugin.options[CONCEALED_OPTION].opt_type = "string-conceal"
    plugin.add_notification_topic(STORED_TOPIC)
    plugin.add_notification_topic(DELIVERED_TOPIC)
    plugin.init()(node.on_init)

    # No filters on custommsg: lightningd reads them from the manifest, before it
    # tells a plugin its options, so they could not follow custommsg-type; and it
    # scans a filter list linearly for every message (a list of every forwarded
    # type cut the receive rate to 0.37 of a do-nothing hook's). One unfiltered
    # hook and a set lookup in the plugin is right for any custommsg-type.
    plugin.add_hook("custommsg", hooks.on_custommsg)
    plugin.add_hook("rpc_command", hooks.on_rpc_command, filters=["sendcustommsg"])
    plugin.fast_hooks.update(custommsg=hooks.custommsg_fast, rpc_command=hooks.rpc_command_fast)
    plugin.wants_type = hooks.wants_type

    plugin.add_subscription("connect", hooks.on_connect)
    plugin.add_subscription("disconnect", hooks.on_disconnect)
    plugin.add_subscription("shutdown", hooks.on_shutdown)

    for name, func in METHODS.items():
        plugin.add_method(name, rpc_method(node, func), background=True, description=func.__doc__)
    return plugin
