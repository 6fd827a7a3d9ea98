#!/usr/bin/env python3
"""Test plugin: a second bLIP-50 client on the same node, made the way CLN's own LSPS client is.

Like plugins/lsps-plugin in the CLN tree, it registers the custommsg hook for type 37913,
sends its requests with sendcustommsg (so through custommsg's guard) and matches responses
by id alone. ``lspsclient-call peer_id method`` returns the result of its own request; a
response to an id it did not issue is counted in ``lspsclient-stats`` as foreign.
"""

import json
import secrets

from pyln.client import Plugin

LSPS0 = 37913

plugin = Plugin()
pending = {}  # request id -> the lspsclient-call request waiting for its answer
foreign = 0


@plugin.hook("custommsg", filters=[LSPS0])
def on_message(peer_id, payload, plugin, **kwargs):
    global foreign
    try:
        message = json.loads(bytes.fromhex(payload[4:]))
    except ValueError:
        return {"result": "continue"}
    if isinstance(message, dict) and "method" not in message:
        waiting = pending.pop(message.get("id"), None)
        if waiting is None:
            foreign += 1
        else:
            waiting.set_result(message["result"])
    return {"result": "continue"}


@plugin.async_method("lspsclient-call")
def call(plugin, request, peer_id, method, **kwargs):
    """Send a bLIP-50 request with a fresh id; answered with the peer's result when it comes."""
    request_id = secrets.token_hex(16)
    pending[request_id] = request
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {}}).encode()
    plugin.rpc.sendcustommsg(peer_id, f"{LSPS0:04x}{body.hex()}")


@plugin.method("lspsclient-stats")
def stats(plugin):
    """Responses that arrived for ids this plugin did not issue."""
    return {"foreign": foreign}


plugin.run()
