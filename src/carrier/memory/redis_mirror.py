"""The short-term mirror in Redis: recent messages per channel and activity per user.

The database stays the source of truth.  The mirror serves the 24-hour window of a channel
when it holds all of it (a per-channel marker says since when it is complete), and is rebuilt
from the database whenever it does not: after a flush, an eviction, an outage, an edit or a
deletion.  Every Redis failure is contained here: the caller gets ``None`` and reads the
database, and the mirror tries Redis again after a short pause, dropping what it may have
missed meanwhile.

Keys (``carrier:{agent}:`` prefix):

- ``chan:{channel}:log``: sorted set, score = message time, member = the message as JSON;
  trimmed to the window and to ``max_per_channel`` messages; expires after the window.
- ``chan:{channel}:complete``: the time since which the log is complete.
- ``user:{user}``: hash (name, last_active, messages) with an activity-based TTL: a user whose
  previous message was within ``active_within`` is active (kept 24 h), anyone else inactive
  (kept 1 h).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from carrier.store.messages import LoggedMessage

log = logging.getLogger(__name__)

ACTIVE_TTL = 24 * 3600
INACTIVE_TTL = 3600
_TOUCH_USER = """
local previous = redis.call('HGET', KEYS[1], 'last_active')
local active = previous and tonumber(ARGV[2]) - tonumber(previous) <= tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'last_active', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'messages', 1)
redis.call('EXPIRE', KEYS[1], active and ARGV[4] or ARGV[5])
"""
"""A user's activity after a message of theirs (KEYS: the user's hash; ARGV: name, time,
``active_within`` seconds, the active and the inactive TTL)."""

RETRY_AFTER_SECONDS = 5.0
POOL_WAIT_SECONDS = 0.5
ANSWER_WITHIN_SECONDS = 0.5
"""How long one mirror operation may take before Redis counts as unavailable (a hung server
must not hold up replies).  An ``asyncio.timeout`` around the whole operation rather than
redis-py's ``socket_timeout``, which on Python 3.11 runs every command's write as a task of
its own (``asyncio.wait_for``); an operation cut short drops its connection."""


def _encode(message: LoggedMessage) -> bytes:
    """The message as JSON: the member of its channel's sorted set.  The same message must
    always give the same bytes (a rebuild adds it again), so orjson's output is byte for byte
    the standard library's without ASCII escapes (fields in order, ISO times).  Text that is
    not valid Unicode (a lone surrogate), which orjson refuses, is escaped instead."""
    try:
        return orjson.dumps(message)
    except TypeError:
        data = asdict(message)
        data["created_at"] = message.created_at.isoformat()
        return json.dumps(data, separators=(",", ":")).encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: bytes | str) -> LoggedMessage:
    data: dict[str, Any] = json.loads(raw)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return LoggedMessage(**data)


DECODED_KEPT = 20_000
"""Mirrored lines kept decoded in the process: a channel's window is read for every reply,
and its members are the same bytes each time (an edit or a deletion writes new bytes)."""


class _DecodedLines:
    """The messages of recently read mirror members, by their exact bytes (least recently
    read dropped first).  Messages are immutable, so one object serves every reader."""

    def __init__(self, capacity: int = DECODED_KEPT) -> None:
        self._lines: OrderedDict[bytes | str, LoggedMessage] = OrderedDict()
        self._capacity = capacity

    def decode(self, raw: bytes | str) -> LoggedMessage:
        message = self._lines.get(raw)
        if message is None:
            message = self._lines[raw] = _decode(raw)
            if len(self._lines) > self._capacity:
                self._lines.popitem(last=False)
        else:
            self._lines.move_to_end(raw)
        return message


class RedisMirror:
    def __init__(
        self,
        client: Redis,
        *,
        window: timedelta = timedelta(hours=24),
        max_per_channel: int = 2000,
        active_within: timedelta = timedelta(hours=1),
        prefix: str = "carrier",
    ) -> None:
        self._redis = client
        self._window = window
        self._max = max_per_channel
        self._active_within = active_within
        self._prefix = prefix
        self._down_until = 0.0
        self._was_down = False
        # Keys a "forget me" could not delete while Redis was down: deleted on its return.
        self._pending_forget: set[str] = set()
        self.hits = 0
        self.misses = 0
        self._decoded = _DecodedLines()

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 64, **kw: Any) -> RedisMirror:
        """A mirror on its own pool of at most ``max_connections``: more readers at once
        (a burst of messages, an API under load) wait for a free connection instead of
        failing with "too many connections" and sending everyone to the database."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_SECONDS,
            socket_connect_timeout=ANSWER_WITHIN_SECONDS,
        )
        return cls(Redis(connection_pool=pool), **kw)

    # -- keys ----------------------------------------------------------------------------------

    def _log_key(self, agent_id: str, channel_id: str) -> str:
        return f"{self._prefix}:{agent_id}:chan:{channel_id}:log"

    def _marker_key(self, agent_id: str, channel_id: str) -> str:
        return f"{self._prefix}:{agent_id}:chan:{channel_id}:complete"

    def _user_key(self, agent_id: str, user_id: str) -> str:
        return f"{self._prefix}:{agent_id}:user:{user_id}"

    # -- availability --------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many messages a channel's mirror keeps at most."""
        return self._max

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException, doing: str) -> None:
        if not self._was_down:
            log.warning(
                "Redis mirror unavailable while %s (%s); using the database",
                doing,
                type(exc).__name__,
            )
        self._was_down = True
        self._down_until = time.monotonic() + RETRY_AFTER_SECONDS

    async def _recover(self, agent_id: str) -> None:
        """After an outage, what the mirror holds may miss messages: forget the markers;
        and what a "forget me" meanwhile could not delete goes now."""
        if not self._was_down:
            return
        if self._pending_forget:
            await self._redis.delete(*sorted(self._pending_forget))
            self._pending_forget.clear()
        pattern = f"{self._prefix}:{agent_id}:chan:*:complete"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            await self._redis.delete(key)
        self._was_down = False
        log.info("Redis mirror back; channels are rebuilt from the database on first use")

    # -- writing -------------------------------------------------------------------------------

    async def add(self, messages: Sequence[LoggedMessage]) -> None:
        """Mirror freshly committed messages (best effort: failures only pause the mirror)."""
        if not messages or not self.available:
            return
        agent_id = messages[0].agent_id
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                await self._recover(agent_id)
                now = time.time()
                pipe = self._redis.pipeline(transaction=False)
                channels = {m.channel_id for m in messages}
                for message in messages:
                    key = self._log_key(agent_id, message.channel_id)
                    pipe.zadd(key, {_encode(message): message.created_at.timestamp()})
                for channel_id in channels:
                    key = self._log_key(agent_id, channel_id)
                    pipe.zremrangebyscore(key, "-inf", now - self._window.total_seconds())
                    pipe.zremrangebyrank(key, 0, -self._max - 1)
                    pipe.expire(key, int(self._window.total_seconds()))
                for message in messages:
                    if not message.is_self:
                        self._touch_user(pipe, agent_id, message)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc, "writing")

    def _touch_user(self, pipe: Any, agent_id: str, message: LoggedMessage) -> None:
        """Queue the update of the author's activity: in Redis, in the same round trip as
        the messages (the TTL depends on the previous ``last_active``, so a script)."""
        pipe.eval(
            _TOUCH_USER,
            1,
            self._user_key(agent_id, message.author_id),
            message.author_name,
            message.created_at.timestamp(),
            self._active_within.total_seconds(),
            ACTIVE_TTL,
            INACTIVE_TTL,
        )

    async def forget_channel(self, agent_id: str, channel_id: str) -> None:
        """An edit or a deletion: the channel is rebuilt from the database on next use."""
        if not self.available:
            return
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                await self._redis.delete(
                    self._log_key(agent_id, channel_id), self._marker_key(agent_id, channel_id)
                )
        except (RedisError, OSError) as exc:
            self._failed(exc, "invalidating")

    async def forget_user(self, agent_id: str, user_id: str, channel_ids: Sequence[str]) -> None:
        """ "Forget me": drop the user's activity, and the mirror of every channel they wrote
        in (``channel_ids``), which is then rebuilt from the database without them.  When
        Redis cannot be reached, the keys are deleted as soon as it is back (and until then
        nothing is read from the mirror)."""
        keys = [self._user_key(agent_id, user_id)]
        for channel_id in channel_ids:
            keys += [self._log_key(agent_id, channel_id), self._marker_key(agent_id, channel_id)]
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                if not self.available:
                    raise ConnectionError("the mirror is paused after a failure")
                await self._redis.delete(*keys)
        except (RedisError, OSError) as exc:
            self._pending_forget.update(keys)
            self._failed(exc, "forgetting a user")

    # -- reading -------------------------------------------------------------------------------

    async def recent(
        self,
        agent_id: str,
        channel_id: str,
        since: datetime,
        limit: int,
        before: datetime | None = None,
    ) -> list[LoggedMessage] | None:
        """Newest first, like the database's ``recent``; ``None`` when the mirror cannot
        answer for the whole period (the caller reads the database, then :meth:`rebuild`)."""
        if not self.available:
            self.misses += 1
            return None
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                await self._recover(agent_id)
                high = f"({before.timestamp()}" if before is not None else "+inf"
                # One round trip: the marker and the range together (the range is thrown away
                # when the marker says the mirror does not hold the whole period).
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(self._marker_key(agent_id, channel_id))
                pipe.zrevrangebyscore(
                    self._log_key(agent_id, channel_id), high, since.timestamp(), start=0, num=limit
                )
                marker, raw = await pipe.execute()
                if marker is None or float(marker) > since.timestamp():
                    self.misses += 1
                    return None
        except (RedisError, OSError) as exc:
            self._failed(exc, "reading")
            self.misses += 1
            return None
        self.hits += 1
        decode = self._decoded.decode
        return [decode(item) for item in raw if isinstance(item, bytes | str)]

    async def rebuild(
        self,
        agent_id: str,
        channel_id: str,
        newest_first: Sequence[LoggedMessage],
        since: datetime,
        complete: bool,
    ) -> None:
        """Fill the channel's mirror with the database's messages since ``since`` and mark it
        complete from there (``complete``: they are all of that period; else only from the
        oldest one given).  Added to what is there, never replacing it, so a message mirrored
        meanwhile by a writer is not lost."""
        if not self.available:
            return
        start = since if complete or not newest_first else newest_first[-1].created_at
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                key = self._log_key(agent_id, channel_id)
                pipe = self._redis.pipeline(transaction=True)
                if newest_first:
                    pipe.zadd(key, {_encode(m): m.created_at.timestamp() for m in newest_first})
                pipe.expire(key, int(self._window.total_seconds()))
                pipe.set(
                    self._marker_key(agent_id, channel_id),
                    start.timestamp(),
                    ex=int(self._window.total_seconds()),
                )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc, "rebuilding")

    async def activity(self, agent_id: str, user_id: str) -> dict[str, str] | None:
        if not self.available:
            return None
        try:
            async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
                raw = await self._redis.hgetall(self._user_key(agent_id, user_id))
        except (RedisError, OSError) as exc:
            self._failed(exc, "reading activity")
            return None
        return {_text(k): _text(v) for k, v in raw.items()} if raw else None

    async def aclose(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
