"""ReadCoalescer: concurrent reads share a query, never one that started before they asked."""

from __future__ import annotations

import asyncio

import pytest

from carrier.engine.coalesce import ReadCoalescer


class Source:
    """A value that changes, read by a slow query the test releases step by step."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def fetch(self) -> int:
        self.reads += 1
        seen = self.value  # the query's snapshot is taken when it starts
        self.started.set()
        await self.release.wait()
        self.release.clear()
        return seen


async def test_a_lone_caller_reads_at_once() -> None:
    source = Source()
    shared = ReadCoalescer()
    source.release.set()
    assert await shared.read("k", source.fetch) == 0
    source.value = 5
    source.release.set()
    assert await shared.read("k", source.fetch) == 5
    assert source.reads == 2


async def test_callers_during_a_read_share_the_next_one() -> None:
    source = Source()
    shared = ReadCoalescer()
    first = asyncio.create_task(shared.read("k", source.fetch))
    await source.started.wait()
    source.started.clear()
    source.value = 1  # written after the first read's snapshot, before the others asked
    later = [asyncio.create_task(shared.read("k", source.fetch)) for _ in range(50)]
    await asyncio.sleep(0)
    source.release.set()  # the first read ends; the queued one starts
    assert await first == 0
    await source.started.wait()
    source.release.set()
    assert await asyncio.gather(*later) == [1] * 50  # never the stale 0
    assert source.reads == 2


async def test_different_keys_do_not_share() -> None:
    shared = ReadCoalescer()

    async def value(v: int) -> int:
        await asyncio.sleep(0)
        return v

    results = await asyncio.gather(
        shared.read("a", lambda: value(1)), shared.read("b", lambda: value(2))
    )
    assert results == [1, 2]


async def test_an_error_reaches_every_caller_and_the_key_recovers() -> None:
    shared = ReadCoalescer()
    calls = 0

    async def broken() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("database unavailable")

    results = await asyncio.gather(
        *(shared.read("k", broken) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 2  # the first caller's read, then one shared by the other four

    async def fine() -> int:
        return 7

    assert await shared.read("k", fine) == 7


async def test_a_cancelled_caller_leaves_the_read_to_the_others() -> None:
    source = Source()
    shared = ReadCoalescer()
    first = asyncio.create_task(shared.read("k", source.fetch))
    await source.started.wait()
    waiting = [asyncio.create_task(shared.read("k", source.fetch)) for _ in range(2)]
    await asyncio.sleep(0)
    first.cancel()
    waiting[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    source.release.set()
    await asyncio.sleep(0.01)
    source.release.set()
    assert await waiting[1] == 0
    assert source.reads == 2
