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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from carrier.engine.coalesce import ReadCoalescer
from carrier.engine.config_cache import ConfigCache
from carrier.engine.emotes import render_emotes
from carrier.engine.messages import Decision, IncomingMessage, Outcome, Reply
from carrier.engine.mood import Mood, MoodService
from carrier.engine.rate_limits import RateLimiter
from carrier.engine.recorder import Recorded, Recorder
from carrier.engine.relationships import Relationship, RelationshipService
from carrier.engine.safety import clamp_length, clean_text, neutralize_mentions
from carrier.engine.tone import apply_tone
from carrier.engine.triggers import TriggerInputs, needs_recent, should_respond
from carrier.generation.markov import MarkovGenerator
from carrier.generation.modes import ModalResponder
from carrier.generation.request import ReplyRequest
from carrier.generation.usage import UsageRecorder
from carrier.memory.api import Memory
from carrier.memory.archive import ArchiveHit
from carrier.memory.long_term import RankedFact
from carrier.memory.short_term import ShortTermMemory, message_tokens
from carrier.metrics import Metrics
from carrier.persona.service import Persona, load_persona
from carrier.settings import EngineSettings
from carrier.store.channels import ChannelPolicy
from carrier.store.database import explain
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store

log = logging.getLogger("carrier.engine")
T = TypeVar("T")

_RECENT_FOR_TRIGGERS = 12
RATE_LIMIT_NOTICE = "Slow down a little, {name}; I'll be back with you in a moment."


def utc_now() -> datetime:
    return datetime.now(UTC)


class EngineObserver(Protocol):
    """Told what the engine did (outbound webhooks, for one).  Both calls must return at once
    (queue the work) and should not raise; the engine logs and ignores an exception."""

    def replied(self, outcome: Outcome) -> None: ...

    def consolidated(self, agent_id: str, report: Mapping[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineParts:
    """Everything the engine is built from (assembled by carrier.bootstrap)."""

    store: Store
    settings: EngineSettings
    short_term: ShortTermMemory
    markov: MarkovGenerator
    relationships: RelationshipService
    mood: MoodService
    responder: ModalResponder
    rate_limiter: RateLimiter
    recorder: Recorder
    metrics: Metrics
    usage: UsageRecorder | None = None
    memory: Memory | None = None
    """Long-term memory: the author's facts go into the prompt (None: no long-term memory)."""
    observers: tuple[EngineObserver, ...] = ()
    """Told about every reply and consolidation (closed by :meth:`Engine.aclose`)."""


@dataclass(frozen=True, slots=True)
class Decided:
    """The outcome of step 2, with what it read (the persona and the channel's policy)."""

    decision: Decision
    persona: Persona
    policy: ChannelPolicy


@dataclass(frozen=True, slots=True)
class _Context:
    mood: Mood
    relationship: Relationship
    transcript: list[LoggedMessage]
    emotes: Mapping[str, str]
    facts: list[str]
    memories: list[str]


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
        self._learning: dict[str, asyncio.Future[Recorded]] = {}
        self._shared = ReadCoalescer()
        self._config = ConfigCache()

    # -- the pipeline ----------------------------------------------------------------------

    async def handle(self, message: IncomingMessage, *, revision: int | None = None) -> Outcome:
        """Run one message through the pipeline; never raises for bad message content.

        ``revision``: the config revision, when the caller read it after the message arrived
        (the API does, for its mention check); else it is read here.

        Raises :class:`~carrier.store.database.DatabaseError` (one clear line) when the
        database cannot be used right now (locked past the busy timeout, unreachable); the
        client reports it and keeps running, and nothing stored is touched.
        """
        try:
            return await self._handle(message, revision)
        except (DBAPIError, ConnectionError, FileNotFoundError) as exc:
            # asyncpg raises plain OSErrors when the server is gone (refused; no socket).
            raise explain(exc, self.store.engine.url.render_as_string()) from exc

    async def _handle(self, message: IncomingMessage, known: int | None) -> Outcome:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        msg = self._sanitize(message)
        outcome = Outcome(message=msg, decision=Decision(False, "pending"), timings_ms=timings)

        if msg.author_id == self.bot_user_id:
            outcome.decision = Decision(False, "own_message")
            return self._log(outcome)

        now = self._clock()
        if (msg.mentions_bot or msg.reply_to_bot) and self.parts.memory is not None:
            # Almost always answered: embed the text for the memory searches meanwhile.
            self.parts.memory.prefetch_query(msg.text)
        recorded = await self.record(msg)
        timings["record"] = _ms(started)
        if not recorded.fresh:
            # Recording is the claim: a message is recorded once, so it is answered once.
            outcome.decision = Decision(False, "duplicate", "this message was already seen")
            return self._log(outcome)
        relationship = recorded.relationship

        step = time.perf_counter()
        # Read after the message arrived: every edit committed before it is seen.
        revision = known if known is not None else await self.config_revision()
        # A mention or a reply to the bot is almost always answered: read the context for
        # the reply while the decision is being made instead of after it.
        reading: asyncio.Task[_Context] | None = None
        if msg.mentions_bot or msg.reply_to_bot:
            reading = asyncio.create_task(self._read_context(msg, relationship, now, revision))
        try:
            decided = await self.decide(msg, now, revision=revision)
        except BaseException:
            if reading is not None:
                await asyncio.gather(reading, return_exceptions=True)
            raise
        decision, persona = decided.decision, decided.persona
        timings["decide"] = _ms(step)
        outcome.decision = decision
        if reading is not None and (
            not decision.respond or decision.reason == "rate_limited_notice"
        ):
            # Not cancelled: a database call abandoned midway could leave its connection
            # mid-transaction.  The reads are short; their result is just not used.
            await asyncio.gather(reading, return_exceptions=True)
        if not decision.respond:
            return self._log(outcome)

        if decision.reason == "rate_limited_notice":
            text = RATE_LIMIT_NOTICE.format(name=msg.author_name)
            outcome.reply = await self._send(msg, text, decision, "notice", now, persona.name)
            return self._log(outcome)

        step = time.perf_counter()
        assembled = await self.assemble(msg, persona, relationship, now, reading, revision)
        request, context = assembled.request, assembled.context
        timings["assemble"] = _ms(step)
        outcome.context = context

        step = time.perf_counter()
        mode = self.parts.responder.mode_for(decided.policy.generation_mode)
        generated = await self.parts.responder.generate(request, self._rng, mode)
        timings["generate"] = _ms(step)
        context["mode"] = mode

        step = time.perf_counter()
        text, tone = apply_tone(
            generated.text, assembled.relationship, assembled.mood, msg.author_name, self._rng
        )
        text = self.finish(text, request.emotes)
        context["tone"] = tone
        context["source"] = generated.source
        timings["finish"] = _ms(step)

        step = time.perf_counter()
        outcome.reply = await self._send(msg, text, decision, generated.source, now, persona.name)
        timings["learn"] = _ms(step)
        timings["total"] = _ms(started)
        return self._log(outcome)

    async def record(self, msg: IncomingMessage) -> Recorded:
        """Step 1: log, user, the guild's Markov chain and the relationship, in one
        transaction.  ``fresh`` is False for a message already seen (replayed or duplicated
        events)."""
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

    async def decide(
        self, msg: IncomingMessage, now: datetime, *, revision: int | None = None
    ) -> Decided:
        """Step 2: triggers, channel policy and rate limits.  Its reads run concurrently.

        ``revision``: the config revision read since ``msg`` arrived (read now if None)."""
        since = now - timedelta(hours=self.settings.short_term_hours)
        if revision is None:
            revision = await self.config_revision()
        persona, recent, policy = await asyncio.gather(
            self.persona(revision),
            self.parts.short_term.recent(
                self.agent_id, msg.channel_id, since, _RECENT_FOR_TRIGGERS + 1
            )
            if needs_recent(msg)
            else _ready(list[LoggedMessage]()),
            self.policy(msg.guild_id, msg.channel_id, revision),
        )
        inputs = TriggerInputs(
            message=msg,
            bot_user_id=self.bot_user_id,
            names=(*persona.names, *self.extra_names),
            recent=[m for m in recent if m.message_id != msg.message_id][:_RECENT_FOR_TRIGGERS],
            policy=policy,
            now=now,
            local_hour=self.parts.mood.local(now).hour,
        )
        decision = should_respond(inputs, self.settings, self._rng)
        if not decision.respond:
            return Decided(decision, persona, policy)
        verdict = await self.parts.rate_limiter.check(self.agent_id, msg.author_id)
        if verdict.allowed:
            return Decided(decision, persona, policy)
        self.parts.metrics.throttled.labels(scope=verdict.scope).inc()
        if verdict.notify:
            return Decided(
                Decision(True, "rate_limited_notice", f"{verdict.scope} limit; told once"),
                persona,
                policy,
            )
        return Decided(
            Decision(
                False, "rate_limited", f"{verdict.scope} limit, {verdict.retry_after:.0f}s left"
            ),
            persona,
            policy,
        )

    async def _read_context(
        self,
        msg: IncomingMessage,
        relationship: Relationship | None,
        now: datetime,
        revision: int | None,
    ) -> _Context:
        """The reads of step 3, concurrently: mood, relationship, window, emotes, memory."""
        relationships = self.parts.relationships
        memory = self.parts.memory
        mood, current, transcript, emotes, facts, archived = await asyncio.gather(
            self.mood(now, revision),
            relationships.current(self.agent_id, msg.author_id, now)
            if relationship is None
            else _ready(relationship),
            self.parts.short_term.window(
                self.agent_id, msg.channel_id, now, self.settings.context_token_budget
            ),
            self.emotes(msg.guild_id, revision),
            memory.search_facts(msg.author_id, msg.text, guild_id=msg.guild_id)
            if memory is not None
            else _ready(list[RankedFact]()),
            # Never raises: a reply does not wait on a broken archive search.
            memory.related_archive(
                msg.text, guild_id=msg.guild_id, channel_id=msg.channel_id, user_id=msg.author_id
            )
            if memory is not None
            else _ready(list[ArchiveHit]()),
        )
        in_window = {m.message_id for m in transcript}
        memories = [h.as_note() for h in archived if h.message.message_id not in in_window]
        return _Context(mood, current, transcript, emotes, [r.fact.fact for r in facts], memories)

    async def assemble(
        self,
        msg: IncomingMessage,
        persona: Persona,
        relationship: Relationship | None,
        now: datetime,
        reading: asyncio.Task[_Context] | None = None,
        revision: int | None = None,
    ) -> Assembled:
        """Step 3: everything the generator needs, read now from the database (concurrently;
        ``reading`` is the same reads already started)."""
        if reading is None and revision is None:
            revision = await self.config_revision()
        context_read = await (reading or self._read_context(msg, relationship, now, revision))
        mood, relationship = context_read.mood, context_read.relationship
        transcript, emotes = context_read.transcript, context_read.emotes
        facts, memories = context_read.facts, context_read.memories
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
            user_facts=facts,
            memories=memories,
        )
        context = {
            "persona": persona.name,
            "mood": mood.as_dict() | {"words": mood.describe()},
            "relationship": relationship.as_dict()
            | {"words": relationship.describe(msg.author_name)},
            "transcript_messages": len(transcript),
            "transcript_tokens": sum(message_tokens(m) for m in transcript),
            "emotes": sorted(emotes),
            "user_facts": facts,
            "memories": memories,
        }
        return Assembled(request, context, mood, relationship)

    # -- reads shared by the messages of a burst (see carrier.engine.coalesce), and kept
    # -- while the config revision holds (see carrier.engine.config_cache) ---------------
    #
    # ``revision``: the config revision read since the message being handled arrived; None
    # reads it now.  Results are shared: callers must not change them.

    async def config_revision(self) -> int | None:
        """The database's config revision now (None: unknown, nothing is reused)."""
        return await self._shared.read(("config_revision",), self.store.config_revision.current)

    async def persona(self, revision: int | None = None) -> Persona:
        """The persona as stored now."""
        return await self._kept(
            revision, ("persona",), lambda: load_persona(self.store, self.agent_id)
        )

    async def mood(self, now: datetime, revision: int | None = None) -> Mood:
        """Today's mood (rolled by the first read of a new day)."""
        day = self.parts.mood.day_of(now)
        return await self._kept(
            revision, ("mood", day), lambda: self.parts.mood.current(self.agent_id, now)
        )

    async def emotes(self, guild_id: str | None, revision: int | None = None) -> Mapping[str, str]:
        """The guild's custom emotes by name."""
        return await self._kept(
            revision,
            ("emotes", guild_id),
            lambda: self.store.emotes.for_guild(self.agent_id, guild_id),
        )

    async def policy(
        self, guild_id: str | None, channel_id: str, revision: int | None = None
    ) -> ChannelPolicy:
        """The channel's settings with its guild's (active, reply mode, quiet hours...)."""
        return await self._kept(
            revision,
            ("policy", guild_id, channel_id),
            lambda: self.store.channels.policy(self.agent_id, guild_id, channel_id),
        )

    async def _kept(
        self, revision: int | None, key: tuple[Any, ...], fetch: Callable[[], Awaitable[T]]
    ) -> T:
        if revision is None:
            revision = await self.config_revision()
        return await self._config.read(revision, key, lambda: self._shared.read(key, fetch))

    def finish(self, text: str, emotes: Mapping[str, str]) -> str:
        """Step 5: emotes, mention safety, length."""
        text = render_emotes(clean_text(text), emotes)
        text = neutralize_mentions(text)
        return clamp_length(text, self.settings.max_reply_chars) or "…"

    async def replies_logged(self) -> None:
        """Wait until the replies handed out so far are in the log (not those handed out
        meanwhile: under load that could be forever), so whoever reads the log next sees the
        replies that came before it."""
        pending = list(self._learning.values())
        if pending:
            self.parts.recorder.hurry()
            await asyncio.gather(*pending, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every reply handed out has been logged (and its LLM usage recorded)."""
        while self._learning:
            await self.replies_logged()
        if self.parts.usage is not None:
            await self.parts.usage.flush()

    async def aclose(self) -> None:
        """Finish logging replies and release what the engine holds open (LLM clients, the
        Redis mirror); the store is the caller's."""
        await self.drain()
        for observer in self.parts.observers:
            await observer.aclose()
        await self.parts.responder.aclose()
        if self.parts.short_term.mirror is not None:
            await self.parts.short_term.mirror.aclose()

    def consolidated(self, report: Mapping[str, Any]) -> None:
        """Memory was consolidated (by the scheduled job or an admin): tell the observers."""
        for observer in self.parts.observers:
            try:
                observer.consolidated(self.agent_id, report)
            except Exception:
                log.exception("observer %r failed on consolidation", observer)

    def now(self) -> datetime:
        """The engine's clock (injectable for tests and schedulers)."""
        return self._clock()

    # -- other events ----------------------------------------------------------------------

    async def message_edited(self, channel_id: str, message_id: str, text: str) -> bool:
        """A message was edited on the platform: the log (and archive) follow."""
        changed = await self.store.messages.edit(
            self.agent_id, channel_id, message_id, self._clean(text)
        )
        await self.parts.short_term.invalidate(self.agent_id, channel_id)
        if changed and self.parts.memory is not None:  # an archived message's vector follows
            await self.parts.memory.message_edited(channel_id, message_id)
        return changed

    async def message_deleted(self, channel_id: str, message_id: str) -> bool:
        """A message was deleted on the platform: it leaves the bot's view."""
        changed = await self.store.messages.mark_deleted(self.agent_id, channel_id, message_id)
        await self.parts.short_term.invalidate(self.agent_id, channel_id)
        if self.parts.memory is not None:  # what was learned from it goes too
            await self.parts.memory.retract(message_id)
        return changed

    async def acknowledge(self, reply: Reply, platform_message_id: str) -> None:
        """The client sent ``reply`` and the platform gave it this id.  The rename shares
        the recorder's queue and transactions (after the reply's own record), so under load
        it costs no transaction of its own."""
        logged = LoggedMessage(
            agent_id=self.agent_id,
            channel_id=reply.channel_id,
            message_id=reply.message_id,
            author_id=self.bot_user_id,
            author_name="",
            text=reply.text,
            created_at=self._clock(),
        )
        await asyncio.shield(self.parts.recorder.rename_later(logged, platform_message_id))
        await self.parts.short_term.invalidate(self.agent_id, reply.channel_id)

    def markov_scope(self, msg: IncomingMessage) -> str:
        """The chain a message trains and is answered from: its guild, else its channel."""
        return msg.guild_id or f"channel:{msg.channel_id}"

    # -- helpers -----------------------------------------------------------------------------

    async def _send(
        self,
        msg: IncomingMessage,
        text: str,
        decision: Decision,
        source: str,
        now: datetime,
        persona_name: str,
    ) -> Reply:
        """Step 6: log the reply (and mark the message it answers) before it is sent."""
        reply = Reply(
            text=text,
            channel_id=msg.channel_id,
            reply_to_message_id=msg.message_id,
            reason=decision.reason,
            message_id=f"carrier-{uuid.uuid4().hex}",
            source=source,
        )
        # Logged in the background: the reply goes out without waiting for the write.  The
        # recorder is first-in first-out, so the next message of the channel is recorded
        # (and its decision made) only after this reply is in the log.
        learning = self.parts.recorder.record_later(
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
            answers_reason=decision.reason,
        )
        self._learning[reply.message_id] = learning
        learning.add_done_callback(lambda done: self._learned(reply.message_id, done))
        return reply

    def _learned(self, message_id: str, done: asyncio.Future[Recorded]) -> None:
        self._learning.pop(message_id, None)
        if not done.cancelled() and done.exception() is not None:
            log.error("logging reply %s failed: %s", message_id, done.exception())

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
        metrics = self.parts.metrics
        metrics.decisions.labels(reason=outcome.decision.reason).inc()
        if not outcome.message.author_is_bot:
            metrics.active.saw(outcome.message.author_id)
        if outcome.reply is not None:
            metrics.replies.labels(source=outcome.reply.source.split(":", 1)[0]).inc()
            if "total" in outcome.timings_ms:
                metrics.reply_seconds.observe(outcome.timings_ms["total"] / 1000)
            for observer in self.parts.observers:
                try:
                    observer.replied(outcome)
                except Exception:
                    log.exception("observer %r failed on a reply", observer)
        msg = outcome.message
        log.info(
            "decision channel=%s message=%s author=%s -> %s",
            msg.channel_id,
            msg.message_id,
            msg.author_id,
            outcome.decision,
        )
        return outcome


async def _ready(value: T) -> T:
    """``value``, as an awaitable beside reads that do run."""
    return value


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
