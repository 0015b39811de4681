"""Agents: one row per persona living in this database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from carrier.store.database import Database
from carrier.store.schema import agents
from carrier.store.upsert import insert


class AgentRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def ensure(self, agent_id: str, name: str) -> None:
        """Create the agent row if missing; an existing agent keeps its name."""
        stmt = insert(agents, self._engine.dialect.name).values(
            id=agent_id, name=name, created_at=datetime.now(UTC)
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

    async def rename(self, agent_id: str, name: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(agents.update().where(agents.c.id == agent_id).values(name=name))

    async def name(self, agent_id: str) -> str | None:
        async with self._engine.connect() as conn:
            return await conn.scalar(select(agents.c.name).where(agents.c.id == agent_id))

    async def list(self) -> list[tuple[str, str]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(agents.c.id, agents.c.name).order_by(agents.c.id))
            return [(row.id, row.name) for row in rows]
