#!/usr/bin/env python3
"""Test plugin: answers each request (type 40001) with a reply (type 40003) echoing its body.

The body of a request starts with an 8-byte request id, so the reply starts with it
too: the way protocols such as commando and LSPS0 correlate replies. Replies go out
from a thread, in reverse order of a batch when asked, to show that correlation
does not depend on order.
"""

import threading

from pyln.client import Plugin

REQUEST_TYPE = 40001
REPLY_TYPE = 40003

plugin = Plugin()


def reply(peer_id: str, body: str) -> None:
    plugin.rpc.sendcustommsg(peer_id, f"{REPLY_TYPE:04x}{body}")


@plugin.hook("custommsg", filters=[REQUEST_TYPE])
def on_request(peer_id, payload, plugin, **kwargs):
    threading.Thread(target=reply, args=(peer_id, payload[4:]), daemon=True).start()
    return {"result": "continue"}


plugin.run()
