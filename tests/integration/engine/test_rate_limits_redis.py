"""Rate limits: per user before global, told once per window in the shared storage, shared
across processes through a real Redis, and surviving its outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from carrier.engine.rate_limits import SHARED_ANSWER_WITHIN_SECONDS, RateLimiter, redis_storage
from carrier.settings import RateLimitSettings

LIMITS = RateLimitSettings(per_user="3/minute", **{"global": "1000/minute"})


def limits(per_user: str, global_: str) -> RateLimitSettings:
    return RateLimitSettings(per_user=per_user, **{"global": global_})


def fresh_agent() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"


async def test_two_processes_share_one_window(redis_server: Any) -> None:
    agent = fresh_agent()
    first = RateLimiter(LIMITS, redis_storage(redis_server.url))
    second = RateLimiter(LIMITS, redis_storage(redis_server.url))
    verdicts = [
        await first.check(agent, "alice"),
        await second.check(agent, "alice"),
        await first.check(agent, "alice"),
        await second.check(agent, "alice"),
    ]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[3].scope == "user" and verdicts[3].notify
    assert (await first.check(agent, "bob")).allowed  # per user, not per process


async def test_a_user_is_told_once_across_processes(redis_server: Any) -> None:
    agent = fresh_agent()
    first = RateLimiter(LIMITS, redis_storage(redis_server.url))
    second = RateLimiter(LIMITS, redis_storage(redis_server.url))
    for _ in range(3):
        assert (await first.check(agent, "alice")).allowed
    told = await first.check(agent, "alice")
    assert not told.allowed and told.notify
    # Another process refuses the same user without telling them again.
    again = [await second.check(agent, "alice"), await first.check(agent, "alice")]
    assert [(v.allowed, v.notify) for v in again] == [(False, False), (False, False)]
    # Bob's notice is his own.
    for _ in range(3):
        await second.check(agent, "bob")
    assert (await first.check(agent, "bob")).notify


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_an_ignored_user_does_not_use_up_the_global_capacity(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    storage = redis_storage(request.getfixturevalue("redis_server").url) if shared else None
    limiter = RateLimiter(limits("2/minute", "5/minute"), storage)
    agent = fresh_agent()
    spam = [await limiter.check(agent, "mallory") for _ in range(20)]
    assert [v.allowed for v in spam] == [True, True] + [False] * 18
    assert {v.scope for v in spam[2:]} == {"user"}
    # Mallory's refused messages took nothing from everyone else: 3 of 5 are left.
    others = [await limiter.check(agent, user) for user in ("a", "b", "c", "d")]
    assert [v.allowed for v in others] == [True, True, True, False]
    assert others[3].scope == "global" and not others[3].notify


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_the_global_limit_refuses_everyone_once_spent(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    storage = redis_storage(request.getfixturevalue("redis_server").url) if shared else None
    limiter = RateLimiter(limits("100/minute", "3/minute"), storage)
    agent = fresh_agent()
    verdicts = [await limiter.check(agent, f"user-{i}") for i in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert {(v.scope, v.notify) for v in verdicts[3:]} == {("global", False)}
    assert 0 < verdicts[3].retry_after <= 60
    # Another agent in the same storage has its own global window.
    assert (await limiter.check(fresh_agent(), "user-0")).allowed


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_the_user_is_answered_again_once_the_window_passed(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    storage = redis_storage(request.getfixturevalue("redis_server").url) if shared else None
    limiter = RateLimiter(limits("3 per 1 second", "1000/minute"), storage)
    agent = fresh_agent()
    for _ in range(3):
        assert (await limiter.check(agent, "alice")).allowed
    told = await limiter.check(agent, "alice")
    refused_at = time.monotonic()
    assert (told.allowed, told.notify) == (False, True)
    assert 0 < told.retry_after <= 1
    assert not (await limiter.check(agent, "alice")).notify  # once
    # Wait out the window (and the notice, one window after the refusal): no fixed guess.
    await asyncio.sleep(max(told.retry_after, refused_at + 1.0 - time.monotonic()) + 0.1)
    for _ in range(3):
        assert (await limiter.check(agent, "alice")).allowed
    again = await limiter.check(agent, "alice")
    assert (again.allowed, again.notify) == (False, True)  # a new window, a new notice


async def test_the_defaults_are_30_a_minute_per_user_and_10000_a_minute_globally() -> None:
    settings = RateLimitSettings()
    assert (settings.per_user, settings.global_) == ("30/minute", "10000/minute")
    limiter = RateLimiter(settings)
    mine = [await limiter.check("fish", "alice") for _ in range(31)]
    assert [v.allowed for v in mine] == [True] * 30 + [False]
    assert mine[30].scope == "user" and 0 < mine[30].retry_after <= 60
    # 9,970 more requests from users under their own limit fill the global window.
    for i in range(9_970):
        assert (await limiter.check("fish", f"user-{i // 25}")).allowed
    over = await limiter.check("fish", "zoe")
    assert (over.allowed, over.scope) == (False, "global")


async def test_in_memory_limiter_is_per_process() -> None:
    first, second = RateLimiter(LIMITS), RateLimiter(LIMITS)
    for _ in range(3):
        assert (await first.check("fish", "alice")).allowed
    assert not (await first.check("fish", "alice")).allowed
    assert (await second.check("fish", "alice")).allowed


async def test_redis_down_falls_back_to_memory_and_never_raises(
    redis_server: Any,
) -> None:
    agent = fresh_agent()
    limiter = RateLimiter(LIMITS, redis_storage(redis_server.url))
    assert (await limiter.check(agent, "alice")).allowed and limiter.shared
    redis_server.stop()
    try:
        verdicts = [await limiter.check(agent, "carol") for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert verdicts[3].notify
        assert not limiter.shared
    finally:
        redis_server.resume()


async def test_a_message_let_in_costs_one_round_trip_to_redis(
    redis_server: Any, redis_trips: Any
) -> None:
    """Both windows in one script call: the per-message cost under load is one trip, not
    one per window."""
    agent = fresh_agent()
    limiter = RateLimiter(LIMITS, redis_storage(redis_server.url))
    assert (await limiter.check(agent, "alice")).allowed  # connected, script loaded
    redis_trips.start()
    assert (await limiter.check(agent, "alice")).allowed
    assert len(redis_trips.sent) == 1


async def test_windows_filled_by_limits_itself_are_honoured_and_read_back(
    redis_server: Any,
) -> None:
    """The one-trip script keeps ``limits``' keys and format: entries ``limits`` wrote (an
    older version of Carrier, another tool) count, and ``limits`` reads what it wrote."""
    agent = fresh_agent()
    settings = limits("3/minute", "5/minute")
    storage = redis_storage(redis_server.url)
    by_limits = MovingWindowRateLimiter(storage)
    per_user, everyone = parse(settings.per_user), parse(settings.global_)
    for _ in range(2):
        assert await by_limits.hit(per_user, agent, "user", "alice")
        assert await by_limits.hit(everyone, agent, "global")
    limiter = RateLimiter(settings, storage)
    verdicts = [await limiter.check(agent, "alice") for _ in range(2)]
    assert [v.allowed for v in verdicts] == [True, False]  # 2 by limits + 1 = 3 a minute
    stats = await by_limits.get_window_stats(everyone, agent, "global")
    assert stats.remaining == 5 - 3  # the refused message took no global place
    assert await by_limits.test(everyone, agent, "global")
    others = [await limiter.check(agent, user) for user in ("b", "c", "d")]
    assert [v.allowed for v in others] == [True, True, False]
    assert others[2].scope == "global" and 0 < others[2].retry_after <= 60


async def test_a_hung_redis_is_given_up_on_within_a_second(redis_server: Any) -> None:
    """Redis accepts connections and answers nothing (SIGSTOP): the check waits
    SHARED_ANSWER_WITHIN_SECONDS, then limits in memory; later checks do not wait."""
    agent = fresh_agent()
    limiter = RateLimiter(LIMITS, redis_storage(redis_server.url))
    assert (await limiter.check(agent, "alice")).allowed and limiter.shared
    redis_server.freeze()
    try:
        began = time.monotonic()
        first = await limiter.check(agent, "carol")
        took = time.monotonic() - began
        assert first.allowed and not limiter.shared
        assert SHARED_ANSWER_WITHIN_SECONDS * 0.9 <= took < SHARED_ANSWER_WITHIN_SECONDS + 1.0
        began = time.monotonic()
        rest = [await limiter.check(agent, "carol") for _ in range(3)]
        assert time.monotonic() - began < 0.5
        assert [v.allowed for v in rest] == [True, True, False]
    finally:
        redis_server.thaw()
