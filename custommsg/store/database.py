"""The database: one connection, one lock, one transaction helper, and a query part per feature.

:class:`Store` owns the engine (``sqlite``: everything specific to SQLite; ``postgres``:
to PostgreSQL; chosen by the location's form, ``core.dsn``) and the transaction; the
features' queries are parts it holds, each with a reference back to it:
:attr:`Store.inbox`, :attr:`Store.outbox`, :attr:`Store.acked`, :attr:`Store.counters`.
Opening a database brings it up to the newest schema, one migration at a time, each in
its own transaction (on PostgreSQL, then imports the node's SQLite file once,
``importer``). Every failure of the engine becomes one :class:`StorageError`, here
(its text never shows a password the location carries). Every query the RPCs make is
served by an index, so their cost does not grow with the inbox.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from ..core.dsn import SCHEMA, is_postgres, password_of, redacted
from ..core.errors import StorageError
from ..core.records import CounterKey, Page
from . import importer, postgres, sqlite
from .acked import AckQueries
from .counters import CounterQueries
from .inbox import InboxQueries
from .outbox import OutboxQueries
from .query import Db


def _engine_errors(location: str) -> tuple[type[Exception], ...]:
    if not is_postgres(location):
        return sqlite.ERRORS
    try:
        return postgres.errors()
    except ImportError as exc:
        raise StorageError(
            f"custommsg database {redacted(location)}: PostgreSQL needs the psycopg driver "
            f"(pip install 'psycopg[binary]'): {exc}", {"path": redacted(location)},
        ) from None


class Store:
    """``location``: a SQLite file, or a PostgreSQL URL and the ``schema`` the tables live in there.
    ``import_from``: on PostgreSQL, a SQLite file to copy in once (``importer``); ``imported`` then
    says what was copied ("" when nothing was)."""

    def __init__(self, location: str, schema: str = SCHEMA, import_from: str | None = None):
        self.path = redacted(location)  # the one form a log line, an error or an answer shows
        self._password = password_of(location)
        self.lock = threading.RLock()  # the query parts hold it too
        self.counters = CounterQueries(self)  # before the engine: the first transaction flushes it
        self._errors = _engine_errors(location)
        self._engine: sqlite.SqliteEngine | postgres.PostgresEngine
        with self._wrapped(f"cannot open the custommsg database {self.path}"):
            if is_postgres(location):
                self._engine = postgres.PostgresEngine(location, schema)
            else:
                self._engine = sqlite.SqliteEngine(location)
        self.imported = ""
        try:
            self._migrate()
            if import_from is not None and is_postgres(location) and importer.wanted(self, import_from):
                self.imported = importer.import_sqlite(self, import_from)
            self.inbox = InboxQueries(self)
            self.outbox = OutboxQueries(self)
            self.acked = AckQueries(self)
        except BaseException:
            self._engine.close()
            raise

    @property
    def watch(self) -> Callable[[], None] | None:
        """What a thread of its own calls a few times a second, on a store whose engine has calls to end
        and connections to open again (PostgreSQL: ``PostgresEngine.watch``); None on SQLite."""
        return self._engine.watch if isinstance(self._engine, postgres.PostgresEngine) else None

    def describe(self) -> str:
        """Where the data lives, for the start-up log line."""
        return self._engine.describe()

    def _storage_error(self, exc: BaseException, what: str | None) -> StorageError:
        """The one place an engine's error becomes a StorageError."""
        prefix = what or f"custommsg database {self.path}"
        cause = " ".join(str(exc).split())  # one line: libpq's texts run over several
        if self._password:
            cause = cause.replace(self._password, "***")  # were a driver ever to quote it back
        return StorageError(f"{prefix}: {cause}", {"path": self.path}, unsure=isinstance(exc, postgres.Unsure))

    @contextmanager
    def _wrapped(self, what: str | None = None) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise self._storage_error(exc, what) from exc

    def _migrate(self) -> None:
        migrations = self._engine.migrations()
        newest = len(migrations)
        with self._wrapped(f"cannot open the custommsg database {self.path}"):
            version = self._engine.schema_version()
        if version > newest:
            raise StorageError(
                f"{self.path} has schema version {version}, newer than this custommsg understands ({newest}): "
                "upgrade the plugin",
                {"path": self.path},
            )
        for number in range(version, newest):
            with self.transaction(f"cannot open the custommsg database {self.path}") as db:
                for statement in migrations[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                self._engine.set_schema_version(number + 1)

    @contextmanager
    def transaction(self, what: str | None = None, pipelined: bool = False) -> Iterator[Db]:
        """All or nothing, behind the lock; the counts not yet written go in with it. One context
        manager, not nested ones: it wraps every message stored. ``pipelined``: the engine may send
        the statements together, from BEGIN to COMMIT (``insert_many`` keys are read after the end)."""
        engine = self._engine
        flushed = None
        with self.lock:
            try:
                try:
                    with engine.pipelined() if pipelined else nullcontext():
                        engine.begin()
                        yield engine
                        flushed = self.counters.flush_into(engine)
                        engine.commit()
                except BaseException:
                    engine.rollback()
                    raise
            except self._errors as exc:
                error = self._storage_error(exc, what)
                if flushed is not None:
                    self._set_aside_if_unsure(error, flushed)
                raise error from exc
            finally:
                self.counters.transaction_ended()
            assert flushed is not None
            self.counters.written(flushed)

    def _set_aside_if_unsure(self, error: StorageError, flushed: Counter[CounterKey]) -> None:
        """A write that may have committed took the pending counts ``flushed`` along: they are not pending
        any more, and go with the error (``CounterQueries.restore`` makes them pending again if the write
        turns out not to have been committed)."""
        if error.unsure:
            self.counters.written(flushed)
            error.unsure_counts = flushed

    @property
    def rounds_in_one_statement(self) -> bool:
        """Whether the engine stores a round of messages with their counts in one statement
        (:meth:`store_round`): PostgreSQL, where each statement is a round trip to the server."""
        return isinstance(self._engine, postgres.PostgresEngine)

    def store_round(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Behind the lock, after ``counters.count_here`` for each: insert the inbox ``rows`` with every
        count (pending and the round's own) in one statement, all or nothing; the new keys, in order."""
        assert isinstance(self._engine, postgres.PostgresEngine)
        with self.lock:
            try:
                flushed, counts = self.counters.to_write()
                with self._wrapped():
                    keys = self._engine.store_round(rows, counts)
            except StorageError as exc:
                self._set_aside_if_unsure(exc, flushed)
                raise
            finally:
                self.counters.transaction_ended()
            self.counters.written(flushed)
        return keys

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock, self._wrapped():
            return list(self._engine.execute(sql, args).fetchall())

    def paged(self, columns: str, table: str, filters: tuple[str, list[Any]], column: str,
              page: Page) -> list[tuple[Any, ...]]:
        """The one paging query: rows matching ``filters`` with ``column >= page.start``, in that
        order, at most ``page.limit`` of them, as lightningd's list commands page."""
        clauses, args = filters
        condition = " AND ".join(filter(None, [clauses, f"{column} >= ?"]))
        limit = self._engine.NO_LIMIT if page.limit is None else page.limit
        sql = f"SELECT {columns} FROM {table} WHERE {condition} ORDER BY {column} LIMIT ?"
        return self.read(sql, [*args, page.start, limit])

    def last_inbox_index(self) -> int:
        with self.lock, self._wrapped():
            return self._engine.last_inbox_index()

    def flush(self) -> None:
        with self.transaction():
            pass

    def close(self) -> None:
        with self.lock:
            try:
                self.flush()
            except StorageError:
                pass
            self._engine.close()

