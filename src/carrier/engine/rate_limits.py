"""Rate limits per user and globally (moving window, the ``limits`` library).

In-process storage by default; the same limiter takes a ``limits`` storage URI (Redis) when a
deployment runs several processes.  A user over the limit is told once, then ignored until the
window passes; their messages are still recorded by the engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from carrier.settings import RateLimitSettings


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    scope: str = ""
    notify: bool = False
    """True the first time a user hits their limit within a window: tell them once."""
    retry_after: float = 0.0


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, storage_uri: str | None = None) -> None:
        self._per_user: RateLimitItem = parse(settings.per_user)
        self._global: RateLimitItem = parse(settings.global_)
        storage = storage_from_string(storage_uri) if storage_uri else MemoryStorage()
        if not isinstance(storage, Storage):
            raise ValueError(f"{storage_uri!r} is not an async (async+...) limits storage URI")
        self._limiter = MovingWindowRateLimiter(storage)
        self._told: dict[str, float] = {}

    async def check(self, agent_id: str, user_id: str) -> Verdict:
        """Count one request by ``user_id``; say whether it may be answered."""
        if not await self._limiter.hit(self._global, agent_id, "global"):
            return Verdict(
                False, "global", retry_after=await self._reset(self._global, agent_id, "global")
            )
        if await self._limiter.hit(self._per_user, agent_id, "user", user_id):
            return Verdict(True)
        reset = await self._reset(self._per_user, agent_id, "user", user_id)
        now = time.monotonic()
        key = f"{agent_id}:{user_id}"
        already_told = self._told.get(key, 0.0) > now
        if not already_told:
            self._told[key] = now + max(reset, 1.0)
            if len(self._told) > 10_000:
                self._told = {k: v for k, v in self._told.items() if v > now}
        return Verdict(False, "user", notify=not already_told, retry_after=reset)

    async def _reset(self, item: RateLimitItem, *identifiers: str) -> float:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(0.0, stats.reset_time - time.time())
