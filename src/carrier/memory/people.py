"""People's control over what the bot keeps about them: what it knows, forgetting, retraction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete

from carrier.store.facts import Fact
from carrier.store.relationships import RelationshipRow
from carrier.store.schema import message_archive, short_term_messages
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


async def forget_user(store: Store, agent_id: str, user_id: str) -> Forgotten:
    """ "Forget me": facts, relationship, the user's messages (log and archive), their name
    and nickname history.  Other people's messages are untouched."""
    fact_ids = await store.facts.ids_for_user(agent_id, user_id)
    facts = await store.facts.delete_ids(agent_id, fact_ids)
    messages = 0
    async with store.engine.begin() as conn:
        for table in (short_term_messages, message_archive):
            result = await conn.execute(
                delete(table).where(table.c.agent_id == agent_id, table.c.author_id == user_id)
            )
            messages += int(result.rowcount)
    had_relationship = await store.relationships.delete(agent_id, user_id)
    await store.users.forget(agent_id, user_id)
    return Forgotten(facts=facts, messages=messages, relationship=had_relationship)


async def retract_message(store: Store, agent_id: str, message_id: str) -> int:
    """A message was deleted: the facts learned from it go too.  Returns how many."""
    ids = await store.facts.ids_from_message(agent_id, message_id)
    return await store.facts.delete_ids(agent_id, ids)
