"""The plugin's wiring: its options, hooks, subscriptions and methods, registered with pyln.

Nothing here decides anything; what each handler does is in ``events`` and ``methods``.
"""

from __future__ import annotations

from typing import Any

from .eventloop import EventLoopPlugin
from .events import Events
from .methods import METHODS
from .rpcmethod import rpc_method
from .service import DELIVERED_TOPIC, STORED_TOPIC, CustomMsgService

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
        "Inbox database file. Default: custommsg/custommsg.sqlite3 in the node's network directory",
        "string",
        False,
    ),
    ("custommsg-inbox-max", 100000, "Messages kept in the inbox; the oldest go first", "int", False),
    ("custommsg-peer-rate", "100", "Messages per second one peer may add to the inbox", "string", False),
    ("custommsg-peer-burst", 1000, "Messages one peer may add at once above its rate", "int", False),
    ("custommsg-outbox-max", 1000, "Queued messages per peer in the outbox", "int", False),
)


def build_plugin(**plugin_args: Any) -> EventLoopPlugin:
    """The Plugin with every method, hook and option registered; nothing runs until ``run()``."""
    plugin = EventLoopPlugin(**plugin_args)
    service = CustomMsgService(plugin)
    events = Events(service)

    for name, default, description, opt_type, multi in OPTIONS:
        plugin.add_option(name, default, description, opt_type=opt_type, multi=multi)
    plugin.add_notification_topic(STORED_TOPIC)
    plugin.add_notification_topic(DELIVERED_TOPIC)
    plugin.init()(service.on_init)

    # No filters on custommsg: lightningd reads them from the manifest, before it
    # tells a plugin its options, so they could not follow custommsg-type; and it
    # scans a filter list linearly for every message (a list of every forwarded
    # type cut the receive rate to 0.37 of a do-nothing hook's). One unfiltered
    # hook and a set lookup in the plugin is right for any custommsg-type.
    plugin.add_hook("custommsg", events.on_custommsg)
    plugin.add_hook("rpc_command", events.on_rpc_command, filters=["sendcustommsg"])
    plugin.fast_hooks.update(custommsg=events.custommsg_fast, rpc_command=events.rpc_command_fast)
    plugin.wants_type = events.wants_type

    plugin.add_subscription("connect", events.on_connect)
    plugin.add_subscription("disconnect", events.on_disconnect)
    plugin.add_subscription("shutdown", events.on_shutdown)

    for name, func in METHODS.items():
        plugin.add_method(name, rpc_method(service, func), background=True, description=func.__doc__)
    return plugin
