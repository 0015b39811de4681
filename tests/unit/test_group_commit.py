"""Group commit: batches, order, errors, and writes nobody waits on lingering for company."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from carrier.store.group_commit import GroupCommit


class Ledger:
    """A write function that keeps each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def write(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await asyncio.sleep(0)  # a transaction takes a while: others queue meanwhile
        return [f"{item}!" for item in items]


async def test_writes_queued_during_a_write_share_the_next_one() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write)
    results = await asyncio.gather(*(commit.submit(f"m{i}") for i in range(5)))
    assert results == [f"m{i}!" for i in range(5)]
    assert [item for batch in ledger.batches for item in batch] == [f"m{i}" for i in range(5)]
    assert len(ledger.batches) < 5


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_goes_on() -> None:
    async def write(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise RuntimeError("disk full")
        return list(items)

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="disk full"):
        await commit.submit("bad")
    assert await commit.submit("good") == "good"


async def test_an_unawaited_write_lingers_then_goes_alone() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, linger=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    later = commit.enqueue("reply")
    await asyncio.sleep(0.02)
    assert ledger.batches == [] and not later.done()
    assert await later == "reply!"
    assert loop.time() - started >= 0.045
    assert ledger.batches == [["reply"]]


async def test_an_awaited_write_takes_what_lingers_along_at_once() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, linger=10.0)
    replies = [commit.enqueue("reply 1"), commit.enqueue("reply 2")]
    await asyncio.sleep(0.01)
    assert ledger.batches == []
    async with asyncio.timeout(1.0):  # not the 10 s of lingering
        assert await commit.submit("message") == "message!"
    assert ledger.batches == [["reply 1", "reply 2", "message"]]  # in the order queued
    assert [reply.result() for reply in replies] == ["reply 1!", "reply 2!"]


async def test_hurry_writes_what_lingers_now() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, linger=10.0)
    later = commit.enqueue("usage row")
    await asyncio.sleep(0)
    commit.hurry()
    async with asyncio.timeout(1.0):
        assert await later == "usage row!"
    # Afterwards the next unawaited write lingers again.
    again = commit.enqueue("another")
    await asyncio.sleep(0.02)
    assert not again.done()
    commit.hurry()
    assert await again == "another!"
