"""PostgreSQL + pgvector: the ``fact_vectors`` table with an HNSW index per dimension.

``embedding`` is a pgvector ``vector`` of any dimension; each dimension gets a partial HNSW
index over ``embedding::vector(dim)`` (``vector_cosine_ops``, m = 16, ef_construction = 64),
created the first time vectors of that dimension are stored (:meth:`PgVectorIndex.ensure_index`).

Why at run time and not in a migration: an HNSW index needs a fixed dimension, and the
dimensions are the configured models' (384 for the local MiniLM, 1536 or 3072 for OpenAI's,
anything for an Ollama model), which a migration cannot know; an index for a dimension no
model uses would only cost writes.  Why not ``CREATE INDEX CONCURRENTLY``: the index is made
when the first vector of its dimension arrives, so the partial index covers (almost) no rows
and builds at once; a concurrent build would instead wait for every older snapshot in the
database - including a caller's own open transaction, a deadlock no timeout reports - and a
failed one leaves an INVALID index behind.  So the index is created in a short transaction
that first takes a transaction-scoped advisory lock on its name: two processes storing the
first vectors of a dimension at once queue on the lock, and the second finds the index there
(``IF NOT EXISTS``).  An INVALID index of that name (e.g. from an operator's concurrent build
that failed) is dropped and built again.  A search:

* with a ``user_id``: exact, over that user's vectors through the B-tree index
  (agent, model, dim, user) - a user's facts are few, and a graph search filtered down to
  them could miss some;
* otherwise: the HNSW index with ``hnsw.ef_search`` (settings: ``vectors.hnsw_ef_search``)
  and pgvector 0.8's iterative index scan (``hnsw.iterative_scan = relaxed_order``), so a
  guild or model filter that rejects many neighbours keeps scanning instead of returning
  too few; the relaxed order is sorted again on the exact distances.  Recall@10 against
  exact search over 1,000,000 vectors: see bench/bench_vectors.py.

Vectors travel in pgvector's text form (the ``pgvector`` package's SQLAlchemy type), so
the shared asyncpg engine needs no codec registered.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any, Self

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    Float,
    Integer,
    any_,
    bindparam,
    cast,
    delete,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from carrier.memory.vectors.base import (
    Hit,
    VectorIndex,
    VectorItem,
    VectorLike,
    check_model,
    checked_batch,
    checked_search,
    dimension_error,
)
from carrier.memory.vectors.table import agent_condition, count_vectors
from carrier.store.database import Database
from carrier.store.schema import fact_vectors

log = logging.getLogger(__name__)

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH = 200  # recall@10 0.97 over 1,000,000 (100: 0.93); bench_vectors.py
# Beyond what the graph search can return in one pass, search exactly.
MAX_GRAPH_K = 1000


def hnsw_index_name(dim: int) -> str:
    return f"ix_fact_vectors_hnsw_{dim}"


def hnsw_index_sql(dim: int) -> str:
    """The partial HNSW index over the vectors of one dimension."""
    return (
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(dim)} ON fact_vectors "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE dim = {dim}"
    )


class PgVectorIndex(VectorIndex):
    """Vectors in PostgreSQL's ``fact_vectors`` with pgvector HNSW indexes.  The contract is
    :mod:`carrier.memory.vectors.base`; the design is this module's docstring."""

    def __init__(self, database: Database, *, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        if database.dialect.name != "postgresql":
            raise ValueError(
                f"the pgvector index needs PostgreSQL, not {database.dialect.name}; "
                "use vectors.backend: sqlite (or chroma) with SQLite"
            )
        if not 1 <= ef_search <= 1000:
            raise ValueError(f"ef_search must be 1..1000, got {ef_search}")
        self._db = database
        self.ef_search = ef_search
        self._indexed_dims: set[int] = set()

    @classmethod
    def create(cls, settings: Any, database: Database) -> Self:
        """The registry's constructor (``settings`` is the ``vectors`` section)."""
        return cls(database, ef_search=settings.hnsw_ef_search)

    # --- writes --------------------------------------------------------------------------

    async def upsert(self, items: Sequence[VectorItem]) -> None:
        batch = checked_batch(items)
        if not batch:
            return
        dims = {vector.size for _, vector in batch}
        for dim in sorted(dims - self._indexed_dims):
            await self.ensure_index(dim)
        async with self._db.begin() as conn:
            checked: set[tuple[str, str]] = set()
            for item, vector in batch:
                key = (item.agent_id, item.model)
                if key in checked:
                    continue
                checked.add(key)
                await _check_dimension(conn, item.agent_id, item.model, vector.size)
            statement = pg_insert(fact_vectors)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[fact_vectors.c.fact_id, fact_vectors.c.model],
                    set_={
                        "agent_id": statement.excluded.agent_id,
                        "user_id": statement.excluded.user_id,
                        "guild_id": statement.excluded.guild_id,
                        "dim": statement.excluded.dim,
                        "embedding": statement.excluded.embedding,
                        "seq": statement.excluded.seq,
                    },
                ),
                [
                    {
                        "fact_id": item.id,
                        "model": item.model,
                        "agent_id": item.agent_id,
                        "user_id": item.user_id,
                        "guild_id": item.guild_id,
                        "dim": vector.size,
                        "embedding": vector,
                        "seq": 0,
                    }
                    for item, vector in batch
                ],
            )

    async def ensure_index(self, dim: int) -> None:
        """Create the HNSW index of one dimension unless a valid one exists (checked once
        per process; safe when several processes do it at once, see the module docstring)."""
        name = hnsw_index_name(dim)
        async with self._db.connect() as conn:
            valid = await conn.scalar(_INDEX_VALID, {"name": name})
        if not valid:
            async with self._db.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name}
                )
                state = await conn.scalar(_INDEX_VALID, {"name": name})
                if state is False:
                    log.warning("dropping the invalid index %s to build it again", name)
                    await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
                if not state:
                    await conn.execute(text(hnsw_index_sql(dim)))
                    log.info("created the HNSW index for %d-dimensional vectors", dim)
        self._indexed_dims.add(dim)

    async def delete(self, ids: Collection[int], *, model: str | None = None) -> None:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return
        # One array parameter, however many ids (an IN list would be one parameter each).
        condition: list[ColumnElement[bool]] = [
            fact_vectors.c.fact_id == any_(bindparam("ids", wanted, type_=ARRAY(Integer)))
        ]
        if model is not None:
            condition.append(fact_vectors.c.model == check_model(model))
        async with self._db.begin() as conn:
            await conn.execute(delete(fact_vectors).where(*condition))

    async def clear(self, agent_id: str, *, model: str | None = None) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(fact_vectors).where(*agent_condition(agent_id, model)))

    # --- reads ---------------------------------------------------------------------------

    async def count(self, agent_id: str, model: str | None = None) -> int:
        return await count_vectors(self._db, agent_id, model)

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
        checked = checked_search(query_vector, k, model, guild_ids)
        if checked is None:
            return []
        query, guilds = checked.query, checked.guilds
        dim = query.size
        condition: list[ColumnElement[bool]] = [
            fact_vectors.c.dim == dim,
            fact_vectors.c.agent_id == agent_id,
            fact_vectors.c.model == model,
        ]
        if user_id is not None:
            condition.append(fact_vectors.c.user_id == user_id)
        if guilds is not None:
            named, guildless = guilds
            options: list[ColumnElement[bool]] = []
            if named:
                options.append(fact_vectors.c.guild_id.in_(sorted(named)))
            if guildless:
                options.append(fact_vectors.c.guild_id.is_(None))
            condition.append(or_(*options))
        q = cast(bindparam("q", query, type_=VECTOR(dim)), VECTOR(dim))
        exact = user_id is not None or k > MAX_GRAPH_K
        if exact:
            # The raw column: the planner cannot use the HNSW expression index, so this is
            # an exact scan of the filtered rows.
            distance = fact_vectors.c.embedding.op("<=>", return_type=Float())(q)
        else:
            distance = literal_column(f"(fact_vectors.embedding::vector({dim}))").op(
                "<=>", return_type=Float()
            )(q)
        nearest = (
            select(fact_vectors.c.fact_id, distance.label("distance"))
            .where(*condition)
            .order_by(distance)
            .limit(k)
        )
        async with self._db.connect() as conn, conn.begin():
            if not exact:
                await conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, k)}"))
                await conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
                nearest_cte = nearest.cte("nearest").prefix_with("MATERIALIZED")
                statement = select(nearest_cte.c.fact_id, nearest_cte.c.distance).order_by(
                    nearest_cte.c.distance
                )
                rows = (await conn.execute(statement)).all()
            else:
                rows = (await conn.execute(nearest)).all()
            if len(rows) < k:
                await _check_dimension(conn, agent_id, model, dim)
        return [Hit(int(fact_id), _score(distance)) for fact_id, distance in rows]

    async def aclose(self) -> None:
        self._indexed_dims.clear()


# NULL: no such index; else whether it is valid (usable by queries).
_INDEX_VALID = text(
    "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
    "WHERE c.oid = to_regclass(:name)"
)


def _score(distance: Any) -> float:
    """Cosine distance (0..2) -> similarity (1..-1)."""
    return float(min(1.0, max(-1.0, 1.0 - float(distance))))


async def _check_dimension(conn: AsyncConnection, agent_id: str, model: str, dim: int) -> None:
    clash = await conn.scalar(
        select(fact_vectors.c.dim)
        .where(
            fact_vectors.c.agent_id == agent_id,
            fact_vectors.c.model == model,
            fact_vectors.c.dim != dim,
        )
        .limit(1)
    )
    if clash is not None:
        raise dimension_error(model, int(clash), dim)
