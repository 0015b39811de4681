"""The message pipeline of DESIGN.md: record, decide, assemble, generate, finish, learn.

Platform-neutral: a client hands in an :class:`IncomingMessage` and sends the
:class:`Reply` it gets back.  Every read happens from the database at the moment of
interaction, so a persona or relationship edited a second ago shapes the very next reply.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError

from carrier.engine.emotes import render_emotes
from carrier.engine.messages import Decision, IncomingMessage, Outcome, Reply
from carrier.engine.mood import Mood, MoodService
from carrier.engine.rate_limits import RateLimiter
from carrier.engine.recorder import Recorder
from carrier.engine.relationships import Relationship, RelationshipService
from carrier.engine.safety import clamp_length, clean_text, neutralize_mentions
from carrier.engine.tone import apply_tone
from carrier.engine.triggers import TriggerInputs, should_respond
from carrier.generation.markov import MarkovGenerator
from carrier.generation.request import ReplyRequest
from carrier.generation.responder import ResponderChain
from carrier.memory.short_term import ShortTermMemory, message_tokens
from carrier.persona.service import Persona, load_persona
from carrier.settings import EngineSettings
from carrier.store.database import explain
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store

log = logging.getLogger("carrier.engine")

_RECENT_FOR_TRIGGERS = 12
RATE_LIMIT_NOTICE = "Slow down a little, {name}; I'll be back with you in a moment."


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EngineParts:
    """Everything the engine is built from (assembled by carrier.bootstrap)."""

    store: Store
    settings: EngineSettings
    short_term: ShortTermMemory
    markov: MarkovGenerator
    relationships: RelationshipService
    mood: MoodService
    responder: ResponderChain
    rate_limiter: RateLimiter
    recorder: Recorder


@dataclass(frozen=True, slots=True)
class Assembled:
    """The outcome of step 3: the generator's request, what ``/why`` shows, and the mood and
    relationship the finishing step shapes the wording with."""

    request: ReplyRequest
    context: dict[str, Any]
    mood: Mood
    relationship: Relationship


class Engine:
    def __init__(
        self,
        agent_id: str,
        bot_user_id: str,
        parts: EngineParts,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        extra_names: tuple[str, ...] = (),
    ) -> None:
        self.agent_id = agent_id
        self.extra_names = extra_names
        self.bot_user_id = bot_user_id
        self.parts = parts
        self.store = parts.store
        self.settings = parts.settings
        self._clock = clock
        self._rng = rng or random.Random()

    # -- the pipeline ----------------------------------------------------------------------

    async def handle(self, message: IncomingMessage) -> Outcome:
        """Run one message through the pipeline; never raises for bad message content.

        Raises :class:`~carrier.store.database.DatabaseError` (one clear line) when the
        database cannot be used right now (locked past the busy timeout, unreachable); the
        client reports it and keeps running, and nothing stored is touched.
        """
        try:
            return await self._handle(message)
        except DBAPIError as exc:
            raise explain(exc, self.store.engine.url.render_as_string()) from exc

    async def _handle(self, message: IncomingMessage) -> Outcome:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        msg = self._sanitize(message)
        outcome = Outcome(message=msg, decision=Decision(False, "pending"), timings_ms=timings)

        if msg.author_id == self.bot_user_id:
            outcome.decision = Decision(False, "own_message")
            return self._log(outcome)

        now = self._clock()
        fresh = await self.record(msg)
        timings["record"] = _ms(started)
        if not fresh:
            outcome.decision = Decision(False, "duplicate", "this message was already seen")
            return self._log(outcome)

        observing: asyncio.Task[Relationship] | None = None
        if not msg.author_is_bot and msg.text.strip():
            # The relationship update (a write) overlaps the decision's reads.
            observing = asyncio.create_task(
                self.parts.relationships.observe(self.agent_id, msg.author_id, msg.text, now)
            )

        step = time.perf_counter()
        try:
            decision, persona = await self.decide(msg, now)
        finally:
            relationship = await observing if observing is not None else None
        timings["decide"] = _ms(step)
        outcome.decision = decision
        if not decision.respond:
            return self._log(outcome)

        if not await self.store.messages.mark_answered(
            self.agent_id, msg.channel_id, msg.message_id, decision.reason
        ):
            outcome.decision = Decision(False, "already_answered")
            return self._log(outcome)

        if decision.reason == "rate_limited_notice":
            text = RATE_LIMIT_NOTICE.format(name=msg.author_name)
            outcome.reply = await self._send(msg, text, decision, "notice", now)
            return self._log(outcome)

        step = time.perf_counter()
        assembled = await self.assemble(msg, persona, relationship, now)
        request, context = assembled.request, assembled.context
        timings["assemble"] = _ms(step)
        outcome.context = context

        step = time.perf_counter()
        generated = await self.parts.responder.generate(request, self._rng)
        timings["generate"] = _ms(step)

        step = time.perf_counter()
        text, tone = apply_tone(
            generated.text, assembled.relationship, assembled.mood, msg.author_name, self._rng
        )
        text = self.finish(text, request.emotes)
        context["tone"] = tone
        context["source"] = generated.source
        timings["finish"] = _ms(step)

        step = time.perf_counter()
        outcome.reply = await self._send(msg, text, decision, generated.source, now)
        timings["learn"] = _ms(step)
        timings["total"] = _ms(started)
        return self._log(outcome)

    async def record(self, msg: IncomingMessage) -> bool:
        """Step 1: log + user + the guild's Markov chain, in one transaction.
        Returns False for a message already seen (replayed or duplicated events)."""
        logged = LoggedMessage(
            agent_id=self.agent_id,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            message_id=msg.message_id,
            author_id=msg.author_id,
            author_name=msg.author_name,
            author_is_bot=msg.author_is_bot,
            text=msg.text,
            created_at=msg.created_at,
            reply_to_message_id=msg.reply_to_message_id,
            reply_to_author_id=msg.reply_to_author_id,
        )
        scope = None if msg.author_is_bot else self.markov_scope(msg)
        return await self.parts.recorder.record(logged, scope)

    async def decide(self, msg: IncomingMessage, now: datetime) -> tuple[Decision, Persona]:
        """Step 2: triggers, channel policy and rate limits.  Its reads run concurrently."""
        since = now - timedelta(hours=self.settings.short_term_hours)
        persona, recent, policy = await asyncio.gather(
            load_persona(self.store, self.agent_id),
            self.store.messages.recent(
                self.agent_id, msg.channel_id, since, _RECENT_FOR_TRIGGERS + 1
            ),
            self.store.channels.policy(self.agent_id, msg.guild_id, msg.channel_id),
        )
        inputs = TriggerInputs(
            message=msg,
            bot_user_id=self.bot_user_id,
            names=(*persona.names, *self.extra_names),
            recent=[m for m in recent if m.message_id != msg.message_id][:_RECENT_FOR_TRIGGERS],
            policy=policy,
            now=now,
        )
        decision = should_respond(inputs, self.settings, self._rng)
        if not decision.respond:
            return decision, persona
        verdict = await self.parts.rate_limiter.check(self.agent_id, msg.author_id)
        if verdict.allowed:
            return decision, persona
        if verdict.notify:
            return Decision(
                True, "rate_limited_notice", f"{verdict.scope} limit; told once"
            ), persona
        return Decision(
            False, "rate_limited", f"{verdict.scope} limit, {verdict.retry_after:.0f}s left"
        ), persona

    async def assemble(
        self,
        msg: IncomingMessage,
        persona: Persona,
        relationship: Relationship | None,
        now: datetime,
    ) -> Assembled:
        """Step 3: everything the generator needs, read now from the database (concurrently)."""
        relationships = self.parts.relationships
        mood, current, transcript, emotes = await asyncio.gather(
            self.parts.mood.current(self.agent_id, now),
            relationships.current(self.agent_id, msg.author_id, now)
            if relationship is None
            else _ready(relationship),
            self.parts.short_term.window(
                self.agent_id, msg.channel_id, now, self.settings.context_token_budget
            ),
            self.store.emotes.for_guild(self.agent_id, msg.guild_id),
        )
        relationship = current
        request = ReplyRequest(
            purpose="reply",
            agent_id=self.agent_id,
            persona=persona,
            guild_id=self.markov_scope(msg),
            channel_id=msg.channel_id,
            message_text=msg.text,
            author_name=msg.author_name,
            transcript=transcript,
            mood=mood.as_dict(),
            mood_words=mood.describe(),
            relationship=relationship.as_dict(),
            relationship_words=relationship.describe(msg.author_name),
            emote_names=sorted(emotes),
            emotes=emotes,
        )
        context = {
            "persona": persona.name,
            "mood": mood.as_dict() | {"words": mood.describe()},
            "relationship": relationship.as_dict()
            | {"words": relationship.describe(msg.author_name)},
            "transcript_messages": len(transcript),
            "transcript_tokens": sum(message_tokens(m) for m in transcript),
            "emotes": sorted(emotes),
        }
        return Assembled(request, context, mood, relationship)

    def finish(self, text: str, emotes: Mapping[str, str]) -> str:
        """Step 5: emotes, mention safety, length."""
        text = render_emotes(clean_text(text), emotes)
        text = neutralize_mentions(text)
        return clamp_length(text, self.settings.max_reply_chars) or "…"

    # -- other events ----------------------------------------------------------------------

    async def message_edited(self, channel_id: str, message_id: str, text: str) -> bool:
        return await self.store.messages.edit(
            self.agent_id, channel_id, message_id, self._clean(text)
        )

    async def message_deleted(self, channel_id: str, message_id: str) -> bool:
        return await self.store.messages.mark_deleted(self.agent_id, channel_id, message_id)

    async def acknowledge(self, reply: Reply, platform_message_id: str) -> None:
        """The client sent ``reply`` and the platform gave it this id."""
        await self.store.messages.rename(
            self.agent_id, reply.channel_id, reply.message_id, platform_message_id
        )

    def markov_scope(self, msg: IncomingMessage) -> str:
        """The chain a message trains and is answered from: its guild, else its channel."""
        return msg.guild_id or f"channel:{msg.channel_id}"

    # -- helpers -----------------------------------------------------------------------------

    async def _send(
        self, msg: IncomingMessage, text: str, decision: Decision, source: str, now: datetime
    ) -> Reply:
        persona_name = await self.store.agents.name(self.agent_id) or self.agent_id
        reply = Reply(
            text=text,
            channel_id=msg.channel_id,
            reply_to_message_id=msg.message_id,
            reason=decision.reason,
            message_id=f"carrier-{uuid.uuid4().hex}",
            source=source,
        )
        await self.parts.recorder.record(
            LoggedMessage(
                agent_id=self.agent_id,
                guild_id=msg.guild_id,
                channel_id=msg.channel_id,
                message_id=reply.message_id,
                author_id=self.bot_user_id,
                author_name=persona_name,
                author_is_bot=True,
                is_self=True,
                text=text,
                created_at=max(now, msg.created_at) + timedelta(microseconds=1),
                reply_to_message_id=msg.message_id,
                reply_to_author_id=msg.author_id,
            ),
            None,
        )
        return reply

    def _clean(self, text: str) -> str:
        text = clean_text(text)
        limit = self.settings.max_message_chars
        return text if len(text) <= limit else text[:limit] + "…"

    def _sanitize(self, msg: IncomingMessage) -> IncomingMessage:
        created = msg.created_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return replace(
            msg,
            text=self._clean(msg.text),
            created_at=created,
            author_name=clean_text(msg.author_name)[:200] or msg.author_id,
        )

    def _log(self, outcome: Outcome) -> Outcome:
        msg = outcome.message
        log.info(
            "decision channel=%s message=%s author=%s -> %s",
            msg.channel_id,
            msg.message_id,
            msg.author_id,
            outcome.decision,
        )
        return outcome


async def _ready(value: Relationship) -> Relationship:
    return value


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
