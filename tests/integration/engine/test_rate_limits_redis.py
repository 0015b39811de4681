"""Rate limits shared across processes through a real Redis, and surviving its outage."""

from __future__ import annotations

import uuid
from typing import Any

from carrier.engine.rate_limits import RateLimiter, redis_storage
from carrier.settings import RateLimitSettings

LIMITS = RateLimitSettings(per_user="3/minute", **{"global": "1000/minute"})


async def test_two_processes_share_one_window(redis_server: Any) -> None:
    agent = f"agent-{uuid.uuid4().hex[:8]}"
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


async def test_in_memory_limiter_is_per_process() -> None:
    first, second = RateLimiter(LIMITS), RateLimiter(LIMITS)
    for _ in range(3):
        assert (await first.check("fish", "alice")).allowed
    assert not (await first.check("fish", "alice")).allowed
    assert (await second.check("fish", "alice")).allowed


async def test_redis_down_falls_back_to_memory_and_never_raises(
    redis_server: Any,
) -> None:
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(LIMITS, redis_storage(redis_server.url))
    assert (await limiter.check(agent, "alice")).allowed and limiter.shared
    redis_server.stop()
    try:
        verdicts = [await limiter.check(agent, "carol") for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert not limiter.shared
    finally:
        redis_server.resume()
