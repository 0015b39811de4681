"""The Python API for memory: what the clients, the CLI and outside scripts call.

    store = await prepare_store(settings)         # carrier.bootstrap
    memory = await open_memory(settings, store)
    await memory.add_messages(logged_messages)    # carrier.store.messages.LoggedMessage
    await memory.add_fact("user-1", "likes sushi", category="likes")
    for ranked in await memory.search_facts("user-1", "what food do they like?"):
        print(ranked.fact.fact, ranked.score)
    for hit in await memory.search_archive("that fishing trip", guild_id="g1", k=5):
        print(hit.message.author_name, hit.message.text, hit.score)
    report = await memory.consolidate()
    await memory.index_archive()                  # vectors of newly archived messages
    await memory.aclose(); await store.close()

Every method reads and writes the database at the moment it is called.  Facts are written
with their vector of the configured embedding model, in the database (the source of truth)
and in the vector index (which serves similarity search).  A database that cannot be used
raises :class:`~carrier.store.database.DatabaseError` (one line, no password); bad input
raises :class:`ValueError` saying what is wrong; a vector index that cannot be written is
logged and caught up with later (the database keeps the facts).

A running bot starts :meth:`Memory.start_background_maintenance` once: it moves facts and
archive vectors to a newly configured embedding model (search goes on meanwhile, see
:mod:`carrier.memory.maintenance`) and then embeds newly archived messages every few minutes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.exc import DBAPIError

from carrier.memory.archive import ArchiveHit, ArchiveVectors, archive_model
from carrier.memory.consolidation import ConsolidationReport, Consolidator, FactExtractor
from carrier.memory.embeddings.base import Embedder, EmbeddingError
from carrier.memory.long_term import ContradictionJudge, LongTermMemory, RankedFact, Remembered
from carrier.memory.people import Forgotten, WhatIKnow, forget_user_in, what_i_know
from carrier.memory.redis_mirror import RedisMirror
from carrier.memory.vectors.base import VectorIndex, VectorIndexUnavailable, VectorItem
from carrier.memory.vectors.sqlite_index import SQLiteVectorIndex
from carrier.store.archive import ArchiveRepository, search_terms
from carrier.store.database import explain
from carrier.store.facts import Fact, NewFact
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
MAX_FACT_CHARS = 2000
TOO_LONG = f"a fact is at most {MAX_FACT_CHARS:,} characters; shorten it"
QUERY_CACHE = 128
ARCHIVE_CANDIDATES = 200


@dataclass(frozen=True, slots=True)
class SimilarFact:
    fact: Fact
    score: float


class Memory:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        index: VectorIndex,
        *,
        agent_id: str,
        extractor: FactExtractor,
        similarity_threshold: float = 0.85,
        share_across_guilds: bool = False,
        judge: ContradictionJudge | None = None,
        judge_min_similarity: float = 0.5,
        archive_results: int = 3,
        previous_embedder: Embedder | None = None,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        mirror: RedisMirror | None = None,
    ) -> None:
        """``previous_embedder`` is the model the stored vectors were made with, when the
        configured ``embedder`` is a new one: queries are embedded with both until
        :meth:`finish_model_change` (see :mod:`carrier.memory.maintenance`)."""
        self.store = store
        self.embedder = embedder
        self.index = index
        self.agent_id = agent_id
        self.extractor = extractor
        self.long_term = LongTermMemory(
            store,
            embedder,
            similarity_threshold=similarity_threshold,
            judge=judge,
            judge_min_similarity=judge_min_similarity,
        )
        self._consolidator = Consolidator(store, self.long_term, extractor)
        self._share = share_across_guilds
        self.archive_results = archive_results
        # Related archived messages are a hint for the prompt, on the reply path: on SQLite
        # they re-rank fewer candidates than facts do (bench/bench_archive.py).
        self._archive_index = (
            index.with_candidates(ARCHIVE_CANDIDATES, oversample=5)
            if isinstance(index, SQLiteVectorIndex)
            else index
        )
        self.archive = ArchiveVectors(
            ArchiveRepository(store.engine), store.state, self._archive_index, agent_id
        )
        self.previous_embedder = previous_embedder
        self.mirror: RedisMirror | None = mirror
        """The short-term mirror in Redis, when configured (a "forget me" clears it)."""
        self._queries: OrderedDict[tuple[str, str], asyncio.Task[np.ndarray]] = OrderedDict()
        self._maintenance: asyncio.Task[None] | None = None
        self._closers = list(closers)
        self._index_stale = False
        self.model_changed = asyncio.Event()
        """Set once a change of embedding model is complete (:meth:`finish_model_change`)."""

    # -- query vectors ---------------------------------------------------------------------

    def search_embedders(self) -> list[Embedder]:
        """The models queries are embedded with: the configured one, and while the stored
        vectors move to it, the one they were made with."""
        if self.previous_embedder is None or self.previous_embedder.model == self.embedder.model:
            return [self.embedder]
        return [self.embedder, self.previous_embedder]

    async def query_vectors(self, text: str) -> dict[str, np.ndarray]:
        """``text``'s vector of each search model.  The same text asked for at once (the
        facts and the archive of one message) is embedded once; recent ones are cached."""
        if not text.strip():
            return {}
        tasks = []
        for embedder in self.search_embedders():
            key = (embedder.model, text)
            task = self._queries.get(key)
            if task is None or (task.done() and (task.cancelled() or task.exception())):
                task = asyncio.ensure_future(_embed_one(embedder, text))
                self._queries[key] = task
                while len(self._queries) > QUERY_CACHE:
                    self._queries.popitem(last=False)
            else:
                self._queries.move_to_end(key)
            tasks.append((embedder.model, task))
        return {model: await asyncio.shield(task) for model, task in tasks}

    def prefetch_query(self, text: str) -> None:
        """Start embedding ``text`` now, for the searches a reply to it will make (they
        share the vector, see :meth:`query_vectors`): the model runs while the message is
        being recorded instead of after.  A failure is left to those searches."""
        if text.strip():
            asyncio.ensure_future(self.query_vectors(text)).add_done_callback(_settle)

    # -- writing ---------------------------------------------------------------------------

    async def add_messages(self, messages: Sequence[LoggedMessage]) -> int:
        """Log messages into the short-term log (replays are skipped); returns how many
        were new.  NUL characters are dropped (PostgreSQL cannot store them)."""
        messages = [
            replace(
                m, text=m.text.replace("\x00", ""), author_name=m.author_name.replace("\x00", "")
            )
            if "\x00" in m.text or "\x00" in m.author_name
            else m
            for m in messages
        ]
        async with self._database(), self.store.engine.begin() as conn:
            return len(await self.store.messages.insert_many_in(conn, messages))

    async def add_fact(
        self,
        user_id: str,
        fact: str,
        category: str = "general",
        *,
        guild_id: str | None = None,
        at: datetime | None = None,
        source_message_id: str | None = None,
    ) -> Remembered:
        """Write one fact with de-duplication (a similar fact is reinforced instead).

        The database holds the fact when this returns; when the vector index cannot take its
        vector now, a warning is logged and the background maintenance indexes it later."""
        text = " ".join(fact.split())
        if not text:
            raise ValueError("a fact needs some text")
        if len(text) > MAX_FACT_CHARS:
            raise ValueError(TOO_LONG)
        vector = (await self.embedder.embed([text]))[0]
        new = NewFact(
            user_id=user_id,
            fact=text,
            category=category or "general",
            mentioned_at=at or datetime.now(UTC),
            guild_id=guild_id,
            source_message_id=source_message_id,
        )
        async with self._database():
            verdict = await self.long_term.judge(self.agent_id, new, vector)
            async with self.store.engine.begin() as conn:
                result = await self.long_term.remember_in(conn, self.agent_id, new, vector, verdict)
        if result.outcome != "reinforced":
            item = VectorItem(
                result.fact_id, self.agent_id, user_id, guild_id, self.embedder.model, vector
            )
            async with self._index_may_fail("a new fact"):
                await self.index.upsert([item])
        return result

    async def delete_facts(self, ids: Sequence[int]) -> int:
        """Delete facts; the database change stands even when the vector index cannot be
        reached (it is rebuilt later, see :meth:`rebuild_index`)."""
        async with self._database():
            deleted = await self.store.facts.delete_ids(self.agent_id, ids)
        async with self._index_may_fail("deleted facts"):
            await self.index.delete(ids)
        return deleted

    # -- reading ---------------------------------------------------------------------------

    async def search_facts(
        self, user_id: str, query: str, *, guild_id: str | None = None, k: int = 8
    ) -> list[RankedFact]:
        """This user's facts for the prompt, ranked by similarity, references and recency;
        learned in ``guild_id`` only (``None``: in direct messages) unless sharing across
        guilds is configured; facts learned nowhere in particular (added by hand, with no
        guild and no source message) are used everywhere.  When the query cannot be embedded
        (an embeddings endpoint down), by references and recency alone (logged), so a reply
        never fails for it."""
        guilds: list[str | None] | None = None if self._share else [guild_id]

        async def vectors() -> Mapping[str, np.ndarray]:
            # Asked for only when the user has facts (most have none).
            try:
                return await self.query_vectors(query)
            except EmbeddingError as exc:
                log.warning("cannot embed the query, ranking facts without similarity: %s", exc)
                return {}

        async with self._database():
            return await self.long_term.facts_for(
                self.agent_id,
                user_id,
                query,
                guild_ids=guilds,
                include_unplaced=True,
                k=k,
                now=datetime.now(UTC),
                query_vectors=vectors,
            )

    async def search_archive(
        self,
        query: str,
        *,
        guild_id: str | None,
        channel_id: str | None = None,
        user_id: str | None = None,
        k: int | None = None,
    ) -> list[ArchiveHit]:
        """Archived messages of ``guild_id`` related to ``query``, best first: full-text and
        vector search fused by rank (:mod:`carrier.memory.archive`).  ``channel_id`` and
        ``user_id`` narrow the search; outside a guild (``guild_id`` None) ``channel_id`` is
        required.  ``k`` defaults to ``memory.archive_results``."""
        async with self._database():
            return await self.archive.search(
                query,
                lambda: self.query_vectors(query),
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                k=k if k is not None else max(1, self.archive_results),
            )

    async def related_archive(
        self,
        query: str,
        *,
        guild_id: str | None,
        channel_id: str,
        user_id: str,
        k: int | None = None,
    ) -> list[ArchiveHit]:
        """For the prompt: :meth:`search_archive` of the guild (of the conversation in direct
        messages), or nothing when it fails - a reply never waits on a broken search."""
        if k is None:
            k = self.archive_results
        if k < 1 or not search_terms(query):
            return []  # "hi", "lol", emoji: nothing to look for
        try:
            if guild_id is None:
                return await self.search_archive(
                    query, guild_id=None, channel_id=channel_id, user_id=user_id, k=k
                )
            return await self.search_archive(query, guild_id=guild_id, k=k)
        except Exception as exc:
            log.warning("archive search failed, replying without it: %s", exc)
            return []

    async def similar(
        self, query: str, k: int = 10, *, user_id: str | None = None
    ) -> list[SimilarFact]:
        """Facts most similar to ``query`` across the agent (or one user), via the index."""
        vector = (await self.embedder.embed([query]))[0]
        hits = await self.index.search(
            self.agent_id, vector, k, model=self.embedder.model, user_id=user_id
        )
        out = []
        for hit in hits:
            fact = await self.store.facts.get(hit.id)
            if fact is not None and fact.superseded_by is None:
                out.append(SimilarFact(fact, hit.score))
        return out

    async def what_i_know(self, user_id: str) -> WhatIKnow:
        return await what_i_know(self.store, self.agent_id, user_id)

    # -- people's control ------------------------------------------------------------------

    async def forget(self, user_id: str) -> Forgotten:
        """ "Forget me" (:func:`carrier.memory.people.forget_user`, one transaction), then
        the user's vectors and their short-term mirror in Redis.  An unreachable vector
        index or Redis never undoes the database change: both are cleared later."""
        async with self._database(), self.store.engine.begin() as conn:
            rows = await forget_user_in(conn, self.store, self.agent_id, user_id)
        async with self._index_may_fail("a forgotten user's vectors"):
            await self.index.delete(rows.fact_ids)
            await self.archive.forget(rows.archive_ids)
        if self.mirror is not None:
            await self.mirror.forget_user(self.agent_id, user_id, rows.channel_ids)
        return rows.forgotten

    async def message_edited(self, channel_id: str, message_id: str) -> None:
        """A message was edited (the log and archive already hold the new text): an archived
        message's vector follows its text."""
        archive_id = await ArchiveRepository(self.store.engine).id_of(
            self.agent_id, channel_id, message_id
        )
        if archive_id is not None:
            for embedder in self.search_embedders():
                await self.archive.reindex(embedder, archive_id)

    async def retract(self, message_id: str) -> int:
        """A message was deleted: the facts learned from it go (the vector index follows,
        or is caught up with later when unreachable)."""
        async with self._database():
            ids = await self.store.facts.ids_from_message(self.agent_id, message_id)
            retracted = await self.store.facts.delete_ids(self.agent_id, ids)
        async with self._index_may_fail("retracted facts"):
            await self.index.delete(ids)
        return retracted

    # -- consolidation and maintenance ---------------------------------------------------------

    async def consolidate(self, now: datetime | None = None) -> ConsolidationReport:
        """Move the log into facts and the archive (crash-safe, idempotent), then bring the
        vector index up to date with the facts it wrote."""
        async with self._database():
            report = await self._consolidator.consolidate(self.agent_id, now or datetime.now(UTC))
            async with self._index_may_fail("consolidated facts"):
                await self.sync_index()
        return report

    async def index_archive(
        self,
        *,
        limit: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Embed archived messages that have no vector of the configured model yet (the
        embedding back-fill; idempotent).  Returns how many vectors were written."""
        async with self._database():
            return await self.archive.backfill(self.embedder, limit=limit, on_progress=on_progress)

    @property
    def index_stale(self) -> bool:
        """The vector index missed writes while it was unavailable (maintenance catches up)."""
        return self._index_stale

    async def rebuild_index(self) -> int:
        """Write every current fact's and archived message's vector into the index again
        (after it was unavailable, or lost); idempotent.  Returns the vectors written."""
        self._index_stale = False
        try:
            facts = await self.sync_index()
            await self.archive.reset(self.embedder.model)
            return facts + await self.index_archive()
        except BaseException:
            self._index_stale = True
            raise

    @asynccontextmanager
    async def _database(self) -> AsyncIterator[None]:
        """Driver and connection errors become one clear DatabaseError (no password)."""
        try:
            yield
        except (DBAPIError, OSError) as exc:
            raise explain(exc, self.store.engine.url.render_as_string(hide_password=False)) from exc

    @asynccontextmanager
    async def _index_may_fail(self, what: str) -> AsyncIterator[None]:
        """The database holds the truth: a vector index that cannot be written now is
        reported and caught up with later, never a reason to fail the write."""
        try:
            yield
        except VectorIndexUnavailable as exc:
            self._index_stale = True
            log.warning("vector index unavailable, %s will be indexed later: %s", what, exc)

    async def start_background_maintenance(self, *, interval: float = 600.0) -> asyncio.Task[None]:
        """Start (once) the background task of a running bot: a change of embedding model
        (re-embedding with progress logged, search working meanwhile, then the switch) and
        every ``interval`` seconds the archive's embedding back-fill.  :meth:`aclose` stops
        it."""
        from carrier.memory.maintenance import run_maintenance

        if self._maintenance is None or self._maintenance.done():
            self._maintenance = asyncio.create_task(
                run_maintenance(self, interval=interval), name="carrier-memory-maintenance"
            )
        return self._maintenance

    async def needs_reembedding(self) -> int:
        """How many current facts have no vector of the configured model."""
        return sum(
            1
            for f in await self.store.facts.listing(self.agent_id, limit=10_000_000)
            if f.embedding_model != self.embedder.model
        )

    async def finish_model_change(self) -> None:
        """Every fact and archived message has a vector of the configured model: stop
        embedding queries with the previous model and drop its vectors from the index."""
        previous = self.previous_embedder
        if previous is None or previous.model == self.embedder.model:
            return
        self.previous_embedder = None
        for key in [key for key in self._queries if key[0] == previous.model]:
            self._queries.pop(key, None)
        await self.index.clear(self.agent_id, model=previous.model)
        await self.index.clear(self.agent_id, model=archive_model(previous.model))
        await previous.aclose()
        log.info("memory now searches with %s only", self.embedder.model)
        self.model_changed.set()

    async def sync_index(self, *, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Put every current fact that has a vector of the configured model into the index
        (idempotent: an upsert by fact id).  Returns how many were written."""
        written = 0
        batch: list[VectorItem] = []
        async for fact, vector in self._facts_with_vectors():
            batch.append(
                VectorItem(
                    fact.id, self.agent_id, fact.user_id, fact.guild_id, self.embedder.model, vector
                )
            )
            if len(batch) >= 500:
                await self.index.upsert(batch)
                written += len(batch)
                batch = []
                if on_progress is not None:
                    on_progress(written, 0)
        if batch:
            await self.index.upsert(batch)
            written += len(batch)
        return written

    async def reembed(
        self, *, batch_size: int = 256, on_progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Give every fact a vector of the configured model (after a change of model).

        Facts keep their old vectors until their new one is written, so search goes on
        working meanwhile; vectors of another model are never compared with new ones."""
        facts = [
            f
            for f in await self.store.facts.listing(self.agent_id, limit=10_000_000)
            if f.embedding_model != self.embedder.model
        ]
        done = 0
        for start in range(0, len(facts), batch_size):
            chunk = facts[start : start + batch_size]
            vectors = await self.embedder.embed([f.fact for f in chunk])
            async with self.store.engine.begin() as conn:
                for fact, vector in zip(chunk, vectors, strict=True):
                    await self.store.facts.set_embedding_in(
                        conn, fact.id, vector, self.embedder.model
                    )
            await self.index.upsert(
                [
                    VectorItem(f.id, self.agent_id, f.user_id, f.guild_id, self.embedder.model, v)
                    for f, v in zip(chunk, vectors, strict=True)
                ]
            )
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, len(facts))
        return done

    async def _facts_with_vectors(self) -> AsyncIterator[tuple[Fact, Any]]:
        async with self.store.engine.connect() as conn:
            rows = await self.store.facts.embeddings_for_user(
                conn, self.agent_id, None, self.embedder.model
            )
        for fact, vector in rows:
            yield fact, vector

    # -- export and import -----------------------------------------------------------------

    async def export_lines(self, *, include_history: bool = True) -> list[str]:
        """Every fact as one JSON line (round-trips exactly through :meth:`import_lines`)."""
        facts = await self.store.facts.listing(
            self.agent_id, include_history=include_history, limit=10_000_000
        )
        lines = []
        for fact in facts:
            data = asdict(fact)
            for key in ("first_mentioned", "last_mentioned"):
                data[key] = data[key].isoformat()
            data["version"] = EXPORT_VERSION
            lines.append(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return lines

    async def import_lines(self, lines: Sequence[str]) -> int:
        """Facts from JSON lines (as exported), kept exactly: text, category, timestamps,
        reference counts, guild and history links (ids are new; the links follow them).
        A fact already stored (same user, text, guild and first mention) is skipped, so
        importing a file twice adds nothing.  Invalid input raises ValueError naming the
        line, and nothing is written.  Returns how many facts were added."""
        parsed = [_parse_line(number, line) for number, line in enumerate(lines, 1) if line.strip()]
        if not parsed:
            return 0
        id_map: dict[int, int] = {}
        added: list[dict[str, Any]] = []
        async with self._database(), self.store.engine.begin() as conn:
            existing = {
                _identity(fact): fact.id
                for fact in await self.store.facts.listing(
                    self.agent_id, include_history=True, limit=10_000_000, conn=conn
                )
            }
            for data in parsed:
                key = (data["user_id"], data["fact"], data["guild_id"], data["first_mentioned"])
                if key in existing:
                    id_map[int(data["id"])] = existing[key]
                else:
                    added.append(data)
                    existing[key] = -1  # the same fact twice in the file: once
            vectors: list[np.ndarray] = (
                list(await self.embedder.embed([d["fact"] for d in added])) if added else []
            )
            for data, vector in zip(added, vectors, strict=True):
                new_id = await self.store.facts.add_in(
                    conn,
                    self.agent_id,
                    NewFact(
                        user_id=data["user_id"],
                        fact=data["fact"],
                        category=data["category"],
                        mentioned_at=data["first_mentioned"],
                        guild_id=data["guild_id"],
                        source_message_id=data["source_message_id"],
                        embedding=vector,
                        embedding_model=self.embedder.model,
                    ),
                )
                await self.store.facts.restore_in(
                    conn, new_id, data["last_mentioned"], data["reference_count"]
                )
                id_map[int(data["id"])] = new_id
            # History links that involve an added fact (the others are as stored).
            new_ids = {id_map[int(d["id"])] for d in added}
            for data in parsed:
                newer = data["superseded_by"]
                if newer is None or int(newer) not in id_map or int(data["id"]) not in id_map:
                    continue
                old_id, new_id = id_map[int(data["id"])], id_map[int(newer)]
                if old_id in new_ids or new_id in new_ids:
                    await self.store.facts.supersede_in(conn, old_id, new_id)
        if added:
            async with self._index_may_fail("imported facts"):
                await self.sync_index()
        return len(added)

    async def aclose(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        for task in self._queries.values():
            task.cancel()
        await asyncio.gather(*self._queries.values(), return_exceptions=True)
        self._queries.clear()
        if self._archive_index is not self.index:
            await self._archive_index.aclose()
        await self.index.aclose()
        await self.embedder.aclose()
        if self.previous_embedder is not None:
            await self.previous_embedder.aclose()
        for close in self._closers:
            await close()


def _settle(task: asyncio.Future[Any]) -> None:
    """A prefetch's outcome is read by the searches that use it; mark it retrieved here."""
    if not task.cancelled():
        task.exception()


async def _embed_one(embedder: Embedder, text: str) -> np.ndarray:
    vector: np.ndarray = (await embedder.embed([text]))[0]
    return vector


_REQUIRED = (
    "id",
    "user_id",
    "fact",
    "category",
    "first_mentioned",
    "last_mentioned",
    "reference_count",
)


def _identity(fact: Fact) -> tuple[str, str, str | None, datetime]:
    """What makes an imported fact the same as a stored one."""
    return (fact.user_id, fact.fact, fact.guild_id, fact.first_mentioned)


def _parse_line(number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"line {number}: expected a JSON object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ValueError(f"line {number}: missing {', '.join(missing)}")
    try:
        data["first_mentioned"] = datetime.fromisoformat(data["first_mentioned"])
        data["last_mentioned"] = datetime.fromisoformat(data["last_mentioned"])
        data["reference_count"] = int(data["reference_count"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"line {number}: {exc}") from None
    if data["reference_count"] < 1 or not str(data["fact"]).strip():
        raise ValueError(f"line {number}: reference_count must be >= 1 and fact non-empty")
    if not isinstance(data["fact"], str) or not isinstance(data["user_id"], str):
        raise ValueError(f"line {number}: fact and user_id must be text")
    if len(data["fact"]) > MAX_FACT_CHARS:
        raise ValueError(f"line {number}: {TOO_LONG}")
    for key in ("guild_id", "source_message_id", "superseded_by"):
        data.setdefault(key, None)
    return data
