#!/usr/bin/env python3
"""Benchmark baseline: the floor of an acknowledged message, one round trip between two plugins.

echo-ping sends a ping (type 0x8003) with native sendcustommsg and answers once the peer's
pong (0x8005, the same body) comes back; the hook answers each ping with its pong, sent with
native sendcustommsg before the hook returns. Nothing is stored, checked or guarded: this is
what two Python plugins on lightningd cost for one message there and one back.
"""

from pyln.client import Plugin

plugin = Plugin()
PING, PONG = 0x8003, 0x8005
waiting = {}  # body (hex) -> the echo-ping request


@plugin.hook("custommsg", filters=[PING, PONG])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    kind, body = int(payload[:4], 16), payload[4:]
    if kind == PING:
        plugin.rpc.call("sendcustommsg", {"node_id": peer_id, "msg": f"{PONG:04x}{body}"})
    elif body in waiting:
        waiting.pop(body).set_result({"echoed": body})
    return {"result": "continue"}


@plugin.async_method("echo-ping")
def ping(plugin, request, node_id, body):
    """Send {body} to {node_id} and answer when it comes back."""
    waiting[body] = request
    plugin.rpc.call("sendcustommsg", {"node_id": node_id, "msg": f"{PING:04x}{body}"})


plugin.run()
