"""Group commit: writes that arrive while a transaction is being written share the next one.

Under load the cost of a transaction is paid once per batch instead of once per write, and
SQLite's single writer is never fought over.  Every caller still awaits its own result,
which is set only after its batch has committed (or the batch's error, if it failed).

Writes nobody is waiting on (:meth:`GroupCommit.enqueue`: a reply logged in the background,
a usage row) may *linger*: they wait up to ``linger`` seconds for company, and go at once
with the next write someone waits on (:meth:`GroupCommit.submit`), or on :meth:`hurry`.  So
a bot answering many messages pays about one transaction per message it records, not one
more for each reply and each LLM call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 256,
        linger: float = 0.0,
        name: str = "group-commit",
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._urgent = False
        """Something queued is awaited: write without lingering."""
        self._lingering: asyncio.Event | None = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait until that batch has committed; the
        batch goes now, with whatever lingers."""
        # Shielded: a caller that gives up does not cancel the batch the others wait for.
        return await asyncio.shield(self._add(item, urgent=True))

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` now (items are written in the order they were queued) and return
        the future of its result, without waiting; it may linger (see the module)."""
        return self._add(item, urgent=False)

    def hurry(self) -> None:
        """Write what lingers now (shutting down, or someone waits for it after all)."""
        if self._queue:
            self._urgent = True
            if self._lingering is not None:
                self._lingering.set()

    def _add(self, item: T, *, urgent: bool) -> asyncio.Future[R]:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if urgent:
            self.hurry()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=self._name)
        return done

    async def _drain(self) -> None:
        while self._queue:
            if self._linger > 0 and not self._urgent:
                self._lingering = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._lingering.wait()
                self._lingering = None
            batch = self._queue[: self._max_batch]
            self._queue = self._queue[self._max_batch :]
            # What is left over was queued with this batch (or during its write), urgent or
            # not: kept urgent rather than made to linger again.
            self._urgent = bool(self._queue) and self._urgent
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
