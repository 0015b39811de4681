"""A write abandoned midway (its caller cancelled) never leaves the database locked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.store import Store


async def test_cancelled_writes_release_the_database(tmp_path: Path) -> None:
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", busy_timeout_ms=300))
    await upgrade(store.engine)
    await store.agents.ensure("fish", "Fish")
    try:
        for attempt in range(150):  # cancel at every point of a write's life
            delay_loops = attempt % 30
            task = asyncio.create_task(store.state.set("fish", f"k{attempt}", "v"))
            for _ in range(delay_loops):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Another write right after must get the lock at once, not time out.
            await asyncio.wait_for(store.state.set("fish", "after", str(attempt)), 5)
        assert await store.state.get("fish", "after") == "149"
    finally:
        await store.close()
