"""WebSocket broadcasts between API processes, through Redis pub/sub.

Each process's :class:`~carrier.clients.http.hub.ChannelHub` only knows its own sockets.  When
several processes serve one agent (``carrier serve --workers N``, or several instances behind
a load balancer), a message said on one must still reach the channel's listeners on the
others.  With ``redis_url`` set, every broadcast is delivered to the local listeners at once
and also published on ``carrier:{agent}:ws``; every process subscribes to it and delivers what
the *other* processes published to its own listeners.

Redis trouble never holds up the chat: publishing is queued (and dropped past a bound), a
lost subscription is retried, and local listeners are served meanwhile; what the other
processes said while Redis was away is lost, and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("carrier.http.relay")

_QUEUE_SIZE = 10_000
_BATCH = 200
_FIRST_RETRY_SECONDS = 0.5
_LAST_RETRY_SECONDS = 30.0


class RedisRelay:
    """Publishes this process's broadcasts and hands the others' to ``deliver(channel_id,
    frame)`` (set by :meth:`attach`).  Use as ``async with``."""

    def __init__(self, redis_url: str, agent_id: str) -> None:
        self.topic = f"carrier:{agent_id}:ws"
        self.origin = uuid.uuid4().hex
        self._redis: Redis = Redis.from_url(
            redis_url, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._outbox: asyncio.Queue[str] = asyncio.Queue(_QUEUE_SIZE)
        self._deliver: Callable[[str, str], object] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()
        """Set while the subscription is up (tests wait on it)."""
        self._dropped = 0

    def attach(self, deliver: Callable[[str, str], object]) -> None:
        self._deliver = deliver

    async def __aenter__(self) -> RedisRelay:
        self._tasks = [
            asyncio.create_task(self._publish_loop()),
            asyncio.create_task(self._subscribe_loop()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def publish(self, channel_id: str, frame: str) -> None:
        """Queue ``frame`` (an encoded event of ``channel_id``) for the other processes."""
        try:
            self._outbox.put_nowait(f"{self.origin}\n{channel_id}\n{frame}")
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("Redis is behind: %d broadcasts not relayed", self._dropped)

    async def _publish_loop(self) -> None:
        pause = _FIRST_RETRY_SECONDS
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < _BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                await self._send(batch)
            except (RedisError, OSError):
                # A pooled connection may be stale (Redis restarted): once more, afresh.
                try:
                    await self._send(batch)
                except (RedisError, OSError) as exc:
                    if pause == _FIRST_RETRY_SECONDS:
                        log.warning("cannot relay broadcasts through Redis (%s); dropping", exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _LAST_RETRY_SECONDS)
                    continue
            pause = _FIRST_RETRY_SECONDS

    async def _send(self, batch: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for payload in batch:
                pipe.publish(self.topic, payload)
            await pipe.execute()

    async def _subscribe_loop(self) -> None:
        pause = _FIRST_RETRY_SECONDS
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.topic)
                if pause > _FIRST_RETRY_SECONDS:
                    log.warning("WebSocket relay subscribed again")
                self.subscribed.set()
                pause = _FIRST_RETRY_SECONDS
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._received(message["data"])
            except (RedisError, OSError) as exc:
                if pause == _FIRST_RETRY_SECONDS:
                    log.warning("WebSocket relay subscription lost (%s); retrying", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_RETRY_SECONDS)

    def _received(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, rest = text.partition("\n")
        channel_id, _, frame = rest.partition("\n")
        if origin != self.origin and frame and self._deliver is not None:
            self._deliver(channel_id, frame)
