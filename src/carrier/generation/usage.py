"""Recording what LLM calls cost: the ledger in the database and the Prometheus counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from carrier.generation.llm.base import Completion
from carrier.generation.pricing import Price, price_of
from carrier.metrics import Metrics
from carrier.store.group_commit import GroupCommit
from carrier.store.store import Store
from carrier.store.usage import UsageRow


class UsageRecorder:
    """The ``on_usage`` callback of the LLM generator."""

    def __init__(
        self,
        store: Store,
        agent_id: str,
        metrics: Metrics,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        self._store = store
        self._agent_id = agent_id
        self._metrics = metrics
        self._prices = dict(prices or {})
        self._commit: GroupCommit[UsageRow, None] = GroupCommit(self._write, name="carrier-usage")

    async def __call__(self, completion: Completion, purpose: str) -> None:
        cost = price_of(completion.model, self._prices).cost(
            completion.input_tokens, completion.output_tokens
        )
        labels = {"provider": completion.provider, "model": completion.model}
        self._metrics.llm_tokens.labels(direction="in", **labels).inc(completion.input_tokens)
        self._metrics.llm_tokens.labels(direction="out", **labels).inc(completion.output_tokens)
        self._metrics.llm_cost.labels(**labels).inc(cost)
        self._metrics.llm_calls.labels(purpose=purpose, **labels).inc()
        await self._commit.submit(
            UsageRow(
                provider=completion.provider,
                model=completion.model,
                purpose=purpose,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=cost,
                created_at=datetime.now(UTC),
            )
        )

    async def _write(self, rows: Sequence[UsageRow]) -> list[None]:
        await self._store.usage.add_many(self._agent_id, rows)
        return [None] * len(rows)
