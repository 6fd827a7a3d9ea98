"""The tables, in SQLite's dialect: ``MIGRATIONS[n]`` brings a database from schema version ``n`` to ``n + 1``.

Each runs in its own transaction, with the version it reaches (``Store`` does it at
open). A row read back becomes one of ``core.records``'s frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence

MIGRATIONS: Sequence[str] = (
    # 1: the inbox and its counters
    """
    CREATE TABLE inbox (
        created_index INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        payload BLOB NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX inbox_by_peer ON inbox (peer_id, created_index);
    CREATE INDEX inbox_by_type ON inbox (type, created_index);
    CREATE INDEX inbox_by_peer_type ON inbox (peer_id, type, created_index);
    CREATE TABLE counters (
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (peer_id, type, name)
    ) WITHOUT ROWID;
    """,
    # 2: the outbox
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id BLOB NOT NULL,
        type INTEGER NOT NULL,
        payload BLOB NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        sent_at REAL,
        expires_at REAL,
        updated_index INTEGER
    );
    CREATE INDEX outbox_by_peer_status ON outbox (peer_id, status, id);
    CREATE INDEX outbox_by_status_expiry ON outbox (status, expires_at);
    CREATE UNIQUE INDEX outbox_by_updated ON outbox (updated_index);
    CREATE TABLE vars (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    """,
    # 3: JSON-RPC over custom messages (bLIP-50): what a message is, and when we answered a request
    """
    ALTER TABLE inbox ADD COLUMN rpc_kind TEXT;
    ALTER TABLE inbox ADD COLUMN rpc_method TEXT;
    ALTER TABLE inbox ADD COLUMN rpc_id TEXT;
    ALTER TABLE inbox ADD COLUMN answered_at REAL;
    CREATE INDEX inbox_by_method ON inbox (rpc_method, created_index) WHERE rpc_method IS NOT NULL;
    CREATE INDEX inbox_by_rpc_id ON inbox (rpc_id) WHERE rpc_id IS NOT NULL;
    """,
    # 4: acknowledged delivery. Outbox entries sent with ack=true carry our stream to that peer and their
    # seq (from their first hand-off on); ack_out holds, per peer, our current stream (8 random bytes), the
    # next seq, and whether we gave up on a message of it; ack_in holds, per (peer, stream), the highest
    # seq stored (``last``), written in the transaction that stores the message.
    """
    ALTER TABLE outbox ADD COLUMN ack INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN stream BLOB;
    ALTER TABLE outbox ADD COLUMN seq INTEGER;
    ALTER TABLE outbox ADD COLUMN delivered_at REAL;
    CREATE INDEX outbox_ack_by_stream ON outbox (peer_id, stream, status, seq) WHERE ack = 1;
    CREATE INDEX outbox_ack_by_peer ON outbox (peer_id, status, id) WHERE ack = 1;
    CREATE INDEX outbox_ack_by_status ON outbox (status, expires_at) WHERE ack = 1;
    CREATE TABLE ack_out (
        peer_id BLOB PRIMARY KEY,
        stream BLOB NOT NULL,
        next_seq INTEGER NOT NULL,
        broken INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE ack_in (
        peer_id BLOB NOT NULL,
        stream BLOB NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (peer_id, stream)
    ) WITHOUT ROWID;
    """,
    # 5: typed protocols (core.protocols): a registered message's name, its fields as JSON, or why the
    # bytes did not follow its spec
    """
    ALTER TABLE inbox ADD COLUMN name TEXT;
    ALTER TABLE inbox ADD COLUMN fields TEXT;
    ALTER TABLE inbox ADD COLUMN decode_error TEXT;
    CREATE INDEX inbox_by_name ON inbox (name, created_index) WHERE name IS NOT NULL;
    """,
    # 6: bounds on what a peer can make us keep. The unanswered bLIP-50 requests are counted per peer when
    # one more arrives (store.inbox.RequestRoom); ack_in remembers, per peer, which stream was stored into
    # last (``touched`` grows per peer), so past the bound the least recently used stream goes.
    """
    CREATE INDEX inbox_unanswered ON inbox (peer_id) WHERE rpc_kind = 'request' AND answered_at IS NULL;
    ALTER TABLE ack_in ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: a counter's bytes beside its count, in one row: until now a twin row named with "_bytes" (so a
    # stored message moved four rows, not two). A twin without its count becomes a row of count 0.
    """
    ALTER TABLE counters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    INSERT INTO counters (peer_id, type, name, count, bytes)
        SELECT twin.peer_id, twin.type, substr(twin.name, 1, length(twin.name) - 6), 0, twin.count
        FROM counters AS twin
        WHERE substr(twin.name, length(twin.name) - 5) = '_bytes' AND NOT EXISTS (
            SELECT 1 FROM counters AS base WHERE base.peer_id = twin.peer_id AND base.type = twin.type
            AND base.name = substr(twin.name, 1, length(twin.name) - 6));
    UPDATE counters SET bytes = (
        SELECT twin.count FROM counters AS twin WHERE twin.peer_id = counters.peer_id
        AND twin.type = counters.type AND twin.name = counters.name || '_bytes')
        WHERE EXISTS (
            SELECT 1 FROM counters AS twin WHERE twin.peer_id = counters.peer_id
            AND twin.type = counters.type AND twin.name = counters.name || '_bytes');
    DELETE FROM counters WHERE substr(name, length(name) - 5) = '_bytes';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
