"""The daily consolidation is tried again later the same day when it failed or found
another run's lock, once per retry slot across instances, and never after it succeeded."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.engine.schedule import Scheduler
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.schema import job_locks
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_skipped_consolidation_is_retried_the_same_day_once(store: Store) -> None:
    clock = Clock()
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    settings = load_settings(None)
    engine = build_engine_for(settings, store, "bot", clock=clock, rng=random.Random(3))
    memory = Memory(
        store,
        HashingEmbedder(),
        create_vector_index(settings, store),
        agent_id="fish",
        extractor=OfflineExtractor(),
    )
    try:
        await engine.handle(
            IncomingMessage(
                channel_id="c1",
                guild_id="g1",
                message_id="m1",
                author_id="alice",
                author_name="alice",
                text="I love sushi",
                created_at=clock.now,
            )
        )
        await engine.drain()
        # Another host's run holds the consolidation lock (fresh heartbeat).
        async with store.engine.begin() as conn:
            await conn.execute(
                job_locks.insert().values(
                    name="consolidate:fish",
                    holder="other-host:77:busy",
                    expires_at=datetime.now(UTC) + timedelta(minutes=4),
                )
            )
        a = Scheduler(engine, memory, consolidation_hour=4)
        b = Scheduler(engine, memory, consolidation_hour=4)  # a second instance
        retry = a.consolidation_retry
        clock.now = datetime(2026, 3, 3, 4, 1, tzinfo=UTC)
        first = await a.run_daily()
        assert first is not None and not first.retry and first.status
        assert first.report is not None and first.report.skipped_locked
        # Within the same retry slot nobody tries again.
        clock.now += timedelta(minutes=10)
        assert await a.run_daily() is None and await b.run_daily() is None
        # Still locked in the next slot: one instance tries, and skips again.
        clock.now += retry
        second = await b.run_daily()
        assert second is not None and second.retry and second.report is not None
        assert second.report.skipped_locked
        assert await a.run_daily() is None
        # The other run is gone: the next slot's attempt consolidates, exactly once.
        async with store.engine.begin() as conn:
            await conn.execute(job_locks.delete().where(job_locks.c.name == "consolidate:fish"))
        clock.now += retry
        third = await a.run_daily()
        assert third is not None and third.retry and third.report is not None
        assert third.report.messages_archived == 1 and third.status == first.status
        assert await b.run_daily() is None
        clock.now += retry
        assert await a.run_daily() is None and await b.run_daily() is None
        assert [f.fact for f in await store.facts.for_user("fish", "alice")] == ["likes sushi"]
    finally:
        await memory.aclose()
        await engine.aclose()
