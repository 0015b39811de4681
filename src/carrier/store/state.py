"""Global state: a key -> value table per agent (daily mood, status text, ...)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.schema import global_state
from carrier.store.upsert import insert


class GlobalStateRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def get(self, agent_id: str, key: str) -> str | None:
        async with self._engine.connect() as conn:
            return await conn.scalar(
                select(global_state.c.value).where(
                    global_state.c.agent_id == agent_id, global_state.c.key == key
                )
            )

    async def all(self, agent_id: str, prefix: str = "") -> dict[str, str]:
        query = select(global_state.c.key, global_state.c.value).where(
            global_state.c.agent_id == agent_id
        )
        if prefix:
            query = query.where(global_state.c.key.startswith(prefix, autoescape=True))
        async with self._engine.connect() as conn:
            return {row.key: row.value for row in await conn.execute(query)}

    async def set(self, agent_id: str, key: str, value: str) -> None:
        async with self._engine.begin() as conn:
            await self.set_in(conn, agent_id, {key: value})

    async def set_many(self, agent_id: str, values: dict[str, str]) -> None:
        async with self._engine.begin() as conn:
            await self.set_in(conn, agent_id, values)

    async def set_in(self, conn: AsyncConnection, agent_id: str, values: dict[str, str]) -> None:
        """Upsert inside the caller's transaction."""
        if not values:
            return
        now = datetime.now(UTC)
        stmt = insert(global_state, conn.dialect.name)
        stmt = stmt.on_conflict_do_update(
            index_elements=["agent_id", "key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        await conn.execute(
            stmt,
            [
                {"agent_id": agent_id, "key": k, "value": v, "updated_at": now}
                for k, v in values.items()
            ],
        )

    async def delete(self, agent_id: str, key: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(global_state).where(
                    global_state.c.agent_id == agent_id, global_state.c.key == key
                )
            )
            return bool(result.rowcount)
