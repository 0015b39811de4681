"""aiosqlite with one trip to its worker thread per statement.

SQLAlchemy's async adapter drives aiosqlite's cursor API, and aiosqlite makes a trip to its
worker thread for every call of it: creating the cursor, ``execute``, ``fetchall`` and
``close``.  A trip costs ~0.1-0.2 ms here (a thread wake-up there and an event-loop wake-up
back), four times the work of a typical indexed statement, so a message's ~20 statements
cost ~12 ms of trips alone.  :class:`OneTripConnection` is aiosqlite's own connection (same
worker thread, queue, close and stop) whose cursors do all of that in one trip: the
``sqlite3`` cursor is created, executed and read (up to :data:`PREFETCH` rows) in a single
job, and closed in it once exhausted.  Longer results are read on in further trips, so
streaming reads (``yield_per``) still stream.

Everything runs on the connection's one worker thread, as with aiosqlite, so the ``sqlite3``
objects are never used from two threads.

Writing with several processes on one file (``carrier serve --workers``):

* ``BEGIN IMMEDIATE`` waits for another process's writer by trying again every millisecond
  at most, instead of through SQLite's busy handler, whose sleeps grow from 1 ms to 100 ms (a
  lock freed after 2 ms was often taken 20-100 ms later, and every write queued behind it in
  the process waited as long).  The busy timeout still bounds the wait.
* A small transaction (``inline_writes``, see ``Database.begin``) runs whole on the event
  loop's thread: BEGIN (tried without blocking; between tries the loop runs on), its
  statements and COMMIT.  The write lock is then held for the SQL alone, not also for a
  wake-up of the worker thread and of the event loop, which under load took milliseconds
  each while the other processes waited.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite
from aiosqlite.context import Result

PREFETCH = 512
"""Rows read in the trip that runs a statement; most reads fit, longer ones stream on."""

FIRST_POLL = 0.000_25
MAX_POLL = 0.001
"""Seconds between two tries of a ``BEGIN IMMEDIATE`` that found the file locked: the first
wait, doubled on each try up to the last."""

T = TypeVar("T")
_Description = tuple[tuple[Any, ...], ...] | None
_Outcome = tuple[sqlite3.Cursor | None, _Description, list[Any], int, Any]


class OneTripCursor:
    """The subset of ``aiosqlite.Cursor`` that SQLAlchemy's adapter uses, in fewer trips."""

    arraysize = 1

    def __init__(self, conn: OneTripConnection) -> None:
        self._conn = conn
        self._cursor: sqlite3.Cursor | None = None  # open only while rows remain unread
        self._rows: deque[Any] = deque()
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._start(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._start(sql, parameters, many=True)

    async def _start(self, sql: str, params: Any, *, many: bool) -> OneTripCursor:
        await self._close_open_cursor()
        conn = self._conn
        if not many and _is_begin_write(sql):
            if conn.inline_writes:
                self._take(await conn.begin_here(sql, params))
            else:
                self._take(await conn.call(_begin, conn._conn, sql, params, conn.busy_seconds))
        else:
            self._take(await conn.run(_run, sql, params, many))
        return self

    async def fetchone(self) -> Any:
        if not self._rows and self._cursor is not None:
            await self._read_more(PREFETCH)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        if len(self._rows) < size and self._cursor is not None:
            await self._read_more(max(size - len(self._rows), PREFETCH))
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        if self._cursor is not None:
            await self._read_more(None)
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()
        await self._close_open_cursor()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while rows := await self.fetchmany(PREFETCH):
            for row in rows:
                yield row

    def _take(self, outcome: _Outcome) -> None:
        self._cursor, self.description, rows, self.rowcount, self.lastrowid = outcome
        self._rows = deque(rows)

    async def _read_more(self, size: int | None) -> None:
        cursor = self._cursor
        assert cursor is not None
        rows, exhausted = await self._conn.call(_fetch, cursor, size)
        self._rows.extend(rows)
        if exhausted:
            self._cursor = None
        self.rowcount = cursor.rowcount

    async def _close_open_cursor(self) -> None:
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            await self._conn.call(cursor.close)


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors make one trip per statement (see the module).

    With ``inline_reads``, a SELECT outside a transaction runs on the calling (event loop)
    thread with no trip at all: in WAL mode a reader never waits for a writer, and an
    indexed read takes a few microseconds, far less than the trip.  Its first
    :data:`PREFETCH` rows are read there; longer results are read on in the worker thread.
    Writes and everything inside a transaction (which may wait for the write lock, or
    checkpoint on COMMIT) stay on the worker thread, unless ``inline_writes`` is set for a
    transaction whose statements are known to be small (see ``Database.begin``): once
    ``BEGIN IMMEDIATE`` holds the write lock, no statement inside waits for anything, so
    BEGIN (tried without blocking, see :meth:`begin_here`), the statements and COMMIT run
    inline too.
    """

    def __init__(
        self,
        connector: Callable[[], sqlite3.Connection],
        *,
        inline_reads: bool = False,
        busy_seconds: float = 5.0,
    ) -> None:
        super().__init__(connector, 64)
        self.inline_reads = inline_reads
        self.inline_writes = False
        self.busy_seconds = busy_seconds
        """How long a ``BEGIN IMMEDIATE`` waits for another writer (the busy timeout)."""

    def runs_inline(self, db: sqlite3.Connection, sql: str) -> bool:
        """Whether ``sql`` runs on the calling thread instead of the worker's."""
        if db.in_transaction:
            return self.inline_writes
        return self.inline_reads and _is_select(sql)

    async def begin_here(self, sql: str, params: Any) -> _Outcome:
        """``BEGIN IMMEDIATE`` on the calling thread without ever blocking it: tried at once,
        and while another connection holds the write lock, tried again after an
        ``asyncio.sleep`` of :data:`FIRST_POLL`..:data:`MAX_POLL` s, for up to the busy
        timeout; then SQLite's own "database is locked" error is raised."""
        waits = _waits(self.busy_seconds)
        while (busy := _try_begin(self._conn, sql, params, self.busy_seconds)) is not None:
            if (wait := next(waits, None)) is None:
                raise busy
            await asyncio.sleep(wait)
        return _BEGUN

    async def commit(self) -> None:
        """COMMIT: inline in a small transaction (``inline_writes``), else one trip."""
        db = self._conn
        if self.inline_writes and db is not None and db.in_transaction:
            db.commit()
            return
        await super().commit()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker thread (one trip)."""
        result: T = await self._execute(fn, *args)  # type: ignore[no-untyped-call]
        return result

    async def run(self, fn: Callable[..., T], sql: str, *args: Any) -> T:
        """``fn(db, sql, *args)``: on the calling thread when :meth:`runs_inline` says so,
        else on the worker thread (one trip)."""
        db = self._conn
        if self.runs_inline(db, sql):
            return fn(db, sql, *args)
        return await self.call(fn, db, sql, *args)

    async def execute_fetchall(  # type: ignore[override]
        self, sql: str, parameters: Iterable[Any] | None = None
    ) -> list[Any]:
        """All rows of ``sql``: inline for an autocommit read, else one trip."""
        return await self.run(_fetch_all, sql, () if parameters is None else parameters)

    def cursor(self) -> Result[OneTripCursor]:  # type: ignore[override]
        return Result(self._new_cursor())

    async def _new_cursor(self) -> OneTripCursor:
        return OneTripCursor(self)


def connect(database: str, *, inline_reads: bool = False, **kwargs: Any) -> OneTripConnection:
    """Like ``aiosqlite.connect`` (await the result to open the connection); ``kwargs`` go
    to ``sqlite3.connect``."""

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return connection

    busy_seconds = float(kwargs.get("timeout", 5.0))
    return OneTripConnection(connector, inline_reads=inline_reads, busy_seconds=busy_seconds)


def _is_select(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


def _is_begin_write(sql: str) -> bool:
    words = sql.split(None, 2)
    return (
        len(words) >= 2
        and words[0].upper() == "BEGIN"
        and words[1].upper() in ("IMMEDIATE", "EXCLUSIVE")
    )


_BEGUN: _Outcome = (None, None, [], -1, None)


def _try_begin(
    db: sqlite3.Connection, sql: str, params: Any, busy_seconds: float
) -> sqlite3.OperationalError | None:
    """One try of ``BEGIN IMMEDIATE`` (or ``EXCLUSIVE``) that never waits: None once begun,
    SQLite's "database is locked" error while another connection holds the write lock.

    SQLite's busy handler is switched off for the try (it fails at once instead of sleeping)
    and back on afterwards, so every other statement on the connection still waits out the
    busy timeout as configured."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.execute(sql, params)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return exc
    finally:
        db.execute(f"PRAGMA busy_timeout={max(0, int(busy_seconds * 1000))}")
    return None


def _begin(db: sqlite3.Connection, sql: str, params: Any, busy_seconds: float) -> _Outcome:
    """On the worker thread: :func:`_try_begin` every :data:`FIRST_POLL`..:data:`MAX_POLL` s
    for up to ``busy_seconds``; then SQLite's own "database is locked" error is raised."""
    waits = _waits(busy_seconds)
    while (busy := _try_begin(db, sql, params, busy_seconds)) is not None:
        if (wait := next(waits, None)) is None:
            raise busy
        time.sleep(wait)
    return _BEGUN


def _waits(busy_seconds: float) -> Iterator[float]:
    """The pauses between tries of a BEGIN that found the file locked: :data:`FIRST_POLL`,
    doubled up to :data:`MAX_POLL`, until ``busy_seconds`` from now are spent."""
    deadline = time.monotonic() + busy_seconds
    delay = FIRST_POLL
    while (left := deadline - time.monotonic()) > 0:
        yield min(delay, left)
        delay = min(delay * 2, MAX_POLL)


def _run(db: sqlite3.Connection, sql: str, params: Any, many: bool) -> _Outcome:
    """On the worker thread: run one statement and read its first rows."""
    cursor = db.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        description = cursor.description
        rows: list[Any] = []
        if description is not None:
            rows = cursor.fetchmany(PREFETCH)
        exhausted = len(rows) < PREFETCH
        outcome = (None if exhausted else cursor, description, rows, cursor.rowcount)
        lastrowid = cursor.lastrowid
        if exhausted:
            cursor.close()
        return (*outcome, lastrowid)
    except BaseException:
        cursor.close()
        raise


def _fetch_all(db: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    rows: list[Any] = db.execute(sql, params).fetchall()
    return rows


def _fetch(cursor: sqlite3.Cursor, size: int | None) -> tuple[Sequence[Any], bool]:
    """On the worker thread: read on; close the cursor once it is exhausted."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    exhausted = size is None or len(rows) < size
    if exhausted:
        cursor.close()
    return rows, exhausted


__all__: list[str] = ["PREFETCH", "OneTripConnection", "OneTripCursor", "connect"]
