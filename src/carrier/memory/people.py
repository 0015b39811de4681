"""People's control over what the bot keeps about them: what it knows, forgetting, retraction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.facts import Fact
from carrier.store.relationships import RelationshipRow
from carrier.store.schema import (
    message_archive,
    relationships,
    short_term_messages,
    user_nicknames,
    users,
)
from carrier.store.store import Store
from carrier.store.users import User


@dataclass(frozen=True, slots=True)
class WhatIKnow:
    user: User | None
    facts: list[Fact]
    history: list[Fact]
    relationship: RelationshipRow | None
    messages_kept: int


@dataclass(frozen=True, slots=True)
class Forgotten:
    facts: int
    messages: int
    relationship: bool


async def what_i_know(store: Store, agent_id: str, user_id: str) -> WhatIKnow:
    """Everything stored about a user, for "what do you know about me"."""
    facts = await store.facts.for_user(agent_id, user_id, include_history=True)
    current = [f for f in facts if f.superseded_by is None]
    history = [f for f in facts if f.superseded_by is not None]
    messages = await store.messages.by_author(agent_id, user_id, limit=100_000)
    return WhatIKnow(
        user=await store.users.get(agent_id, user_id),
        facts=current,
        history=history,
        relationship=await store.relationships.get(agent_id, user_id),
        messages_kept=len(messages),
    )


@dataclass(frozen=True, slots=True)
class ForgottenRows:
    """What :func:`forget_user_in` deleted, for the caller to clear from the vector index
    and the short-term mirror."""

    forgotten: Forgotten
    fact_ids: list[int]
    archive_ids: list[int]
    channel_ids: list[str]


async def forget_user(store: Store, agent_id: str, user_id: str) -> Forgotten:
    """ "Forget me": facts, relationship, the user's messages (log and archive), their name
    and nickname history, in one transaction.  Other people's messages are untouched."""
    async with store.engine.begin() as conn:
        return (await forget_user_in(conn, store, agent_id, user_id)).forgotten


async def forget_user_in(
    conn: AsyncConnection, store: Store, agent_id: str, user_id: str
) -> ForgottenRows:
    """:func:`forget_user` in the caller's transaction: all of it is gone, or none."""
    fact_ids = await store.facts.ids_for_user(agent_id, user_id, conn=conn)
    facts = await store.facts.delete_ids_in(conn, agent_id, fact_ids)
    archive_ids = [
        int(r.id)
        for r in await conn.execute(
            select(message_archive.c.id).where(
                message_archive.c.agent_id == agent_id, message_archive.c.author_id == user_id
            )
        )
    ]
    channels: set[str] = set()
    messages = 0
    for table in (short_term_messages, message_archive):
        mine = (table.c.agent_id == agent_id, table.c.author_id == user_id)
        channels.update(
            str(r.channel_id)
            for r in await conn.execute(select(table.c.channel_id).where(*mine).distinct())
        )
        result = await conn.execute(delete(table).where(*mine))
        messages += int(result.rowcount)
    gone = await conn.execute(
        delete(relationships).where(
            relationships.c.agent_id == agent_id, relationships.c.user_id == user_id
        )
    )
    await conn.execute(
        delete(user_nicknames).where(
            user_nicknames.c.agent_id == agent_id, user_nicknames.c.user_id == user_id
        )
    )
    await conn.execute(
        delete(users).where(users.c.agent_id == agent_id, users.c.user_id == user_id)
    )
    return ForgottenRows(
        Forgotten(facts=facts, messages=messages, relationship=bool(gone.rowcount)),
        fact_ids,
        archive_ids,
        sorted(channels),
    )


async def retract_message(store: Store, agent_id: str, message_id: str) -> int:
    """A message was deleted: the facts learned from it go too.  Returns how many."""
    ids = await store.facts.ids_from_message(agent_id, message_id)
    return await store.facts.delete_ids(agent_id, ids)
