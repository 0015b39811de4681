"""Step 1 of the pipeline, with group commit.

Recording a message writes the log row, the user and their nickname history, and the guild's
Markov chain in one transaction.  Messages that arrive while a transaction is being written
wait and share the next one, so under load (many channels at once) the cost of a transaction
is paid once per batch instead of once per message, and SQLite's single writer is never
fought over.  Each caller still gets its own answer, after its batch has committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from carrier.generation.markov import MarkovGenerator
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.store.users import Sighting

log = logging.getLogger(__name__)

_MENTION_MARKUP = re.compile(r"<@[!&]?\d+>|@(everyone|here)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Pending:
    message: LoggedMessage
    scope: str | None
    """The Markov chain to train, or None (bots, the bot itself)."""
    done: asyncio.Future[bool]


class Recorder:
    def __init__(self, store: Store, markov: MarkovGenerator, *, max_batch: int = 256) -> None:
        self._store = store
        self._markov = markov
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, message: LoggedMessage, markov_scope: str | None) -> bool:
        """Log ``message``; train ``markov_scope``'s chain with it when given.

        Returns False when the message was already recorded (a replayed or duplicated
        event): then nothing is written again.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(message, markov_scope, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="carrier-recorder")
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = (self._queue[: self._max_batch], self._queue[self._max_batch :])
            try:
                fresh = await self._write([p.message for p in batch], [p.scope for p in batch])
            except Exception as exc:  # every waiter gets the failure; the writer goes on
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                continue
            for pending, is_new in zip(batch, fresh, strict=True):
                if not pending.done.done():
                    pending.done.set_result(is_new)

    async def _write(
        self, messages: Sequence[LoggedMessage], scopes: Sequence[str | None]
    ) -> list[bool]:
        store = self._store
        async with store.engine.begin() as conn:
            new_keys = await store.messages.insert_many_in(conn, messages)
            claimed: set[tuple[str, str]] = set()
            fresh: list[bool] = []
            sightings: list[Sighting] = []
            learn: dict[str, list[str]] = {}
            for message, scope in zip(messages, scopes, strict=True):
                key = (message.channel_id, message.message_id)
                is_new = key in new_keys and key not in claimed
                fresh.append(is_new)
                if not is_new:
                    continue
                claimed.add(key)
                if message.is_self:
                    continue
                sightings.append(
                    Sighting(
                        message.author_id,
                        message.author_name,
                        message.author_is_bot,
                        message.created_at,
                    )
                )
                if scope is not None and not message.author_is_bot:
                    learnable = _MENTION_MARKUP.sub("", message.text).strip()
                    if learnable:
                        learn.setdefault(scope, []).append(learnable)
            if sightings:
                await store.users.touch_many_in(conn, messages[0].agent_id, sightings)
            for scope, texts in learn.items():
                await self._markov.learn_texts_in(conn, messages[0].agent_id, scope, texts)
        return fresh
