"""Memory's background work in a running bot: a change of embedding model, and the archive's
embedding back-fill.

A change of model (the configuration names another embedding model than the stored vectors
were made with) never stops search and never compares vectors of two models:

1. :func:`open_previous_embedder` (called by :func:`carrier.bootstrap.open_memory`) finds the
   model of the stored fact vectors and, when the configuration it was used with is on record
   (``global_state``, written by :func:`record_embedder` whenever a model is opened), loads it
   as the memory's ``previous_embedder``.  Queries are then embedded with both models; each
   fact is compared with the query vector of its own model, and the archive gives one ranking
   per model, fused by rank.  (Two models' cosines are not on one scale, so while both are
   in use the order between a re-embedded fact and one still waiting is approximate; each
   fact's own similarity is right.)
2. :func:`run_maintenance` re-embeds the facts in batches, progress logged, each fact's
   vector replaced in one write (so every fact has exactly one usable vector at every
   moment), then embeds the archived messages for the new model.
3. With nothing of the old model left, :meth:`~carrier.memory.api.Memory.finish_model_change`
   switches: queries with the new model only, the old vectors leave the index.

When the old model cannot be loaded (no record of it, its package gone), the facts not yet
re-embedded are ranked by reference count and recency only until their turn comes, and a
warning says so.  After that, every ``interval`` seconds the task embeds newly archived
messages (the "embedding back-fill" of DESIGN.md's scheduled work).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from carrier.memory.consolidation import (
    LOCK_TTL,
    acquire_job_lock,
    heartbeat_while_held,
    lock_holder,
)
from carrier.memory.embeddings.base import Embedder
from carrier.settings import EmbeddingSettings
from carrier.store.schema import memory_facts
from carrier.store.store import Store

if TYPE_CHECKING:
    from carrier.memory.api import Memory

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 5.0


def embedder_key(model: str) -> str:
    return "memory.embedder." + hashlib.sha256(model.encode("utf-8")).hexdigest()[:32]


async def record_embedder(
    store: Store, agent_id: str, model: str, settings: EmbeddingSettings
) -> None:
    """Keep the configuration ``model`` was opened with, so that after a change of model
    the old one can still embed queries.  It holds no secret: API keys are only named."""
    await store.state.set(agent_id, embedder_key(model), settings.model_dump_json())


async def stored_models(store: Store, agent_id: str) -> dict[str, int]:
    """How many current facts have a vector of each embedding model."""
    query = (
        select(memory_facts.c.embedding_model, func.count())
        .where(
            memory_facts.c.agent_id == agent_id,
            memory_facts.c.superseded_by.is_(None),
            memory_facts.c.embedding_model.is_not(None),
        )
        .group_by(memory_facts.c.embedding_model)
    )
    async with store.engine.connect() as conn:
        return {str(model): int(count) for model, count in await conn.execute(query)}


async def open_previous_embedder(
    store: Store,
    agent_id: str,
    current_model: str,
    environ: Mapping[str, str] | None = None,
) -> Embedder | None:
    """The embedder of the model most stored facts still use, when that is not
    ``current_model`` and it can be loaded; else ``None`` (a warning says why)."""
    from carrier.memory.embeddings.registry import create_embedder

    others = {m: n for m, n in (await stored_models(store, agent_id)).items() if m != current_model}
    if not others:
        return None
    model = max(others, key=lambda m: others[m])
    recorded = await store.state.get(agent_id, embedder_key(model))
    if recorded is None:
        log.warning(
            "%d facts have vectors of %s, whose configuration is not on record; until they "
            "are re-embedded they are ranked without similarity",
            others[model],
            model,
        )
        return None
    try:
        settings = EmbeddingSettings.model_validate_json(recorded)
        embedder = await asyncio.to_thread(create_embedder, settings, environ)
    except Exception as exc:
        log.warning(
            "cannot load the previous embedding model %s (%s); until its %d facts are "
            "re-embedded they are ranked without similarity",
            model,
            exc,
            others[model],
        )
        return None
    if embedder.model != model:
        await embedder.aclose()
        log.warning("the recorded configuration of %s now gives %s", model, embedder.model)
        return None
    return embedder


def progress_logger(what: str) -> Callable[[int, int], None]:
    """An ``on_progress`` callback that logs at most every few seconds, and the end."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            log.info("%s: %d of %d", what, done, total)

    return report


async def maintain_once(memory: Memory) -> bool:
    """One round: rebuild the vector index if it missed writes while unavailable, finish a
    change of model if one is under way, then embed whatever was archived since the last
    round.  Under a job lock, so of several bot processes one works at a time; returns
    False when another holds it."""
    store, holder = memory.store, lock_holder()
    lock = f"memory-maintenance:{memory.agent_id}"
    if not await acquire_job_lock(store, lock, holder, datetime.now(UTC), LOCK_TTL):
        log.info("memory maintenance is running in another process; skipping this round")
        return False
    async with heartbeat_while_held(store, lock, holder):
        await _maintain(memory)
    return True


async def _maintain(memory: Memory) -> None:
    model = memory.embedder.model
    if memory.index_stale:
        log.info("the vector index missed writes while unavailable; rebuilding it")
        log.info("rebuilt the vector index: %d vectors", await memory.rebuild_index())
    pending = await memory.needs_reembedding()
    if pending:
        log.info(
            "re-embedding %d facts with %s in the background; search goes on meanwhile",
            pending,
            model,
        )
        await memory.reembed(on_progress=progress_logger(f"re-embedding facts with {model}"))
    waiting = await memory.archive.pending(model)
    if waiting:
        await memory.index_archive(
            on_progress=progress_logger(f"embedding archived messages with {model}")
        )
    if memory.previous_embedder is not None and not await memory.needs_reembedding():
        await memory.finish_model_change()


async def run_maintenance(memory: Memory, *, interval: float = 600.0) -> None:
    """:func:`maintain_once` now and every ``interval`` seconds until cancelled; a round
    that fails (database or model unreachable) is logged and tried again next time."""
    while True:
        try:
            await maintain_once(memory)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("memory maintenance failed (%s); trying again in %.0f s", exc, interval)
        await asyncio.sleep(interval)
