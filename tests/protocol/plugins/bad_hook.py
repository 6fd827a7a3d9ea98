#!/usr/bin/env python3
"""A deliberately wrong plugin: its custommsg hook returns None, which makes lightningd fatal()."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(plugin, peer_id, payload, **kwargs):
    return None


plugin.run()
