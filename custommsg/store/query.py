"""What the query parts share: the filter clause, the name of a connection inside a transaction, and
the row shapes (the columns each table is read with, and the record each row becomes)."""

from __future__ import annotations

import json
from typing import Any

from ..core.records import JsonRpcTag, OutboxEntry, StoredMessage

Db = Any  # the engine inside a transaction the caller holds: ``execute`` and ``executemany``


def where(peer_id: str | None, **columns: Any) -> tuple[str, list[Any]]:
    """``WHERE`` clauses for the filters that are given (``None`` means any), and their arguments."""
    given = {"peer_id": None if peer_id is None else bytes.fromhex(peer_id), **columns}
    given = {column: value for column, value in given.items() if value is not None}
    return " AND ".join(f"{column} = ?" for column in given), list(given.values())


INBOX_COLUMNS = (
    "created_index, peer_id, type, payload, received_at, rpc_kind, rpc_method, rpc_id, answered_at, "
    "name, fields, decode_error"
)


def message_from_row(row: tuple[Any, ...]) -> StoredMessage:
    rpc = None if row[5] is None else JsonRpcTag(row[5], row[6], row[7])
    fields = None if row[10] is None else json.loads(row[10])  # written by add_message from decoded fields
    return StoredMessage(
        row[0], bytes(row[1]).hex(), row[2], bytes(row[3]), row[4], rpc, row[8], row[9], fields, row[11]
    )


OUTBOX_COLUMNS = (
    "id, peer_id, type, payload, status, reason, created_at, updated_at, sent_at, expires_at, updated_index, "
    "ack, stream, seq, delivered_at"
)


def outbox_from_row(row: tuple[Any, ...]) -> OutboxEntry:
    stream = None if row[12] is None else int.from_bytes(row[12], "big")
    return OutboxEntry(
        row[0], bytes(row[1]).hex(), row[2], bytes(row[3]), row[4], row[5], row[6], row[7], row[8], row[9], row[10],
        bool(row[11]), stream, row[13], row[14],
    )
