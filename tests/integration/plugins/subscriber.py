#!/usr/bin/env python3
"""Test plugin: subscribes to custommsg's custommsg_stored notification and logs it."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.subscribe("custommsg_stored")
def on_stored(plugin, custommsg_stored=None, **kwargs):
    m = custommsg_stored
    plugin.log(f"subscriber: stored {m['created_index']} type {m['type']} text {m.get('text')} from {m['peer_id']}")


plugin.run()
