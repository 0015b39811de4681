"""Daily consolidation: the short-term log becomes long-term facts and moves to the archive.

Crash-safe and idempotent by construction: the log is processed in chunks, and each chunk's
facts are merged *and* its messages moved to the archive in one transaction.  Killed at any
point, a run leaves every chunk either fully done or untouched; run again, it picks up the
messages still in the log.  No message is lost, none archived twice, no fact counted twice.
Facts are derived (an LLM call, or the offline extractor) and embedded before the
transaction, so no transaction waits on a model.  A job lock keeps two runs from overlapping.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, insert, literal, select

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
LOCK_TTL = timedelta(minutes=30)


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
        if not await acquire_job_lock(self._store, lock, holder, now, LOCK_TTL):
            report.skipped_locked = True
            return report
        try:
            while True:
                lines = await self._next_chunk(agent_id, now)
                if not lines:
                    break
                await self._process(agent_id, lines, report)
                report.chunks += 1
                if on_chunk is not None:
                    result = on_chunk(report)
                    if result is not None:
                        await result
        finally:
            await release_job_lock(self._store, lock, holder)
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
    """A name for this process's hold on a job lock."""
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


async def acquire_job_lock(
    store: Store, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take the job lock ``name`` unless another holder has it (an expired one is taken
    over), so several bot processes never run the same job at once."""
    async with store.engine.begin() as conn:
        row = (await conn.execute(select(job_locks).where(job_locks.c.name == name))).first()
        if row is not None and row.expires_at > now and row.holder != holder:
            return False
        await conn.execute(delete(job_locks).where(job_locks.c.name == name))
        await conn.execute(insert(job_locks).values(name=name, holder=holder, expires_at=now + ttl))
    return True


async def release_job_lock(store: Store, name: str, holder: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            delete(job_locks).where(job_locks.c.name == name, job_locks.c.holder == holder)
        )
