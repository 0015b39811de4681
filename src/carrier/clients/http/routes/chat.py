"""Talking to the agent: send a message to a channel, get the outcome (reply and reason)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.security import HTTPAuthorizationCredentials

from carrier.clients.http.auth import AgentId, ChatKey, Context, authenticate, bearer
from carrier.clients.http.chatting import say
from carrier.clients.http.context import ApiContext
from carrier.clients.http.errors import ERROR_RESPONSES
from carrier.clients.http.schemas import ID_PATTERN, AgentOut, ChatMessage, ChatResult, LoggedOut

router = APIRouter(prefix="/api/v1/agents/{agent_id}", tags=["chat"], responses=ERROR_RESPONSES)
agents_router = APIRouter(tags=["chat"], responses=ERROR_RESPONSES)

ChannelId = Annotated[str, Path(pattern=ID_PATTERN, description="Any channel name or id.")]


async def _agent(ctx: ApiContext) -> AgentOut:
    persona = await ctx.engine.persona()
    return AgentOut(id=ctx.agent_id, name=persona.name, nicknames=list(persona.nicknames))


@agents_router.get(
    "/api/v1/agents", response_model=list[AgentOut], summary="The agents this server runs"
)
async def agents(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> list[AgentOut]:
    await authenticate(ctx, credentials.credentials if credentials else None, "chat")
    return [await _agent(ctx)]


@router.get("", response_model=AgentOut, summary="The agent this server runs")
async def agent(ctx: Context, agent_id: AgentId, key: ChatKey) -> AgentOut:
    return await _agent(ctx)


@router.post(
    "/channels/{channel_id}/messages",
    response_model=ChatResult,
    summary="Say something in a channel; get the decision, the reply and its context",
)
async def post_message(
    ctx: Context, agent_id: AgentId, channel_id: ChannelId, body: ChatMessage, key: ChatKey
) -> ChatResult:
    """The message goes through the whole pipeline, as a message on Discord would: recorded,
    decided on (``decision.reason`` says why the bot answers or stays silent), answered.
    Listeners of the channel's WebSocket get the message and the reply too."""
    return await say(ctx, channel_id, body)


@router.get(
    "/channels/{channel_id}/messages",
    response_model=list[LoggedOut],
    summary="The channel's recent log, newest first",
)
async def recent_messages(
    ctx: Context,
    agent_id: AgentId,
    channel_id: ChannelId,
    key: ChatKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[LoggedOut]:
    # Replies are logged in the background, shortly after they were answered: a reply this
    # caller (or anyone) was given is in the log it reads.
    await ctx.engine.replies_logged()
    now = ctx.engine.now()
    since = now - timedelta(hours=ctx.settings.engine.short_term_hours)
    logged = await ctx.store.messages.recent(ctx.agent_id, channel_id, since, limit)
    return [
        LoggedOut(
            message_id=m.message_id,
            author_id=m.author_id,
            author_name=m.author_name,
            is_bot=m.author_is_bot,
            text=m.text,
            created_at=m.created_at,
        )
        for m in logged
    ]
