#!/usr/bin/env python3
"""A deliberately wrong plugin: guards sendcustommsg with rpc_command, then calls it from its main loop.

Under lightningd this never returns (lightningd/jsonrpc.c parse_request runs the rpc_command hook
before the command: plugin_hook_call_rpc_command); the harness must reproduce that.
"""

from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("rpc_command", filters=["sendcustommsg"])
def on_rpc_command(plugin, rpc_command, **kwargs):
    return {"result": "continue"}


@plugin.method("send-sync")
def send_sync(plugin, node_id, msg):
    return plugin.rpc.sendcustommsg(node_id, msg)


plugin.run()
