#!/usr/bin/env python3
"""Benchmark baseline: a custommsg hook that only counts (to know when all arrived).

nullhook-wait answers once the count reaches a target, as custommsg-wait does for
custommsg, so the benchmark need not poll the baseline (polls would cost it CPU).
"""

from pyln.client import Plugin

plugin = Plugin()
received = 0
waiting = []  # (target, request)


@plugin.hook("custommsg", filters=[0x8001])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    global received, waiting
    received += 1
    if waiting:
        done = [request for target, request in waiting if target <= received]
        waiting = [(target, request) for target, request in waiting if target > received]
        for request in done:
            request.set_result({"received": received})
    return {"result": "continue"}


@plugin.method("nullhook-count")
def count(plugin):
    """How many messages the hook saw."""
    return {"received": received}


@plugin.async_method("nullhook-wait")
def wait(plugin, request, target):
    """Answer once the hook has seen {target} messages."""
    if received >= int(target):
        request.set_result({"received": received})
    else:
        waiting.append((int(target), request))


plugin.run()
