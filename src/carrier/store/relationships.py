"""Per-user relationship metrics; the database CHECKs the ranges too."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.schema import relationships
from carrier.store.upsert import insert

_ROWS = (
    select(relationships)
    .where(
        relationships.c.agent_id == bindparam("agent_id"),
        relationships.c.user_id.in_(bindparam("user_ids", expanding=True)),
    )
    .order_by(relationships.c.user_id)
)
_ROWS_FOR_UPDATE = _ROWS.with_for_update()

RANGES: dict[str, tuple[float, float]] = {
    "anger": (0.0, 10.0),
    "rapport": (0.0, 10.0),
    "trust": (0.0, 10.0),
    "formality": (-5.0, 5.0),
}


@dataclass(frozen=True, slots=True)
class RelationshipRow:
    anger: float
    rapport: float
    trust: float
    formality: float
    updated_at: datetime


@functools.cache
def _upsert(dialect: str) -> Any:
    """Built once per dialect: the statement's cache key then matches every time."""
    stmt = insert(relationships, dialect)
    return stmt.on_conflict_do_update(
        index_elements=["agent_id", "user_id"],
        set_={
            name: stmt.excluded[name]
            for name in ("anger", "rapport", "trust", "formality", "updated_at")
        },
    )


class RelationshipRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def get(self, agent_id: str, user_id: str) -> RelationshipRow | None:
        async with self._engine.connect() as conn:
            return await self.get_in(conn, agent_id, user_id)

    async def get_in(
        self, conn: AsyncConnection, agent_id: str, user_id: str, *, for_update: bool = False
    ) -> RelationshipRow | None:
        """Read inside the caller's transaction; ``for_update`` locks the row on PostgreSQL."""
        rows = await self.get_many_in(conn, agent_id, [user_id], for_update=for_update)
        return rows.get(user_id)

    async def get_many_in(
        self,
        conn: AsyncConnection,
        agent_id: str,
        user_ids: Sequence[str],
        *,
        for_update: bool = True,
    ) -> dict[str, RelationshipRow]:
        """Rows of several users in one statement (``for_update``: locked on PostgreSQL, in
        user order so concurrent writers cannot deadlock)."""
        params = {"agent_id": agent_id, "user_ids": sorted(set(user_ids))}
        return {
            row.user_id: RelationshipRow(
                row.anger, row.rapport, row.trust, row.formality, row.updated_at
            )
            for row in await conn.execute(_ROWS_FOR_UPDATE if for_update else _ROWS, params)
        }

    async def put_many_in(
        self, conn: AsyncConnection, agent_id: str, rows: dict[str, RelationshipRow]
    ) -> None:
        """Upsert several users' rows in one executemany."""
        if not rows:
            return
        await conn.execute(
            _upsert(conn.dialect.name),
            [
                {
                    "agent_id": agent_id,
                    "user_id": user_id,
                    "anger": row.anger,
                    "rapport": row.rapport,
                    "trust": row.trust,
                    "formality": row.formality,
                    "updated_at": row.updated_at,
                }
                for user_id, row in sorted(rows.items())
            ],
        )

    async def put(self, agent_id: str, user_id: str, row: RelationshipRow) -> None:
        async with self._engine.begin() as conn:
            await self.put_in(conn, agent_id, user_id, row)

    async def put_in(
        self, conn: AsyncConnection, agent_id: str, user_id: str, row: RelationshipRow
    ) -> None:
        await self.put_many_in(conn, agent_id, {user_id: row})

    async def delete(self, agent_id: str, user_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(relationships).where(
                    relationships.c.agent_id == agent_id, relationships.c.user_id == user_id
                )
            )
            return bool(result.rowcount)
