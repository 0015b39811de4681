"""Step 1 (record) and step 6 (learn) of the pipeline, with group commit.

Recording a human message writes, in one transaction: the log row, the user and their
nickname history, the guild's Markov chain, and the user's relationship metrics.  Logging
the bot's reply marks the message it answers as answered in the same way.  Messages that
arrive while a transaction is being written wait and share the next one, so under load (many
channels at once) a transaction is paid once per batch instead of once per message, and
SQLite's single writer is never fought over.  Each caller still gets its own answer, after
its batch has committed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from carrier.engine.relationships import Observation, Relationship, RelationshipService
from carrier.generation.markov import MarkovGenerator
from carrier.memory.redis_mirror import RedisMirror
from carrier.store.group_commit import GroupCommit
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.store.users import Sighting

_MENTION_MARKUP = re.compile(r"<@[!&]?\d+>|@(everyone|here)\b", re.IGNORECASE)


REPLY_LINGER_SECONDS = 0.02
"""How long a record nobody waits for (the bot's reply, logged in the background) may wait
for the next message's record, to share its transaction.  The next message of the channel
is recorded only after the reply (the queue is first-in first-out), so its decision always
sees it."""


@dataclass(frozen=True, slots=True)
class Recorded:
    fresh: bool
    """False when the message had already been recorded (a replayed or duplicated event)."""
    relationship: Relationship | None = None
    """The author's relationship after this message (human messages with text only)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    message: LoggedMessage
    scope: str | None
    answers_reason: str | None
    rename_to: str | None = None
    """Not a record: give the logged ``message`` this platform id."""


class Recorder:
    def __init__(
        self,
        store: Store,
        markov: MarkovGenerator,
        relationships: RelationshipService,
        *,
        mirror: RedisMirror | None = None,
        max_batch: int = 256,
        linger: float = REPLY_LINGER_SECONDS,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._markov = markov
        self._relationships = relationships
        self._commit: GroupCommit[_Pending, Recorded] = GroupCommit(
            self._write, max_batch=max_batch, linger=linger, name="carrier-recorder"
        )

    async def record(
        self, message: LoggedMessage, markov_scope: str | None, *, answers_reason: str | None = None
    ) -> Recorded:
        """Log ``message``; train ``markov_scope``'s chain with it when given.

        Human messages with text also update the author's relationship.  For the bot's own
        replies, ``answers_reason`` marks the message replied to as answered, with that
        reason.  Nothing is written twice for a message already recorded.
        """
        return await self._commit.submit(_Pending(message, markov_scope, answers_reason))

    def record_later(
        self, message: LoggedMessage, markov_scope: str | None, *, answers_reason: str | None = None
    ) -> asyncio.Future[Recorded]:
        """:meth:`record` without waiting: queued now, in order with every later record."""
        return self._commit.enqueue(_Pending(message, markov_scope, answers_reason))

    def hurry(self) -> None:
        """Write the records that linger now (see :data:`REPLY_LINGER_SECONDS`)."""
        self._commit.hurry()

    def rename_later(self, message: LoggedMessage, new_message_id: str) -> asyncio.Future[Recorded]:
        """Give a logged message (the bot's reply, logged before it was sent) its platform
        id, in the same queue and transactions as the records: after every record queued
        before it, without a transaction of its own."""
        return self._commit.enqueue(_Pending(message, None, None, rename_to=new_message_id))

    async def _write(self, batch: Sequence[_Pending]) -> list[Recorded]:
        store = self._store
        agent_id = batch[0].message.agent_id
        renames = [
            (p.message.channel_id, p.message.message_id, p.rename_to)
            for p in batch
            if p.rename_to is not None
        ]
        records = [p for p in batch if p.rename_to is None]
        # Sentiment is CPU work: done before the transaction, not while holding the lock.
        sentiments = {
            index: self._relationships.sentiment(p.message.text)
            for index, p in enumerate(batch)
            if p.rename_to is None
            and not p.message.is_self
            and not p.message.author_is_bot
            and p.message.text.strip()
        }
        # Small statements, bounded by the batch size: inline on SQLite (Database.begin).
        async with store.engine.begin(small=True) as conn:
            new_keys = await store.messages.insert_many_in(conn, [p.message for p in records])
            claimed: set[tuple[str, str]] = set()
            fresh: list[bool] = []
            sightings: list[Sighting] = []
            observations: list[Observation] = []
            observed_at: dict[int, int] = {}
            learn: dict[str, list[str]] = {}
            answered: list[tuple[str, str, str]] = []
            for index, pending in enumerate(batch):
                if pending.rename_to is not None:
                    # Renamed after this batch's inserts (a reply may be logged in it).
                    fresh.append(True)
                    continue
                message = pending.message
                key = (message.channel_id, message.message_id)
                is_new = key in new_keys and key not in claimed
                fresh.append(is_new)
                if not is_new:
                    continue
                claimed.add(key)
                if message.is_self:
                    if pending.answers_reason and message.reply_to_message_id:
                        answered.append(
                            (
                                message.channel_id,
                                message.reply_to_message_id,
                                pending.answers_reason,
                            )
                        )
                    continue
                sightings.append(
                    Sighting(
                        message.author_id,
                        message.author_name,
                        message.author_is_bot,
                        message.created_at,
                    )
                )
                if message.author_is_bot:
                    continue
                if message.text.strip():
                    observed_at[index] = len(observations)
                    observations.append(
                        Observation(
                            message.author_id,
                            message.text,
                            message.created_at,
                            sentiments.get(index),
                        )
                    )
                if pending.scope is not None:
                    learnable = _MENTION_MARKUP.sub("", message.text).strip()
                    if learnable:
                        learn.setdefault(pending.scope, []).append(learnable)
            if sightings:
                await store.users.touch_many_in(conn, agent_id, sightings)
            after = await self._relationships.observe_many_in(conn, agent_id, observations)
            for scope, texts in learn.items():
                await self._markov.learn_texts_in(conn, agent_id, scope, texts)
            await store.messages.mark_answered_in(conn, agent_id, answered)
            await store.messages.rename_many_in(conn, agent_id, renames)
        if self._mirror is not None:
            await self._mirror.add(
                [
                    p.message
                    for p, is_new in zip(batch, fresh, strict=True)
                    if is_new and p.rename_to is None
                ]
            )
        return [
            Recorded(is_new, after[observed_at[i]] if i in observed_at else None)
            for i, is_new in enumerate(fresh)
        ]
