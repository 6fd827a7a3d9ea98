"""store.py: the inbox and counters in a real SQLite file under tmp_path."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from custommsg.core import errors
from custommsg.core.completion import WaiterRegistry
from custommsg.core.errors import StorageError
from custommsg.core.policy import Budget, ReceiveLimiter
from custommsg.core.records import Decoded, Incoming, JsonRpcTag, Page, StoredMessage
from custommsg.inbox.counters import Counters
from custommsg.inbox.receiver import Receiver
from custommsg.store.database import Store
from custommsg.store.migrations import MIGRATIONS, SCHEMA_VERSION

from .conftest import OpenStore

A = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
B = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
BIG = 1_000_000  # an inbox_max that never drops anything


def add(store: Store, peer: str, payload: bytes, at: float = 1.0, inbox_max: int = BIG) -> StoredMessage:
    message, dropped = store.inbox.add_message(peer, payload, int.from_bytes(payload[:2], "big"), at, inbox_max)
    assert dropped == []
    return message


def indexes(messages: list[StoredMessage]) -> list[int]:
    return [m.created_index for m in messages]


def raw_db(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- adding and listing -------------------------------------------------------------


def test_add_message_assigns_increasing_1_based_indexes(store: Store) -> None:
    # given an empty inbox; when three messages arrive; then they get 1, 2, 3
    first = add(store, A, b"\x80\x01one", at=10.5)
    assert first == StoredMessage(1, A, 32769, b"\x80\x01one", 10.5)
    assert [add(store, B, b"\x80\x03", at=11.0).created_index, add(store, A, b"\x80\x01").created_index] == [2, 3]
    assert store.inbox.count == 3
    assert store.inbox.list_messages() == [
        StoredMessage(1, A, 32769, b"\x80\x01one", 10.5),
        StoredMessage(2, B, 32771, b"\x80\x03", 11.0),
        StoredMessage(3, A, 32769, b"\x80\x01", 1.0),
    ]


def test_add_messages_stores_a_round_in_order_in_one_transaction(store: Store) -> None:
    # given one message stored; when a round of three from two peers is stored at once
    add(store, A, b"\x80\x01zero")
    round_ = [Incoming(B, b"\x80\x01b1", 32769, 2.0), Incoming(A, b"\x80\x03a1", 32771, 2.5),
              Incoming(B, b"\x80\x01b2", 32769, 3.0, decoded=Decoded("ping", {"n": 1}))]
    stored, dropped = store.inbox.add_messages(round_, BIG, ("stored",))
    # then they get the next indexes in the order given, with what the store keeps of each, and are counted
    assert dropped == []
    assert stored == [
        StoredMessage(2, B, 32769, b"\x80\x01b1", 2.0), StoredMessage(3, A, 32771, b"\x80\x03a1", 2.5),
        StoredMessage(4, B, 32769, b"\x80\x01b2", 3.0, name="ping", fields={"n": 1}),
    ]
    assert store.inbox.list_messages()[1:] == stored
    assert store.inbox.count == 4
    assert store.counters.totals() == {
        (B, 32769): Counter({"stored": 2, "stored_bytes": 8}), (A, 32771): Counter({"stored": 1, "stored_bytes": 4}),
    }


def test_add_messages_makes_room_for_the_whole_round(store: Store) -> None:
    # given inbox_max=3 and two stored; when a round of three arrives; then the two oldest go, counted
    add(store, A, b"\x80\x01")
    add(store, A, b"\x80\x03")
    stored, dropped = store.inbox.add_messages([Incoming(B, bytes([0x80, n]), 0x8000 + n, 2.0) for n in (5, 7, 9)], 3)
    assert [m.created_index for m in stored] == [3, 4, 5]
    assert dropped == [(A, 32769, 2), (A, 32771, 2)]
    assert indexes(store.inbox.list_messages()) == [3, 4, 5]
    assert store.inbox.count == 3
    assert store.counters.totals()[(A, 32769)] == Counter({"dropped_retention": 1, "dropped_retention_bytes": 2})


def test_add_messages_is_all_or_nothing(store: Store) -> None:
    # given a round whose last message the driver refuses (a payload no column can hold)
    add(store, A, b"\x80\x01")
    round_ = [Incoming(B, b"\x80\x01ok", 32769, 2.0), Incoming(B, [0x80, 0x01], 32769, 2.0)]  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        store.inbox.add_messages(round_, BIG, ("stored",))
    # then nothing of it is stored or counted, and the next round goes on from there
    assert indexes(store.inbox.list_messages()) == [1]
    assert store.inbox.count == 1
    assert store.counters.totals() == {}
    stored, _ = store.inbox.add_messages([Incoming(B, b"\x80\x01ok", 32769, 2.0)], BIG)
    assert store.inbox.list_messages()[1:] == stored


INBOX = [  # created_index: (peer, payload)
    (A, b"\x80\x01a"),  # 1
    (B, b"\x80\x01b"),  # 2
    (A, b"\x80\x03c"),  # 3
    (B, b"\x80\x03d"),  # 4
    (A, b"\x80\x01e"),  # 5
    (B, b"\x9c\x41f"),  # 6: type 40001
]

# (id, peer, type, page, expected created indexes)
LISTINGS: list[tuple[str, str | None, int | None, Page, list[int]]] = [
    ("all", None, None, Page("created", 0, None), [1, 2, 3, 4, 5, 6]),
    ("peer-a", A, None, Page("created", 0, None), [1, 3, 5]),
    ("peer-b", B, None, Page("created", 0, None), [2, 4, 6]),
    ("type-32769", None, 32769, Page("created", 0, None), [1, 2, 5]),
    ("peer-and-type", A, 32769, Page("created", 0, None), [1, 5]),
    ("peer-and-type-b", B, 32771, Page("created", 0, None), [4]),
    ("no-such-combination", A, 40001, Page("created", 0, None), []),
    ("unknown-type", None, 32773, Page("created", 0, None), []),
    ("start-inclusive", None, None, Page("created", 3, None), [3, 4, 5, 6]),
    ("start-1-is-everything", None, None, Page("created", 1, None), [1, 2, 3, 4, 5, 6]),
    ("start-and-limit", None, None, Page("created", 3, 2), [3, 4]),
    ("limit-only", None, None, Page("created", 0, 1), [1]),
    ("limit-0", None, None, Page("created", 0, 0), []),
    ("limit-above-count", None, None, Page("created", 0, 100), [1, 2, 3, 4, 5, 6]),
    ("peer-start-limit", A, None, Page("created", 2, 1), [3]),
    ("type-start", None, 32769, Page("created", 2, None), [2, 5]),
    ("start-past-end", None, None, Page("created", 7, None), []),
    ("upper-case-peer", A.upper(), None, Page("created", 0, None), [1, 3, 5]),
]


@pytest.mark.parametrize(
    ("peer", "msg_type", "page", "expected"), [c[1:] for c in LISTINGS], ids=[c[0] for c in LISTINGS]
)
def test_list_messages(store: Store, peer: str | None, msg_type: int | None, page: Page, expected: list[int]) -> None:
    for peer_id, payload in INBOX:
        add(store, peer_id, payload)
    assert indexes(store.inbox.list_messages(peer, msg_type, page)) == expected


def test_first_message(store: Store) -> None:
    for peer_id, payload in INBOX:
        add(store, peer_id, payload)
    assert store.inbox.first_message(2, A) == StoredMessage(3, A, 32771, b"\x80\x03c", 1.0)
    assert store.inbox.first_message(6, None, 40001) == StoredMessage(6, B, 40001, b"\x9c\x41f", 1.0)
    assert store.inbox.first_message(7) is None


# -- retention and deletion ---------------------------------------------------------


def test_retention_drops_the_oldest(store: Store) -> None:
    # given inbox_max=3 and a full inbox; when a 4th arrives; then the oldest goes and is reported
    for payload in (b"\x80\x01", b"\x80\x03", b"\x80\x05"):
        assert store.inbox.add_message(A, payload, int.from_bytes(payload, "big"), 1.0, 3)[1] == []
    stored, dropped = store.inbox.add_message(B, b"\x80\x07", 32775, 2.0, 3)
    assert stored.created_index == 4
    assert dropped == [(A, 32769, 2)]
    assert indexes(store.inbox.list_messages()) == [2, 3, 4]
    assert store.inbox.count == 3
    assert store.counters.totals() == {(A, 32769): Counter({"dropped_retention": 1, "dropped_retention_bytes": 2})}


def test_lowering_inbox_max_drops_every_extra_message_oldest_first(store: Store) -> None:
    for i in range(5):
        add(store, A if i % 2 == 0 else B, bytes([0x80, 2 * i + 1]))
    stored, dropped = store.inbox.add_message(A, b"\x80\x0b", 32779, 1.0, 2)
    assert dropped == [(A, 32769, 2), (B, 32771, 2), (A, 32773, 2), (B, 32775, 2)]
    assert indexes(store.inbox.list_messages()) == [5, 6]
    assert store.inbox.count == 2


def test_created_index_is_never_reused(store: Store, open_store: OpenStore) -> None:
    # given messages 1-3; when 3 (the newest) is deleted; then the next one is 4, not 3 (AUTOINCREMENT)
    for _ in range(3):
        add(store, A, b"\x80\x01")
    assert store.inbox.delete_messages(created_index=3) == 1
    assert add(store, A, b"\x80\x01").created_index == 4
    assert store.inbox.delete_messages(up_to=4) == 3
    assert store.inbox.list_messages() == []
    assert store.inbox.last_index() == 4
    store.close()
    reopened = open_store()
    assert add(reopened, A, b"\x80\x01").created_index == 5
    reopened.close()


@pytest.mark.parametrize(
    ("created_index", "up_to", "deleted", "left"),
    [
        (3, None, 1, [1, 2, 4, 5]),
        (9, None, 0, [1, 2, 3, 4, 5]),
        (None, 2, 2, [3, 4, 5]),
        (None, 0, 0, [1, 2, 3, 4, 5]),
        (None, 99, 5, []),
        (2, 4, 1, [1, 3, 4, 5]),  # created_index wins
    ],
    ids=["one", "missing", "up-to", "up-to-0", "up-to-all", "index-wins"],
)
def test_delete_messages(
    store: Store, created_index: int | None, up_to: int | None, deleted: int, left: list[int]
) -> None:
    for _ in range(5):
        add(store, A, b"\x80\x01")
    assert store.inbox.delete_messages(created_index, up_to) == deleted
    assert indexes(store.inbox.list_messages()) == left
    assert store.inbox.count == len(left)


def test_last_index(store: Store) -> None:
    assert store.inbox.last_index() == 0
    add(store, A, b"\x80\x01")
    add(store, A, b"\x80\x01")
    assert store.inbox.last_index() == 2
    store.inbox.delete_messages(up_to=2)
    assert store.inbox.last_index() == 2


# -- JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "extra"),
    [
        (b"\x80\x01hello", {"payload": "800168656c6c6f", "length": 7, "text": "hello"}),
        (b"\x80\x01", {"payload": "8001", "length": 2, "text": ""}),
        (b"\x80\x01\xff\xfe", {"payload": "8001fffe", "length": 4}),
        (b"\x80\x01h\xc3\xa9", {"payload": "800168c3a9", "length": 5, "text": "h\u00e9"}),
        (b"\x80\x01\xc3", {"payload": "8001c3", "length": 3}),
    ],
    ids=["text", "empty-body", "binary", "utf8-multibyte", "truncated-utf8"],
)
def test_stored_message_to_json(payload: bytes, extra: dict) -> None:
    # the payload keeps its type prefix; text is the body, only when it is valid UTF-8
    message = StoredMessage(7, A, 32769, payload, 12.25)
    assert message.to_json() == {"created_index": 7, "peer_id": A, "type": 32769, "received_at": 12.25, **extra}


# -- durability and schema ----------------------------------------------------------


def test_committed_messages_survive_without_close(open_store: OpenStore) -> None:
    # given a store that is never closed (the plugin was killed); then a new Store sees everything
    first = open_store()
    add(first, A, b"\x80\x01one", at=1.5)
    add(first, B, b"\x80\x03two", at=2.5)
    second = open_store()
    assert second.inbox.list_messages() == first.inbox.list_messages()
    assert second.inbox.count == 2
    assert second.inbox.last_index() == 2
    second.close()
    first.close()


def test_reopening_keeps_everything(open_store: OpenStore) -> None:
    store = open_store()
    for peer_id, payload in INBOX:
        add(store, peer_id, payload)
    store.inbox.delete_messages(created_index=2)
    before = store.inbox.list_messages()
    store.close()
    reopened = open_store()
    assert reopened.inbox.list_messages() == before
    assert reopened.inbox.count == 5
    assert reopened.inbox.last_index() == 6
    reopened.close()


def test_new_file_has_current_schema_in_wal_mode(store: Store, db_path: str) -> None:
    db = raw_db(db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS) == 7
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"inbox", "counters", "outbox", "vars", "ack_out", "ack_in"} <= tables
    db.close()


def test_migration_from_version_1(db_path: str) -> None:
    # given a file written by a plugin that had only the inbox (schema 1), with a message in it
    db = raw_db(db_path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO inbox (peer_id, type, payload, received_at) VALUES (?, ?, ?, ?)",
        (bytes.fromhex(A), 32769, b"\x80\x01old", 5.0),
    )
    db.close()
    # when the current Store opens it; then the outbox exists and the message is still there
    store = Store(db_path)
    assert store.inbox.list_messages() == [StoredMessage(1, A, 32769, b"\x80\x01old", 5.0)]
    assert store.outbox.list_outbox() == []
    assert add(store, A, b"\x80\x01").created_index == 2
    store.close()
    db = raw_db(db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    db.close()


def test_migration_7_puts_each_counters_bytes_in_its_row(db_path: str) -> None:
    # given a version-6 file whose counters keep bytes in twin rows, one twin without its count
    db = raw_db(db_path)
    for script in MIGRATIONS[:6]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 6")
    a, b = bytes.fromhex(A), bytes.fromhex(B)
    db.executemany("INSERT INTO counters (peer_id, type, name, count) VALUES (?, ?, ?, ?)", [
        (a, 32769, "received", 3), (a, 32769, "received_bytes", 300), (a, 32769, "stored", 2),
        (a, 32769, "stored_bytes", 200), (b, 32771, "sent", 1), (b, 32771, "dropped_rate_bytes", 70),
    ])
    db.close()
    # when the current Store opens it: the same totals, and one row a counter
    store = Store(db_path)
    assert store.counters.totals() == {
        (A, 32769): Counter({"received": 3, "received_bytes": 300, "stored": 2, "stored_bytes": 200}),
        (B, 32771): Counter({"sent": 1, "dropped_rate_bytes": 70}),
    }
    store.counters.count(A, 32769, "received", 10)
    store.flush()
    assert store.counters.totals()[(A, 32769)]["received_bytes"] == 310
    store.close()
    db = raw_db(db_path)
    assert sorted(db.execute("SELECT type, name, count, bytes FROM counters")) == [
        (32769, "received", 4, 310), (32769, "stored", 2, 200), (32771, "dropped_rate", 0, 70), (32771, "sent", 1, 0),
    ]
    db.close()


def test_newer_schema_is_refused(db_path: str) -> None:
    db = raw_db(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError) as caught:
        Store(db_path)
    assert caught.value.code == errors.STORAGE_ERROR
    assert caught.value.data == {"path": db_path}
    assert f"schema version {SCHEMA_VERSION + 1}" in caught.value.message
    assert "upgrade the plugin" in caught.value.message


def _directory_in_place(tmp_path: Path) -> str:
    path = tmp_path / "custommsg.sqlite3"
    path.mkdir()
    return str(path)


def _under_a_regular_file(tmp_path: Path) -> str:
    (tmp_path / "plain-file").write_bytes(b"not a directory")
    return str(tmp_path / "plain-file" / "custommsg.sqlite3")


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "custommsg.sqlite3"
    path.write_bytes(b"this is not an SQLite file, just 100 bytes of text... " * 4)
    return str(path)


@pytest.mark.parametrize(
    "make_path",
    [_directory_in_place, _under_a_regular_file, _not_a_database],
    ids=["directory-in-place", "under-a-regular-file", "not-a-database"],
)
def test_unopenable_path_is_a_storage_error(tmp_path: Path, make_path) -> None:
    path = make_path(tmp_path)
    with pytest.raises(StorageError) as caught:
        Store(path)
    assert caught.value.code == errors.STORAGE_ERROR
    assert caught.value.data == {"path": path}
    assert caught.value.message.startswith(f"cannot open the custommsg database {path}: ")


def test_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "custommsg.sqlite3"
    store = Store(str(path))
    assert path.exists()
    store.close()


# -- write failures -------------------------------------------------------------------
# Tests run as root, so chmod cannot make the file read-only. Two real ways instead:
# a trigger added by another connection (as another process could), and chattr +i,
# which stops root too, where the kernel and the container allow it.


def _fail_inserts(db_path: str, how: str) -> sqlite3.Connection:
    db = raw_db(db_path)
    db.execute(
        f"CREATE TRIGGER fail_insert BEFORE INSERT ON inbox BEGIN SELECT RAISE({how}, 'simulated write failure'); END"
    )
    return db


def test_failed_write_is_a_storage_error_and_loses_no_count(store: Store, db_path: str) -> None:
    add(store, A, b"\x80\x01")
    store.counters.count(A, 32769, "received", 30, 3)
    other = _fail_inserts(db_path, "ABORT")
    # when the write fails; then StorageError with the cause, nothing stored
    with pytest.raises(StorageError) as caught:
        store.inbox.add_message(A, b"\x80\x01", 32769, 2.0, BIG)
    assert caught.value.code == errors.STORAGE_ERROR
    assert caught.value.data == {"path": db_path}
    assert "simulated write failure" in caught.value.message
    assert indexes(store.inbox.list_messages()) == [1]
    assert store.inbox.count == 1
    # and once writes work again, the pending count is written exactly once
    other.execute("DROP TRIGGER fail_insert")
    other.close()
    assert add(store, A, b"\x80\x01").created_index == 2  # the failed write gave nothing out
    assert store.counters.totals() == {(A, 32769): Counter({"received": 3, "received_bytes": 30})}


def test_storage_error_names_the_cause_when_sqlite_rolled_back_itself(store: Store, db_path: str) -> None:
    other = _fail_inserts(db_path, "ROLLBACK")
    with pytest.raises(StorageError) as caught:
        store.inbox.add_message(A, b"\x80\x01", 32769, 2.0, BIG)
    other.close()
    assert caught.value.code == errors.STORAGE_ERROR
    assert "simulated write failure" in caught.value.message


def test_rolled_back_write_still_leaves_a_usable_store(store: Store, db_path: str) -> None:
    other = _fail_inserts(db_path, "ROLLBACK")
    with pytest.raises(StorageError) as caught:
        store.inbox.add_message(A, b"\x80\x01", 32769, 2.0, BIG)
    assert caught.value.code == errors.STORAGE_ERROR
    other.execute("DROP TRIGGER fail_insert")
    other.close()
    assert add(store, A, b"\x80\x01").created_index == 1
    assert store.inbox.count == 1


def _chattr(flag: str, *paths: str) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, *paths], capture_output=True).returncode == 0


def test_immutable_file_stops_writes_even_as_root(store: Store, db_path: str, tmp_path: Path) -> None:
    add(store, A, b"\x80\x01")
    locked = [db_path, db_path + "-wal", str(tmp_path)]
    if not _chattr("+i", *locked):
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE and ext4-like fs)")
    try:
        with pytest.raises(StorageError) as caught:
            store.inbox.add_message(A, b"\x80\x01", 32769, 2.0, BIG)
        assert caught.value.code == errors.STORAGE_ERROR
        assert caught.value.data == {"path": db_path}
    finally:
        assert _chattr("-i", *locked)
    assert store.inbox.count == 1
    assert add(store, A, b"\x80\x01").created_index == 2


# -- counters --------------------------------------------------------------------------


def test_counters_totals_and_filters(store: Store) -> None:
    store.counters.count(A, 32769, "received", 100)
    store.counters.count(A, 32769, "received", 65535, 2)
    store.counters.count(A, 32769, "stored", 100)
    store.counters.count(A, 32771, "sent", 10, 5)
    store.counters.count(B, 32769, "dropped_rate", 8, 4)
    a_32769 = Counter({"received": 3, "received_bytes": 65635, "stored": 1, "stored_bytes": 100})
    assert store.counters.totals() == {
        (A, 32769): a_32769,
        (A, 32771): Counter({"sent": 5, "sent_bytes": 10}),
        (B, 32769): Counter({"dropped_rate": 4, "dropped_rate_bytes": 8}),
    }
    assert store.counters.totals(peer_id=B) == {(B, 32769): Counter({"dropped_rate": 4, "dropped_rate_bytes": 8})}
    assert store.counters.totals(msg_type=32771) == {(A, 32771): Counter({"sent": 5, "sent_bytes": 10})}
    assert store.counters.totals(A, 32769) == {(A, 32769): a_32769}
    # reading twice does not count twice
    assert store.counters.totals(A, 32769) == {(A, 32769): a_32769}


def test_counters_survive_reopening(open_store: OpenStore) -> None:
    store = open_store()
    store.counters.count(A, 32769, "received", 4, 2)
    store.counters.totals()
    store.counters.count(A, 32769, "received", 2)  # pending: written by close()
    store.close()
    reopened = open_store()
    assert reopened.counters.totals() == {(A, 32769): Counter({"received": 3, "received_bytes": 6})}
    reopened.counters.count(A, 32769, "received", 2)
    assert reopened.counters.totals() == {(A, 32769): Counter({"received": 4, "received_bytes": 8})}
    reopened.close()


def test_counts_ride_along_with_the_next_transaction(open_store: OpenStore) -> None:
    # given a count and then a stored message; when the plugin dies without close(); then the count is on disk
    store = open_store()
    store.counters.count(A, 32769, "received", 2)
    add(store, A, b"\x80\x01")
    other = open_store()
    assert other.counters.totals() == {(A, 32769): Counter({"received": 1, "received_bytes": 2})}
    other.close()
    store.close()


# -- bLIP-50 tags (schema 3) ------------------------------------------------------

REQUEST = b'\x94\x19{"jsonrpc":"2.0","id":"r1","method":"lsps0.list_protocols","params":{}}'


def test_tagged_message_round_trips_with_its_decoded_json(store: Store) -> None:
    tag = JsonRpcTag("request", "lsps0.list_protocols", "r1")
    stored, _ = store.inbox.add_message(A, REQUEST, 37913, 1.0, 100, tag)
    assert store.inbox.list_messages() == [stored]
    entry = stored.to_json()
    assert entry["kind"] == "request" and entry["method"] == "lsps0.list_protocols"
    assert entry["json"] == {"jsonrpc": "2.0", "id": "r1", "method": "lsps0.list_protocols", "params": {}}
    assert "answered_at" not in entry


def test_untagged_message_has_no_json_fields(store: Store) -> None:
    entry = add(store, A, b"\x80\x01hi").to_json()
    assert not {"kind", "json", "method", "answered_at"} & set(entry)


def test_method_filter(store: Store) -> None:
    store.inbox.add_message(A, REQUEST, 37913, 1.0, 100, JsonRpcTag("request", "lsps0.list_protocols", "r1"))
    add(store, A, b"\x80\x01hi")
    store.inbox.add_message(B, REQUEST, 37913, 1.0, 100, JsonRpcTag("request", "lsps1.get_info", "r2"))
    assert [m.created_index for m in store.inbox.list_messages(method="lsps1.get_info")] == [3]
    assert store.inbox.first_message(1, A, None, "lsps0.list_protocols") is not None
    assert store.inbox.first_message(2, A, None, "lsps0.list_protocols") is None


def test_requests_with_id_and_answering_once(store: Store) -> None:
    """The same id from two peers names two requests; each is answered at most once."""
    first, _ = store.inbox.add_message(A, REQUEST, 37913, 1.0, 100, JsonRpcTag("request", "m", "same"))
    second, _ = store.inbox.add_message(B, REQUEST, 37913, 1.0, 100, JsonRpcTag("request", "m", "same"))
    store.inbox.add_message(A, REQUEST, 37913, 1.0, 100, JsonRpcTag("response", None, "same"))
    assert {m.peer_id for m in store.inbox.requests_with_id("same")} == {A, B}
    assert store.inbox.set_answered(first.created_index, 5.0) is True
    assert store.inbox.set_answered(first.created_index, 6.0) is False
    assert store.inbox.set_answered(second.created_index, 7.0) is True
    assert store.inbox.list_messages(A)[0].answered_at == 5.0
    assert store.inbox.set_answered(first.created_index, None) is True  # the answer could not be sent
    assert store.inbox.set_answered(first.created_index, 8.0) is True


def test_migration_from_version_2_keeps_messages_untagged(db_path: str) -> None:
    db = raw_db(db_path)
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO inbox (peer_id, type, payload, received_at) VALUES (?, ?, ?, ?)",
               (bytes.fromhex(A), 37913, REQUEST, 5.0))
    db.close()
    store = Store(db_path)
    assert store.inbox.list_messages() == [StoredMessage(1, A, 37913, REQUEST, 5.0)]
    assert store.inbox.list_messages(method="lsps0.list_protocols") == []
    store.close()


# -- the receiver's group commit ---------------------------------------------------


def batched_receiver(store: Store, notified: list[dict[str, object]], logged: list[str]) -> Receiver:
    receiver = Receiver(store, Counters(store), ReceiveLimiter(Budget(100, 1000)), WaiterRegistry(), BIG,
                        notify=notified.append, log=lambda text, **kwargs: logged.append(text))
    receiver.batched = True
    return receiver


def test_batched_receiver_stores_what_it_held_when_settled(store: Store) -> None:
    # given a receiver in the main loop's group commit
    notified: list[dict[str, object]] = []
    receiver = batched_receiver(store, notified, [])
    # when three messages from two peers arrive in one round: they are held, counted as received only
    for peer, body in ((A, b"a1"), (B, b"b1"), (A, b"a2")):
        receiver.receive(peer, b"\x80\x01" + body, 32769)
    assert store.inbox.list_messages() == [] and notified == []
    # then the loop's settle stores them in arrival order, counts them, and notifies each in turn
    receiver.settle()
    assert [(m.created_index, m.peer_id, m.payload) for m in store.inbox.list_messages()] == [
        (1, A, b"\x80\x01a1"), (2, B, b"\x80\x01b1"), (3, A, b"\x80\x01a2")]
    assert [n["created_index"] for n in notified] == [1, 2, 3]
    assert receiver.counters.report(A, None)["session"]["stored"] == 2
    assert store.counters.totals()[(A, 32769)] == Counter(
        {"received": 2, "stored": 2, "received_bytes": 8, "stored_bytes": 8})
    receiver.settle()  # nothing held: nothing happens
    assert len(notified) == 3


def test_a_message_kept_on_its_own_comes_after_the_held_ones(store: Store) -> None:
    # given a plain message held; when an envelope's message is kept (acked delivery: at once)
    receiver = batched_receiver(store, [], [])
    receiver.receive(A, b"\x80\x01held", 32769)
    kept = receiver.keep(B, b"\x80\x01kept", 32769)
    # then the held one was stored first: the inbox keeps arrival order
    assert kept is not None and kept.created_index == 2
    assert [m.payload for m in store.inbox.list_messages()] == [b"\x80\x01held", b"\x80\x01kept"]


def refuse_writes(store: Store, refused: bool) -> None:
    """Make the store's own connection read-only (or writable again): its reads go on, its writes fail."""
    if store.describe().startswith("PostgreSQL"):
        store.read(f"SELECT set_config('default_transaction_read_only', '{'on' if refused else 'off'}', false)")
    else:
        store.read(f"PRAGMA query_only = {'ON' if refused else 'OFF'}")


def test_a_held_round_that_cannot_be_stored_counts_each_dropped(store: Store) -> None:
    # given three held messages; when the database refuses to write them
    logged: list[str] = []
    receiver = batched_receiver(store, [], logged)
    for body in (b"1", b"2", b"3"):
        receiver.receive(A, b"\x80\x01" + body, 32769)
    refuse_writes(store, True)
    receiver.settle()
    # then each is counted in dropped.storage, the outage is logged once, and nothing is held any more
    assert receiver.counters.report(A, None)["session"]["dropped"]["storage"] == 3
    assert len([line for line in logged if "cannot store messages" in line]) == 1
    refuse_writes(store, False)
    receiver.settle()
    assert store.inbox.list_messages() == []
    receiver.receive(A, b"\x80\x01again", 32769)
    receiver.settle()
    assert [m.payload for m in store.inbox.list_messages()] == [b"\x80\x01again"]
    assert logged[-1] == "storing messages again"
    assert store.counters.totals()[(A, 32769)]["dropped_storage"] == 3
