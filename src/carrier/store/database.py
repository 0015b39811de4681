"""Opening the database: one async engine per process, SQLite tuned for a chat bot.

SQLite runs in WAL mode with a busy timeout so readers never block the writer and a briefly
locked file waits instead of failing.  Errors that mean "this is not a database" or "the file
is locked" are turned into :class:`DatabaseError` with a message an operator can act on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from carrier.store.sqlite_driver import OneTripConnection, connect

WRITE_OPTION = "carrier_write"


class Database:
    """The async engine with one rule added for SQLite: write transactions (``begin()``)
    take the write lock up front (``BEGIN IMMEDIATE``) and are serialised inside the process,
    so concurrent writers queue instead of failing with "database is locked".  Reads
    (``connect()``) run concurrently, as WAL allows.  On PostgreSQL both pass straight through.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.async_engine = engine
        self.dialect = engine.dialect
        self.url = engine.url
        self._serialise = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    def connect(self) -> AsyncConnection:
        return self.async_engine.connect()

    @asynccontextmanager
    async def begin(self, *, small: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on success and rolled back on error.

        ``small``: every statement inside is short and bounded (the recorder's batches), so
        on SQLite the whole transaction runs on the event loop's thread, BEGIN and COMMIT
        included, instead of a trip each to the driver's thread; BEGIN never blocks the loop
        while another process writes (see :mod:`carrier.store.sqlite_driver`).
        """
        if not self._serialise:
            async with self.async_engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.async_engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            driver = (await conn.get_raw_connection()).driver_connection if small else None
            if isinstance(driver, OneTripConnection):
                driver.inline_writes = True
            try:
                async with conn.begin():
                    yield conn
            finally:
                if isinstance(driver, OneTripConnection):
                    driver.inline_writes = False

    async def dispose(self) -> None:
        await self.async_engine.dispose()


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for memory databases and other backends."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def create_engine(url: str, *, echo: bool = False, busy_timeout_ms: int = 5000) -> AsyncEngine:
    """Build the async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            async_creator=partial(_open_sqlite, str(path), busy_timeout_ms / 1000),
            # Nothing to reset: reads are autocommit, writes end in COMMIT or ROLLBACK.
            pool_reset_on_return=None,
            # One message runs several reads at once next to the background writer; a pool
            # smaller than that opened (and closed) two connections per message, each a new
            # driver thread and five PRAGMAs.  Idle connections cost one parked thread each.
            pool_size=16,
            max_overflow=32,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself (the driver's implicit BEGIN
            # would be DEFERRED, and a deferred reader that upgrades to a writer fails with
            # "database is locked" at once instead of waiting for the busy timeout).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        dialect = engine.sync_engine.dialect
        driver_rollback = dialect.do_rollback
        driver_commit = dialect.do_commit
        began_write: set[int] = set()  # ids of driver connections inside a write

        def _rollback_if_needed(dbapi_connection: Any) -> None:
            # Reads run in driver autocommit, so closing one has nothing to roll back, and
            # asking the driver's thread anyway costs a round trip per read.  A connection
            # that began a write is always rolled back (its BEGIN may still be queued in the
            # driver's thread when a cancelled caller gives it back, so in_transaction
            # cannot be trusted for it); aiosqlite answers in_transaction without a trip.
            wrote = id(dbapi_connection) in began_write
            if wrote or getattr(dbapi_connection._connection, "in_transaction", True):
                began_write.discard(id(dbapi_connection))
                driver_rollback(dbapi_connection)

        def _commit(dbapi_connection: Any) -> None:
            began_write.discard(id(dbapi_connection))
            driver_commit(dbapi_connection)

        dialect.do_rollback = _rollback_if_needed  # type: ignore[method-assign]
        dialect.do_commit = _commit  # type: ignore[method-assign]

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Reads run in autocommit (each statement its own snapshot, no BEGIN/ROLLBACK
            # round trips through the driver thread); writes take the lock up front.
            if conn.get_execution_options().get(WRITE_OPTION, False):
                began_write.add(id(conn.connection.dbapi_connection))
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if is_sqlite(url):
        return create_async_engine(url, echo=echo)
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


async def _open_sqlite(path: str, busy_seconds: float) -> Any:
    """aiosqlite's connect (with one-trip cursors, see :mod:`carrier.store.sqlite_driver`),
    plus: when opening fails, wait until its worker thread has ended.

    aiosqlite stops that thread without waiting for it; the thread then reports to the event
    loop, and if ``asyncio.run`` has closed the loop by then (a CLI command that failed) it
    dies with a traceback on stderr.
    """
    connection = connect(path, inline_reads=True, timeout=busy_seconds, check_same_thread=False)
    thread = getattr(connection, "_thread", None)
    if thread is not None:
        thread.daemon = True  # as SQLAlchemy does: never hold up interpreter exit
    try:
        return await connection
    except BaseException:
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 5)
        raise


def explain(error: BaseException, url: str) -> DatabaseError:
    """Turn a driver error into an operator-facing :class:`DatabaseError` (one line)."""
    sqlite_file = sqlite_path(url)
    target = str(sqlite_file or make_url(url).render_as_string(hide_password=True))
    original = error.orig if isinstance(error, DBAPIError) else error
    detail = " ".join(str(original).split()) or type(original).__name__
    text = detail.lower()
    if "file is not a database" in text or "not a database" in text:
        return DatabaseError(
            f"{target} is not a valid SQLite database (corrupted or another kind of file). "
            "Nothing was changed; restore it from a backup or point database.url elsewhere."
        )
    if "malformed" in text:
        return DatabaseError(
            f"{target} is a corrupted SQLite database ({detail}). Nothing was changed; restore "
            "it from a backup (`sqlite3 FILE .recover` may salvage what is left)."
        )
    if "database is locked" in text or "database is busy" in text:
        return DatabaseError(
            f"{target} is locked by another process and stayed locked past the busy timeout; "
            "stop the other writer or raise database.busy_timeout_ms."
        )
    if "unable to open database" in text or "readonly" in text or "read-only" in text:
        return DatabaseError(f"{target} cannot be opened for writing: {detail}")
    if sqlite_file is None and isinstance(original, OSError):
        # asyncpg raises plain OSErrors (refused, no such socket) before any SQL is sent.
        return DatabaseError(
            f"cannot connect to {target}: {detail}; check that the server is running and "
            "that database.url / DATABASE_URL point at it."
        )
    if isinstance(error, OperationalError | OSError | ConnectionError) or isinstance(
        original, sqlite3.Error
    ):
        return DatabaseError(f"database {target} is unavailable: {detail}")
    return DatabaseError(f"database {target} failed: {detail}")
