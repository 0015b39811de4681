"""Daily consolidation on a real database: facts, archive, idempotence, crash safety."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from carrier.memory.consolidation import LOCK_TTL, Consolidator, OfflineExtractor
from carrier.memory.long_term import LongTermMemory
from carrier.memory.people import Forgotten, forget_user, retract_message, what_i_know
from carrier.store.database import create_engine
from carrier.store.facts import NewFact
from carrier.store.messages import LoggedMessage
from carrier.store.migrate import upgrade
from carrier.store.relationships import RelationshipRow
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
                name="consolidate:fish",
                holder="other-host:4242:abcd",
                expires_at=datetime.now(UTC) + timedelta(minutes=4),
            )
        )
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert report.skipped_locked and report.messages_archived == 0


async def test_a_live_owner_on_this_host_keeps_its_lock(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    # Process 1 always runs: its lock is not taken over while its heartbeat is fresh.
    await hold_lock(store, f"{socket.gethostname()}:1:live", timedelta(minutes=4))
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert report.skipped_locked and report.messages_archived == 0


async def test_a_dead_owners_lock_is_taken_over_at_once(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    dead = f"{socket.gethostname()}:{int(out)}:gone"
    await hold_lock(store, dead, timedelta(minutes=4))
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert not report.skipped_locked and report.messages_archived == 1
    async with store.engine.connect() as conn:  # released when done
        assert (await conn.execute(select(job_locks))).first() is None


async def test_a_stale_heartbeat_is_taken_over(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    await hold_lock(store, "other-host:4242:hung", -timedelta(seconds=1))
    report = await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    assert not report.skipped_locked and report.messages_archived == 1


async def test_the_lock_is_refreshed_after_every_chunk(store: Store) -> None:
    await log(store, *(line(i, "ana", f"I love topic {i}", DAY1) for i in range(3)))
    seen: list[tuple[str, datetime]] = []

    async def look(_report: object) -> None:
        async with store.engine.connect() as conn:
            row = (await conn.execute(select(job_locks))).one()
        seen.append((row.holder, row.expires_at))

    before = datetime.now(UTC)
    await consolidator(store, chunk=1).consolidate("fish", DAY1 + timedelta(hours=1), on_chunk=look)
    assert len(seen) == 3 and len({holder for holder, _ in seen}) == 1
    host, pid, _token = seen[0][0].split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    expiries = [expires for _, expires in seen]
    assert expiries == sorted(expires for _, expires in seen)
    assert all(before + LOCK_TTL <= e <= datetime.now(UTC) + LOCK_TTL for e in expiries)


async def test_a_run_whose_lock_was_taken_over_stops(store: Store) -> None:
    await log(store, *(line(i, "ana", f"I love topic {i}", DAY1) for i in range(4)))

    async def steal(_report: object) -> None:
        async with store.engine.begin() as conn:
            await conn.execute(job_locks.update().values(holder="other-host:1:thief"))

    report = await consolidator(store, chunk=1).consolidate(
        "fish", DAY1 + timedelta(hours=1), on_chunk=steal
    )
    # The first chunk's refresh still held; the second found the lock gone and stopped.
    assert report.messages_archived == 2 and report.errors
    async with store.engine.connect() as conn:  # the new owner's lock is left alone
        assert (await conn.execute(select(job_locks.c.holder))).scalar_one() == "other-host:1:thief"


async def hold_lock(store: Store, holder: str, fresh_for: timedelta) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            job_locks.insert().values(
                name="consolidate:fish", holder=holder, expires_at=datetime.now(UTC) + fresh_for
            )
        )


CHILD = """
import asyncio, os, signal, sys
from datetime import datetime
from sqlalchemy import event
from carrier.memory.consolidation import LOCK_TTL, Consolidator, OfflineExtractor
from carrier.memory.long_term import LongTermMemory
from carrier.store.database import create_engine
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder

url, cutoff, die_at_delete = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    store = Store(create_engine(url))
    deletes = [0]

    @event.listens_for(store.engine.async_engine.sync_engine, "before_cursor_execute")
    def maybe_die(conn, cursor, statement, parameters, context, executemany):
        # Inside a chunk's transaction: facts merged, messages copied to the archive,
        # the log's delete about to run, nothing committed.
        if statement.lstrip().upper().startswith("DELETE FROM SHORT_TERM_MESSAGES"):
            deletes[0] += 1
            if deletes[0] == die_at_delete:
                os.kill(os.getpid(), signal.SIGKILL)

    c = Consolidator(store, LongTermMemory(store, HashingEmbedder()), OfflineExtractor(),
                     chunk=100)
    print("started", flush=True)
    await c.consolidate("fish", datetime.fromisoformat(cutoff))
    print("finished", flush=True)

asyncio.run(main())
"""


async def run_child(url: str, cutoff: str, *, die_at_delete: int = 0, kill_after: float) -> int:
    """Run a consolidation in a child process; SIGKILL it after ``kill_after`` seconds (or
    it kills itself inside its ``die_at_delete``-th chunk transaction).  Its return code."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        cutoff,
        str(die_at_delete),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert await child.stdout.readline() == b"started\n"
    try:
        await asyncio.wait_for(child.wait(), kill_after)
    except TimeoutError:
        child.send_signal(signal.SIGKILL)
    return await child.wait()


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

    async def state() -> tuple[tuple[int, int, int], list[str]]:
        opened = Store(create_engine(url))
        try:
            async with opened.engine.connect() as conn:
                holders = [r.holder for r in await conn.execute(select(job_locks))]
            return await counts(opened), holders
        finally:
            await opened.close()

    # 1. Killed inside the third chunk's transaction: two chunks done, the third rolled back.
    assert await run_child(url, cutoff, die_at_delete=3, kill_after=60) == -signal.SIGKILL
    (logged, archived, refs), holders = await state()
    assert (logged, archived) == (total - 200, 200) and refs == 2 * 200
    assert len(holders) == 1  # the dead run's lock is left behind, unexpired
    # 2. Killed at random moments: between chunks, inside transactions, while embedding.
    rng = random.Random(7)
    for _ in range(3):
        await run_child(url, cutoff, kill_after=rng.uniform(0.0, 0.6))
        (logged, archived, refs), holders = await state()
        assert logged + archived == total and refs == 2 * archived
    # 3. Run again with no hand-made clean-up: the dead owner's lock is taken over.
    store = Store(create_engine(url))
    try:
        report = await consolidator(store, chunk=100).consolidate("fish", DAY1 + timedelta(hours=2))
        assert not report.skipped_locked
        logged, archived, refs = await counts(store)
        assert (logged, archived) == (0, total)  # none lost, none archived twice
        async with store.engine.connect() as conn:
            distinct = await conn.scalar(
                select(func.count(func.distinct(message_archive.c.message_id)))
            )
            assert distinct == total
            assert (await conn.execute(select(job_locks))).first() is None
        # every statement counted exactly once: 2 facts per message
        assert refs == 2 * total
    finally:
        await store.close()


async def befriend(store: Store, user: str) -> None:
    async with store.engine.begin() as conn:
        await store.users.touch_in(conn, "fish", user, "Ana", False, DAY1)
    await store.relationships.put(
        "fish",
        user,
        RelationshipRow(anger=1.0, rapport=7.0, trust=6.0, formality=0.0, updated_at=DAY1),
    )


@pytest.mark.postgres
async def test_forget_me_removes_the_relationship_and_names(store: Store) -> None:
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    await befriend(store, "u-ana")
    await befriend(store, "u-bo")
    assert (await what_i_know(store, "fish", "u-ana")).relationship is not None
    forgotten = await forget_user(store, "fish", "u-ana")
    assert forgotten.relationship and forgotten.facts == 1 and forgotten.messages == 1
    assert await store.relationships.get("fish", "u-ana") is None
    assert await store.users.get("fish", "u-ana") is None
    assert await store.users.nicknames("fish", "u-ana") == []
    assert await store.relationships.get("fish", "u-bo") is not None  # others untouched
    again = await forget_user(store, "fish", "u-ana")
    assert again == Forgotten(facts=0, messages=0, relationship=False)


async def test_forget_me_is_one_transaction(store: Store) -> None:
    """A failure at the last step (the user row) leaves everything as it was."""
    await log(store, line(1, "ana", "I live in Lisbon", DAY1))
    await consolidator(store).consolidate("fish", DAY1 + timedelta(hours=1))
    await log(store, line(2, "ana", "I love tea", DAY1 + timedelta(hours=2)))
    await befriend(store, "u-ana")
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TRIGGER no_forget BEFORE DELETE ON users "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(Exception, match="refused"):
        await forget_user(store, "fish", "u-ana")
    known = await what_i_know(store, "fish", "u-ana")
    assert [f.fact for f in known.facts] == ["lives in Lisbon"]
    assert known.messages_kept == 2 and known.relationship is not None


@pytest.mark.postgres
async def test_equally_similar_facts_rank_by_references_then_recency(store: Store) -> None:
    memory = LongTermMemory(store, HashingEmbedder())
    now = DAY1 + timedelta(days=100)
    facts = {
        # fact: (reference count, last mentioned days before now)
        "has a dog called Rex": (1, 90),
        "plays chess on tuesdays": (9, 20),
        "collects old stamps": (1, 1),
        "grows tomatoes at home": (3, 1),
        "builds tiny boats": (3, 10),
    }
    vectors = await memory.embed(list(facts))
    async with store.engine.begin() as conn:
        for (text, (refs, days)), vector in zip(facts.items(), vectors, strict=True):
            at = now - timedelta(days=days)
            fact_id = await store.facts.add_in(
                conn,
                "fish",
                NewFact(
                    "u-ana",
                    text,
                    "general",
                    at,
                    embedding=vector,
                    embedding_model=memory.embedder.model,
                ),
            )
            await store.facts.restore_in(conn, fact_id, at, refs)
    # The query's vector is equally similar to every fact (orthogonal to all of them).
    orthogonal = {memory.embedder.model: np.zeros(memory.embedder.dimensions, dtype=np.float32)}
    ranked = await memory.facts_for("fish", "u-ana", "anything", now=now, query_vectors=orthogonal)
    assert {r.similarity for r in ranked} == {0.0}
    assert [r.fact.fact for r in ranked] == [
        "plays chess on tuesdays",  # most mentioned
        "grows tomatoes at home",  # 3 mentions, yesterday
        "builds tiny boats",  # 3 mentions, 10 days ago
        "collects old stamps",  # 1 mention, yesterday
        "has a dog called Rex",  # 1 mention, 90 days ago
    ]
    # Similarity still comes first: the dog, asked about, beats everything.
    about_dog = await memory.facts_for("fish", "u-ana", "has a dog called Rex", now=now)
    assert about_dog[0].fact.fact == "has a dog called Rex"


async def test_a_job_cancelled_while_its_heartbeat_stops_stays_cancelled(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that arrives while the heartbeat is being stopped ends the job (the
    bot's shutdown once hung on a maintenance loop that had swallowed it) and the lock is
    still released."""
    from carrier.memory import consolidation

    started, stopping, let_go = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop(*_args: object) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopping.set()
            await let_go.wait()
            raise

    monkeypatch.setattr(consolidation, "keep_job_lock_alive", slow_to_stop)
    holder = consolidation.lock_holder()
    now = datetime.now(UTC)
    assert await consolidation.acquire_job_lock(store, "job", holder, now, LOCK_TTL)

    async def job() -> None:
        async with consolidation.heartbeat_while_held(store, "job", holder):
            await started.wait()  # the work is done; then the heartbeat is stopped
        await asyncio.sleep(3600)  # where a swallowed cancellation would leave it

    task = asyncio.create_task(job())
    await asyncio.wait_for(stopping.wait(), 5)
    task.cancel()
    let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(job_locks))).scalar() == 0
