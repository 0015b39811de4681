"""The bot speaking on its own: proactive messages and the status text.

Both go through the same responder as replies (LLM chain per the channel's mode, Markov as
the fallback), each with its own purpose and prompt.  The scheduler (a client's job) decides
when to call them; the rules of what to say live here.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from carrier.engine.pipeline import Engine
from carrier.generation.request import ReplyRequest
from carrier.persona.service import load_persona
from carrier.store.messages import LoggedMessage

STATUS_KEY = "status_text"
STATUS_MAX_CHARS = 128
PROACTIVE_CHANCE = 0.10


@dataclass(frozen=True, slots=True)
class Proactive:
    """A message the bot decided to post unprompted."""

    text: str
    channel_id: str
    kind: str
    """``contextual`` (a comment on the recent conversation) or ``status`` (a musing)."""
    source: str
    message_id: str


async def proactive_message(
    engine: Engine,
    channel_id: str,
    guild_id: str | None,
    *,
    chance: float = PROACTIVE_CHANCE,
    rng: random.Random | None = None,
) -> Proactive | None:
    """With probability ``chance``, a message for the channel: 50/50 a comment on its last
    messages or a musing on the current status, in today's mood.  None when the dice say
    no, when the channel is deactivated, or when the last message there was the bot's own.
    """
    rng = rng or random.Random()
    if rng.random() >= chance:
        return None
    now = engine.now()
    policy = await engine.store.channels.policy(engine.agent_id, guild_id, channel_id)
    if not policy.active:
        return None
    transcript = await engine.parts.short_term.window(
        engine.agent_id, channel_id, now, engine.settings.context_token_budget
    )
    if transcript and transcript[-1].is_self:
        return None
    status = await engine.store.state.get(engine.agent_id, STATUS_KEY) or ""
    kind = "contextual" if transcript and (not status or rng.random() < 0.5) else "status"
    persona = await load_persona(engine.store, engine.agent_id)
    mood = await engine.parts.mood.current(engine.agent_id, now)
    emotes = await engine.store.emotes.for_guild(engine.agent_id, guild_id)
    scope = guild_id or f"channel:{channel_id}"
    seed = " ".join(m.text for m in transcript[-3:]) if kind == "contextual" else status
    request = ReplyRequest(
        purpose="proactive",
        agent_id=engine.agent_id,
        persona=persona,
        guild_id=scope,
        channel_id=channel_id,
        message_text=seed if kind == "contextual" else "",
        transcript=transcript if kind == "contextual" else (),
        mood=mood.as_dict(),
        mood_words=mood.describe(),
        status_text=status,
        emote_names=sorted(emotes),
        emotes=emotes,
    )
    mode = engine.parts.responder.mode_for(policy.generation_mode)
    generated = await engine.parts.responder.generate(request, rng, mode)
    text = engine.finish(generated.text, emotes)
    message_id = f"carrier-{uuid.uuid4().hex}"
    name = persona.name
    await engine.parts.recorder.record(
        LoggedMessage(
            agent_id=engine.agent_id,
            guild_id=guild_id,
            channel_id=channel_id,
            message_id=message_id,
            author_id=engine.bot_user_id,
            author_name=name,
            author_is_bot=True,
            is_self=True,
            text=text,
            created_at=max([now, *(m.created_at for m in transcript[-1:])])
            + timedelta(microseconds=1),
        ),
        None,
    )
    return Proactive(text, channel_id, kind, generated.source, message_id)


async def refresh_status(
    engine: Engine, *, rng: random.Random | None = None, now: datetime | None = None
) -> str:
    """Generate a new status line from the persona and today's mood, store it in global
    state (``status_text``) and return it."""
    rng = rng or random.Random()
    now = now or engine.now()
    persona = await load_persona(engine.store, engine.agent_id)
    mood = await engine.parts.mood.current(engine.agent_id, now)
    request = ReplyRequest(
        purpose="status",
        agent_id=engine.agent_id,
        persona=persona,
        message_text=" ".join(persona.topics),
        mood=mood.as_dict(),
        mood_words=mood.describe(),
    )
    generated = await engine.parts.responder.generate(request, rng)
    status = clean_status(engine.finish(generated.text, {}))
    await engine.store.state.set(engine.agent_id, STATUS_KEY, status)
    return status


def clean_status(text: str) -> str:
    """One line, no quotes, no markup, at most STATUS_MAX_CHARS."""
    line = re.sub(r"\s+", " ", text).strip().strip("\"'“”*_`")
    if len(line) <= STATUS_MAX_CHARS:
        return line or "…"
    cut = line[: STATUS_MAX_CHARS - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > STATUS_MAX_CHARS // 2 else cut).rstrip(",;: ") + "…"
