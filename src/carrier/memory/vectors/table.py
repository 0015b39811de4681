"""SQL over the ``fact_vectors`` table that the SQLite and pgvector indexes share."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from carrier.memory.vectors.base import check_model
from carrier.store.database import Database
from carrier.store.schema import fact_vectors


def agent_condition(agent_id: str, model: str | None) -> list[ColumnElement[bool]]:
    """The agent's vectors (of ``model`` only, when given)."""
    condition: list[ColumnElement[bool]] = [fact_vectors.c.agent_id == agent_id]
    if model is not None:
        condition.append(fact_vectors.c.model == check_model(model))
    return condition


async def count_vectors(db: Database, agent_id: str, model: str | None) -> int:
    async with db.connect() as conn:
        found = await conn.scalar(
            select(func.count()).select_from(fact_vectors).where(*agent_condition(agent_id, model))
        )
    return int(found or 0)
