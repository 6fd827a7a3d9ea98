#!/usr/bin/env python3
"""Benchmark baseline: a custommsg hook that only counts (to know when all arrived), or,
with ``nullhook-db`` set, also commits each message to that SQLite file before it answers.

The second is the floor of any plugin that keeps what peers send: one row committed per
message before the hook answers, in WAL mode with synchronous=NORMAL (custommsg's settings),
and nothing else: no counters, limits, indexes or notifications.

nullhook-wait answers once the count reaches a target, as custommsg-wait does for
custommsg, so the benchmark need not poll the baseline (polls would cost it CPU).
"""

import sqlite3

from pyln.client import Plugin

plugin = Plugin()
plugin.add_option("nullhook-db", "", "SQLite file to commit each message to before answering ('': none)")
received = 0
waiting = []  # (target, request)
db = None


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    global db
    if options["nullhook-db"]:
        db = sqlite3.connect(options["nullhook-db"], isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, peer_id BLOB, payload BLOB)")


@plugin.hook("custommsg", filters=[0x8001])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    global received, waiting
    if db is not None:
        db.execute("BEGIN IMMEDIATE")
        row = (bytes.fromhex(peer_id), bytes.fromhex(payload))
        db.execute("INSERT INTO inbox (peer_id, payload) VALUES (?, ?)", row)
        db.execute("COMMIT")
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
