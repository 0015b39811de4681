"""Searching archived messages: lexical and vector search fused by rank.

Two rankings of the same scope (one agent, one guild; a direct-message conversation is
scoped to its channel and its person):

* lexical: the database's full-text search (SQLite FTS5 / PostgreSQL ``tsvector``, see
  :mod:`carrier.store.archive`), kept current by the database itself on every archive write;
* vector: the archived messages' vectors in the same :class:`VectorIndex` as the facts, under
  a model name of their own (:func:`archive_model`) and with the *negated* archive row id as
  vector id, so they never mix with fact vectors (fact ids are positive; a fact search names
  the fact model) and deleting facts by id never touches them.

The two lists are fused by reciprocal rank fusion (``sum 1 / (60 + rank)``, Cormack et al.
2009): ranks, not scores, so BM25 and cosine never need a common scale, and a message found
by both rises to the top.

Vectors are written by :meth:`ArchiveVectors.backfill` (the scheduled embedding back-fill),
not by consolidation: consolidation stays as fast as before, and a message archived a moment
ago is found lexically until its vector lands.  The back-fill keeps a watermark per model in
``global_state`` (the highest archive id done) and is idempotent and crash-safe: a run killed
between writing vectors and moving the watermark writes the same vectors again.  Only messages
worth finding get a vector (people's, not bots', at least :data:`MIN_CHARS` long), each cut to
:data:`MAX_EMBED_CHARS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from carrier.memory.embeddings.base import Embedder
from carrier.memory.vectors.base import MAX_MODEL_NAME, Hit, VectorIndex, VectorItem
from carrier.store.archive import ArchivedMessage, ArchiveRepository
from carrier.store.messages import LoggedMessage
from carrier.store.state import GlobalStateRepository

log = logging.getLogger(__name__)

RRF_K = 60
ARCHIVE_PREFIX = "archive:"
MIN_CHARS = 12
MAX_EMBED_CHARS = 2000
NOTE_CHARS = 300
VECTOR_MIN_SIMILARITY = 0.25
"""Vector hits less similar than this (cosine) are left out: the nearest of unrelated
messages is still unrelated (all-MiniLM-L6-v2 puts unrelated chat at ~0.0-0.15)."""


def archive_model(model: str) -> str:
    """The vector-index model name under which archived messages of ``model`` are kept."""
    name = ARCHIVE_PREFIX + model
    if len(name) <= MAX_MODEL_NAME:
        return name
    return ARCHIVE_PREFIX + hashlib.sha256(model.encode("utf-8")).hexdigest()


def watermark_key(model: str) -> str:
    return "memory.archive_vectors." + hashlib.sha256(model.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ArchiveHit:
    """An archived message found for a query, with its fused score and the rank it had in
    each list (``None``: not in that list)."""

    archive_id: int
    message: LoggedMessage
    score: float
    lexical_rank: int | None
    vector_rank: int | None

    def as_note(self) -> str:
        """One line for the prompt: who said it, when, and what (cut short)."""
        text = " ".join(self.message.text.split())
        if len(text) > NOTE_CHARS:
            text = text[: NOTE_CHARS - 1] + "…"
        name = " ".join(self.message.author_name.split())[:32] or self.message.author_id
        return f"{name} on {self.message.created_at:%Y-%m-%d}: {text}"


def fuse(rankings: list[list[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of ranked id lists (best first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def usable(vector: np.ndarray) -> bool:
    """A vector with a direction (a text the model makes nothing of gives none)."""
    return bool(np.all(np.isfinite(vector))) and float(np.linalg.norm(vector)) > 0


def _in_scope(
    found: ArchivedMessage, guild_id: str | None, channel_id: str | None, user_id: str | None
) -> bool:
    message = found.message
    return (
        not found.deleted
        and message.guild_id == guild_id
        and (channel_id is None or message.channel_id == channel_id)
        and (user_id is None or message.author_id == user_id)
    )


def worth_embedding(archived: ArchivedMessage) -> bool:
    message = archived.message
    return (
        not archived.deleted
        and not message.is_self
        and not message.author_is_bot
        and len(message.text.strip()) >= MIN_CHARS
    )


class ArchiveVectors:
    """Hybrid search over one agent's archive, and the back-fill of its vectors."""

    def __init__(
        self,
        archive: ArchiveRepository,
        state: GlobalStateRepository,
        index: VectorIndex,
        agent_id: str,
        *,
        min_similarity: float = VECTOR_MIN_SIMILARITY,
    ) -> None:
        self._archive = archive
        self._state = state
        self._index = index
        self._agent_id = agent_id
        self._min_similarity = min_similarity

    async def search(
        self,
        query: str,
        query_vectors: Callable[[], Awaitable[Mapping[str, np.ndarray]]],
        *,
        guild_id: str | None,
        channel_id: str | None = None,
        user_id: str | None = None,
        k: int = 5,
    ) -> list[ArchiveHit]:
        """The ``k`` archived messages of the scope most related to ``query``.

        ``query_vectors()`` gives the query's vector of each embedding model (awaited while
        the full-text search already runs); each model's archive vectors give one ranking
        (during a change of model, old and new).  Messages of another guild never come back;
        with ``guild_id`` None (direct messages) ``channel_id`` is required, so one person's
        conversation never shows in another's.  When the embedder or the vector index fails,
        the words alone answer (logged).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if guild_id is None and channel_id is None:
            raise ValueError("a search outside a guild needs the channel_id of the conversation")
        pool = max(20, 4 * k)
        lexical = self._archive.lexical(
            self._agent_id,
            query,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            limit=pool,
        )

        async def by_vectors() -> list[list[Hit] | BaseException]:
            try:
                vectors = await query_vectors()
            except Exception as exc:
                return [exc]
            searches = [
                self._index.search(
                    self._agent_id,
                    vector,
                    pool,
                    model=archive_model(model),
                    user_id=user_id,
                    guild_ids=[guild_id],
                )
                for model, vector in vectors.items()
                if usable(vector)
            ]
            return await asyncio.gather(*searches, return_exceptions=True)

        lexical_ids, vector_results = await asyncio.gather(lexical, by_vectors())
        vector_rankings = []
        for result in vector_results:
            if isinstance(result, BaseException):
                # The embedder or the vector index is down: the words alone answer.
                if isinstance(result, asyncio.CancelledError):
                    raise result
                log.warning("archive vector search failed, using words only: %s", result)
                continue
            vector_rankings.append(
                [-hit.id for hit in result if hit.id < 0 and hit.score >= self._min_similarity]
            )
        scores = fuse([lexical_ids, *vector_rankings])
        if not scores:
            return []
        lexical_rank = {item: rank for rank, item in enumerate(lexical_ids, 1)}
        vector_rank: dict[int, int] = {}
        for ranking in vector_rankings:
            for rank, item in enumerate(ranking, 1):
                vector_rank[item] = min(rank, vector_rank.get(item, rank))
        ordered = sorted(scores, key=lambda item: (-scores[item], -item))
        hits: list[ArchiveHit] = []
        # Rows are read for the best few only; more when some turn out not to qualify
        # (deleted since, or outside the scope on a vector of a stale filter).
        for start in range(0, len(ordered), 2 * k):
            wanted = ordered[start : start + 2 * k]
            rows = await self._archive.by_ids(self._agent_id, wanted)
            for archive_id in wanted:
                found = rows.get(archive_id)
                if found is None or not _in_scope(found, guild_id, channel_id, user_id):
                    continue
                hits.append(
                    ArchiveHit(
                        archive_id,
                        found.message,
                        scores[archive_id],
                        lexical_rank.get(archive_id),
                        vector_rank.get(archive_id),
                    )
                )
            if len(hits) >= k:
                break
        return hits[:k]

    # --- the back-fill ---------------------------------------------------------------------

    async def watermark(self, model: str) -> int:
        value = await self._state.get(self._agent_id, watermark_key(model))
        return int(value) if value else 0

    async def reset(self, model: str) -> None:
        """Start the back-fill of ``model`` from the beginning (after the index lost vectors;
        writing a vector again is harmless)."""
        await self._state.delete(self._agent_id, watermark_key(model))

    async def pending(self, model: str) -> int:
        """Archived messages not yet looked at by the back-fill of ``model``."""
        return await self._archive.count_after(self._agent_id, await self.watermark(model))

    async def backfill(
        self,
        embedder: Embedder,
        *,
        batch_size: int = 256,
        limit: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Embed archived messages that have no vector of ``embedder.model`` yet (at most
        ``limit`` rows looked at, when given); returns how many vectors were written."""
        model = embedder.model
        after = await self.watermark(model)
        total = await self._archive.count_after(self._agent_id, after)
        if limit is not None:
            total = min(total, limit)
        seen = written = 0
        while seen < total:
            rows = await self._archive.after(self._agent_id, after, min(batch_size, total - seen))
            if not rows:
                break
            chosen = [row for row in rows if worth_embedding(row)]
            items = []
            if chosen:
                vectors = await embedder.embed([r.message.text[:MAX_EMBED_CHARS] for r in chosen])
                items = [
                    VectorItem(
                        -row.id,
                        self._agent_id,
                        row.message.author_id,
                        row.message.guild_id,
                        archive_model(model),
                        vector,
                    )
                    for row, vector in zip(chosen, vectors, strict=True)
                    if usable(vector)
                ]
                await self._index.upsert(items)
            after = rows[-1].id
            await self._state.set(self._agent_id, watermark_key(model), str(after))
            seen += len(rows)
            written += len(items)
            if on_progress is not None:
                on_progress(seen, total)
        return written

    async def reindex(self, embedder: Embedder, archive_id: int) -> None:
        """An archived message was edited: its vector follows its new text (or goes, when
        it is no longer worth one).  Messages the back-fill has not reached are left to it."""
        model = embedder.model
        if archive_id > await self.watermark(model):
            return
        found = (await self._archive.by_ids(self._agent_id, [archive_id])).get(archive_id)
        if found is None or not worth_embedding(found):
            await self._index.delete([-archive_id], model=archive_model(model))
            return
        vector = (await embedder.embed([found.message.text[:MAX_EMBED_CHARS]]))[0]
        if not usable(vector):
            await self._index.delete([-archive_id], model=archive_model(model))
            return
        message = found.message
        await self._index.upsert(
            [
                VectorItem(
                    -archive_id,
                    self._agent_id,
                    message.author_id,
                    message.guild_id,
                    archive_model(model),
                    vector,
                )
            ]
        )

    async def forget(self, archive_ids: list[int]) -> None:
        """Drop the vectors of these archived messages (every model)."""
        if archive_ids:
            await self._index.delete([-i for i in archive_ids])
