"""pgvector's HNSW index per dimension: created once even when several processes store the
first vectors of a dimension at the same moment, used by searches, rebuilt when invalid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy import text

from carrier.memory.vectors.base import VectorItem
from carrier.memory.vectors.pgvector_index import PgVectorIndex, hnsw_index_name
from carrier.store.database import Database, create_engine
from carrier.store.migrate import upgrade

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url(postgres_server: str) -> AsyncIterator[str]:
    import asyncpg

    host = postgres_server.split("host=", 1)[1]
    name = "h_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(user="postgres", database="postgres", host=host)
    await admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+asyncpg://postgres@/{name}?host={host}"
    first = Database(create_engine(url))
    await upgrade(first)
    await first.dispose()
    yield url
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


async def index_state(database: Database, dim: int) -> list[bool]:
    async with database.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c "
                "ON c.oid = i.indexrelid WHERE c.relname = :name"
            ),
            {"name": hnsw_index_name(dim)},
        )
        return [bool(r[0]) for r in rows]


async def test_processes_storing_a_new_dimension_at_once_make_one_index(pg_url: str) -> None:
    databases = [Database(create_engine(pg_url)) for _ in range(4)]
    indexes = [PgVectorIndex(database) for database in databases]
    rng = np.random.default_rng(1)
    try:
        for dim in (24, 48):
            vectors = rng.standard_normal((4, dim)).astype(np.float32)
            await asyncio.gather(
                *(
                    index.upsert([VectorItem(n + 1, "fish", "u1", "g1", f"m{dim}", vectors[n])])
                    for n, index in enumerate(indexes)
                )
            )
            assert await index_state(databases[0], dim) == [True]
        # A guild-filtered search goes through the graph index of its dimension.
        async with databases[0].connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(
                row[0]
                for row in await conn.execute(
                    text(
                        "EXPLAIN SELECT fact_id FROM fact_vectors WHERE dim = 48 "
                        "ORDER BY embedding::vector(48) <=> CAST(:q AS vector(48)) LIMIT 5"
                    ),
                    {"q": "[" + ",".join(["0.1"] * 48) + "]"},
                )
            )
        assert hnsw_index_name(48) in plan
        hits = await indexes[1].search("fish", vectors[2], 4, model="m48", guild_ids=["g1"])
        assert hits[0].id == 3 and len(hits) == 4
    finally:
        for database in databases:
            await database.dispose()


async def test_an_invalid_index_is_built_again(pg_url: str) -> None:
    database = Database(create_engine(pg_url))
    try:
        await PgVectorIndex(database).ensure_index(16)
        async with database.begin() as conn:  # what a failed CREATE INDEX CONCURRENTLY leaves
            await conn.execute(
                text(
                    "UPDATE pg_index SET indisvalid = false "
                    f"WHERE indexrelid = '{hnsw_index_name(16)}'::regclass"
                )
            )
        assert await index_state(database, 16) == [False]
        await PgVectorIndex(database).ensure_index(16)  # a new process
        assert await index_state(database, 16) == [True]
    finally:
        await database.dispose()
