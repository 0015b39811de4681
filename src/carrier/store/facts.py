"""Long-term facts per user: fact, category, first and last mentioned, reference count.

A fact that a newer one contradicts is kept as history (``superseded_by`` points at the
newer fact) rather than deleted.  Embeddings are stored with their model and dimension so a
change of model never mixes vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import Select, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from carrier.store.database import Database
from carrier.store.schema import memory_facts


@dataclass(frozen=True, slots=True)
class Fact:
    id: int
    agent_id: str
    user_id: str
    guild_id: str | None
    fact: str
    category: str
    first_mentioned: datetime
    last_mentioned: datetime
    reference_count: int
    source_message_id: str | None = None
    superseded_by: int | None = None
    embedding_model: str | None = None


@dataclass(frozen=True, slots=True)
class NewFact:
    user_id: str
    fact: str
    category: str
    mentioned_at: datetime
    guild_id: str | None = None
    source_message_id: str | None = None
    embedding: np.ndarray | None = None
    embedding_model: str | None = None


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_of(blob: bytes, dim: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape[0] != dim:
        raise ValueError(f"stored vector has {vector.shape[0]} values, expected {dim}")
    return vector


_FACT_COLUMNS = (
    memory_facts.c.id,
    memory_facts.c.agent_id,
    memory_facts.c.user_id,
    memory_facts.c.guild_id,
    memory_facts.c.fact,
    memory_facts.c.category,
    memory_facts.c.first_mentioned,
    memory_facts.c.last_mentioned,
    memory_facts.c.reference_count,
    memory_facts.c.source_message_id,
    memory_facts.c.superseded_by,
    memory_facts.c.embedding_model,
)


@cache
def _user_facts_query(include_history: bool, places: str | None, with_vectors: bool) -> Select[Any]:
    """A user's facts, built once per shape (bound parameters: agent_id, user_id and
    guild_ids).  ``places``: None (learned anywhere), "named" (in the named guilds),
    "direct" (those or in direct messages), "unplaced" (those or nowhere in particular)."""
    columns = (*_FACT_COLUMNS, memory_facts.c.embedding, memory_facts.c.embedding_dim)
    query = select(*(columns if with_vectors else _FACT_COLUMNS)).where(
        memory_facts.c.agent_id == bindparam("agent_id"),
        memory_facts.c.user_id == bindparam("user_id"),
    )
    if not include_history:
        query = query.where(memory_facts.c.superseded_by.is_(None))
    if places is not None:
        where: list[ColumnElement[bool]] = [
            memory_facts.c.guild_id.in_(bindparam("guild_ids", expanding=True))
        ]
        if places == "direct":
            where.append(memory_facts.c.guild_id.is_(None))
        elif places == "unplaced":
            where.append(
                memory_facts.c.guild_id.is_(None) & memory_facts.c.source_message_id.is_(None)
            )
        query = query.where(or_(*where))
    return query.order_by(
        memory_facts.c.reference_count.desc(),
        memory_facts.c.last_mentioned.desc(),
        memory_facts.c.id,
    )


def _fact(row: object) -> Fact:
    return Fact(*(getattr(row, c.name) for c in _FACT_COLUMNS))


class FactRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    # -- writing (inside the caller's transaction) ---------------------------------------------

    async def add_in(self, conn: AsyncConnection, agent_id: str, new: NewFact) -> int:
        values: dict[str, object] = {
            "agent_id": agent_id,
            "user_id": new.user_id,
            "guild_id": new.guild_id,
            "fact": new.fact,
            "category": new.category,
            "first_mentioned": new.mentioned_at,
            "last_mentioned": new.mentioned_at,
            "reference_count": 1,
            "source_message_id": new.source_message_id,
        }
        if new.embedding is not None:
            values |= {
                "embedding": vector_bytes(new.embedding),
                "embedding_model": new.embedding_model,
                "embedding_dim": int(new.embedding.shape[0]),
            }
        result = await conn.execute(memory_facts.insert().returning(memory_facts.c.id), values)
        return int(result.scalar_one())

    async def reinforce_in(self, conn: AsyncConnection, fact_id: int, at: datetime) -> None:
        """Mentioned again: one more reference, and ``last_mentioned`` moves forward."""
        await conn.execute(
            update(memory_facts)
            .where(memory_facts.c.id == fact_id)
            .values(
                reference_count=memory_facts.c.reference_count + 1,
                last_mentioned=func.max(memory_facts.c.last_mentioned, at)
                if conn.dialect.name == "sqlite"
                else func.greatest(memory_facts.c.last_mentioned, at),
            )
        )

    async def restore_in(
        self, conn: AsyncConnection, fact_id: int, last_mentioned: datetime, reference_count: int
    ) -> None:
        """Set the counters an import brings along (an exact round trip)."""
        await conn.execute(
            update(memory_facts)
            .where(memory_facts.c.id == fact_id)
            .values(last_mentioned=last_mentioned, reference_count=reference_count)
        )

    async def supersede_in(self, conn: AsyncConnection, old_id: int, new_id: int) -> None:
        await conn.execute(
            update(memory_facts).where(memory_facts.c.id == old_id).values(superseded_by=new_id)
        )

    async def set_embedding_in(
        self, conn: AsyncConnection, fact_id: int, vector: np.ndarray, model: str
    ) -> None:
        await conn.execute(
            update(memory_facts)
            .where(memory_facts.c.id == fact_id)
            .values(
                embedding=vector_bytes(vector),
                embedding_model=model,
                embedding_dim=int(vector.shape[0]),
            )
        )

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, fact_id: int) -> Fact | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(*_FACT_COLUMNS).where(memory_facts.c.id == fact_id))
            ).first()
        return None if row is None else _fact(row)

    async def for_user(
        self,
        agent_id: str,
        user_id: str,
        *,
        guild_ids: Sequence[str | None] | None = None,
        include_history: bool = False,
        include_unplaced: bool = False,
        conn: AsyncConnection | None = None,
    ) -> list[Fact]:
        """The user's facts, most referenced first; ``guild_ids`` limits where they were
        learned (None: anywhere; a None in it: in direct messages).  ``include_unplaced``
        adds the facts learned nowhere in particular (no guild and no source message: added
        by hand, through the API or an import)."""
        rows = await self._user_facts(
            agent_id, user_id, guild_ids, include_history, include_unplaced, False, conn
        )
        return [_fact(row) for row in rows]

    async def for_user_with_vectors(
        self,
        agent_id: str,
        user_id: str,
        *,
        guild_ids: Sequence[str | None] | None = None,
        include_unplaced: bool = False,
    ) -> list[tuple[Fact, np.ndarray | None]]:
        """:meth:`for_user` (current facts) with each fact's vector, of the model named by
        its ``embedding_model`` (None: not embedded yet), in one statement."""
        rows = await self._user_facts(
            agent_id, user_id, guild_ids, False, include_unplaced, True, None
        )
        return [
            (
                _fact(row),
                vector_of(row.embedding, row.embedding_dim)
                if row.embedding is not None and row.embedding_dim
                else None,
            )
            for row in rows
        ]

    async def _user_facts(
        self,
        agent_id: str,
        user_id: str,
        guild_ids: Sequence[str | None] | None,
        include_history: bool,
        include_unplaced: bool,
        with_vectors: bool,
        conn: AsyncConnection | None,
    ) -> Sequence[Any]:
        params: dict[str, object] = {"agent_id": agent_id, "user_id": user_id}
        if guild_ids is None:
            query = _user_facts_query(include_history, None, with_vectors)
        else:
            params["guild_ids"] = [g for g in guild_ids if g is not None]
            places = "direct" if None in guild_ids else "unplaced" if include_unplaced else "named"
            query = _user_facts_query(include_history, places, with_vectors)
        if conn is not None:
            return list(await conn.execute(query, params))
        async with self._engine.connect() as own:
            return list(await own.execute(query, params))

    async def embeddings_for_user(
        self, conn: AsyncConnection, agent_id: str, user_id: str | None, model: str
    ) -> list[tuple[Fact, np.ndarray]]:
        """Current facts of the user (every user's with ``None``) with a vector of
        ``model`` (for semantic de-duplication and for filling the vector index)."""
        query = select(
            *_FACT_COLUMNS, memory_facts.c.embedding, memory_facts.c.embedding_dim
        ).where(
            memory_facts.c.agent_id == agent_id,
            memory_facts.c.superseded_by.is_(None),
            memory_facts.c.embedding_model == model,
        )
        if user_id is not None:
            query = query.where(memory_facts.c.user_id == user_id)
        out = []
        for row in await conn.execute(query):
            if row.embedding is not None and row.embedding_dim:
                out.append((_fact(row), vector_of(row.embedding, row.embedding_dim)))
        return out

    async def listing(
        self,
        agent_id: str | None = None,
        user_id: str | None = None,
        *,
        include_history: bool = False,
        limit: int = 1000,
        offset: int = 0,
        conn: AsyncConnection | None = None,
    ) -> list[Fact]:
        query = select(*_FACT_COLUMNS)
        if agent_id is not None:
            query = query.where(memory_facts.c.agent_id == agent_id)
        if user_id is not None:
            query = query.where(memory_facts.c.user_id == user_id)
        if not include_history:
            query = query.where(memory_facts.c.superseded_by.is_(None))
        query = (
            query.order_by(memory_facts.c.agent_id, memory_facts.c.user_id, memory_facts.c.id)
            .limit(limit)
            .offset(offset)
        )
        if conn is not None:
            return [_fact(r) for r in await conn.execute(query)]
        async with self._engine.connect() as own:
            return [_fact(r) for r in await own.execute(query)]

    async def count(self, agent_id: str, *, include_history: bool = True) -> int:
        query = (
            select(func.count())
            .select_from(memory_facts)
            .where(memory_facts.c.agent_id == agent_id)
        )
        if not include_history:
            query = query.where(memory_facts.c.superseded_by.is_(None))
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    # -- people's control --------------------------------------------------------------------

    async def update_text(
        self, agent_id: str, fact_id: int, fact: str, category: str | None = None
    ) -> bool:
        values: dict[str, object] = {
            "fact": fact,
            "embedding": None,
            "embedding_model": None,
            "embedding_dim": None,
        }
        if category is not None:
            values["category"] = category
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(memory_facts)
                .where(memory_facts.c.agent_id == agent_id, memory_facts.c.id == fact_id)
                .values(**values)
            )
            return bool(result.rowcount)

    async def delete_ids(self, agent_id: str, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        async with self._engine.begin() as conn:
            return await self.delete_ids_in(conn, agent_id, ids)

    async def delete_ids_in(self, conn: AsyncConnection, agent_id: str, ids: Sequence[int]) -> int:
        """Delete facts in the caller's transaction; facts they superseded become current."""
        if not ids:
            return 0
        await conn.execute(
            update(memory_facts)
            .where(memory_facts.c.agent_id == agent_id, memory_facts.c.superseded_by.in_(list(ids)))
            .values(superseded_by=None)
        )
        result = await conn.execute(
            delete(memory_facts).where(
                memory_facts.c.agent_id == agent_id, memory_facts.c.id.in_(list(ids))
            )
        )
        return int(result.rowcount)

    async def ids_for_user(
        self, agent_id: str, user_id: str, *, conn: AsyncConnection | None = None
    ) -> list[int]:
        query = select(memory_facts.c.id).where(
            memory_facts.c.agent_id == agent_id, memory_facts.c.user_id == user_id
        )
        if conn is not None:
            return [int(r.id) for r in await conn.execute(query)]
        async with self._engine.connect() as own:
            return [int(r.id) for r in await own.execute(query)]

    async def ids_from_message(self, agent_id: str, message_id: str) -> list[int]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(memory_facts.c.id).where(
                    memory_facts.c.agent_id == agent_id,
                    memory_facts.c.source_message_id == message_id,
                )
            )
            return [int(r.id) for r in rows]
