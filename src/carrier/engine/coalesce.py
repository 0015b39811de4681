"""Identical reads asked for at the same time share one database query.

Under a burst (a busy channel, a raid, 200 conversations at once) every message reads the
same persona, mood and emotes.  :class:`ReadCoalescer` runs one query for all of them without
giving up "read now": a caller never gets a result read *before* it asked.  When a read of
the same key is already on its way, the caller waits for the *next* read of that key, which
starts as soon as the current one ends and serves everyone who asked in the meantime.  A
caller alone (the common, quiet case) starts its read at once, exactly as without this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Key:
    """The state of one key: the read on its way and the read queued after it."""

    __slots__ = ("queued", "running")

    def __init__(self) -> None:
        self.running: asyncio.Future[Any] | None = None
        self.queued: asyncio.Future[Any] | None = None


class ReadCoalescer:
    """Shares concurrent reads by key (see the module docstring)."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, _Key] = {}

    async def read(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        """``await fetch()``, or the result of a read of ``key`` started after this call.

        ``fetch`` must be a pure read (its result is handed to several callers, who must not
        change it).  A cancelled caller leaves the shared read running for the others.
        """
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        if state.running is None:
            state.running = asyncio.ensure_future(self._run(key, state, fetch))
            state.running.add_done_callback(_retrieve)
            return cast(T, await asyncio.shield(state.running))
        if state.queued is None:
            state.queued = asyncio.get_running_loop().create_future()
            state.queued.add_done_callback(_retrieve)
        return cast(T, await asyncio.shield(state.queued))

    async def _run(self, key: Hashable, state: _Key, fetch: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fetch()
        finally:
            queued, state.queued = state.queued, None
            if queued is None:
                state.running = None
                del self._keys[key]
            else:
                # Everyone who asked during this read gets the next one, started now.
                state.running = asyncio.ensure_future(self._run(key, state, fetch))
                state.running.add_done_callback(_retrieve)
                state.running.add_done_callback(lambda done: _settle(queued, done))


def _settle(target: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if done.cancelled():
        target.cancel()
    elif (error := done.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(done.result())


def _retrieve(future: asyncio.Future[Any]) -> None:
    # The callers who awaited a shared read may all have been cancelled; its error is theirs
    # and must not also be reported as "never retrieved".
    if not future.cancelled():
        future.exception()
