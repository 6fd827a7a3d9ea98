#!/usr/bin/env python3
"""Benchmark baseline: a custommsg hook that only counts (to know when all arrived)."""

from pyln.client import Plugin

plugin = Plugin()
received = 0


@plugin.hook("custommsg", filters=[0x8001])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    global received
    received += 1
    return {"result": "continue"}


@plugin.method("nullhook-count")
def count(plugin):
    """How many messages the hook saw."""
    return {"received": received}


plugin.run()
