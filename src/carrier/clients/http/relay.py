"""WebSocket broadcasts between API processes, through Redis pub/sub.

Each process's :class:`~carrier.clients.http.hub.ChannelHub` only knows its own sockets.  When
several processes serve one agent (``carrier serve --workers N``, or several instances behind
a load balancer), a message said on one must still reach the channel's listeners on the
others.  With ``redis_url`` set, every broadcast is delivered to the local listeners at once
and also published on the channel's topic, ``carrier:{agent}:ws:{channel}``; each process
subscribes to the topics of the channels it has listeners in (the hub says when a channel
gets its first listener and loses its last) and delivers what the *other* processes published
there to its own listeners.  So a process hears nothing of the channels nobody listens to
through it: under REST load, the broadcasts of channels without WebSockets cost the other
processes nothing.

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
from redis.asyncio.client import PubSub
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
        """Always subscribed (the subscription's connection exists with no channel wanted);
        the channels' topics are this plus ``:{channel}``."""
        self.origin = uuid.uuid4().hex
        self._redis: Redis = Redis.from_url(
            redis_url, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(_QUEUE_SIZE)
        self._deliver: Callable[[str, str], object] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()
        """Set while the subscription is up (tests wait on it)."""
        self._dropped = 0
        self._wanted: set[str] = set()
        """The channels with listeners here, whose topics are subscribed."""
        self._changes: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._pubsub: PubSub | None = None

    def attach(self, deliver: Callable[[str, str], object]) -> None:
        self._deliver = deliver

    async def __aenter__(self) -> RedisRelay:
        self._tasks = [
            asyncio.create_task(self._publish_loop()),
            asyncio.create_task(self._subscribe_loop()),
            asyncio.create_task(self._change_loop()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def channel_topic(self, channel_id: str) -> str:
        return f"{self.topic}:{channel_id}"

    def listen(self, channel_id: str) -> None:
        """The channel has its first listener here: hear the other processes' broadcasts."""
        if channel_id not in self._wanted:
            self._wanted.add(channel_id)
            self._changes.put_nowait((True, channel_id))

    def unlisten(self, channel_id: str) -> None:
        """The channel's last listener here left."""
        if channel_id in self._wanted:
            self._wanted.discard(channel_id)
            self._changes.put_nowait((False, channel_id))

    def publish(self, channel_id: str, frame: str) -> None:
        """Queue ``frame`` (an encoded event of ``channel_id``) for the other processes."""
        try:
            self._outbox.put_nowait((channel_id, f"{self.origin}\n{channel_id}\n{frame}"))
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

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel_id, payload in batch:
                pipe.publish(self.channel_topic(channel_id), payload)
            await pipe.execute()

    async def _subscribe_loop(self) -> None:
        pause = _FIRST_RETRY_SECONDS
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.topic, *map(self.channel_topic, self._wanted))
                if pause > _FIRST_RETRY_SECONDS:
                    log.warning("WebSocket relay subscribed again")
                self._pubsub = pubsub
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
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_RETRY_SECONDS)

    async def _change_loop(self) -> None:
        """Subscribe and unsubscribe the channels' topics as they gain and lose listeners,
        one at a time and in order, on the subscription that is up (waited for).  A new
        subscription starts with every channel wanted at the time; the changes still queued
        then are applied again on it, which changes nothing, in the order they came."""
        while True:
            wanted, channel_id = await self._changes.get()
            await self.subscribed.wait()
            pubsub = self._pubsub
            if pubsub is None:
                continue
            topic = self.channel_topic(channel_id)
            with contextlib.suppress(RedisError, OSError):  # the subscription loop retries
                await (pubsub.subscribe(topic) if wanted else pubsub.unsubscribe(topic))

    def _received(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, rest = text.partition("\n")
        channel_id, _, frame = rest.partition("\n")
        if origin != self.origin and frame and self._deliver is not None:
            self._deliver(channel_id, frame)
