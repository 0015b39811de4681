"""Consolidation of a day: 50,000 messages from 2,000 users, offline extractor, SQLite.

    python bench/bench_consolidation.py

Target (issue 3): at most 120 s, with the real local embedder (facts are embedded and
de-duplicated against each user's facts).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carrier.bootstrap import open_memory
from carrier.settings import load_settings
from carrier.store.database import create_engine
from carrier.store.messages import LoggedMessage
from carrier.store.migrate import upgrade
from carrier.store.store import Store

CITIES = ["Lisbon", "Porto", "Oslo", "Lima", "Kyoto", "Quito", "Accra", "Perth", "Cork", "Nice"]
FOODS = ["sushi", "ramen", "tacos", "pizza", "curry", "olives", "tea", "coffee", "cheese"]
PETS = ["dog", "cat", "parrot", "rabbit"]
NAMES = ["Rex", "Tom", "Biscuit", "Luna", "Max", "Kiwi"]
CHATTER = (
    "the raid tonight was wild",
    "anyone seen the new patch notes",
    "lol same",
    "good morning everyone",
    "that meme is ancient",
    "brb coffee",
    "gg well played",
    "who is up for a game later",
    "the server is laggy again",
    "nice screenshot",
)


def message_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.04:
        return f"I live in {rng.choice(CITIES)}"
    if roll < 0.08:
        return f"I love {rng.choice(FOODS)}"
    if roll < 0.10:
        return f"I have a {rng.choice(PETS)} named {rng.choice(NAMES)}"
    if roll < 0.11:
        return f"I work as a {rng.choice(['nurse', 'teacher', 'chef', 'pilot'])}"
    return rng.choice(CHATTER) + " " + str(rng.randrange(1000))


async def main() -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            f"database:\n  url: sqlite+aiosqlite:///{tmp}/bench.db\n", encoding="utf-8"
        )
        settings = load_settings(config)
        store = Store(create_engine(settings.effective_database_url))
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        start = datetime.now(UTC) - timedelta(hours=23)
        rows = [
            LoggedMessage(
                agent_id="fish",
                guild_id="g1",
                channel_id=f"c{i % 30}",
                message_id=f"m{i}",
                author_id=f"u{i % 2000}",
                author_name=f"user{i % 2000}",
                text=message_text(rng),
                created_at=start + timedelta(seconds=i * 1.6),
            )
            for i in range(50_000)
        ]
        for first in range(0, len(rows), 5000):
            async with store.engine.begin() as conn:
                await store.messages.insert_many_in(conn, rows[first : first + 5000])
        began = time.perf_counter()
        memory = await open_memory(settings, store)
        loaded = time.perf_counter() - began
        began = time.perf_counter()
        report = await memory.consolidate()
        took = time.perf_counter() - began
        facts = await store.facts.count("fish", include_history=False)
        print(
            f"consolidation of 50,000 messages from 2,000 users (offline extractor, local "
            f"embedder; model load {loaded:.1f} s not counted): {took:.1f} s "
            f"(target <= 120 s); archived {report.messages_archived}, new facts "
            f"{report.facts_new}, reinforced {report.facts_reinforced}, superseded "
            f"{report.facts_superseded}; {facts} current facts"
        )
        await memory.aclose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
