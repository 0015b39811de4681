"""The one-trip SQLite driver under SQLAlchemy: same results as aiosqlite, fewer trips."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.store import sqlite_driver
from carrier.store.database import Database, create_engine
from carrier.store.sqlite_driver import PREFETCH, OneTripConnection


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/driver.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions sent to the worker thread, in order."""
    seen: list[str] = []
    call = OneTripConnection.call

    async def counted(self: OneTripConnection, fn: Any, *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await call(self, fn, *args)

    monkeypatch.setattr(OneTripConnection, "call", counted)
    return seen


async def test_a_read_runs_inline_and_a_statement_in_a_transaction_is_one_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
    async with engine.connect() as conn:
        trips.clear()
        rows = (await conn.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    assert trips == []  # an autocommit read never leaves the event loop's thread
    async with Database(engine).begin() as conn:
        trips.clear()
        await conn.execute(text("SELECT v FROM t WHERE id = 1"))
        await conn.execute(text("UPDATE t SET v = 'c' WHERE id = 2"))
        assert trips == ["_run", "_run"]  # one trip each, inside the write transaction
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert left == ["a", "c"]


async def test_long_results_and_streams_are_complete_and_in_order(
    engine: AsyncEngine, trips: list[str]
) -> None:
    count = PREFETCH * 2 + 7
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"row {i}"} for i in range(count)]
        )
    async with engine.connect() as conn:
        whole = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        trips.clear()
        streamed: list[str] = []
        result = await conn.stream(
            text("SELECT v FROM t ORDER BY id"), execution_options={"yield_per": 100}
        )
        async for chunk in result.partitions(100):
            streamed.extend(row[0] for row in chunk)
    expected = [f"row {i}" for i in range(count)]
    assert whole == expected
    assert streamed == expected
    # The first rows are read inline; the stream reads on in further trips, not all at once.
    assert trips.count("_fetch") >= 2


async def test_rowcount_lastrowid_and_returning(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
        assert inserted.lastrowid == 1
        await conn.execute(text("INSERT INTO t (v) VALUES ('y'), ('z')"))
        updated = await conn.execute(text("UPDATE t SET v = v || '!' WHERE id > 1"))
        assert updated.rowcount == 2
        back = await conn.execute(text("DELETE FROM t WHERE id = 3 RETURNING v"))
        assert back.scalars().all() == ["z!"]
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert left == ["x", "y!"]


async def test_an_error_is_the_drivers_and_the_connection_carries_on(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(OperationalError, match="no such table"):
            await conn.execute(text("SELECT * FROM missing"))
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    with pytest.raises(OperationalError):
        async with Database(engine).begin() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('kept?')"))
            await conn.execute(text("INSERT INTO nowhere VALUES (1)"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_the_engine_uses_the_one_trip_driver(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, sqlite_driver.OneTripConnection)


async def test_execute_fetchall_reads_inline_and_writes_in_one_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, OneTripConnection)
        trips.clear()
        assert await driver.execute_fetchall("SELECT count(*) FROM t") == [(0,)]
        assert trips == []
        await driver.execute_fetchall("INSERT INTO t (v) VALUES (?) RETURNING id", ("w",))
        assert trips == ["_fetch_all"]
        assert await driver.execute_fetchall("SELECT v FROM t") == [("w",)]


async def test_a_small_write_transaction_runs_its_statements_inline(
    engine: AsyncEngine, trips: list[str]
) -> None:
    database = Database(engine)
    async with database.begin(small=True) as conn:
        trips.clear()
        await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
        await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 3
        assert trips == []  # the write lock is held: nothing inside waits
        driver = (await conn.get_raw_connection()).driver_connection
    assert isinstance(driver, OneTripConnection) and driver.inline_writes is False
    with pytest.raises(OperationalError):
        async with database.begin(small=True) as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
            await conn.execute(text("INSERT INTO nowhere VALUES (1)"))
    async with database.begin() as conn:
        trips.clear()
        await conn.execute(text("UPDATE t SET v = upper(v)"))
        assert trips == ["_run"]  # an ordinary write transaction keeps its trips
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert left == ["A", "B", "C"]
