#!/usr/bin/env python3
"""A deliberately wrong plugin: it writes JSON that lightningd's strict parser refuses (JSMN_STRICT)."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.method("nonstrict-numbers")
def numbers(plugin, **kwargs):
    """Answers with infinities and a NaN, which Python's json writes as Infinity, -Infinity and NaN."""
    return {"big": float("inf"), "small": float("-inf"), "nan": float("nan")}


@plugin.method("nonstrict-surrogate")
def surrogate(plugin, **kwargs):
    """Logs a lone surrogate (escaped: raw, it cannot be written as UTF-8), then answers plainly."""
    with plugin.write_lock:
        plugin.stdout.buffer.write(b'{"jsonrpc":"2.0","method":"log","params":{"level":"info","message":"\\ud800"}}\n\n')
        plugin.stdout.flush()
    return {}


plugin.run()
