"""Recording what LLM calls cost: the ledger in the database and the Prometheus counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from carrier.generation.llm.base import Completion
from carrier.generation.pricing import Price, price_of
from carrier.metrics import Metrics
from carrier.store.group_commit import GroupCommit
from carrier.store.store import Store
from carrier.store.usage import UsageRow

log = logging.getLogger(__name__)


USAGE_LINGER_SECONDS = 0.5
"""How long a usage row may wait for others to share its transaction (:meth:`flush` writes
at once; the Prometheus counters never wait)."""


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
        # Nobody waits for the ledger: rows share a transaction for up to half a second.
        self._commit: GroupCommit[UsageRow, None] = GroupCommit(
            self._write, linger=USAGE_LINGER_SECONDS, name="carrier-usage"
        )
        self._pending: set[asyncio.Future[None]] = set()

    async def __call__(self, completion: Completion, purpose: str) -> None:
        cost = price_of(completion.model, self._prices).cost(
            completion.input_tokens, completion.output_tokens
        )
        labels = {"provider": completion.provider, "model": completion.model}
        self._metrics.llm_tokens.labels(direction="in", **labels).inc(completion.input_tokens)
        self._metrics.llm_tokens.labels(direction="out", **labels).inc(completion.output_tokens)
        self._metrics.llm_cost.labels(**labels).inc(cost)
        self._metrics.llm_calls.labels(purpose=purpose, **labels).inc()
        # Recorded without holding up the reply; flush() waits for what is pending.
        pending = self._commit.enqueue(
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
        self._pending.add(pending)
        pending.add_done_callback(self._written)

    def _written(self, done: asyncio.Future[None]) -> None:
        self._pending.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("recording LLM usage failed: %s", done.exception())

    async def flush(self) -> None:
        """Wait until every usage row handed in so far is written."""
        while self._pending:
            self._commit.hurry()
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _write(self, rows: Sequence[UsageRow]) -> list[None]:
        await self._store.usage.add_many(self._agent_id, rows)
        return [None] * len(rows)
