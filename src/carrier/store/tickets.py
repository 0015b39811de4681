"""Support tickets: one private thread per ticket, opened and closed from a client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Row, select, update

from carrier.store.database import Database
from carrier.store.schema import support_tickets

TicketStatus = Literal["open", "closed"]
SUBJECT_MAX = 200


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    guild_id: str
    channel_id: str
    thread_id: str
    opener_id: str
    subject: str
    status: TicketStatus
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


def _ticket(row: Row[tuple[object, ...]]) -> Ticket:
    m = row._mapping
    return Ticket(
        id=int(m["id"]),
        guild_id=str(m["guild_id"]),
        channel_id=str(m["channel_id"]),
        thread_id=str(m["thread_id"]),
        opener_id=str(m["opener_id"]),
        subject=str(m["subject"]),
        status=m["status"],
        created_at=m["created_at"],
        closed_at=m["closed_at"],
        closed_by=m["closed_by"],
    )


class TicketRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def open(
        self,
        agent_id: str,
        *,
        guild_id: str,
        channel_id: str,
        thread_id: str,
        opener_id: str,
        subject: str,
        at: datetime,
    ) -> Ticket:
        """Record a ticket whose thread exists.  The subject is one line, at most 200
        characters; an empty one raises ValueError."""
        subject = " ".join(subject.split())
        if not subject:
            raise ValueError("a ticket needs a subject")
        subject = subject[:SUBJECT_MAX]
        async with self._engine.begin() as conn:
            result = await conn.execute(
                support_tickets.insert()
                .values(
                    agent_id=agent_id,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    thread_id=thread_id,
                    opener_id=opener_id,
                    subject=subject,
                    status="open",
                    created_at=at,
                )
                .returning(*support_tickets.c)
            )
            return _ticket(result.one())

    async def by_thread(self, agent_id: str, thread_id: str) -> Ticket | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(support_tickets).where(
                        support_tickets.c.agent_id == agent_id,
                        support_tickets.c.thread_id == thread_id,
                    )
                )
            ).first()
        return _ticket(row) if row is not None else None

    async def close(self, agent_id: str, thread_id: str, closed_by: str, at: datetime) -> bool:
        """Close an open ticket; False when there is no open ticket for that thread."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(support_tickets)
                .where(
                    support_tickets.c.agent_id == agent_id,
                    support_tickets.c.thread_id == thread_id,
                    support_tickets.c.status == "open",
                )
                .values(status="closed", closed_at=at, closed_by=closed_by)
            )
            return bool(result.rowcount)

    async def listing(
        self, agent_id: str, guild_id: str, status: TicketStatus | None = "open", limit: int = 50
    ) -> list[Ticket]:
        """A guild's tickets, newest first."""
        query = select(support_tickets).where(
            support_tickets.c.agent_id == agent_id, support_tickets.c.guild_id == guild_id
        )
        if status is not None:
            query = query.where(support_tickets.c.status == status)
        query = query.order_by(support_tickets.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_ticket(row) for row in await conn.execute(query)]
