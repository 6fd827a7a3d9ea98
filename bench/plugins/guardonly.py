#!/usr/bin/env python3
"""Benchmark baseline: an rpc_command hook on sendcustommsg that lets every call through.

Loaded beside echo.py, it gives each native send the round trip through a plugin that
custommsg's guard gives it (lightningd asks the hook before it runs the command), and
nothing else: the floor of an acknowledged message with a guard on both nodes.
"""

from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("rpc_command", filters=["sendcustommsg"])
def on_rpc_command(plugin, rpc_command, **kwargs):
    return {"result": "continue"}


plugin.run()
