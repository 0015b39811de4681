"""The short-term message log and the permanent archive.

The bot's 24-hour view is a time query over both tables, so moving messages into the archive
(consolidation) never leaves it without context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.schema import UTCDateTime, message_archive, short_term_messages
from carrier.store.upsert import insert


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """One message as the log keeps it."""

    agent_id: str
    channel_id: str
    message_id: str
    author_id: str
    author_name: str
    text: str
    created_at: datetime
    guild_id: str | None = None
    author_is_bot: bool = False
    is_self: bool = False
    reply_to_message_id: str | None = None
    reply_to_author_id: str | None = None
    answered_reason: str | None = None

    def as_row(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "message_id": self.message_id,
            "author_id": self.author_id,
            "author_name": self.author_name,
            "author_is_bot": self.author_is_bot,
            "is_self": self.is_self,
            "text": self.text,
            "reply_to_message_id": self.reply_to_message_id,
            "reply_to_author_id": self.reply_to_author_id,
            "created_at": self.created_at,
            "answered_reason": self.answered_reason,
            "deleted": False,
        }


_COLUMNS = (
    "agent_id",
    "guild_id",
    "channel_id",
    "message_id",
    "author_id",
    "author_name",
    "author_is_bot",
    "is_self",
    "text",
    "reply_to_message_id",
    "reply_to_author_id",
    "created_at",
    "answered_reason",
)


def _row_to_message(row: object) -> LoggedMessage:
    return LoggedMessage(**{name: getattr(row, name) for name in _COLUMNS})


_ARCHIVED_AMONG = select(message_archive.c.channel_id, message_archive.c.message_id).where(
    message_archive.c.agent_id == bindparam("agent_id"),
    message_archive.c.channel_id.in_(bindparam("channels", expanding=True)),
    message_archive.c.message_id.in_(bindparam("ids", expanding=True)),
)


def _recent_query(with_before: bool) -> Select[Any]:
    """Log and archive in one statement, newest first: one round trip per window."""
    parts = []
    for table in (short_term_messages, message_archive):
        conditions = [
            table.c.agent_id == bindparam("agent_id"),
            table.c.channel_id == bindparam("channel_id"),
            table.c.created_at >= bindparam("since", type_=UTCDateTime()),
            table.c.deleted.is_(False),
        ]
        if with_before:
            conditions.append(table.c.created_at < bindparam("before", type_=UTCDateTime()))
        parts.append(
            select(*(table.c[name] for name in _COLUMNS), table.c.id.label("row_id"))
            .where(and_(*conditions))
            .order_by(table.c.created_at.desc(), table.c.id.desc())
            .limit(bindparam("limit"))
            .subquery()
            .select()
        )
    union = union_all(*parts).subquery()
    return (
        select(*(union.c[name] for name in _COLUMNS))
        .order_by(union.c.created_at.desc(), union.c.row_id.desc())
        .limit(bindparam("limit"))
    )


_RECENT = _recent_query(with_before=False)
_RECENT_BEFORE = _recent_query(with_before=True)


_MARK_ANSWERED = (
    update(short_term_messages)
    .where(
        short_term_messages.c.agent_id == bindparam("a_agent"),
        short_term_messages.c.channel_id == bindparam("a_channel"),
        short_term_messages.c.message_id == bindparam("a_message"),
    )
    .values(answered_reason=bindparam("a_reason"))
)
_RENAME = (
    update(short_term_messages)
    .where(
        short_term_messages.c.agent_id == bindparam("r_agent"),
        short_term_messages.c.channel_id == bindparam("r_channel"),
        short_term_messages.c.message_id == bindparam("r_old"),
    )
    .values(message_id=bindparam("r_new"))
)


@cache
def _insert_new(dialect: str) -> Any:
    """Log rows, skipping those already logged; returns the keys of those written."""
    return (
        insert(short_term_messages, dialect)
        .on_conflict_do_nothing(index_elements=["agent_id", "channel_id", "message_id"])
        .returning(short_term_messages.c.channel_id, short_term_messages.c.message_id)
    )


class MessageLogRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def insert_many_in(
        self, conn: AsyncConnection, batch: Sequence[LoggedMessage]
    ) -> set[tuple[str, str]]:
        """Log a batch in the caller's transaction; returns the (channel_id, message_id) keys
        that were new.  Messages already logged or already archived are skipped (replayed
        events), as is a second copy inside the batch.  Two statements per batch."""
        if not batch:
            return set()
        agent_id = batch[0].agent_id
        by_channel: dict[str, set[str]] = {}
        unique: dict[tuple[str, str], LoggedMessage] = {}
        for message in batch:
            key = (message.channel_id, message.message_id)
            if key not in unique:
                unique[key] = message
                by_channel.setdefault(message.channel_id, set()).add(message.message_id)
        archived_rows = await conn.execute(
            _ARCHIVED_AMONG,
            {
                "agent_id": agent_id,
                "channels": sorted(by_channel),
                "ids": sorted({key[1] for key in unique}),
            },
        )
        for row in archived_rows:
            unique.pop((row.channel_id, row.message_id), None)
        if not unique:
            return set()
        # executemany: one cached statement whatever the batch size (SQLAlchemy batches the
        # rows into multi-row INSERTs with RETURNING itself).
        result = await conn.execute(
            _insert_new(conn.dialect.name), [message.as_row() for message in unique.values()]
        )
        return {(row.channel_id, row.message_id) for row in result}

    async def insert_in(self, conn: AsyncConnection, message: LoggedMessage) -> bool:
        """Log ``message`` inside the caller's transaction; False when already logged."""
        return bool(await self.insert_many_in(conn, [message]))

    async def mark_answered_in(
        self, conn: AsyncConnection, agent_id: str, answered: Sequence[tuple[str, str, str]]
    ) -> None:
        """Record why messages were answered: (channel_id, message_id, reason) each."""
        if answered:
            await conn.execute(
                _MARK_ANSWERED,
                [
                    {"a_agent": agent_id, "a_channel": c, "a_message": m, "a_reason": r}
                    for c, m, r in answered
                ],
            )

    async def rename_many_in(
        self, conn: AsyncConnection, agent_id: str, renames: Sequence[tuple[str, str, str]]
    ) -> None:
        """Give logged messages their platform ids in the caller's transaction:
        (channel_id, message_id, new_message_id) each."""
        if renames:
            await conn.execute(
                _RENAME,
                [
                    {"r_agent": agent_id, "r_channel": c, "r_old": old, "r_new": new}
                    for c, old, new in renames
                ],
            )

    async def is_known(
        self, conn: AsyncConnection, agent_id: str, channel_id: str, message_id: str
    ) -> bool:
        for table in (short_term_messages, message_archive):
            found = await conn.scalar(
                select(table.c.id).where(
                    table.c.agent_id == agent_id,
                    table.c.channel_id == channel_id,
                    table.c.message_id == message_id,
                )
            )
            if found is not None:
                return True
        return False

    async def mark_answered(
        self, agent_id: str, channel_id: str, message_id: str, reason: str
    ) -> bool:
        """Claim a message for a reply; False if it was already answered (never twice)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(short_term_messages)
                .where(
                    short_term_messages.c.agent_id == agent_id,
                    short_term_messages.c.channel_id == channel_id,
                    short_term_messages.c.message_id == message_id,
                    short_term_messages.c.answered_reason.is_(None),
                )
                .values(answered_reason=reason)
            )
            return bool(result.rowcount)

    async def edit(self, agent_id: str, channel_id: str, message_id: str, text: str) -> bool:
        async with self._engine.begin() as conn:
            changed = 0
            for table in (short_term_messages, message_archive):
                result = await conn.execute(
                    update(table)
                    .where(
                        table.c.agent_id == agent_id,
                        table.c.channel_id == channel_id,
                        table.c.message_id == message_id,
                    )
                    .values(text=text)
                )
                changed += result.rowcount
            return bool(changed)

    async def mark_deleted(self, agent_id: str, channel_id: str, message_id: str) -> bool:
        async with self._engine.begin() as conn:
            changed = 0
            for table in (short_term_messages, message_archive):
                result = await conn.execute(
                    update(table)
                    .where(
                        table.c.agent_id == agent_id,
                        table.c.channel_id == channel_id,
                        table.c.message_id == message_id,
                    )
                    .values(deleted=True)
                )
                changed += result.rowcount
            return bool(changed)

    async def recent(
        self,
        agent_id: str,
        channel_id: str,
        since: datetime,
        limit: int,
        before: datetime | None = None,
    ) -> list[LoggedMessage]:
        """Newest first: messages of the channel since ``since`` (log and archive)."""
        async with self._engine.connect() as conn:
            return await self.recent_in(conn, agent_id, channel_id, since, limit, before)

    async def recent_in(
        self,
        conn: AsyncConnection,
        agent_id: str,
        channel_id: str,
        since: datetime,
        limit: int,
        before: datetime | None = None,
    ) -> list[LoggedMessage]:
        query = _RECENT if before is None else _RECENT_BEFORE
        params: dict[str, object] = {
            "agent_id": agent_id,
            "channel_id": channel_id,
            "since": since,
            "limit": limit,
        }
        if before is not None:
            params["before"] = before
        return [_row_to_message(row) for row in await conn.execute(query, params)]

    async def count(self, agent_id: str, archived: bool = False) -> int:
        table = message_archive if archived else short_term_messages
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(func.count()).select_from(table).where(table.c.agent_id == agent_id)
            )
            return int(value or 0)

    async def by_author(
        self, agent_id: str, author_id: str, limit: int = 100
    ) -> Sequence[LoggedMessage]:
        async with self._engine.connect() as conn:
            out: list[LoggedMessage] = []
            for table in (short_term_messages, message_archive):
                query = (
                    select(*(table.c[name] for name in _COLUMNS))
                    .where(table.c.agent_id == agent_id, table.c.author_id == author_id)
                    .order_by(table.c.created_at.desc())
                    .limit(limit)
                )
                out.extend(_row_to_message(row) for row in await conn.execute(query))
            out.sort(key=lambda m: m.created_at, reverse=True)
            return out[:limit]

    async def rename(
        self, agent_id: str, channel_id: str, message_id: str, new_message_id: str
    ) -> bool:
        """Give a logged message its platform id (the bot's replies are logged before the
        platform assigns one)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(short_term_messages)
                .where(
                    short_term_messages.c.agent_id == agent_id,
                    short_term_messages.c.channel_id == channel_id,
                    short_term_messages.c.message_id == message_id,
                )
                .values(message_id=new_message_id)
            )
            return bool(result.rowcount)
