#!/usr/bin/env python3
"""Benchmark baseline: a do-nothing pass-through, one native sendcustommsg per request."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.method("passthrough-send")
def passthrough_send(plugin, node_id, msg):
    """Forward to sendcustommsg, nothing else."""
    return plugin.rpc.call("sendcustommsg", {"node_id": node_id, "msg": msg})


plugin.run()
