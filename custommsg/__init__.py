"""custommsg: safe, durable custom peer messages for Core Lightning.

One folder per capability; imports point down this list, never up
(``tests/unit/test_folders.py`` checks it)::

    node/     everything that touches pyln and lightningd: the event loop and its threads
              (who owns what), the RPC client, the pyln seam, the runtime init builds in
              one step, the hooks, and the wiring that registers every method
    send/     custommsg-send (now, queued, or acknowledged) and custommsg-request
    protocols/ typed protocols' spec files (the option, the protocols folder),
              custommsg-protocol-add, -protocols
    acked/    acknowledged delivery between two custommsg nodes: hellos, envelopes and acks
              running, custommsg-peers
    lsps/     JSON-RPC over custom messages (bLIP-50): our calls, our answers, lsps-call/-respond
    outbox/   the outbox: its queue per peer, drained in order; custommsg-outbox, -cancel, -outbox-wait
    inbox/    keeping what peers send: rate limit, store, notify, wake; counters;
              custommsg-list, -wait, -delete, -stats
    store/    the database: one connection and transaction, migrations, a query part per
              feature, and everything specific to SQLite in one module
    core/     sans I/O: BOLT #1 framing, the bLIP-50 and acknowledged-delivery wire formats,
              strict JSON, every rule on input, options, errors, records, and the one way an
              asynchronous call finishes

A feature's RPC methods are in its own ``methods.py``; ``node/plugin.py`` lists them all.
"""

__version__ = "0.1.0"
