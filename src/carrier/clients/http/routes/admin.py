"""Admin: the persona, people's memories and relationships, global state and mood, and
consolidation.  Every write goes straight to the database, so the very next message sees it.
Every route needs a key with the ``admin`` scope."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from carrier.clients.http.auth import AdminKey, AgentId, Context
from carrier.clients.http.context import ApiContext
from carrier.clients.http.errors import ERROR_RESPONSES, ApiError
from carrier.clients.http.schemas import (
    ID_PATTERN,
    STATE_KEY,
    ConsolidationOut,
    FactIn,
    FactOut,
    FactWritten,
    ForgottenOut,
    MoodEdit,
    MoodOut,
    NicknameOut,
    PersonaItemEdit,
    PersonaItemIn,
    PersonaItemOut,
    PersonaOut,
    RelationshipEdit,
    RelationshipOut,
    StateEntry,
    StateValue,
    UserOut,
)
from carrier.engine.mood import DATE_KEY, MOOD_KEYS, PREFIX
from carrier.memory.api import Memory
from carrier.persona.service import add_item, edit_item
from carrier.store.facts import Fact
from carrier.store.persona import PERSONA_KINDS

router = APIRouter(prefix="/api/v1/agents/{agent_id}", tags=["admin"], responses=ERROR_RESPONSES)

UserId = Annotated[str, Path(pattern=ID_PATTERN, description="The user's platform id.")]
ItemId = Annotated[int, Path(ge=1, le=2**53)]
StateKey = Annotated[str, Path(pattern=STATE_KEY)]


# -- persona -------------------------------------------------------------------------------------


@router.get("/persona", response_model=PersonaOut, summary="The persona as stored now")
async def get_persona(ctx: Context, agent_id: AgentId, key: AdminKey) -> PersonaOut:
    name = await ctx.store.agents.name(ctx.agent_id) or ctx.agent_id
    items = await ctx.store.persona.items(ctx.agent_id)
    return PersonaOut(
        name=name,
        kinds=list(PERSONA_KINDS),
        items=[
            PersonaItemOut(id=i.id, kind=i.kind, text=i.text, position=i.position) for i in items
        ],
    )


@router.post(
    "/persona/items", response_model=PersonaItemOut, status_code=201, summary="Add a persona item"
)
async def add_persona_item(
    ctx: Context, agent_id: AgentId, body: PersonaItemIn, key: AdminKey
) -> PersonaItemOut:
    try:
        item = await add_item(ctx.store, ctx.agent_id, body.kind, body.text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return PersonaItemOut(id=item.id, kind=item.kind, text=item.text, position=item.position)


@router.patch(
    "/persona/items/{item_id}", response_model=PersonaItemOut, summary="Change an item's text"
)
async def edit_persona_item(
    ctx: Context, agent_id: AgentId, item_id: ItemId, body: PersonaItemEdit, key: AdminKey
) -> PersonaItemOut:
    try:
        item = await edit_item(ctx.store, ctx.agent_id, item_id, body.text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    if item is None:
        raise ApiError(404, f"no persona item {item_id}")
    return PersonaItemOut(id=item.id, kind=item.kind, text=item.text, position=item.position)


@router.delete(
    "/persona/items/{item_id}", status_code=204, response_class=Response, summary="Remove an item"
)
async def remove_persona_item(
    ctx: Context, agent_id: AgentId, item_id: ItemId, key: AdminKey
) -> Response:
    if not await ctx.store.persona.remove(ctx.agent_id, item_id):
        raise ApiError(404, f"no persona item {item_id}")
    return Response(status_code=204)


# -- users: memories and relationships ----------------------------------------------------------


async def _known_user(ctx: ApiContext, user_id: str) -> None:
    if await ctx.store.users.get(ctx.agent_id, user_id) is None:
        raise ApiError(404, f"unknown user {user_id!r}")


def _memory(ctx: ApiContext) -> Memory:
    if ctx.memory is None:
        raise ApiError(503, "long-term memory is not enabled on this server")
    return ctx.memory


def _fact(f: Fact) -> FactOut:
    return FactOut(
        id=f.id,
        user_id=f.user_id,
        guild_id=f.guild_id,
        fact=f.fact,
        category=f.category,
        first_mentioned=f.first_mentioned,
        last_mentioned=f.last_mentioned,
        reference_count=f.reference_count,
        superseded_by=f.superseded_by,
    )


async def _relationship(ctx: ApiContext, user_id: str) -> RelationshipOut:
    user = await ctx.store.users.get(ctx.agent_id, user_id)
    rel = await ctx.engine.parts.relationships.current(ctx.agent_id, user_id, ctx.engine.now())
    name = user.name if user is not None else user_id
    return RelationshipOut(user_id=user_id, words=rel.describe(name), **rel.as_dict())


@router.get("/users/{user_id}", response_model=UserOut, summary="Everything kept about a user")
async def get_user(ctx: Context, agent_id: AgentId, user_id: UserId, key: AdminKey) -> UserOut:
    user = await ctx.store.users.get(ctx.agent_id, user_id)
    if user is None:
        raise ApiError(404, f"unknown user {user_id!r}")
    nicknames = await ctx.store.users.nicknames(ctx.agent_id, user_id)
    facts = await ctx.store.facts.for_user(ctx.agent_id, user_id)
    return UserOut(
        user_id=user.user_id,
        name=user.name,
        is_bot=user.is_bot,
        first_seen=user.first_seen,
        last_seen=user.last_seen,
        message_count=user.message_count,
        nicknames=[
            NicknameOut(nickname=n.nickname, first_seen=n.first_seen, last_seen=n.last_seen)
            for n in nicknames
        ],
        relationship=await _relationship(ctx, user_id),
        facts=[_fact(f) for f in facts],
    )


@router.delete(
    "/users/{user_id}",
    response_model=ForgottenOut,
    summary="Forget a user: facts, relationship, their messages, names",
)
async def forget_user(
    ctx: Context, agent_id: AgentId, user_id: UserId, key: AdminKey
) -> ForgottenOut:
    await _known_user(ctx, user_id)
    forgotten = await _memory(ctx).forget(user_id)
    return ForgottenOut(**asdict(forgotten))


@router.get(
    "/users/{user_id}/memories", response_model=list[FactOut], summary="A user's long-term facts"
)
async def list_memories(
    ctx: Context,
    agent_id: AgentId,
    user_id: UserId,
    key: AdminKey,
    include_history: Annotated[bool, Query(description="Also superseded facts")] = False,
) -> list[FactOut]:
    await _known_user(ctx, user_id)
    facts = await ctx.store.facts.for_user(ctx.agent_id, user_id, include_history=include_history)
    return [_fact(f) for f in facts]


@router.post(
    "/users/{user_id}/memories",
    response_model=FactWritten,
    status_code=201,
    summary="Remember a fact about a user (a similar fact is reinforced instead)",
)
async def add_memory(
    ctx: Context, agent_id: AgentId, user_id: UserId, body: FactIn, key: AdminKey
) -> FactWritten:
    await _known_user(ctx, user_id)
    try:
        written = await _memory(ctx).add_fact(
            user_id, body.fact, body.category, guild_id=body.guild_id
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return FactWritten(fact_id=written.fact_id, outcome=written.outcome)


async def _users_fact(ctx: ApiContext, user_id: str, fact_id: int) -> Fact:
    await _known_user(ctx, user_id)
    fact = await ctx.store.facts.get(fact_id)
    if fact is None or fact.agent_id != ctx.agent_id or fact.user_id != user_id:
        raise ApiError(404, f"{user_id!r} has no fact {fact_id}")
    return fact


@router.put(
    "/users/{user_id}/memories/{fact_id}",
    response_model=FactWritten,
    summary="Rewrite a fact (stored as a new fact with a fresh embedding)",
)
async def replace_memory(
    ctx: Context, agent_id: AgentId, user_id: UserId, fact_id: ItemId, body: FactIn, key: AdminKey
) -> FactWritten:
    old = await _users_fact(ctx, user_id, fact_id)
    memory = _memory(ctx)
    await memory.delete_facts([old.id])
    try:
        written = await memory.add_fact(
            user_id, body.fact, body.category, guild_id=body.guild_id or old.guild_id
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return FactWritten(fact_id=written.fact_id, outcome=written.outcome)


@router.delete(
    "/users/{user_id}/memories/{fact_id}",
    status_code=204,
    response_class=Response,
    summary="Delete one fact",
)
async def delete_memory(
    ctx: Context, agent_id: AgentId, user_id: UserId, fact_id: ItemId, key: AdminKey
) -> Response:
    await _users_fact(ctx, user_id, fact_id)
    if ctx.memory is not None:
        await ctx.memory.delete_facts([fact_id])
    else:
        await ctx.store.facts.delete_ids(ctx.agent_id, [fact_id])
    return Response(status_code=204)


@router.get(
    "/users/{user_id}/relationship",
    response_model=RelationshipOut,
    summary="The relationship with a user, decayed to now",
)
async def get_relationship(
    ctx: Context, agent_id: AgentId, user_id: UserId, key: AdminKey
) -> RelationshipOut:
    await _known_user(ctx, user_id)
    return await _relationship(ctx, user_id)


@router.patch(
    "/users/{user_id}/relationship",
    response_model=RelationshipOut,
    summary="Set relationship metrics by hand",
)
async def edit_relationship(
    ctx: Context, agent_id: AgentId, user_id: UserId, body: RelationshipEdit, key: AdminKey
) -> RelationshipOut:
    await _known_user(ctx, user_id)
    values = body.model_dump(exclude_none=True)
    try:
        await ctx.engine.parts.relationships.set(ctx.agent_id, user_id, ctx.engine.now(), **values)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return await _relationship(ctx, user_id)


# -- global state and mood -----------------------------------------------------------------------


@router.get("/state", response_model=list[StateEntry], summary="Every global state key")
async def list_state(ctx: Context, agent_id: AgentId, key: AdminKey) -> list[StateEntry]:
    values = await ctx.store.state.all(ctx.agent_id)
    return [StateEntry(key=k, value=v) for k, v in sorted(values.items())]


@router.put("/state/{key}", response_model=StateEntry, summary="Set a global state value")
async def set_state(
    ctx: Context, agent_id: AgentId, key: StateKey, body: StateValue, api_key: AdminKey
) -> StateEntry:
    await ctx.store.state.set(ctx.agent_id, key, body.value)
    return StateEntry(key=key, value=body.value)


@router.delete(
    "/state/{key}", status_code=204, response_class=Response, summary="Delete a global state key"
)
async def delete_state(
    ctx: Context, agent_id: AgentId, key: StateKey, api_key: AdminKey
) -> Response:
    if not await ctx.store.state.delete(ctx.agent_id, key):
        raise ApiError(404, f"no state key {key!r}")
    return Response(status_code=204)


async def _mood(ctx: ApiContext) -> MoodOut:
    mood = await ctx.engine.parts.mood.current(ctx.agent_id, ctx.engine.now())
    return MoodOut(day=mood.day, words=mood.describe(), **mood.as_dict())


@router.get("/mood", response_model=MoodOut, summary="Today's mood")
async def get_mood(ctx: Context, agent_id: AgentId, key: AdminKey) -> MoodOut:
    return await _mood(ctx)


@router.patch("/mood", response_model=MoodOut, summary="Set today's mood values")
async def edit_mood(ctx: Context, agent_id: AgentId, body: MoodEdit, key: AdminKey) -> MoodOut:
    current = await ctx.engine.parts.mood.current(ctx.agent_id, ctx.engine.now())
    values = current.as_dict() | body.model_dump(exclude_none=True)
    stored = {PREFIX + name: str(values[name]) for name in MOOD_KEYS}
    stored[DATE_KEY] = current.day
    await ctx.store.state.set_many(ctx.agent_id, stored)
    return await _mood(ctx)


# -- consolidation -------------------------------------------------------------------------------


@router.post(
    "/consolidate",
    response_model=ConsolidationOut,
    summary="Consolidate memory now: the log into facts and the archive",
)
async def consolidate(ctx: Context, agent_id: AgentId, key: AdminKey) -> ConsolidationOut:
    """Safe to repeat (idempotent); the outbound webhooks get a ``consolidation`` event."""
    report = await _memory(ctx).consolidate(ctx.engine.now())
    fields = asdict(report)
    ctx.engine.consolidated(fields)
    return ConsolidationOut(**fields)
