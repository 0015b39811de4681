"""The LLM usage ledger: tokens in and out and the estimated cost of every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from carrier.store.database import Database
from carrier.store.schema import llm_usage


@dataclass(frozen=True, slots=True)
class UsageRow:
    provider: str
    model: str
    purpose: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    created_at: datetime
    succeeded: bool = True


@dataclass(frozen=True, slots=True)
class UsageTotal:
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class UsageRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def add(self, agent_id: str, row: UsageRow) -> None:
        await self.add_many(agent_id, [row])

    async def add_many(self, agent_id: str, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        # Small: bounded by the usage recorder's batch (Database.begin).
        async with self._engine.begin(small=True) as conn:
            await conn.execute(
                llm_usage.insert(),
                [
                    {
                        "agent_id": agent_id,
                        "provider": row.provider,
                        "model": row.model,
                        "purpose": row.purpose,
                        "input_tokens": row.input_tokens,
                        "output_tokens": row.output_tokens,
                        "cost_usd": row.cost_usd,
                        "succeeded": row.succeeded,
                        "created_at": row.created_at,
                    }
                    for row in rows
                ],
            )

    async def totals(self, agent_id: str, since: datetime | None = None) -> list[UsageTotal]:
        """Per provider and model, biggest spenders first."""
        query = (
            select(
                llm_usage.c.provider,
                llm_usage.c.model,
                func.count().label("calls"),
                func.coalesce(func.sum(llm_usage.c.input_tokens), 0).label("input_tokens"),
                func.coalesce(func.sum(llm_usage.c.output_tokens), 0).label("output_tokens"),
                func.coalesce(func.sum(llm_usage.c.cost_usd), 0.0).label("cost_usd"),
            )
            .where(llm_usage.c.agent_id == agent_id)
            .group_by(llm_usage.c.provider, llm_usage.c.model)
        )
        if since is not None:
            query = query.where(llm_usage.c.created_at >= since)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        totals = [
            UsageTotal(
                r.provider,
                r.model,
                int(r.calls),
                int(r.input_tokens),
                int(r.output_tokens),
                float(r.cost_usd),
            )
            for r in rows
        ]
        return sorted(totals, key=lambda t: (-t.cost_usd, -t.calls, t.provider, t.model))
