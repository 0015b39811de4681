"""Long-term facts: writing with semantic de-duplication and supersession, and retrieval.

Writing a fact (:meth:`LongTermMemory.remember_in`) compares it with the same user's current
facts of the same embedding model: at or above ``similarity_threshold`` it is the same fact
mentioned again (``last_mentioned`` moves, ``reference_count`` grows); otherwise it is new.
A new fact that contradicts an old one (moved city, changed job) supersedes it and the old
one is kept as history.  Contradiction is judged by an LLM when one is configured
(:meth:`LongTermMemory.judge`: only the user's facts that are similar but not the same, at
most :data:`MAX_JUDGED` of them, and *before* the write transaction, so no transaction waits
on a model); without an LLM, or when it fails, only single-valued statements with the same
predicate ("lives in", "works as", "is called", "is N years old") replace each other.

The comparison runs inside the caller's transaction over the user's own facts, so it is
exact and consolidation stays atomic; the vector index serves retrieval.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.facts import Fact, NewFact
from carrier.store.store import Store

log = logging.getLogger(__name__)

MAX_JUDGED = 3
"""At most this many of the user's facts are shown to the LLM judge per new fact."""

_SINGLE_VALUED = re.compile(
    r"^(lives in|is from|works as|works at|is called|is \d+ years old|'s (?:wife|husband|"
    r"girlfriend|boyfriend|partner) is called)\b"
)


class Embedder(Protocol):
    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class ContradictionJudge(Protocol):
    """Whether a new statement about a person replaces an old one (raises when it cannot
    tell, e.g. no LLM answered)."""

    async def contradicts(self, old: str, new: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's answer for one new fact: ``decided`` False means no judge (or it
    failed), so the offline rule applies; otherwise ``replaces`` is the fact it replaces."""

    decided: bool = False
    replaces: int | None = None


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
        judge_min_similarity: float = 0.5,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._threshold = similarity_threshold
        self._judge = judge
        self._judge_min = judge_min_similarity

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embedder.embed(list(texts))

    async def judge(self, agent_id: str, new: NewFact, vector: np.ndarray) -> Verdict:
        """Ask the judge (outside any transaction) whether ``new`` replaces one of the user's
        current facts: those similar to it but below the same-fact threshold, most similar
        first.  No judge, or a judge that fails: an undecided verdict."""
        if self._judge is None:
            return Verdict()
        async with self._store.engine.connect() as conn:
            existing = await self._store.facts.embeddings_for_user(
                conn, agent_id, new.user_id, self._embedder.model
            )
        scored = sorted(
            ((float(v @ vector), f) for f, v in existing), key=lambda pair: pair[0], reverse=True
        )
        if scored and scored[0][0] >= self._threshold:
            return Verdict(True, None)  # the same fact again: reinforced, nothing replaced
        candidates = [f for score, f in scored if score >= self._judge_min][:MAX_JUDGED]
        try:
            for old in candidates:
                if await self._judge.contradicts(old.fact, new.fact):
                    return Verdict(True, old.id)
        except Exception as exc:  # an LLM outage must not stop memory from working
            log.warning("the contradiction judge failed (%s); using the offline rule", exc)
            return Verdict()
        return Verdict(True, None)

    async def remember_in(
        self,
        conn: AsyncConnection,
        agent_id: str,
        new: NewFact,
        vector: np.ndarray,
        verdict: Verdict | None = None,
    ) -> Remembered:
        """Write ``new`` (with its ``vector``) in the caller's transaction; ``verdict`` is
        what :meth:`judge` said before the transaction (none: the offline rule)."""
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
        current = [f for f, _ in existing]
        if verdict is not None and verdict.decided:
            # The judged fact may have gone since (forgotten, replaced): only a current one.
            replaced = verdict.replaces if any(f.id == verdict.replaces for f in current) else None
        else:
            replaced = self._contradicted(new, current)
        if replaced is not None:
            await facts.supersede_in(conn, replaced, fact_id)
            return Remembered(fact_id, "superseded", replaced)
        return Remembered(fact_id, "new")

    def _contradicted(self, new: NewFact, current: Sequence[Fact]) -> int | None:
        """The offline rule: the same single-valued predicate in the same category."""
        same_category = [f for f in current if f.category == new.category]
        if not same_category:
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
        include_unplaced: bool = False,
        k: int = 8,
        now: datetime,
        query_vectors: Mapping[str, np.ndarray]
        | Callable[[], Awaitable[Mapping[str, np.ndarray]]]
        | None = None,
    ) -> list[RankedFact]:
        """The user's facts ranked for ``query``: similarity first, then how often and how
        recently they were mentioned.

        ``query_vectors`` maps embedding models to the query's vector of each (default: the
        configured model's); each fact is compared with the query vector of its own model,
        so while the facts move to a new model every fact keeps its similarity.  Given as a
        function, it is called only for a user who has facts (most have none: their
        messages then never wait for the embedding)."""
        facts = await self._store.facts.for_user_with_vectors(
            agent_id, user_id, guild_ids=guild_ids, include_unplaced=include_unplaced
        )
        if not facts:
            return []
        if callable(query_vectors):
            query_vectors = await query_vectors()
        if query_vectors is None:
            query_vectors = (
                {self._embedder.model: (await self._embedder.embed([query]))[0]}
                if query.strip()
                else {}
            )
        similarities: dict[int, float] = {}
        for fact, vector in facts:
            query_vector = query_vectors.get(fact.embedding_model or "")
            if vector is not None and query_vector is not None:
                similarities[fact.id] = float(vector @ query_vector)
        ranked = []
        for fact, _vector in facts:
            similarity = similarities.get(fact.id, 0.0)
            days = max(0.0, (now - fact.last_mentioned).total_seconds() / 86_400)
            score = (
                similarity + 0.05 * math.log1p(fact.reference_count) + 0.05 * math.exp(-days / 30)
            )
            ranked.append(RankedFact(fact, score, similarity))
        ranked.sort(key=lambda r: r.score, reverse=True)
        return ranked[:k]
