"""Who listens to which channel over WebSocket, and fan-out of what is said there.

Each connection has a bounded outbox drained by its own sender task, so one slow reader
never holds up the others or the chat: when its outbox is full it is disconnected (close code
1013, try again later) instead of buffering without end.  Events travel as encoded JSON text:
a broadcast is encoded once, not once per listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("carrier.http.ws")

OUTBOX_SIZE = 256
CLOSE_TOO_SLOW = 1013


def encode(event: dict[str, Any]) -> str:
    """An event as the text of one frame."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


class Listener:
    """One WebSocket connection's outbox."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        outbox_size: int = OUTBOX_SIZE,
    ) -> None:
        """``send`` writes one text frame (a WebSocket's ``send_text``)."""
        self._send = send
        self._size = outbox_size
        self.too_slow = False
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(outbox_size)
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.gone = asyncio.Event()
        """Set when the connection should end: its reader fell behind or sending failed."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain())

    def offer(self, event: dict[str, Any]) -> bool:
        """Queue ``event``; False (and the connection is closed) when the reader is too slow."""
        return self.offer_text(encode(event))

    def offer_text(self, frame: str) -> bool:
        """:meth:`offer` for an event already encoded."""
        if self.closed:
            return False
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.closed = True
            self.too_slow = True
            log.warning("dropping a WebSocket whose reader fell %d events behind", self._size)
            self.gone.set()
            return False
        return True

    async def flush(self, timeout_seconds: float) -> None:
        """Wait (up to ``timeout_seconds``) until everything offered so far has been sent."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._outbox.join()

    async def stop(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while True:
                event = await self._outbox.get()
                if event is None:
                    return
                try:
                    await self._send(event)
                finally:
                    self._outbox.task_done()
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away
            self.closed = True
            self.gone.set()


class Relay(Protocol):
    """Carries broadcasts to the hubs of other processes (see
    :mod:`carrier.clients.http.relay`)."""

    def attach(self, deliver: Callable[[str, str], object]) -> None:
        """Hand what the other processes broadcast to ``deliver(channel_id, frame)``."""

    def publish(self, channel_id: str, frame: str) -> None:
        """Send this process's broadcast on; never blocks."""

    def listen(self, channel_id: str) -> None:
        """The channel got its first listener in this process: hear the others' broadcasts."""

    def unlisten(self, channel_id: str) -> None:
        """The channel's last listener in this process left."""


class ChannelHub:
    """The listeners of each channel in this process; with a ``relay``, broadcasts also reach
    (and come from) the listeners of other processes serving the same agent."""

    def __init__(self, outbox_size: int = OUTBOX_SIZE, relay: Relay | None = None) -> None:
        self.outbox_size = outbox_size
        self._channels: dict[str, set[Listener]] = {}
        self._relay = relay
        if relay is not None:
            relay.attach(self.deliver)

    def join(self, channel_id: str, listener: Listener) -> None:
        members = self._channels.get(channel_id)
        if members is None:
            members = self._channels[channel_id] = set()
            if self._relay is not None:
                self._relay.listen(channel_id)
        members.add(listener)

    def leave(self, channel_id: str, listener: Listener) -> None:
        members = self._channels.get(channel_id)
        if members is not None:
            members.discard(listener)
            if not members:
                del self._channels[channel_id]
                if self._relay is not None:
                    self._relay.unlisten(channel_id)

    def publish(self, channel_id: str, event: dict[str, Any]) -> int:
        """Offer ``event`` to every listener of the channel (here, and through the relay
        elsewhere); returns how many here took it."""
        members = self._channels.get(channel_id)
        if not members and self._relay is None:
            return 0
        frame = encode(event)
        if self._relay is not None:
            self._relay.publish(channel_id, frame)
        return self.deliver(channel_id, frame)

    def deliver(self, channel_id: str, frame: str) -> int:
        """Offer an encoded event to this process's listeners of the channel."""
        members = self._channels.get(channel_id)
        if not members:
            return 0
        return sum(listener.offer_text(frame) for listener in list(members))

    def listeners(self, channel_id: str) -> int:
        return len(self._channels.get(channel_id, ()))
