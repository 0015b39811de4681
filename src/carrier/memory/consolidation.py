"""Daily consolidation: the short-term log becomes long-term facts and moves to the archive.

Crash-safe and idempotent by construction: the log is processed in chunks, and each chunk's
facts are merged *and* its messages moved to the archive in one transaction.  Killed at any
point, a run leaves every chunk either fully done or untouched; run again, it picks up the
messages still in the log.  No message is lost, none archived twice, no fact counted twice.
Facts are derived (an LLM call, or the offline extractor) and embedded before the
transaction, so no transaction waits on a model.

A job lock keeps two runs from overlapping.  It names its owner (host, process id, a token)
and carries a heartbeat: the run refreshes it after every chunk and in the background, with
a short time to live.  A run that was killed leaves its lock behind; the next run takes it
over at once when the owner's process is gone (same host), or once its heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from carrier.memory.long_term import LongTermMemory
from carrier.memory.self_statements import extract_self_statements
from carrier.store.facts import NewFact
from carrier.store.messages import LoggedMessage
from carrier.store.schema import (
    UTCDateTime,
    job_locks,
    message_archive,
    short_term_messages,
)
from carrier.store.store import Store

log = logging.getLogger(__name__)

CHUNK = 500
LOCK_TTL = timedelta(minutes=5)
"""A lock whose heartbeat is older than this is taken over (its owner hung or died)."""
HEARTBEAT = timedelta(minutes=1)
"""How often a running consolidation refreshes its lock besides after every chunk."""


@dataclass(frozen=True, slots=True)
class Derived:
    """A fact derived from the log, about one of its authors."""

    user_id: str
    fact: str
    category: str
    at: datetime
    guild_id: str | None
    source_message_id: str | None


class FactExtractor(Protocol):
    async def extract(self, lines: Sequence[LoggedMessage]) -> list[Derived]: ...


class OfflineExtractor:
    """Self-statements found by patterns (no LLM): each fact keeps its source message."""

    async def extract(self, lines: Sequence[LoggedMessage]) -> list[Derived]:
        derived = []
        for line in lines:
            if line.is_self or line.author_is_bot:
                continue
            for statement in extract_self_statements(line.text):
                derived.append(
                    Derived(
                        line.author_id,
                        statement.fact,
                        statement.category,
                        line.created_at,
                        line.guild_id,
                        line.message_id,
                    )
                )
        return derived


_MESSAGE_FIELDS = tuple(f for f in LoggedMessage.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class _LogRow:
    row_id: int
    deleted: bool
    message: LoggedMessage


@dataclass
class ConsolidationReport:
    messages_archived: int = 0
    facts_new: int = 0
    facts_reinforced: int = 0
    facts_superseded: int = 0
    chunks: int = 0
    skipped_locked: bool = False
    errors: list[str] = field(default_factory=list)


class Consolidator:
    def __init__(
        self, store: Store, memory: LongTermMemory, extractor: FactExtractor, *, chunk: int = CHUNK
    ) -> None:
        self._store = store
        self._memory = memory
        self._extractor = extractor
        self._chunk = chunk

    async def consolidate(
        self,
        agent_id: str,
        now: datetime,
        *,
        on_chunk: Callable[[ConsolidationReport], Awaitable[None] | None] | None = None,
    ) -> ConsolidationReport:
        """Process every message in the log up to ``now``."""
        report = ConsolidationReport()
        holder = lock_holder()
        lock = f"consolidate:{agent_id}"
        if not await acquire_job_lock(self._store, lock, holder, datetime.now(UTC), LOCK_TTL):
            report.skipped_locked = True
            return report
        async with heartbeat_while_held(self._store, lock, holder):
            while True:
                lines = await self._next_chunk(agent_id, now)
                if not lines:
                    break
                await self._process(agent_id, lines, report)
                report.chunks += 1
                if not await refresh_job_lock(
                    self._store, lock, holder, datetime.now(UTC), LOCK_TTL
                ):
                    # Taken over (this run looked dead): stop; the new owner goes on.
                    report.errors.append("the consolidation lock was taken over; stopped")
                    log.warning("consolidation of %s lost its lock; stopping", agent_id)
                    break
                if on_chunk is not None:
                    result = on_chunk(report)
                    if result is not None:
                        await result
        return report

    async def _next_chunk(self, agent_id: str, now: datetime) -> list[_LogRow]:
        table = short_term_messages
        async with self._store.engine.connect() as conn:
            rows = await conn.execute(
                select(table)
                .where(table.c.agent_id == agent_id, table.c.created_at <= now)
                .order_by(table.c.id)
                .limit(self._chunk)
            )
            return [
                _LogRow(
                    int(r.id),
                    bool(r.deleted),
                    LoggedMessage(**{name: getattr(r, name) for name in _MESSAGE_FIELDS}),
                )
                for r in rows
            ]

    async def _process(
        self, agent_id: str, rows: list[_LogRow], report: ConsolidationReport
    ) -> None:
        live = [row.message for row in rows if not row.deleted]
        derived = await self._extractor.extract(live)
        vectors = await self._memory.embed([d.fact for d in derived]) if derived else None
        new_facts = [
            NewFact(
                user_id=item.user_id,
                fact=item.fact,
                category=item.category,
                mentioned_at=item.at,
                guild_id=item.guild_id,
                source_message_id=item.source_message_id,
            )
            for item in derived
        ]
        # The LLM judge (when configured) is asked before the transaction opens.
        verdicts = [
            await self._memory.judge(agent_id, fact, vectors[index])
            for index, fact in enumerate(new_facts)
            if vectors is not None
        ]
        table = short_term_messages
        row_ids = [row.row_id for row in rows]
        async with self._store.engine.begin() as conn:
            # Only what is still in the log: another run may have taken part of this chunk.
            still = {
                int(r.id)
                for r in await conn.execute(select(table.c.id).where(table.c.id.in_(row_ids)))
            }
            if not still:
                return
            present = {row.message.message_id for row in rows if row.row_id in still}
            for index, item in enumerate(derived):
                if item.source_message_id is not None and item.source_message_id not in present:
                    continue
                assert vectors is not None
                result = await self._memory.remember_in(
                    conn, agent_id, new_facts[index], vectors[index], verdicts[index]
                )
                if result.outcome == "reinforced":
                    report.facts_reinforced += 1
                else:
                    report.facts_new += 1
                    report.facts_superseded += result.outcome == "superseded"
            columns = [c.name for c in table.columns if c.name != "id"]
            archived_at = literal(datetime.now(UTC), type_=UTCDateTime()).label("archived_at")
            moved = select(*(table.c[name] for name in columns), archived_at).where(
                table.c.id.in_(sorted(still))
            )
            existing = (
                select(message_archive.c.id)
                .where(
                    message_archive.c.agent_id == table.c.agent_id,
                    message_archive.c.channel_id == table.c.channel_id,
                    message_archive.c.message_id == table.c.message_id,
                )
                .exists()
            )
            await conn.execute(
                insert(message_archive).from_select(
                    [*columns, "archived_at"], moved.where(~existing)
                )
            )
            await conn.execute(delete(table).where(table.c.id.in_(sorted(still))))
        report.messages_archived += len(still)


def lock_holder() -> str:
    """A name for this process's hold on a job lock: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(holder: str) -> bool:
    """True when ``holder`` (see :func:`lock_holder`) is a process of this host that no
    longer runs.  Another host's owner, or a holder of another form, is never known dead:
    only its heartbeat going stale frees its lock."""
    host, _, rest = holder.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: another task of it may be running the job
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


async def acquire_job_lock(
    store: Store, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take the job lock ``name`` unless another live holder has it, so several bot
    processes never run the same job at once.  A lock whose heartbeat is stale (expired)
    or whose owner's process is gone (same host) is taken over."""
    try:
        async with store.engine.begin() as conn:
            row = (await conn.execute(select(job_locks).where(job_locks.c.name == name))).first()
            if row is not None and row.holder != holder:
                if row.expires_at > now and not owner_is_dead(row.holder):
                    return False
                log.warning(
                    "taking over the job lock %s of %s (%s)",
                    name,
                    row.holder,
                    "its process is gone" if row.expires_at > now else "its heartbeat is stale",
                )
            if row is not None:
                # Only the row seen: a run taking it over at the same time finds nothing.
                gone = await conn.execute(
                    delete(job_locks).where(
                        job_locks.c.name == name, job_locks.c.holder == row.holder
                    )
                )
                if gone.rowcount != 1:
                    return False
            await conn.execute(
                insert(job_locks).values(name=name, holder=holder, expires_at=now + ttl)
            )
    except IntegrityError:
        return False  # another run inserted it first
    return True


async def refresh_job_lock(
    store: Store, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """The heartbeat: move the lock's expiry to ``now + ttl``.  False when ``holder`` no
    longer holds it (it was taken over)."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(job_locks)
            .where(job_locks.c.name == name, job_locks.c.holder == holder)
            .values(expires_at=now + ttl)
        )
    return bool(result.rowcount)


async def keep_job_lock_alive(store: Store, name: str, holder: str) -> None:
    """Refresh the lock every :data:`HEARTBEAT` while a chunk takes long (an LLM batch)."""
    while True:
        await asyncio.sleep(HEARTBEAT.total_seconds())
        try:
            await refresh_job_lock(store, name, holder, datetime.now(UTC), LOCK_TTL)
        except Exception as exc:  # the next chunk's refresh will tell
            log.warning("could not refresh the job lock %s: %s", name, exc)


@asynccontextmanager
async def heartbeat_while_held(store: Store, name: str, holder: str) -> AsyncIterator[None]:
    """Keep the held lock ``name`` alive in the background while the block runs, then
    release it.

    The heartbeat is stopped with ``asyncio.wait``, which never raises its CancelledError:
    suppressing that error instead would also swallow the caller's own cancellation when it
    arrives at that moment, and leave a cancelled job running (a bot that never shuts down).
    """
    heartbeat = asyncio.create_task(keep_job_lock_alive(store, name, holder))
    try:
        yield
    finally:
        heartbeat.cancel()
        try:
            await asyncio.wait([heartbeat])
        finally:
            await release_job_lock(store, name, holder)


async def release_job_lock(store: Store, name: str, holder: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            delete(job_locks).where(job_locks.c.name == name, job_locks.c.holder == holder)
        )
