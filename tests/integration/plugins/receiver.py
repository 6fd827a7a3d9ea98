#!/usr/bin/env python3
"""Test plugin: logs every custom message it is given, so a test can see what arrived."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    plugin.log(f"receiver got {payload} from {peer_id}")
    return {"result": "continue"}


plugin.run()
