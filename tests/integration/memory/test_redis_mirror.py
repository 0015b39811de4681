"""The short-term mirror in a real Redis: served from Redis, rebuilt after flush and outage."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.engine.pipeline import Engine
from carrier.engine.rate_limits import SHARED_ANSWER_WITHIN_SECONDS
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.redis_mirror import (
    ACTIVE_TTL,
    ANSWER_WITHIN_SECONDS,
    INACTIVE_TTL,
    RedisMirror,
)
from carrier.memory.vectors.registry import create_vector_index
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]
_ids = itertools.count(1)


@pytest.fixture
async def engine(
    store: Store, redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Engine]:
    redis_server.flushall()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    settings = load_settings(None)
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    built = build_engine_for(settings, store, "bot", rng=random.Random(9))
    assert built.parts.short_term.mirror is not None
    yield built
    await built.aclose()


def message(
    text: str,
    author: str = "alice",
    at: datetime | None = None,
    channel_id: str = "chan",
    **kw: object,
) -> IncomingMessage:
    return IncomingMessage(
        channel_id=channel_id,
        guild_id="guild",
        message_id=f"r{next(_ids)}",
        author_id=f"u-{author}",
        author_name=author,
        text=text,
        created_at=at or datetime.now(UTC),
        **kw,
    )  # type: ignore[arg-type]


async def window_texts(engine: Engine) -> list[str]:
    rows = await engine.parts.short_term.window("fish", "chan", datetime.now(UTC), 10_000)
    return [m.text for m in rows]


async def database_texts(engine: Engine) -> list[str]:
    rows = await engine.store.messages.recent(
        "fish", "chan", datetime.now(UTC) - timedelta(hours=24), 10_000
    )
    return [m.text for m in reversed(rows)]


async def test_the_window_is_served_from_redis_once_mirrored(engine: Engine) -> None:
    mirror = engine.parts.short_term.mirror
    assert mirror is not None
    for i in range(5):
        await engine.handle(message(f"hello number {i}"))
    first = await window_texts(engine)  # may fill the mirror from the database
    hits = mirror.hits
    again = await window_texts(engine)
    assert again == first == await database_texts(engine)
    assert mirror.hits > hits  # answered by Redis this time


async def test_flush_mid_conversation_keeps_answering_and_rebuilds(
    engine: Engine, redis_server: Any
) -> None:
    await engine.handle(message("the reef is calm, fish?", mentions_bot=True))
    await engine.drain()
    redis_server.flushall()
    reply = await engine.handle(message("still there, fish?", mentions_bot=True))
    assert reply.reply is not None
    await engine.drain()
    assert await window_texts(engine) == await database_texts(engine)
    client = Redis.from_url(redis_server.url)
    try:
        assert await client.exists("carrier:fish:chan:chan:complete") == 1
    finally:
        await client.aclose()


async def test_redis_down_mid_conversation_then_back(engine: Engine, redis_server: Any) -> None:
    await engine.handle(message("before the outage, fish", mentions_bot=True))
    await engine.drain()
    await window_texts(engine)
    redis_server.stop()
    try:
        during = await engine.handle(message("during the outage, fish?", mentions_bot=True))
        assert during.reply is not None and during.reply.text.strip()
        await engine.drain()
        assert "during the outage, fish?" in await window_texts(engine)
    finally:
        redis_server.resume()
    mirror = engine.parts.short_term.mirror
    assert mirror is not None
    mirror._down_until = 0.0  # don't wait the retry pause in a test
    after = await engine.handle(message("after the outage, fish?", mentions_bot=True))
    assert after.reply is not None
    await engine.drain()
    await window_texts(engine)  # rebuilt from the database: nothing written meanwhile lost
    assert await window_texts(engine) == await database_texts(engine)


async def test_a_hung_redis_holds_a_reply_up_a_bounded_time(
    engine: Engine, redis_server: Any
) -> None:
    """Redis accepts connections and answers nothing (stopped with SIGSTOP): the mirror gives
    up after ANSWER_WITHIN_SECONDS and pauses, the rate limiter (on the same Redis here) after
    SHARED_ANSWER_WITHIN_SECONDS, and the reply comes from the database."""
    await engine.handle(message("before it hangs, fish", mentions_bot=True))
    await engine.drain()
    await window_texts(engine)
    redis_server.freeze()
    try:
        began = time.monotonic()
        during = await engine.handle(message("while it hangs, fish?", mentions_bot=True))
        took = time.monotonic() - began
        assert during.reply is not None and during.reply.text.strip()
        bound = ANSWER_WITHIN_SECONDS + SHARED_ANSWER_WITHIN_SECONDS
        assert bound * 0.9 <= took < bound + 1.0
        mirror = engine.parts.short_term.mirror
        assert mirror is not None and not mirror.available
        await engine.drain()
        assert "while it hangs, fish?" in await window_texts(engine)
    finally:
        redis_server.thaw()


async def test_activity_based_ttl(engine: Engine, redis_server: Any) -> None:
    now = datetime.now(UTC)
    await engine.handle(message("first time here", author="newbie", at=now))
    await engine.handle(message("hi", author="regular", at=now - timedelta(minutes=10)))
    await engine.handle(message("hi again", author="regular", at=now))
    client = Redis.from_url(redis_server.url)
    try:
        newbie = await client.ttl("carrier:fish:user:u-newbie")
        regular = await client.ttl("carrier:fish:user:u-regular")
    finally:
        await client.aclose()
    assert INACTIVE_TTL - 60 <= newbie <= INACTIVE_TTL
    assert ACTIVE_TTL - 60 <= regular <= ACTIVE_TTL


async def test_edits_and_deletions_reach_the_mirrored_window(engine: Engine) -> None:
    first = message("my favourite snack is tuna")
    await engine.handle(first)
    await window_texts(engine)
    await engine.message_edited("chan", first.message_id, "my favourite snack is salmon")
    assert await window_texts(engine) == ["my favourite snack is salmon"]
    await engine.message_deleted("chan", first.message_id)
    assert await window_texts(engine) == []


@pytest.fixture
async def with_memory(
    store: Store, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Engine, Memory]]:
    redis_server.flushall()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    settings = load_settings(None)
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    memory = Memory(
        store,
        HashingEmbedder(),
        create_vector_index(settings, store),
        agent_id="fish",
        extractor=OfflineExtractor(),
    )
    built = build_engine_for(settings, store, "bot", rng=random.Random(9), memory=memory)
    assert memory.mirror is built.parts.short_term.mirror is not None
    yield built, memory
    await built.aclose()
    await memory.aclose()


async def mirrored_authors(redis_server: Any, channel: str) -> list[str]:
    client = Redis.from_url(redis_server.url)
    try:
        raw = await client.zrange(f"carrier:fish:chan:{channel}:log", 0, -1)
        return sorted(json.loads(item)["author_id"] for item in raw)
    finally:
        await client.aclose()


async def user_key_exists(redis_server: Any, user: str) -> bool:
    client = Redis.from_url(redis_server.url)
    try:
        return bool(await client.exists(f"carrier:fish:user:u-{user}"))
    finally:
        await client.aclose()


async def test_forget_me_clears_the_user_from_the_mirror(
    with_memory: tuple[Engine, Memory], redis_server: Any
) -> None:
    engine, memory = with_memory
    await engine.handle(message("I love sushi", author="alice"))
    await engine.handle(message("and I love tea", author="bob"))
    await engine.handle(message("hello other room", author="alice", channel_id="chan2"))
    await engine.drain()
    await window_texts(engine)  # the mirror is complete: served from Redis from now on
    assert "u-alice" in await mirrored_authors(redis_server, "chan")
    assert await user_key_exists(redis_server, "alice")

    forgotten = await memory.forget("u-alice")
    assert forgotten.messages == 2
    assert not await user_key_exists(redis_server, "alice")
    assert await user_key_exists(redis_server, "bob")
    for channel in ("chan", "chan2"):
        assert "u-alice" not in await mirrored_authors(redis_server, channel)
    # Rebuilt from the database, without her; served from Redis again afterwards.
    assert await window_texts(engine) == ["and I love tea"]
    assert await mirrored_authors(redis_server, "chan") == ["u-bob"]
    mirror = engine.parts.short_term.mirror
    assert mirror is not None
    hits = mirror.hits
    assert await window_texts(engine) == ["and I love tea"] and mirror.hits > hits


async def test_forget_me_while_redis_is_down_is_applied_when_it_returns(
    with_memory: tuple[Engine, Memory], redis_server: Any
) -> None:
    engine, memory = with_memory
    await engine.handle(message("I love sushi", author="carol"))
    await engine.handle(message("and I love tea", author="bob"))
    await engine.drain()
    await window_texts(engine)
    redis_server.stop()
    try:
        forgotten = await memory.forget("u-carol")  # the database forgets at once
        assert forgotten.messages == 1
        assert await window_texts(engine) == ["and I love tea"]
    finally:
        redis_server.resume()
    mirror = engine.parts.short_term.mirror
    assert mirror is not None
    mirror._down_until = 0.0  # don't wait the retry pause in a test
    assert await window_texts(engine) == ["and I love tea"]
    assert await mirrored_authors(redis_server, "chan") == ["u-bob"]
    assert not await user_key_exists(redis_server, "carol")


async def test_a_burst_of_readers_waits_for_connections_instead_of_failing(
    redis_server: Any,
) -> None:
    """More readers at once than the pool holds (an API under load): every one is served
    from Redis; none is turned away to the database with "too many connections"."""
    redis_server.flushall()
    mirror = RedisMirror.from_url(redis_server.url, max_connections=8)
    now = datetime.now(UTC)
    lines = [
        LoggedMessage(
            agent_id="fish",
            channel_id="busy",
            message_id=f"b{i}",
            author_id="u-ana",
            author_name="ana",
            text=f"line {i}",
            created_at=now - timedelta(seconds=100 - i),
        )
        for i in range(50)
    ]
    try:
        await mirror.rebuild("fish", "busy", lines[::-1], now - timedelta(hours=24), True)
        results = await asyncio.gather(
            *(mirror.recent("fish", "busy", now - timedelta(hours=24), 20) for _ in range(300))
        )
        assert all(r is not None and len(r) == 20 for r in results)
        assert (mirror.hits, mirror.misses) == (300, 0) and mirror.available
        # Each line is decoded once and shared: the same (immutable) objects every read.
        assert all(a is b for a, b in zip(results[0], results[-1], strict=True))
        assert [m.text for m in results[0]] == [f"line {i}" for i in range(49, 29, -1)]
    finally:
        await mirror.aclose()


async def test_a_batch_is_mirrored_in_one_round_trip_with_each_authors_activity(
    redis_server: Any, redis_trips: Any
) -> None:
    """The recorder's batch (messages of several users, one of them twice, and the bot's
    reply) goes to Redis in one round trip, activity included: the reply that waits for it
    waits for one trip, not two per author."""
    redis_server.flushall()
    mirror = RedisMirror.from_url(redis_server.url)
    now = datetime.now(UTC)

    def line(i: int, author: str, at: datetime, **kw: Any) -> LoggedMessage:
        return LoggedMessage(
            agent_id="fish",
            channel_id=f"c{i % 2}",
            message_id=f"m{i}",
            author_id=f"u-{author}",
            author_name=author,
            text=f"line {i}",
            created_at=at,
            **kw,
        )

    batch = [
        line(1, "ana", now - timedelta(minutes=10)),
        line(2, "bob", now - timedelta(minutes=2)),
        line(3, "ana", now),
        line(4, "fish", now, is_self=True),
    ]
    assert await mirror.activity("fish", "u-nobody") is None  # connected (its handshake)
    redis_trips.start()
    client = Redis.from_url(redis_server.url)
    try:
        await mirror.add(batch)
        assert len(redis_trips.sent) == 1
        redis_trips.stop()
        assert await mirror.activity("fish", "u-ana") == {
            "name": "ana",
            "last_active": repr(now.timestamp()),
            "messages": "2",
        }
        assert (await mirror.activity("fish", "u-bob") or {})["messages"] == "1"
        assert await mirror.activity("fish", "u-fish") is None  # the bot's own line
        assert ACTIVE_TTL - 60 <= await client.ttl("carrier:fish:user:u-ana") <= ACTIVE_TTL
        assert INACTIVE_TTL - 60 <= await client.ttl("carrier:fish:user:u-bob") <= INACTIVE_TTL
        for channel, texts in (("c1", ["line 3", "line 1"]), ("c0", ["line 4", "line 2"])):
            got = await mirror.recent("fish", channel, now - timedelta(hours=1), 10)
            assert got is None or [m.text for m in got] == texts  # not marked complete: None
            raw = await client.zrevrange(f"carrier:fish:chan:{channel}:log", 0, -1)
            assert [json.loads(r)["text"] for r in raw] == texts
    finally:
        await client.aclose()
        await mirror.aclose()
