"""Group commit: writes that arrive while a transaction is being written share the next one.

Under load the cost of a transaction is paid once per batch instead of once per write, and
SQLite's single writer is never fought over.  Every caller still awaits its own result,
which is set only after its batch has committed (or the batch's error, if it failed).
"""

from __future__ import annotations

import asyncio
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
        name: str = "group-commit",
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait until that batch has committed."""
        # Shielded: a caller that gives up does not cancel the batch the others wait for.
        return await asyncio.shield(self.enqueue(item))

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` now (items are written in the order they were queued) and return
        the future of its result, without waiting."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=self._name)
        return done

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            self._queue = self._queue[self._max_batch :]
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
