"""Long-term facts: writing with semantic de-duplication and supersession, and retrieval.

Writing a fact (:meth:`LongTermMemory.remember_in`) compares it with the same user's current
facts of the same embedding model: at or above ``similarity_threshold`` it is the same fact
mentioned again (``last_mentioned`` moves, ``reference_count`` grows); otherwise it is new.
A new fact that contradicts an old one (moved city, changed job) supersedes it and the old
one is kept as history.  Contradiction is judged by an LLM when one is configured, else only
for single-valued statements with the same predicate ("lives in", "works as", "is called",
"is N years old").

The comparison runs inside the caller's transaction over the user's own facts, so it is
exact and consolidation stays atomic; the vector index serves retrieval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.facts import Fact, NewFact
from carrier.store.store import Store

_SINGLE_VALUED = re.compile(
    r"^(lives in|is from|works as|works at|is called|is \d+ years old|'s (?:wife|husband|"
    r"girlfriend|boyfriend|partner) is called)\b"
)


class Embedder(Protocol):
    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class ContradictionJudge(Protocol):
    async def contradicts(self, old: str, new: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Remembered:
    fact_id: int
    outcome: str
    """``new``, ``reinforced`` or ``superseded`` (new, replacing ``replaced``)."""
    replaced: int | None = None


@dataclass(frozen=True, slots=True)
class RankedFact:
    fact: Fact
    score: float
    similarity: float


def predicate(fact: str) -> str | None:
    match = _SINGLE_VALUED.match(fact.strip().lower())
    if match is None:
        return None
    return re.sub(r"\d+", "N", match.group(1))


class LongTermMemory:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        similarity_threshold: float = 0.85,
        judge: ContradictionJudge | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._threshold = similarity_threshold
        self._judge = judge

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embedder.embed(list(texts))

    async def remember_in(
        self, conn: AsyncConnection, agent_id: str, new: NewFact, vector: np.ndarray
    ) -> Remembered:
        """Write ``new`` (with its ``vector``) in the caller's transaction."""
        facts = self._store.facts
        model = self._embedder.model
        existing = await facts.embeddings_for_user(conn, agent_id, new.user_id, model)
        if existing:
            matrix = np.stack([v for _, v in existing])
            scores = matrix @ vector
            best = int(np.argmax(scores))
            if float(scores[best]) >= self._threshold:
                await facts.reinforce_in(conn, existing[best][0].id, new.mentioned_at)
                return Remembered(existing[best][0].id, "reinforced")
        stored = NewFact(
            user_id=new.user_id,
            fact=new.fact,
            category=new.category,
            mentioned_at=new.mentioned_at,
            guild_id=new.guild_id,
            source_message_id=new.source_message_id,
            embedding=vector,
            embedding_model=model,
        )
        fact_id = await facts.add_in(conn, agent_id, stored)
        replaced = await self._contradicted(new, [f for f, _ in existing])
        if replaced is not None:
            await facts.supersede_in(conn, replaced, fact_id)
            return Remembered(fact_id, "superseded", replaced)
        return Remembered(fact_id, "new")

    async def _contradicted(self, new: NewFact, current: Sequence[Fact]) -> int | None:
        same_category = [f for f in current if f.category == new.category]
        if not same_category:
            return None
        if self._judge is not None:
            for old in same_category:
                if await self._judge.contradicts(old.fact, new.fact):
                    return old.id
            return None
        wanted = predicate(new.fact)
        if wanted is None:
            return None
        for old in sorted(same_category, key=lambda f: f.last_mentioned, reverse=True):
            if predicate(old.fact) == wanted:
                return old.id
        return None

    async def facts_for(
        self,
        agent_id: str,
        user_id: str,
        query: str,
        *,
        guild_ids: Sequence[str | None] | None = None,
        k: int = 8,
        now: datetime,
    ) -> list[RankedFact]:
        """The user's facts ranked for ``query``: similarity first, then how often and how
        recently they were mentioned."""
        facts = await self._store.facts.for_user(agent_id, user_id, guild_ids=guild_ids)
        if not facts:
            return []
        async with self._store.engine.connect() as conn:
            vectors = {
                f.id: v
                for f, v in await self._store.facts.embeddings_for_user(
                    conn, agent_id, user_id, self._embedder.model
                )
            }
        query_vector = (await self._embedder.embed([query]))[0] if query.strip() else None
        ranked = []
        for fact in facts:
            vector = vectors.get(fact.id)
            similarity = (
                float(vector @ query_vector)
                if vector is not None and query_vector is not None
                else 0.0
            )
            days = max(0.0, (now - fact.last_mentioned).total_seconds() / 86_400)
            score = (
                similarity + 0.05 * math.log1p(fact.reference_count) + 0.05 * math.exp(-days / 30)
            )
            ranked.append(RankedFact(fact, score, similarity))
        ranked.sort(key=lambda r: r.score, reverse=True)
        return ranked[:k]
