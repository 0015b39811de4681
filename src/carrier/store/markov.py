"""Markov chains per guild: n-gram transition counts and digests of the source messages.

Row encoding (the generator in :mod:`carrier.generation.markov` owns the tokens): a state is
``state_size`` words joined by one space, ``head`` is its first word, ``next_word`` is the word
that followed it, ``count`` how often.  Messages start from a state of BEGIN tokens
(``"\\x02"``) and end with an END token (``"\\x03"``) as ``next_word``.  ``head`` leads the
primary key, so "the states starting with this word" and "what follows this state" are both
prefix scans of the primary key on SQLite and PostgreSQL alike.

``markov_sources`` keeps a 64-bit digest of every learned message so the generator can refuse
to repeat one verbatim without storing the text.

Learning during chat runs in the caller's transaction (:meth:`MarkovRepository.learn_in`), so
the log, the user and the chain are recorded together or not at all; the trainer uses
:meth:`MarkovRepository.learn_bulk`, the same statements in large transactions.  Counts are
aggregated in Python first.  On SQLite the statements (compiled by SQLAlchemy) go to the
driver connection in one trip to its thread: through SQLAlchemy's async adapter each statement
costs several trips, more than the whole budget for recording a message.

Reads for generation go through a :class:`MarkovReader`: one connection per ``generate`` call,
statements compiled once, and a short-lived cache of the few states followed by very many
different words (:class:`WideStateCache`).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Select,
    Update,
    bindparam,
    delete,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carrier.store.database import Database
from carrier.store.schema import markov_chains, markov_sources, markov_transitions
from carrier.store.sqlite_driver import OneTripConnection
from carrier.store.upsert import insert

Transition = tuple[str, str, str]
"""``(head, state, next_word)``: one occurrence of ``next_word`` after ``state``."""


@dataclass(frozen=True, slots=True)
class MarkovChainRef:
    """A chain row: its id and the state size it was built with (fixed at creation)."""

    id: int
    state_size: int


@dataclass(frozen=True, slots=True)
class LearnBatch:
    """Many messages' worth of learning, written in one transaction by ``learn_bulk``.

    ``transitions`` may repeat a key: every occurrence adds one to its count.
    """

    transitions: Sequence[Transition]
    digests: Sequence[int]
    messages: int


class MarkovReader:
    """Reads of one chain over one open connection: the generator's hot path.

    One ``generate`` call makes a few dozen lookups; holding one connection (and on SQLite
    handing the compiled statement straight to the driver) keeps each one far below a
    millisecond.  ``after``/``before`` bound the sorted column (``next_word`` or ``state``),
    inclusive and exclusive, so callers can sample a long list around a point.
    """

    def __init__(
        self,
        conn: AsyncConnection,
        chain_id: int,
        driver: Any = None,
        wide_states: WideStateCache | None = None,
    ) -> None:
        self.conn = conn
        self.chain_id = chain_id
        self._driver = driver
        self._wide = wide_states

    async def _rows(
        self, stmt: Select[Any] | CompoundSelect[Any], params: dict[str, Any]
    ) -> list[Any]:
        if self._driver is None:
            return list((await self.conn.execute(stmt, params)).all())
        sql, names, defaults = _sqlite_compiled(stmt, self.conn.dialect)
        values = tuple(params[n] if n in params else defaults[n] for n in names)
        return list(await self._driver.execute_fetchall(sql, values))

    async def next_words(
        self,
        state: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, int]]:
        """The words seen after ``state`` with their counts, ordered by word."""
        stmt = _next_words_stmt(after is not None, before is not None, limit is not None)
        params = {
            "chain_id": self.chain_id,
            "head": state.split(" ", 1)[0],
            "state": state,
            "after": after,
            "before": before,
            "limit": limit,
        }
        return [(row[0], int(row[1])) for row in await self._rows(stmt, params)]

    async def top_next_words(
        self, state: str, limit: int
    ) -> tuple[int, int, list[tuple[str, int]]]:
        """``(total count, distinct words, the limit most frequent)`` of the words after ``state``.

        One scan inside the database whatever the state's fan-out (some states are followed
        by thousands of different words); only ``limit`` rows travel to Python.  The list is
        ordered by falling count, then word.
        """
        key = (self.chain_id, state, limit)
        if self._wide is not None:
            found = self._wide.get(key)
            if found is not None:
                return found
        params = {
            "chain_id": self.chain_id,
            "head": state.split(" ", 1)[0],
            "state": state,
            "limit": limit,
        }
        total = distinct = 0
        top: list[tuple[str, int]] = []
        for word, count, rows in await self._rows(_top_next_words_stmt(), params):
            if word is None:
                total, distinct = int(count or 0), int(rows or 0)
            else:
                top.append((word, int(count)))
        top.sort(key=lambda item: (-item[1], item[0]))  # UNION ALL keeps no order
        if self._wide is not None and distinct > limit:
            self._wide.put(key, (total, distinct, top))
        return total, distinct, top

    async def states_with_head(
        self, head: str, limit: int = 50, *, after: str | None = None, before: str | None = None
    ) -> list[str]:
        """Up to ``limit`` distinct states whose first word is ``head``, ordered."""
        stmt = _states_stmt(after is not None, before is not None)
        params = {
            "chain_id": self.chain_id,
            "head": head,
            "after": after,
            "before": before,
            "limit": limit,
        }
        return [row[0] for row in await self._rows(stmt, params)]

    async def has_digest(self, digest: int) -> bool:
        """Whether a learned message had this digest (see ``generation.markov.digest``)."""
        params = {"chain_id": self.chain_id, "digest": digest}
        return bool(await self._rows(_has_digest_stmt(), params))


_T = markov_transitions.c


@cache
def _next_words_stmt(after: bool, before: bool, limited: bool) -> Select[Any]:
    stmt = select(_T.next_word, _T["count"]).where(
        _T.chain_id == bindparam("chain_id"),
        _T.head == bindparam("head"),
        _T.state == bindparam("state"),
    )
    if after:
        stmt = stmt.where(_T.next_word >= bindparam("after"))
    if before:
        stmt = stmt.where(_T.next_word < bindparam("before"))
    stmt = stmt.order_by(_T.next_word)
    return stmt.limit(bindparam("limit")) if limited else stmt


@cache
def _top_next_words_stmt() -> CompoundSelect[Any]:
    where = (
        _T.chain_id == bindparam("chain_id"),
        _T.head == bindparam("head"),
        _T.state == bindparam("state"),
    )
    total = select(
        null().label("next_word"),
        func.sum(_T["count"]).label("count"),
        func.count().label("words"),
    ).where(*where)
    top = (
        select(_T.next_word, _T["count"], literal(0).label("words"))
        .where(*where)
        .order_by(_T["count"].desc(), _T.next_word)
        .limit(bindparam("limit"))
        .subquery()
    )
    return union_all(total, select(top.c.next_word, top.c["count"], top.c.words))


@cache
def _states_stmt(after: bool, before: bool) -> Select[Any]:
    stmt = select(_T.state).where(
        _T.chain_id == bindparam("chain_id"), _T.head == bindparam("head")
    )
    if after:
        stmt = stmt.where(_T.state >= bindparam("after"))
    if before:
        stmt = stmt.where(_T.state < bindparam("before"))
    return stmt.group_by(_T.state).order_by(_T.state).limit(bindparam("limit"))


@cache
def _has_digest_stmt() -> Select[Any]:
    return select(literal(1)).where(
        markov_sources.c.chain_id == bindparam("chain_id"),
        markov_sources.c.digest == bindparam("digest"),
    )


_compiled_cache: dict[int, tuple[str, tuple[str, ...], dict[str, Any]]] = {}


def _sqlite_compiled(
    stmt: Select[Any] | CompoundSelect[Any], dialect: Dialect
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """SQL text, parameter order and default values of ``stmt`` for the SQLite driver."""
    key = id(stmt)  # the statements are functools.cache singletons, alive for good
    found = _compiled_cache.get(key)
    if found is None:
        compiled = stmt.compile(dialect=dialect)
        found = (
            compiled.string,
            tuple(compiled.positiontup or ()),
            {name: bind.value for bind, name in compiled.bind_names.items()},
        )
        _compiled_cache[key] = found
    return found


TopWords = tuple[int, int, list[tuple[str, int]]]


class WideStateCache:
    """Recent :meth:`MarkovReader.top_next_words` answers for states with a long tail.

    Reading such a state scans all its rows (a millisecond for a few thousand); its head
    barely moves with one more message, so the answer is reused for ``ttl`` seconds.  Only
    states followed by more different words than were asked for are kept, so a small state,
    whose every new word matters, is always read fresh.  :meth:`MarkovRepository.clear`
    drops a chain's entries; another process clearing it is seen within ``ttl``.
    """

    def __init__(self, ttl: float, capacity: int = 1024) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, str, int], tuple[float, TopWords]] = OrderedDict()

    def get(self, key: tuple[int, str, int]) -> TopWords | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: tuple[int, str, int], value: TopWords) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop_chain(self, chain_id: int) -> None:
        for key in [k for k in self._entries if k[0] == chain_id]:
            del self._entries[key]


class MarkovRepository:
    """Persistence of the per-guild Markov chains (see the module docstring for the rows)."""

    def __init__(self, engine: AsyncEngine | Database, *, wide_state_ttl: float = 60.0) -> None:
        """``wide_state_ttl``: seconds a long-tailed state's head is reused (0: never)."""
        self._engine = engine if isinstance(engine, Database) else Database(engine)
        self._chains: dict[tuple[str, str], MarkovChainRef] = {}
        self._wide_states = WideStateCache(wide_state_ttl)

    # -- chains ------------------------------------------------------------------------------

    async def chain(
        self,
        agent_id: str,
        guild_id: str,
        state_size: int,
        *,
        conn: AsyncConnection | None = None,
    ) -> MarkovChainRef:
        """The guild's chain, created with ``state_size`` if it does not exist yet.

        An existing chain keeps the state size it was created with (its rows are encoded with
        it): a changed setting applies to new chains, and to an existing one through
        :meth:`clear`.  Pass ``conn`` to work inside the caller's transaction.  Ids are cached
        once seen committed (read from another connection), so a creation that is rolled
        back never leaves a dangling id behind.
        """
        key = (agent_id, guild_id)
        cached = self._chains.get(key)
        if cached is not None:
            return cached
        if conn is None:
            async with self._engine.begin() as own:
                ref, _ = await self._get_or_create(own, agent_id, guild_id, state_size)
            self._chains[key] = ref
            return ref
        ref, created = await self._get_or_create(conn, agent_id, guild_id, state_size)
        if not created:
            # It existed in the caller's view: committed, or made earlier in this very
            # transaction.  Only another connection can tell (and it is not blocked: SQLite
            # in WAL mode and PostgreSQL let readers through while a writer works).
            await self.find_chain(agent_id, guild_id)
        return ref

    async def chain_id(
        self,
        agent_id: str,
        guild_id: str,
        state_size: int,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """The id of the guild's chain, created if missing (see :meth:`chain`)."""
        return (await self.chain(agent_id, guild_id, state_size, conn=conn)).id

    async def find_chain(self, agent_id: str, guild_id: str) -> MarkovChainRef | None:
        """The guild's chain if it exists; never creates one (reads stay reads)."""
        key = (agent_id, guild_id)
        cached = self._chains.get(key)
        if cached is not None:
            return cached
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(markov_chains.c.id, markov_chains.c.state_size).where(
                        markov_chains.c.agent_id == agent_id,
                        markov_chains.c.guild_id == guild_id,
                    )
                )
            ).first()
        if row is None:
            return None
        ref = MarkovChainRef(int(row.id), int(row.state_size))
        self._chains[key] = ref
        return ref

    async def _get_or_create(
        self, conn: AsyncConnection, agent_id: str, guild_id: str, state_size: int
    ) -> tuple[MarkovChainRef, bool]:
        stmt = insert(markov_chains, conn.dialect.name).values(
            agent_id=agent_id,
            guild_id=guild_id,
            state_size=state_size,
            message_count=0,
            updated_at=datetime.now(UTC),
        )
        result = await conn.execute(
            stmt.on_conflict_do_nothing(index_elements=["agent_id", "guild_id"])
        )
        created = bool(result.rowcount)
        row = (
            await conn.execute(
                select(markov_chains.c.id, markov_chains.c.state_size).where(
                    markov_chains.c.agent_id == agent_id, markov_chains.c.guild_id == guild_id
                )
            )
        ).one()
        return MarkovChainRef(int(row.id), int(row.state_size)), created

    async def message_count(self, chain_id: int) -> int:
        """How many messages the chain has learned."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(markov_chains.c.message_count).where(markov_chains.c.id == chain_id)
            )
        return int(count or 0)

    async def clear(self, chain_id: int, *, state_size: int | None = None) -> None:
        """Forget everything the chain learned; the chain (and its id) stays.

        ``state_size`` rebuilds it with another state size from now on.
        """
        self._wide_states.drop_chain(chain_id)
        values: dict[str, Any] = {"message_count": 0, "updated_at": datetime.now(UTC)}
        if state_size is not None:
            values["state_size"] = state_size
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(markov_transitions).where(markov_transitions.c.chain_id == chain_id)
            )
            await conn.execute(delete(markov_sources).where(markov_sources.c.chain_id == chain_id))
            await conn.execute(
                update(markov_chains).where(markov_chains.c.id == chain_id).values(**values)
            )
        self._wide_states.drop_chain(chain_id)  # again: a read may have refilled it meanwhile
        for key in [k for k, ref in self._chains.items() if ref.id == chain_id]:
            del self._chains[key]

    # -- learning ----------------------------------------------------------------------------

    async def learn_in(
        self,
        conn: AsyncConnection,
        chain_id: int,
        transitions: Sequence[Transition],
        digests: Sequence[int],
        messages: int = 1,
    ) -> None:
        """Add ``transitions`` (+1 per occurrence) and ``digests`` in the caller's transaction.

        ``conn`` must be in a write transaction (``Database.begin()``).  Bumps the chain's
        ``message_count`` by ``messages``.  Duplicate keys are counted in
        Python first and rows are written in key order, so concurrent learners on PostgreSQL
        lock rows in the same order and cannot deadlock.
        """
        rows = _aggregate(transitions)
        unique_digests = sorted(set(digests))
        if conn.dialect.name == "sqlite":
            await _learn_sqlite(conn, chain_id, rows, unique_digests, messages)
            return
        dialect = conn.dialect.name
        if rows:
            await conn.execute(
                _upsert_transitions(dialect),
                [
                    {"chain_id": chain_id, "head": h, "state": s, "next_word": n, "count": c}
                    for h, s, n, c in rows
                ],
            )
        if unique_digests:
            await conn.execute(
                insert(markov_sources, dialect).on_conflict_do_nothing(),
                [{"chain_id": chain_id, "digest": d} for d in unique_digests],
            )
        await conn.execute(
            _bump_stmt(), {"chain_id": chain_id, "messages": messages, "updated_at": _now()}
        )

    async def learn_bulk(
        self,
        chain_id: int,
        batches: Iterable[LearnBatch],
        on_written: Callable[[LearnBatch], None] | None = None,
    ) -> None:
        """Write each batch in its own transaction; ``on_written`` runs after each commit.

        The trainer's path: a batch of some thousand messages is one transaction (short
        enough that a running bot's writes wait for it, not fail), its counts aggregated
        first and written with one ``executemany``.  Batches are pulled one at a time, so an
        import streams.
        """
        for batch in batches:
            if batch.transitions or batch.digests or batch.messages:
                async with self._engine.begin() as conn:
                    await self.learn_in(
                        conn, chain_id, batch.transitions, batch.digests, batch.messages
                    )
            if on_written is not None:
                on_written(batch)

    # -- reading -----------------------------------------------------------------------------

    @asynccontextmanager
    async def reader(self, chain_id: int) -> AsyncIterator[MarkovReader]:
        """One connection for a burst of reads of ``chain_id`` (one ``generate`` call)."""
        async with self._engine.connect() as conn:
            driver = None
            if conn.dialect.name == "sqlite":
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
            yield MarkovReader(conn, chain_id, driver, self._wide_states)

    async def next_words(self, chain_id: int, state: str) -> list[tuple[str, int]]:
        """The words seen after ``state`` (a space-joined state) with their counts."""
        async with self.reader(chain_id) as reader:
            return await reader.next_words(state)

    async def states_with_head(self, chain_id: int, head: str, limit: int = 50) -> list[str]:
        """Up to ``limit`` distinct states whose first word is ``head``."""
        async with self.reader(chain_id) as reader:
            return await reader.states_with_head(head, limit)

    async def has_digest(self, chain_id: int, digest: int) -> bool:
        """Whether the chain learned a message with this digest."""
        async with self.reader(chain_id) as reader:
            return await reader.has_digest(digest)


def _aggregate(transitions: Iterable[Transition]) -> list[tuple[str, str, str, int]]:
    """Count duplicate keys once (PostgreSQL refuses to update one row twice per statement)."""
    counts = Counter(transitions)
    return [(h, s, n, c) for (h, s, n), c in sorted(counts.items())]


def _upsert_transitions(dialect: str) -> Any:
    stmt = insert(markov_transitions, dialect)
    return stmt.on_conflict_do_update(
        index_elements=["chain_id", "head", "state", "next_word"],
        set_={"count": markov_transitions.c.count + stmt.excluded["count"]},
    )


@cache
def _bump_stmt() -> Update:
    return (
        update(markov_chains)
        .where(markov_chains.c.id == bindparam("chain_id"))
        .values(
            message_count=markov_chains.c.message_count + bindparam("messages"),
            updated_at=bindparam("updated_at", type_=markov_chains.c.updated_at.type),
        )
    )


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _SqliteLearnSql:
    upsert: str
    sources: str
    bump: str
    bump_order: tuple[str, ...]
    process_time: Callable[[datetime], Any]


@cache
def _sqlite_learn_sql(dialect: Dialect) -> _SqliteLearnSql:
    upsert = _upsert_transitions("sqlite").compile(dialect=dialect)
    sources = insert(markov_sources, "sqlite").on_conflict_do_nothing().compile(dialect=dialect)
    # The rows below are built as tuples in these orders; fail loudly if SQLAlchemy ever
    # renders the columns differently.
    if tuple(upsert.positiontup or ()) != ("chain_id", "head", "state", "next_word", "count"):
        raise RuntimeError(f"unexpected parameter order: {upsert.positiontup}")
    if tuple(sources.positiontup or ()) != ("chain_id", "digest"):
        raise RuntimeError(f"unexpected parameter order: {sources.positiontup}")
    bump = _bump_stmt().compile(dialect=dialect)
    process = markov_chains.c.updated_at.type.bind_processor(dialect)
    return _SqliteLearnSql(
        upsert.string,
        sources.string,
        bump.string,
        tuple(bump.positiontup or ()),
        process or (lambda value: value),
    )


async def _learn_sqlite(
    conn: AsyncConnection,
    chain_id: int,
    rows: list[tuple[str, str, str, int]],
    digests: list[int],
    messages: int,
) -> None:
    """SQLite: the same statements, handed to the driver in one trip to its thread.

    SQLAlchemy's async adapter makes several trips to aiosqlite's worker thread per
    statement (about 0.4 ms here); recording a message has about that much in total.  The
    driver connection is the one SQLAlchemy checked out, so this is the caller's transaction.
    """
    sql = _sqlite_learn_sql(conn.dialect)
    transition_rows = [(chain_id, h, s, n, c) for h, s, n, c in rows]
    digest_rows = [(chain_id, d) for d in digests]
    values = {"chain_id": chain_id, "messages": messages, "updated_at": sql.process_time(_now())}
    bump = tuple(values[name] for name in sql.bump_order)

    def write(db: sqlite3.Connection) -> None:
        if transition_rows:
            db.executemany(sql.upsert, transition_rows)
        if digest_rows:
            db.executemany(sql.sources, digest_rows)
        db.execute(sql.bump, bump)

    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    one_trip = _one_trip(driver)
    if one_trip is not None:
        await one_trip(write)
        return
    assert driver is not None
    if transition_rows:
        await driver.executemany(sql.upsert, transition_rows)
    if digest_rows:
        await driver.executemany(sql.sources, digest_rows)
    await driver.execute(sql.bump, bump)


def _one_trip(
    driver: Any,
) -> Callable[[Callable[[sqlite3.Connection], None]], Awaitable[None]] | None:
    """Run a function on aiosqlite's thread with its ``sqlite3`` connection, if possible.

    aiosqlite has no public call that runs several statements in one trip to its worker
    thread; ``_execute`` is the one its own public methods are built on.  Feature-detected:
    without it, learning takes three trips instead of one.
    """
    run_in_thread = getattr(driver, "_execute", None)
    db = getattr(driver, "_connection", None)
    if not callable(run_in_thread) or not isinstance(db, sqlite3.Connection):
        return None

    async def call(work: Callable[[sqlite3.Connection], None]) -> None:
        if isinstance(driver, OneTripConnection) and driver.runs_inline(db, "INSERT"):
            work(db)  # a small transaction holding the write lock (Database.begin(small=True))
            return
        await run_in_thread(work, db)

    return call
