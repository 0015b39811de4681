"""Engine benchmarks on the embedded default (SQLite): recording and decide + assemble.

    python bench/bench_engine.py

Targets (issue 2): recording (log + user + Markov update) >= 2,000 messages/s;
decide + assemble with a 20,000-message 24-hour channel log and 5,000 users: p95 <= 15 ms.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from percentiles import pct

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.schema import short_term_messages, user_nicknames, users
from carrier.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "fish",
    "swims",
    "tide",
    "ocean",
    "shark",
    "cousin",
    "fred",
    "restaurant",
    "dinner",
    "cooked",
    "five",
    "star",
    "chef",
    "water",
    "salty",
    "bubbles",
    "reef",
    "coral",
    "sand",
    "wave",
    "moon",
    "night",
    "sun",
    "boat",
    "net",
    "hook",
    "worm",
    "lunch",
    "tasty",
    "lemon",
    "butter",
    "garlic",
    "plate",
    "fork",
    "knife",
    "table",
    "waiter",
    "menu",
    "dream",
    "swim",
    "land",
    "discord",
    "server",
    "friend",
    "hello",
    "today",
    "tomorrow",
    "yesterday",
    "really",
    "maybe",
    "never",
    "always",
]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))


async def main() -> None:
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        store = Store(create_engine(url))
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        await import_character(store, "fish", load_character(ROOT / "characters/fish.yaml"))
        settings = load_settings(
            None, rate_limits={"per_user": "100000/minute", "global": "1000000/minute"}
        )
        engine = build_engine_for(settings, store, "bot", rng=random.Random(1))
        start = datetime.now(UTC) - timedelta(hours=2)

        # -- recording ---------------------------------------------------------------------
        def make(i: int, channel: int) -> IncomingMessage:
            return IncomingMessage(
                channel_id=f"rec-{channel}",
                guild_id="g1",
                message_id=f"r{i}",
                author_id=f"u{i % 500}",
                author_name=f"user{i % 500}",
                text=sentence(rng),
                created_at=start + timedelta(milliseconds=i),
            )

        total = 3000
        sequential = [make(i, i % 20) for i in range(total)]
        began = time.perf_counter()
        for msg in sequential:
            await engine.record(msg)
        seq_rate = total / (time.perf_counter() - began)

        concurrent = [make(total + i, i % 20) for i in range(total)]
        by_channel: dict[str, list[IncomingMessage]] = {}
        for msg in concurrent:
            by_channel.setdefault(msg.channel_id, []).append(msg)

        async def feed(messages: list[IncomingMessage]) -> None:
            for msg in messages:
                await engine.record(msg)

        began = time.perf_counter()
        await asyncio.gather(*(feed(msgs) for msgs in by_channel.values()))
        con_rate = total / (time.perf_counter() - began)
        print(
            f"record: sequential {seq_rate:,.0f} msg/s; 20 channels concurrently "
            f"{con_rate:,.0f} msg/s  ({total} messages each; target >= 2,000 msg/s)"
        )

        # -- decide + assemble over a big channel ------------------------------------------
        now = datetime.now(UTC)
        user_rows = [
            {
                "agent_id": "fish",
                "user_id": f"big{u}",
                "name": f"member{u}",
                "is_bot": False,
                "first_seen": now - timedelta(days=3),
                "last_seen": now,
                "message_count": 4,
            }
            for u in range(5000)
        ]
        nick_rows = [
            {
                "agent_id": "fish",
                "user_id": r["user_id"],
                "nickname": r["name"],
                "first_seen": r["first_seen"],
                "last_seen": now,
            }
            for r in user_rows
        ]
        log_rows = []
        for i in range(20_000):
            author = f"big{rng.randrange(5000)}"
            log_rows.append(
                {
                    "agent_id": "fish",
                    "guild_id": "g1",
                    "channel_id": "big",
                    "message_id": f"b{i}",
                    "author_id": author,
                    "author_name": author,
                    "author_is_bot": False,
                    "is_self": False,
                    "text": sentence(rng),
                    "reply_to_message_id": None,
                    "reply_to_author_id": None,
                    "created_at": now - timedelta(hours=23) + timedelta(seconds=i * 4),
                    "answered_reason": None,
                    "deleted": False,
                }
            )
        async with store.engine.begin() as conn:
            await conn.execute(users.insert(), user_rows)
            await conn.execute(user_nicknames.insert(), nick_rows)
            await conn.execute(short_term_messages.insert(), log_rows)

        samples: list[float] = []
        for i in range(300):
            msg = IncomingMessage(
                channel_id="big",
                guild_id="g1",
                message_id=f"probe{i}",
                author_id=f"big{rng.randrange(5000)}",
                author_name="member",
                text=sentence(rng),
                created_at=datetime.now(UTC),
                mentions_bot=True,
            )
            await engine.record(msg)
            began = time.perf_counter()
            decided = await engine.decide(msg, msg.created_at)
            decision, persona = decided.decision, decided.persona
            request = (await engine.assemble(msg, persona, None, msg.created_at)).request
            samples.append((time.perf_counter() - began) * 1000)
            assert decision.respond and request.transcript
        print(
            f"decide+assemble (20,000-message channel, 5,000 users, budget "
            f"{settings.engine.context_token_budget} tokens): "
            f"p50 {statistics.median(samples):.2f} ms, p95 {pct(samples, 0.95):.2f} ms, "
            f"p99 {pct(samples, 0.99):.2f} ms  (target p95 <= 15 ms)"
        )
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
