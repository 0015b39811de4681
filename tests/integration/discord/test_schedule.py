"""The scheduler (carrier.engine.schedule) on a real database: its maths, its one-time
claims across instances, and the jobs it runs."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.integration.discord.conftest import scripted_llm_section

from carrier.bootstrap import build_engine_for
from carrier.engine.initiative import PROACTIVE_CHANCE, STATUS_KEY, proactive_message
from carrier.engine.messages import IncomingMessage
from carrier.engine.pipeline import Engine
from carrier.engine.schedule import ChannelRef, JobClaims, Scheduler
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.store import Store
from carrier.testing import llm_server as fake
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 3, 2, 10, 7, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def make_engine(store: Store, clock: Clock, tz: str = "UTC") -> Engine:
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    settings = load_settings(None, mood={"timezone": tz}, markov={"persona_weight": 1.0})
    return build_engine_for(settings, store, "bot", clock=clock, rng=random.Random(3))


def memory_for(store: Store) -> Memory:
    settings = load_settings(None)
    return Memory(
        store,
        HashingEmbedder(),
        create_vector_index(settings, store),
        agent_id="fish",
        extractor=OfflineExtractor(),
    )


async def say(engine: Engine, clock: Clock, text: str, channel: str = "c1", n: int = 0) -> None:
    await engine.handle(
        IncomingMessage(
            channel_id=channel,
            message_id=f"{channel}-{text}-{n}",
            author_id="alice",
            author_name="alice",
            text=text,
            created_at=clock.now,
            guild_id="g1",
        )
    )


async def test_interval_maths(store: Store, clock: Clock) -> None:
    engine = await make_engine(store, clock)
    scheduler = Scheduler(engine, None, interval=timedelta(minutes=30))
    assert scheduler.next_proactive_at(START) == datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    at = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    assert scheduler.slot(at) == scheduler.slot(START) + 1
    assert scheduler.next_proactive_at(at) == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="positive"):
        Scheduler(engine, None, interval=timedelta(0))


async def test_daily_hour_in_the_bot_time_zone(store: Store, clock: Clock) -> None:
    engine = await make_engine(store, clock, tz="Asia/Tokyo")  # UTC+9
    scheduler = Scheduler(engine, None, consolidation_hour=4)
    # 18:30 UTC on the 1st is 03:30 on the 2nd in Tokyo: not yet.
    assert scheduler.daily_day(datetime(2026, 3, 1, 18, 30, tzinfo=UTC)) is None
    assert scheduler.daily_day(datetime(2026, 3, 1, 19, 0, tzinfo=UTC)) == "2026-03-02"
    assert scheduler.next_daily_at(datetime(2026, 3, 1, 18, 30, tzinfo=UTC)) == datetime(
        2026, 3, 1, 19, 0, tzinfo=UTC
    )
    assert scheduler.next_daily_at(datetime(2026, 3, 1, 19, 0, tzinfo=UTC)) == datetime(
        2026, 3, 2, 19, 0, tzinfo=UTC
    )


async def test_a_claim_is_granted_once_across_instances(store: Store) -> None:
    first, second = JobClaims(store, "host-a"), JobClaims(store, "host-b")
    until = START + timedelta(hours=1)
    assert await first.claim("daily:fish:2026-03-02", now=START, until=until)
    assert not await second.claim("daily:fish:2026-03-02", now=START, until=until)
    assert not await first.claim("daily:fish:2026-03-02", now=START, until=until)
    # Expired claims of the family are swept, so the name could be claimed again.
    later = until + timedelta(seconds=1)
    assert await second.claim("daily:fish:2026-03-02", now=later, until=later)


async def test_daily_runs_once_per_day_consolidating_then_setting_the_status(
    store: Store, clock: Clock
) -> None:
    engine = await make_engine(store, clock)
    memory = memory_for(store)
    await say(engine, clock, "I love sushi and I live in Lisbon")
    await engine.drain()
    a = Scheduler(engine, memory, consolidation_hour=4)
    b = Scheduler(engine, memory, consolidation_hour=4)  # a second instance
    clock.now = datetime(2026, 3, 3, 3, 59, tzinfo=UTC)
    assert await a.run_daily() is None
    clock.now = datetime(2026, 3, 3, 4, 1, tzinfo=UTC)
    done = await a.run_daily()
    assert done is not None and done.day == "2026-03-03"
    assert done.report is not None and done.report.messages_archived >= 1
    assert done.status and await a.current_status() == done.status
    assert await b.run_daily() is None
    assert await a.run_daily() is None
    clock.now += timedelta(days=1)
    assert (await b.run_daily()) is not None
    await memory.aclose()
    await engine.aclose()


async def test_proactive_tick_once_per_interval_and_channel(store: Store, clock: Clock) -> None:
    engine = await make_engine(store, clock)
    a = Scheduler(engine, None, chance=1.0, rng=random.Random(1))
    b = Scheduler(engine, None, chance=1.0, rng=random.Random(2))
    await say(engine, clock, "the tide is strange today", channel="busy")
    await engine.drain()
    channels = [ChannelRef("busy", "g1"), ChannelRef("empty", "g1")]
    posted = await a.proactive_tick(channels)
    assert [p.channel_id for p in posted] == ["busy"]
    assert posted[0].kind in ("contextual", "status") and posted[0].text
    # The same interval on another instance: already claimed.
    assert await b.proactive_tick(channels) == []
    # Next interval: the bot spoke last in that channel, so it stays quiet.
    clock.now += timedelta(minutes=30)
    assert await a.proactive_tick(channels) == []
    await say(engine, clock, "anyone there", channel="busy", n=2)
    await engine.drain()
    clock.now += timedelta(minutes=30)
    assert len(await b.proactive_tick(channels)) == 1
    await engine.aclose()


async def test_proactive_tick_respects_chance_activity_and_quiet_hours(
    store: Store, clock: Clock
) -> None:
    engine = await make_engine(store, clock)
    await say(engine, clock, "hello reef", channel="c1")
    await engine.drain()
    channels = [ChannelRef("c1", "g1")]
    never = Scheduler(engine, None, chance=0.0)
    assert await never.proactive_tick(channels) == []
    always = Scheduler(engine, None, chance=1.0)
    await store.channels.set_channel("fish", "c1", "g1", active=False)
    clock.now += timedelta(minutes=30)
    assert await always.proactive_tick(channels) == []
    await store.channels.set_channel("fish", "c1", "g1", active=True)
    await store.channels.set_guild("fish", "g1", quiet_hours=(9, 12))  # now is 10:xx UTC
    clock.now += timedelta(minutes=30)
    assert await always.proactive_tick(channels) == []
    await store.channels.set_guild("fish", "g1", clear_quiet_hours=True)
    clock.now += timedelta(minutes=30)
    assert len(await always.proactive_tick(channels)) == 1
    await engine.aclose()


MOOD = {
    "daily_mood_anger": "8",
    "daily_mood_happiness": "9",
    "daily_mood_energy": "2",
    "daily_mood_curiosity": "9",
}
MOOD_WORDS = "irritable, cheerful, sleepy, curious"
STATUS = "Counting bubbles in the lagoon"


async def test_proactive_is_half_comments_half_status_musings_in_the_daily_mood(
    store: Store, clock: Clock
) -> None:
    async with fake.ScriptedLLMServer(default=fake.answer("A thought from the reef.")) as llm:
        await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
        settings = load_settings(
            None,
            markov={"persona_weight": 1.0},
            llm=scripted_llm_section(llm.openai_base_url),
        )
        engine = build_engine_for(settings, store, "bot", clock=clock, rng=random.Random(3))
        await store.state.set("fish", STATUS_KEY, STATUS)
        await store.state.set_many("fish", {**MOOD, "daily_mood_date": START.date().isoformat()})
        rng = random.Random(7)
        kinds: Counter[str] = Counter()
        for n in range(40):
            await say(engine, clock, f"the tide is strange today, wave {n}", n=n)
            await engine.drain()
            asked = len(llm.requests)
            posted = await proactive_message(engine, "c1", "g1", chance=1.0, rng=rng)
            assert posted is not None and posted.text == "A thought from the reef."
            assert len(llm.requests) == asked + 1
            request = llm.requests[-1]
            kinds[posted.kind] += 1
            # Both kinds are written in the day's mood.
            assert f"Your mood today: {MOOD_WORDS}." in request.system
            musing = f'a musing that expands on your current status, "{STATUS}"'
            if posted.kind == "status":
                # A musing on the status alone: no transcript, no comment asked for.
                assert musing in request.system
                assert "a comment on the recent conversation" not in request.system
                assert not any(f"wave {n}" in m["content"] for m in request.messages)
            else:
                assert posted.kind == "contextual"
                assert "a comment on the recent conversation" in request.system
                assert any(f"wave {n}" in m["content"] for m in request.messages)
            clock.now += timedelta(seconds=30)
        assert set(kinds) == {"contextual", "status"}
        # 50/50: 40 draws, sd ~3.2: each kind well inside 12..28 (seeded, so stable).
        assert 12 <= kinds["status"] <= 28, kinds
        await engine.aclose()


async def test_proactive_defaults_every_30_minutes_with_a_10_percent_chance(
    store: Store, clock: Clock
) -> None:
    assert PROACTIVE_CHANCE == 0.1
    discord = load_settings(None).discord
    assert (discord.proactive_interval_minutes, discord.proactive_chance) == (30.0, 0.1)
    engine = await make_engine(store, clock)
    scheduler = Scheduler(engine, None)
    assert scheduler.interval == timedelta(minutes=30) and scheduler.chance == 0.1
    # The default chance: about one call in ten posts (a miss costs nothing, so many draws).
    await say(engine, clock, "small talk")
    await engine.drain()
    rng = random.Random(11)
    draws, posted = 600, 0
    for n in range(draws):
        if await proactive_message(engine, "c1", "g1", rng=rng) is not None:
            posted += 1
            clock.now += timedelta(seconds=1)
            await say(engine, clock, "more small talk", n=n)  # the bot no longer spoke last
            await engine.drain()
    # Binomial 600 x 0.1: mean 60, sd ~7.3 (seeded, so stable).
    assert 40 <= posted <= 80, posted
    await engine.aclose()
