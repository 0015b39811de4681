"""A chat message from the API into the engine, and its outcome back out (REST and WebSocket
share this)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from carrier.clients.http.context import ApiContext
from carrier.clients.http.schemas import ChatMessage, ChatResult, DecisionOut, ReplyOut
from carrier.engine.messages import IncomingMessage, Outcome

DEFAULT_GUILD = "http"


async def _mentions(ctx: ApiContext, text: str, revision: int | None) -> bool:
    if "@" not in text:
        return False
    persona = await ctx.engine.persona(revision)
    names = [n for n in (*persona.names, *ctx.engine.extra_names) if n]
    return any(re.search(rf"@{re.escape(n)}\b", text, re.IGNORECASE) for n in names)


async def say(ctx: ApiContext, channel_id: str, body: ChatMessage) -> ChatResult:
    """Run the message through the engine; tell the channel's listeners what was said."""
    engine = ctx.engine
    # Read once, now that the message has arrived: the mention check and the engine share it.
    revision = await engine.config_revision()
    mentions = body.mentions_bot
    if mentions is None:
        mentions = await _mentions(ctx, body.text, revision)
    reply_to_bot = body.reply_to_bot and body.reply_to_message_id is not None
    msg = IncomingMessage(
        guild_id=body.guild_id or DEFAULT_GUILD,
        channel_id=channel_id,
        message_id=body.message_id or f"http-{uuid.uuid4().hex}",
        author_id=body.author_id,
        author_name=body.author_name or body.author_id,
        text=body.text,
        created_at=datetime.now(UTC),
        mentions_bot=mentions,
        reply_to_message_id=body.reply_to_message_id,
        reply_to_author_id=engine.bot_user_id if reply_to_bot else None,
        reply_to_bot=reply_to_bot,
    )
    outcome = await engine.handle(msg, revision=revision)
    result = result_of(outcome)
    if outcome.decision.reason not in ("duplicate", "own_message"):
        ctx.hub.publish(channel_id, {"type": "message", **_said(result)})
        if result.reply is not None:
            ctx.hub.publish(
                channel_id,
                {"type": "reply", "in_reply_to": result.message_id, **result.reply.model_dump()},
            )
    return result


def _said(result: ChatResult) -> dict[str, Any]:
    return {
        "message_id": result.message_id,
        "author_id": result.author_id,
        "author_name": result.author_name,
        "text": result.text,
    }


def result_of(outcome: Outcome) -> ChatResult:
    msg, reply = outcome.message, outcome.reply
    return ChatResult(
        message_id=msg.message_id,
        channel_id=msg.channel_id,
        author_id=msg.author_id,
        author_name=msg.author_name,
        text=msg.text,
        decision=DecisionOut(
            respond=outcome.decision.respond,
            reason=outcome.decision.reason,
            detail=outcome.decision.detail,
        ),
        reply=None
        if reply is None
        else ReplyOut(
            id=reply.message_id,
            text=reply.text,
            reason=reply.reason,
            source=reply.source,
            reply_to_message_id=reply.reply_to_message_id,
        ),
        context=outcome.context,
        timings_ms=outcome.timings_ms,
    )
