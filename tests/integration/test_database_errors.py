"""A corrupted or locked database gives one clear error, and nothing stored is lost."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from carrier.cli import db
from carrier.store.database import Database, DatabaseError, create_engine, explain
from carrier.store.migrate import current_revision, downgrade, head_revision, upgrade
from carrier.store.store import Store


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt_files(directory: Path) -> Iterator[tuple[str, Path]]:
    random_bytes = directory / "random.db"
    random_bytes.write_bytes(os.urandom(8192))
    yield "random bytes", random_bytes
    text = directory / "notes.db"
    text.write_text("these are my notes, not a database\n" * 200, encoding="utf-8")
    yield "a text file", text
    tiny = directory / "tiny.db"
    tiny.write_bytes(b"\x00\x01garbage")
    yield "a few bytes", tiny


@pytest.fixture
def cli() -> typer.Typer:
    """``carrier db`` as the lead's main app will mount it."""
    app = typer.Typer()
    app.add_typer(db.app, name="db")
    return app


def write_config(directory: Path, database: Path) -> Path:
    config = directory / "config.yaml"
    config.write_text(f"database:\n  url: {url_of(database)}\n", encoding="utf-8")
    return config


# --- corrupted files ---------------------------------------------------------------------


async def test_upgrade_of_a_corrupted_file_fails_clearly_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    for label, path in corrupt_files(tmp_path):
        before = digest(path)
        engine = create_engine(url_of(path))
        try:
            with pytest.raises(DatabaseError) as caught:
                await upgrade(engine)
            with pytest.raises(DatabaseError):
                await current_revision(engine)
        finally:
            await engine.dispose()
        message = str(caught.value)
        assert "is not a valid SQLite database" in message, label
        assert str(path) in message, label
        assert "\n" not in message, label
        assert digest(path) == before, f"{label} was modified"
    # SQLite made no journal, WAL or shared-memory files next to them either.
    assert sorted(os.listdir(tmp_path)) == ["notes.db", "random.db", "tiny.db"]


async def test_a_damaged_database_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "carrier.db"
    engine = create_engine(url_of(path))
    await upgrade(engine)
    store = Store(engine)
    await store.agents.ensure("fish", "Fish")
    for number in range(200):
        await store.state.set("fish", f"key{number}", "value " * 50)
    await engine.dispose()
    checkpoint = sqlite3.connect(path)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()

    # Keep the header page, scribble over everything after it.
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (size - 4096))
    before = digest(path)

    engine = create_engine(url_of(path))
    try:
        with pytest.raises(DatabaseError) as caught:
            await upgrade(engine)
    finally:
        await engine.dispose()
    assert "corrupted SQLite database" in str(caught.value)
    assert "malformed" in str(caught.value)
    assert digest(path) == before


def test_cli_upgrade_on_a_corrupted_file_prints_one_line(tmp_path: Path, cli: typer.Typer) -> None:
    path = tmp_path / "carrier.db"
    path.write_bytes(os.urandom(4096))
    before = digest(path)
    config = write_config(tmp_path, path)

    result = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    message = " ".join(result.stderr.split())
    assert message.startswith("error: ")
    assert "is not a valid SQLite database" in message
    assert message.count("error:") == 1
    assert digest(path) == before


def test_cli_current_on_a_corrupted_file_fails_clearly(tmp_path: Path, cli: typer.Typer) -> None:
    path = tmp_path / "carrier.db"
    path.write_text("hello\n" * 100, encoding="utf-8")
    config = write_config(tmp_path, path)
    result = CliRunner().invoke(cli, ["db", "current", "-c", str(config)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "is not a valid SQLite database" in " ".join(result.stderr.split())


def test_cli_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path, cli: typer.Typer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("database:\n  busy_timeout: 10\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'database.busy_timeout'" in result.stderr
    assert "Traceback" not in result.output


# --- the CLI on a healthy database -------------------------------------------------------


def test_cli_upgrade_current_and_downgrade(
    tmp_path: Path, cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = tmp_path / "data" / "carrier.db"
    config = write_config(tmp_path, path)
    runner = CliRunner()
    head = head_revision()
    assert head is not None

    result = runner.invoke(cli, ["db", "current", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "current: none" in result.stdout
    assert f"head:    {head}" in result.stdout
    assert not path.exists(), "`db current` must not create the database"

    result = runner.invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"empty -> {head}" in result.stdout
    assert path.is_file()

    result = runner.invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"already at {head}" in result.stdout

    result = runner.invoke(cli, ["db", "current", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"current: {head} (up to date)" in result.stdout

    # Without --yes it asks, and "no" changes nothing.
    result = runner.invoke(cli, ["db", "downgrade", "base", "-c", str(config)], input="n\n")
    assert result.exit_code == 1
    assert "Downgrade the database to base?" in result.output
    assert f"current: {head}" in runner.invoke(cli, ["db", "current", "-c", str(config)]).stdout

    result = runner.invoke(cli, ["db", "downgrade", "base", "-c", str(config)], input="y\n")
    assert result.exit_code == 0, result.output
    assert f"{head} -> empty" in result.stdout

    result = runner.invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["db", "downgrade", "base", "--yes", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{head} -> empty" in result.stdout
    assert (
        "current: empty (no schema yet"
        in runner.invoke(cli, ["db", "current", "-c", str(config)]).stdout
    )


def test_cli_unknown_revision_is_a_clear_error(tmp_path: Path, cli: typer.Typer) -> None:
    config = write_config(tmp_path, tmp_path / "carrier.db")
    result = CliRunner().invoke(cli, ["db", "upgrade", "nosuchrev", "-c", str(config)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "cannot migrate to 'nosuchrev'" in result.stderr


# --- a locked database -------------------------------------------------------------------


@pytest.fixture
async def migrated(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "carrier.db"
    engine = create_engine(url_of(path))
    await upgrade(engine)
    store = Store(engine)
    await store.agents.ensure("fish", "Fish")
    await store.state.set("fish", "status", "stored before the lock")
    await engine.dispose()
    yield path


def hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


async def test_a_long_lock_fails_clearly_and_loses_nothing(migrated: Path) -> None:
    url = url_of(migrated)
    holder = hold_exclusive_lock(migrated)
    engine = create_engine(url, busy_timeout_ms=150)
    store = Store(engine)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(OperationalError) as caught:
            await store.state.set("fish", "status", "written during the lock")
        waited = loop.time() - started
        # Reading still works while another process writes (WAL).
        assert await store.state.get("fish", "status") == "stored before the lock"
    finally:
        holder.rollback()
        holder.close()
    try:
        assert waited >= 0.1, "the write should wait for the busy timeout first"
        error = explain(caught.value, url)
        assert isinstance(error, DatabaseError)
        assert "is locked by another process" in str(error)
        assert "database.busy_timeout_ms" in str(error)
        assert str(migrated) in str(error)

        # Once the lock is gone the same engine writes again, and nothing was lost.
        await store.state.set("fish", "mood", "fine")
        assert await store.state.all("fish") == {
            "status": "stored before the lock",
            "mood": "fine",
        }
    finally:
        await engine.dispose()


async def test_a_short_lock_is_waited_out(migrated: Path) -> None:
    holder = hold_exclusive_lock(migrated)
    engine = create_engine(url_of(migrated), busy_timeout_ms=5000)
    store = Store(engine)
    loop = asyncio.get_running_loop()
    released = asyncio.Event()

    def release() -> None:
        holder.commit()
        holder.close()
        released.set()

    try:
        started = loop.time()
        loop.call_later(0.3, release)
        await store.state.set("fish", "status", "written after the lock")
        waited = loop.time() - started
        assert released.is_set()
        assert 0.25 <= waited < 5.0
        assert await store.state.get("fish", "status") == "written after the lock"
    finally:
        if not released.is_set():
            holder.close()
        await engine.dispose()


async def test_upgrade_of_a_locked_fresh_database_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "carrier.db"
    holder = hold_exclusive_lock(path)  # creates the empty file and locks it
    engine = create_engine(url_of(path), busy_timeout_ms=100)
    try:
        with pytest.raises(DatabaseError, match="is locked by another process"):
            await upgrade(engine)
    finally:
        holder.rollback()
        holder.close()
    try:
        await upgrade(engine)  # and works once the other process is gone
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


# --- other ways a database can be unusable -----------------------------------------------


async def test_a_directory_in_place_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "carrier.db"
    path.mkdir()
    engine = create_engine(url_of(path))
    try:
        with pytest.raises(DatabaseError, match="cannot be opened"):
            await upgrade(engine)
    finally:
        await engine.dispose()


async def test_an_unreachable_postgresql_is_explained_without_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+asyncpg://carrier:hunter2@/carrier?host={tmp_path / 'no-server'}"
    engine = create_engine(url)
    try:
        with pytest.raises(DatabaseError) as caught:
            await current_revision(engine)
        with pytest.raises(DatabaseError):
            await downgrade(engine, "base")
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert message.startswith("cannot connect to postgresql+asyncpg://carrier:***@/carrier")
    assert "hunter2" not in message
    assert "DATABASE_URL" in message


# --- several processes writing one file (carrier serve --workers) --------------------------


def notes_database(path: Path) -> str:
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE notes (v TEXT NOT NULL)")
    return url_of(path)


async def write_note(engine: Database, note: str, *, small: bool) -> None:
    async with engine.begin(small=small) as conn:
        await conn.execute(text("INSERT INTO notes (v) VALUES (:v)"), {"v": note})


@pytest.mark.parametrize("small", [True, False], ids=["inline", "worker-thread"])
async def test_a_freed_write_lock_is_taken_at_once_and_the_loop_runs_meanwhile(
    tmp_path: Path, small: bool
) -> None:
    # SQLite's own busy handler sleeps 1, 2, 5, ... 25, 50, 50, 100, 100 ms between tries:
    # a lock freed at 335 ms would be taken at 428 ms.  Tries at most 1 ms apart take it
    # within a few.  A small transaction waits without blocking the event loop.
    path = tmp_path / "notes.db"
    engine = Database(create_engine(notes_database(path), busy_timeout_ms=5000))
    holder = hold_exclusive_lock(path)
    loop = asyncio.get_running_loop()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    released_at: list[float] = []

    def release() -> None:
        holder.commit()
        holder.close()
        released_at.append(loop.time())

    try:
        loop.call_later(0.335, release)
        await write_note(engine, "after the lock", small=small)
        late = loop.time() - released_at[0]
        assert late < 0.06, f"the write lock was taken {late * 1000:.0f} ms after it was freed"
        assert ticks >= 20, "the event loop stood still while the write waited"
        async with engine.connect() as conn:
            notes = (await conn.execute(text("SELECT v FROM notes"))).scalars().all()
        assert notes == ["after the lock"]
    finally:
        ticker.cancel()
        if not released_at:
            holder.close()
        await engine.dispose()


async def test_a_small_write_under_a_long_lock_fails_clearly_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.db"
    url = notes_database(path)
    engine = Database(create_engine(url, busy_timeout_ms=150))
    await write_note(engine, "before the lock", small=True)
    holder = hold_exclusive_lock(path)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(OperationalError) as caught:
            await write_note(engine, "during the lock", small=True)
        waited = asyncio.get_running_loop().time() - started
    finally:
        holder.rollback()
        holder.close()
    try:
        assert 0.1 <= waited < 2.0, "the write should wait out the busy timeout, then fail"
        assert "is locked by another process" in str(explain(caught.value, url))
        # The same engine writes once the lock is gone; the busy timeout is still in force
        # for other statements (the tries switched SQLite's busy handler off only for BEGIN).
        await write_note(engine, "after the lock", small=True)
        async with engine.connect() as conn:
            notes = (await conn.execute(text("SELECT v FROM notes"))).scalars().all()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
        assert notes == ["before the lock", "after the lock"]
        assert busy == 150
    finally:
        await engine.dispose()
