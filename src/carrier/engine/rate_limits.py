"""Rate limits per user and globally (moving window, the ``limits`` library).

In-process storage by default; with ``REDIS_URL`` set the windows live in Redis and are
shared by every process of the deployment.  If Redis stops answering, the limiter carries on
in memory (logged once) and goes back to Redis when it answers again: a limiter outage never
silences the bot.  A user's own limit is checked first, so the refused messages of a user
being ignored take nothing from the global capacity.  A user over the limit is told once (the
flag lives in the same storage, so several processes tell them once), then ignored until the
window passes; the engine still records their messages.

On Redis both windows are checked in one round trip: a script applying ``limits``' own moving
window (:data:`_ACQUIRE_BOTH`) to the user's window and then the global one, on the keys and
in the format ``limits`` uses, so its reads (the time until a window frees up) and its other
storages work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from carrier.settings import RateLimitSettings

log = logging.getLogger(__name__)

_RETRY_SHARED_AFTER = 10.0
SHARED_ANSWER_WITHIN_SECONDS = 1.0
"""How long a check may wait for the shared storage before limiting in memory.  One
``asyncio.timeout`` around the check, not redis-py's ``socket_timeout``, which on Python 3.11
runs every command's write as a task of its own (``asyncio.wait_for``)."""

_ACQUIRE_BOTH = """
local now = tonumber(ARGV[1])
local function acquire(key, limit, expiry)
    local oldest = redis.call('lindex', key, limit - 1)
    if oldest and tonumber(oldest) >= now - expiry then
        return false
    end
    redis.call('lpush', key, now)
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, expiry)
    return true
end
if not acquire(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])) then
    return 1
end
if not acquire(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5])) then
    return 2
end
return 0
"""
"""One message against the user's window (KEYS[1]), then, only if it let the message in, the
global one (KEYS[2]): 0 let in, 1 refused by the user's window, 2 by the global one.  Each
is ``limits``' acquire_moving_window.lua for one entry (ARGV: the time, then the limit and
the expiry of each window)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    scope: str = ""
    notify: bool = False
    """True the first time a user hits their limit within a window: tell them once."""
    retry_after: float = 0.0


def redis_storage(redis_url: str) -> Storage:
    """A ``limits`` storage on Redis through redis-py (``redis://`` or ``rediss://`` URLs)."""
    uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
    return RedisStorage(
        uri,
        implementation="redispy",
        wrap_exceptions=True,
        socket_connect_timeout=SHARED_ANSWER_WITHIN_SECONDS,
    )


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, storage: Storage | None = None) -> None:
        self._per_user: RateLimitItem = parse(settings.per_user)
        self._global: RateLimitItem = parse(settings.global_)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._shared_down_until = 0.0
        self._both: AsyncScript | None = None
        self._prefixed: Callable[[str], str] = str
        if isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge):
            client: object = storage.bridge.get_connection()  # limits' own client
            # One server (not a cluster, whose two windows could live on two nodes).
            if isinstance(client, Redis):
                self._both = client.register_script(_ACQUIRE_BOTH)
                self._prefixed = storage.bridge.prefixed_key

    @property
    def shared(self) -> bool:
        """Whether the windows currently live in the shared storage (Redis)."""
        return self._shared is not None and time.monotonic() >= self._shared_down_until

    async def check(self, agent_id: str, user_id: str) -> Verdict:
        """Count one request by ``user_id``; say whether it may be answered."""
        limiter = self._local
        if self.shared and self._shared is not None:
            limiter = self._shared
        try:
            if limiter is self._local:
                return await self._check(limiter, agent_id, user_id)
            async with asyncio.timeout(SHARED_ANSWER_WITHIN_SECONDS):
                return await self._check(limiter, agent_id, user_id)
        except Exception as exc:  # the shared storage failed: carry on in memory
            if limiter is self._local:
                raise
            log.warning(
                "rate-limit storage unavailable (%s); limiting in memory for %.0fs",
                type(exc).__name__,
                _RETRY_SHARED_AFTER,
            )
            self._shared_down_until = time.monotonic() + _RETRY_SHARED_AFTER
            return await self._check(self._local, agent_id, user_id)

    async def _check(
        self, limiter: MovingWindowRateLimiter, agent_id: str, user_id: str
    ) -> Verdict:
        if limiter is self._shared and self._both is not None:
            return await self._check_both(limiter, agent_id, user_id)
        # The user's own limit first: a user who is being ignored must not use up the
        # capacity everyone shares.
        if not await limiter.hit(self._per_user, agent_id, "user", user_id):
            return await self._refused_user(limiter, agent_id, user_id)
        if not await limiter.hit(self._global, agent_id, "global"):
            return await self._refused_global(limiter, agent_id)
        return Verdict(True)

    async def _check_both(
        self, limiter: MovingWindowRateLimiter, agent_id: str, user_id: str
    ) -> Verdict:
        """:meth:`_check` on Redis: both windows in one round trip (:data:`_ACQUIRE_BOTH`)."""
        assert self._both is not None
        user, everyone = self._per_user, self._global
        refused = await self._both(
            keys=[
                self._prefixed(user.key_for(agent_id, "user", user_id)),
                self._prefixed(everyone.key_for(agent_id, "global")),
            ],
            args=[
                time.time(),
                user.amount,
                user.get_expiry(),
                everyone.amount,
                everyone.get_expiry(),
            ],
        )
        if refused == 1:
            return await self._refused_user(limiter, agent_id, user_id)
        if refused == 2:
            return await self._refused_global(limiter, agent_id)
        return Verdict(True)

    async def _refused_user(
        self, limiter: MovingWindowRateLimiter, agent_id: str, user_id: str
    ) -> Verdict:
        reset = await self._reset(limiter, self._per_user, agent_id, "user", user_id)
        first = await self._first_notice(limiter, agent_id, user_id)
        return Verdict(False, "user", notify=first, retry_after=reset)

    async def _refused_global(self, limiter: MovingWindowRateLimiter, agent_id: str) -> Verdict:
        reset = await self._reset(limiter, self._global, agent_id, "global")
        return Verdict(False, "global", retry_after=reset)

    async def _first_notice(
        self, limiter: MovingWindowRateLimiter, agent_id: str, user_id: str
    ) -> bool:
        """Whether this is the user's first refusal for a window's length.  The flag lives in
        the windows' own storage (Redis when shared), so of several processes only one tells
        the user; it expires one window after the refusal, by when the user is let in again
        (refused messages take no place in the window)."""
        key = f"carrier/told/{agent_id}/{user_id}"
        count = await limiter.storage.incr(key, max(1, math.ceil(self._per_user.get_expiry())))
        return count == 1

    @staticmethod
    async def _reset(
        limiter: MovingWindowRateLimiter, item: RateLimitItem, *identifiers: str
    ) -> float:
        stats = await limiter.get_window_stats(item, *identifiers)
        return max(0.0, stats.reset_time - time.time())
