"""The ``VectorIndex`` interface: nearest-neighbour search over long-term fact vectors.

Contract, the same for every backend (SQLite, pgvector, Chroma; one shared test suite holds
them to it):

* A vector belongs to one fact (``VectorItem.id`` is the ``memory_facts`` id), one agent,
  one user, at most one guild (``guild_id`` is ``None`` or non-empty), and one embedding
  ``model``.  Its dimension is its length.
  Vectors are float32 and L2-normalised; backends normalise again, so a vector of any
  non-zero length is accepted, but a vector with NaN or infinite components, a zero vector,
  or an empty one raises :class:`ValueError`.
* One model has one dimension per agent.  Upserting, or searching with, a vector whose
  dimension differs from the vectors already stored for that agent and model raises
  :class:`ValueError` naming both dimensions.
* A fact may hold vectors of several models at once (while ``carrier memory reembed`` moves
  to a new model, the old vectors keep answering).  ``upsert`` replaces the vector of the
  same (id, model) and leaves the fact's other models alone.
* ``search`` compares only vectors of the given model (hence of one dimension); vectors of
  other models are never compared and never cause an error.  It returns at most ``k``
  :class:`Hit`\\ s, best first: ``score`` is the cosine similarity (higher = more similar, 1.0
  for the same direction), ties in any order.  ``user_id`` restricts to one user's vectors;
  ``guild_ids`` to vectors learned in those guilds (``None`` inside it matches vectors with
  no guild, e.g. from direct messages); ``guild_ids=None`` means any guild.  An empty index,
  or fewer than ``k`` matching vectors, returns what there is.
* Scores are exact.  Which vectors come back may be approximate at scale: the sqlite
  backend is exact whenever the filtered vectors number at most 1,000 (any user's facts)
  and near-exact beyond (recall@10 ~0.999); pgvector (unfiltered or guild-filtered) and
  Chroma use HNSW graphs tuned for recall@10 >= 0.95 (bench/bench_vectors.py).  A search
  filtered by user on pgvector is exact.
* ``delete`` removes the ids' vectors of every model (or of one); unknown ids are ignored.
  ``clear`` removes an agent's vectors (of every model, or of one).  Both are idempotent.
* Writes are durable when the call returns, and a new instance over the same storage (or
  another process) sees them.
* ``aclose`` releases the backend's resources; the storage itself stays.

Backends are small classes that subclass :class:`VectorIndex`, implement its abstract
methods and offer a ``create(settings, database)`` classmethod for
:mod:`carrier.memory.vectors.registry`; the batch helpers below work for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatVector = npt.NDArray[np.float32]
VectorLike = Sequence[float] | npt.NDArray[np.floating]

MAX_MODEL_NAME = 200
MAX_DIMENSIONS = 16_000  # pgvector's limit for a stored vector


class VectorIndexUnavailable(RuntimeError):
    """The backend cannot be used (now): its storage is gone, unwritable or unreachable.  The
    message names it and says what to do; the facts themselves are safe in the database, and
    ``Memory.rebuild_index`` (``carrier memory init --rebuild``) rebuilds the vectors from there."""


@dataclass(frozen=True, slots=True)
class VectorItem:
    """One fact's vector, with what a search filters on."""

    id: int
    agent_id: str
    user_id: str
    guild_id: str | None
    model: str
    vector: VectorLike


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the fact id and its cosine similarity to the query."""

    id: int
    score: float


class VectorIndex(Protocol):
    """Nearest-neighbour search over fact vectors; the contract is the module docstring."""

    async def upsert(self, items: Sequence[VectorItem]) -> None:
        """Store the items' vectors, replacing any stored for the same (id, model)."""
        ...

    async def delete(self, ids: Collection[int], *, model: str | None = None) -> None:
        """Remove the vectors of these fact ids (of ``model`` only, when given)."""
        ...

    async def search(
        self,
        agent_id: str,
        query_vector: VectorLike,
        k: int,
        *,
        model: str,
        user_id: str | None = None,
        guild_ids: Collection[str | None] | None = None,
    ) -> list[Hit]:
        """The ``k`` vectors most similar to ``query_vector``, best first."""
        ...

    async def count(self, agent_id: str, model: str | None = None) -> int:
        """How many vectors the agent has (of ``model`` only, when given)."""
        ...

    async def clear(self, agent_id: str, *, model: str | None = None) -> None:
        """Remove every vector of the agent (of ``model`` only, when given)."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and caches; stored vectors stay."""
        ...

    # --- batch helpers: defaults built on the methods above --------------------------------

    async def upsert_many(self, items: Iterable[VectorItem], *, batch_size: int = 1000) -> int:
        """Upsert any number of items in batches of ``batch_size``; returns how many."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        done = 0
        batch: list[VectorItem] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                await self.upsert(batch)
                done += len(batch)
                batch = []
        if batch:
            await self.upsert(batch)
            done += len(batch)
        return done

    async def delete_many(self, ids: Iterable[int], *, batch_size: int = 1000) -> None:
        """Delete any number of ids in batches of ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        batch: list[int] = []
        for fact_id in ids:
            batch.append(fact_id)
            if len(batch) == batch_size:
                await self.delete(batch)
                batch = []
        if batch:
            await self.delete(batch)

    async def search_many(
        self,
        agent_id: str,
        query_vectors: Sequence[VectorLike],
        k: int,
        *,
        model: str,
        user_id: str | None = None,
        guild_ids: Collection[str | None] | None = None,
    ) -> list[list[Hit]]:
        """One :meth:`search` per query vector, results in the same order."""
        return [
            await self.search(agent_id, query, k, model=model, user_id=user_id, guild_ids=guild_ids)
            for query in query_vectors
        ]


# --- validation shared by the backends -----------------------------------------------------


def unit_vector(vector: VectorLike, *, what: str = "vector") -> FloatVector:
    """``vector`` as a contiguous float32 array of length 1, or ValueError saying why not."""
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a sequence of numbers: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if array.size > MAX_DIMENSIONS:
        raise ValueError(f"{what} has {array.size} dimensions; at most {MAX_DIMENSIONS}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")
    norm = float(np.linalg.norm(array))
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError(f"{what} has zero length and no direction")
    return np.ascontiguousarray(array / norm, dtype=np.float32)


def check_model(model: str) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a non-empty name")
    if len(model) > MAX_MODEL_NAME:
        raise ValueError(f"model name is longer than {MAX_MODEL_NAME} characters")
    return model


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return k


def check_item(item: VectorItem) -> FloatVector:
    """Validate one item; returns its normalised vector."""
    if isinstance(item.id, bool) or not isinstance(item.id, int):
        raise ValueError(f"vector id must be an integer (a memory_facts id), got {item.id!r}")
    if not item.agent_id or not item.user_id:
        raise ValueError(f"vector {item.id}: agent_id and user_id must be non-empty")
    if item.guild_id == "":
        raise ValueError(f"vector {item.id}: guild_id must be None (no guild) or non-empty")
    check_model(item.model)
    return unit_vector(item.vector, what=f"vector {item.id} ({item.model})")


def checked_batch(items: Sequence[VectorItem]) -> list[tuple[VectorItem, FloatVector]]:
    """Validate a batch: each item, and one dimension per (agent, model) within it.  When
    the same (id, model) appears twice, the last one wins, as in sequential upserts."""
    latest: dict[tuple[int, str], tuple[VectorItem, FloatVector]] = {}
    dims: dict[tuple[str, str], int] = {}
    for item in items:
        vector = check_item(item)
        key = (item.agent_id, item.model)
        known = dims.setdefault(key, vector.size)
        if known != vector.size:
            raise dimension_error(item.model, known, vector.size)
        latest.pop((item.id, item.model), None)
        latest[(item.id, item.model)] = (item, vector)
    return list(latest.values())


def dimension_error(model: str, stored: int, given: int) -> ValueError:
    return ValueError(
        f"model {model!r} has {stored}-dimensional vectors here, but this vector has {given} "
        "dimensions; a model has one dimension (use another model name for other vectors)"
    )


def guild_filter(guild_ids: Collection[str | None] | None) -> tuple[set[str], bool] | None:
    """``None`` (any guild), or the named guilds and whether guild-less vectors match."""
    if guild_ids is None:
        return None
    if isinstance(guild_ids, str):
        raise ValueError("guild_ids must be a collection of guild ids, not one string")
    named = {guild for guild in guild_ids if guild is not None}
    return named, any(guild is None for guild in guild_ids)


GuildFilter = tuple[set[str], bool] | None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A checked search: the unit query vector and the guild filter."""

    query: FloatVector
    guilds: GuildFilter


def checked_search(
    query_vector: VectorLike, k: int, model: str, guild_ids: Collection[str | None] | None
) -> SearchRequest | None:
    """Validate a search's arguments (every backend the same way); ``None`` when the guild
    filter can match nothing, so the search returns no hits without asking the backend."""
    check_model(model)
    check_k(k)
    query = unit_vector(query_vector, what="query vector")
    guilds = guild_filter(guild_ids)
    if guilds is not None and not guilds[0] and not guilds[1]:
        return None
    return SearchRequest(query, guilds)
