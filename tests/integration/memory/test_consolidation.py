"""Daily consolidation on a real database: facts, archive, idempotence, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from carrier.memory.consolidation import Consolidator, OfflineExtractor
from carrier.memory.long_term import LongTermMemory
from carrier.memory.people import forget_user, retract_message, what_i_know
from carrier.store.database import create_engine
from carrier.store.messages import LoggedMessage
from carrier.store.migrate import upgrade
from carrier.store.schema import job_locks, memory_facts, message_archive, short_term_messages
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder

DAY1 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def line(
    n: int, author: str, text: str, at: datetime, guild: str = "g1", channel: str = "c1"
) -> LoggedMessage:
    return LoggedMessage(
        agent_id="fish",
        guild_id=guild,
        channel_id=channel,
        message_id=f"m{n}",
        author_id=f"u-{author}",
        author_name=author,
        text=text,
        created_at=at,
    )


async def log(store: Store, *messages: LoggedMessage) -> None:
    async with store.engine.begin() as conn:
        await store.messages.insert_many_in(conn, messages)


def consolidator(store: Store, chunk: int = 500) -> Consolidator:
    return Consolidator(
        store, LongTermMemory(store, HashingEmbedder()), OfflineExtractor(), chunk=chunk
    )


async def counts(store: Store) -> tuple[int, int, int]:
    async with store.engine.connect() as conn:
        logged = await conn.scalar(select(func.count()).select_from(short_term_messages))
        archived = await conn.scalar(select(func.count()).select_from(message_archive))
        refs = await conn.scalar(select(func.coalesce(func.sum(memory_facts.c.reference_count), 0)))
    return int(logged or 0), int(archived or 0), int(refs or 0)


@pytest.mark.postgres
async def test_facts_per_user_and_the_log_moves_to_the_archive(store: Store) -> None:
    await log(
        store,
        line(1, "ana", "hi! my name is Ana and I live in Lisbon", DAY1),
        line(2, "bo", "I have a dog named Rex", DAY1 + timedelta(minutes=1)),
        line(3, "ana", "I love sushi", DAY1 + timedelta(minutes=2)),
        line(4, "bo", "nice weather today", DAY1 + timedelta(minutes=3)),
    )
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert report.messages_archived == 4 and report.facts_new == 4
    ana = {f.fact for f in await store.facts.for_user("fish", "u-ana")}
    assert ana == {"is called Ana", "lives in Lisbon", "likes sushi"}
    assert {f.fact for f in await store.facts.for_user("fish", "u-bo")} == {"has a dog called Rex"}
    assert await counts(store) == (0, 4, 4)
    # The 24-hour view is a time query over log and archive: consolidation empties nothing.
    window = await store.messages.recent("fish", "c1", DAY1 - timedelta(hours=1), 10)
    assert len(window) == 4


@pytest.mark.postgres
async def test_running_again_changes_nothing(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    first = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    before = await counts(store)
    again = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert first.messages_archived == 1
    assert again.messages_archived == 0 and again.facts_new == 0
    assert await counts(store) == before


@pytest.mark.postgres
async def test_a_fact_said_again_is_reinforced_not_duplicated(store: Store) -> None:
    day2 = DAY1 + timedelta(days=1)
    await log(store, line(1, "ana", "I love sushi", DAY1))
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    await log(store, line(2, "ana", "honestly I love sushi", day2))
    report = await consolidator(store).consolidate("fish", day2 + timedelta(hours=1))
    assert report.facts_reinforced == 1 and report.facts_new == 0
    [fact] = await store.facts.for_user("fish", "u-ana")
    assert fact.reference_count == 2
    assert fact.first_mentioned == DAY1 and fact.last_mentioned == day2


@pytest.mark.postgres
async def test_a_contradicting_fact_supersedes_and_keeps_history(store: Store) -> None:
    day2 = DAY1 + timedelta(days=1)
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    await log(store, line(2, "ana", "I just moved to Porto", day2))
    report = await consolidator(store).consolidate("fish", day2 + timedelta(hours=1))
    assert report.facts_superseded == 1
    current = await store.facts.for_user("fish", "u-ana")
    assert [f.fact for f in current] == ["lives in Porto"]
    everything = await store.facts.for_user("fish", "u-ana", include_history=True)
    old = [f for f in everything if f.fact == "lives in Lisbon"]
    assert old and old[0].superseded_by == current[0].id


@pytest.mark.postgres
async def test_retrieval_is_ranked_and_scoped_by_guild(store: Store) -> None:
    await log(
        store,
        line(1, "ana", "I love sushi", DAY1, guild="g1"),
        line(2, "ana", "I have a cat named Tom", DAY1, guild="g2"),
    )
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    memory = LongTermMemory(store, HashingEmbedder())
    ranked = await memory.facts_for("fish", "u-ana", "do you like sushi?", now=DAY1)
    assert ranked[0].fact.fact == "likes sushi"
    only_g1 = await memory.facts_for("fish", "u-ana", "cat", guild_ids=["g1"], now=DAY1)
    assert [r.fact.fact for r in only_g1] == ["likes sushi"]


@pytest.mark.postgres
async def test_people_control_what_is_kept(store: Store) -> None:
    await log(
        store,
        line(1, "ana", "I live in Lisbon", DAY1),
        line(2, "ana", "I love sushi", DAY1),
        line(3, "bo", "I love tea", DAY1),
    )
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    known = await what_i_know(store, "fish", "u-ana")
    assert {f.fact for f in known.facts} == {"lives in Lisbon", "likes sushi"}
    assert known.messages_kept == 2
    assert await retract_message(store, "fish", "m2") == 1
    assert {f.fact for f in (await what_i_know(store, "fish", "u-ana")).facts} == {
        "lives in Lisbon"
    }
    forgotten = await forget_user(store, "fish", "u-ana")
    assert forgotten.facts == 1 and forgotten.messages == 2
    after = await what_i_know(store, "fish", "u-ana")
    assert after.facts == [] and after.messages_kept == 0
    assert [f.fact for f in await store.facts.for_user("fish", "u-bo")] == ["likes tea"]


async def test_a_held_lock_skips_the_run(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    async with store.engine.begin() as conn:
        await conn.execute(
            job_locks.insert().values(
                name="consolidate:fish", holder="other-host", expires_at=DAY1 + timedelta(days=9)
            )
        )
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert report.skipped_locked and report.messages_archived == 0


async def test_killed_mid_run_then_run_again_loses_and_doubles_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    store = Store(create_engine(url))
    await upgrade(store.engine)
    await store.agents.ensure("fish", "Fish")
    total = 1200
    await log(
        store,
        *(
            line(
                i,
                f"user{i % 40}",
                f"I love topic number {i % 7} and I live in City{i % 40}",
                DAY1 + timedelta(seconds=i),
            )
            for i in range(total)
        ),
    )
    await store.close()

    cutoff = (DAY1 + timedelta(hours=2)).isoformat()
    script = textwrap.dedent(f"""
        import asyncio, time
        from datetime import datetime
        from carrier.memory.consolidation import Consolidator, OfflineExtractor
        from carrier.memory.long_term import LongTermMemory
        from carrier.store.database import create_engine
        from carrier.store.store import Store
        from carrier.testing.embeddings import HashingEmbedder

        async def main():
            store = Store(create_engine({url!r}))
            def slow(report):
                print("chunk", report.chunks, flush=True)
                time.sleep(0.3)
            c = Consolidator(store, LongTermMemory(store, HashingEmbedder()),
                             OfflineExtractor(), chunk=100)
            await c.consolidate("fish", datetime.fromisoformat({cutoff!r}), on_chunk=slow)
        asyncio.run(main())
    """)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    await child.stdout.readline()  # one chunk committed...
    await child.stdout.readline()  # ...and a second
    child.send_signal(signal.SIGKILL)
    await child.wait()

    store = Store(create_engine(url))
    try:
        logged, archived, _ = await counts(store)
        assert 0 < archived < total and logged + archived == total  # stopped midway
        async with store.engine.begin() as conn:  # the dead run's lock has not expired yet
            await conn.execute(job_locks.delete())
        await consolidator(store, chunk=100).consolidate("fish", DAY1 + timedelta(hours=2))
        logged, archived, refs = await counts(store)
        assert (logged, archived) == (0, total)  # none lost, none archived twice
        # every statement counted exactly once: 2 facts per message
        assert refs == 2 * total
    finally:
        await store.close()
