"""custommsg: safe, durable custom peer messages for Core Lightning.

The layers, top to bottom; a module imports only from layers below its own
(``tests/unit/test_layers.py`` checks it)::

    shell        wiring: options, hooks, subscriptions, the method table
    methods      the RPC surface: one function per custommsg-* method, and the method table
    lspsmethods  the RPC surface of bLIP-50: lsps-call, lsps-respond
    ackmethods   the RPC surface of acknowledged delivery: send ack=true, outbox-wait, peers
    rpcmethod    a method function as pyln registers it: errors answered with their codes
    events       what lightningd pushes: the two hooks, connect/disconnect/shutdown
    service      running state; the send path; outbox delivery
    eventloop    the main loop, the sender and timer threads (who owns what), connected peers
    pyln_seam    every private part of pyln-client used, and a check that each is there
    rpcclient    JSON-RPC connections to lightningd; what its errors mean
    --------------------------------------------------- the pure core: no pyln I/O
    receive      the receive pipeline (type, rate limit, bLIP-50 check, envelopes, store, notify, wake)
    delivery     acknowledged delivery running: hellos, acks, who speaks it, what is in flight
    lsps         JSON-RPC over custom messages: our calls to peers, our answers to theirs
    stats        counters: this session and in total
    waiters      parked waits and requests
    outbox       the outbox's state machine
    store        SQLite: transactions and queries
    ackstore     acknowledged delivery's queries: streams, seqs, acks, the receiver's last per stream
    outboxstore  the outbox's queries
    ack          acknowledged delivery: its wire format and the sender's and receiver's rules
    lspscalls    bLIP-50 bookkeeping: our calls awaiting answers, muted peers
    blip50       bLIP-50 (LSPS0) framing, ids, sanitising
    guard        the verdict on native sendcustommsg calls
    options      the plugin's options: read and checked once, at init
    validate     every rule that accepts or refuses what a caller sends
    policy       which types are kept, per-peer rate limits
    schema       tables, migrations, statuses, row shapes
    wire         BOLT #1 framing
    strictjson   JSON as lightningd reads it: the one reader for peers' values, the one writer
    errors       codes and the exception tree
"""

__version__ = "0.1.0"
