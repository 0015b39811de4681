"""Archive search on the embedded default (SQLite, sqlite vector index, local MiniLM).

    python bench/bench_archive.py [--archive 20000] [--queries 300]

Prints: the embedding back-fill rate of archived messages; ``Memory.search_archive`` (full-text
+ vector search fused by rank, k = 3) p50/p95 with every query a new text (so each includes
embedding it); and decide + assemble p50/p95 with long-term memory on (the author's facts and
related archived messages read concurrently with the rest), over the same 20,000-message
24-hour channel and 5,000 users as bench/bench_engine.py (target there: p95 <= 15 ms).

The archive's words come from a small vocabulary, so nearly every query shares words with
thousands of archived messages: a worst case for the full-text side.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

# The same vocabulary, sentences and percentiles as the engine benchmark (run as a script,
# this folder is on sys.path).
from bench_engine import ROOT, WORDS, sentence
from percentiles import pct

from carrier.bootstrap import build_engine_for, open_memory
from carrier.engine.messages import IncomingMessage
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.schema import message_archive, short_term_messages, user_nicknames, users
from carrier.store.store import Store


def row(
    i: int, guild: str, channel: str, author: str, text: str, at: datetime
) -> dict[str, object]:
    return {
        "agent_id": "fish",
        "guild_id": guild,
        "channel_id": channel,
        "message_id": f"{channel}-{i}",
        "author_id": author,
        "author_name": author,
        "author_is_bot": False,
        "is_self": False,
        "text": text,
        "reply_to_message_id": None,
        "reply_to_author_id": None,
        "created_at": at,
        "answered_reason": None,
        "deleted": False,
    }


async def main(archive_size: int, queries: int, archive_results: int) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        store = Store(create_engine(url))
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        await import_character(store, "fish", load_character(ROOT / "characters/fish.yaml"))
        settings = load_settings(
            None,
            database={"url": url},
            embeddings={"cache_dir": str(ROOT / "data/models")},
            rate_limits={"per_user": "100000/minute", "global": "1000000/minute"},
            memory={"archive_results": archive_results},
        )
        memory = await open_memory(settings, store)
        long_ago = datetime.now(UTC) - timedelta(days=40)
        archived = [
            row(
                i,
                "g1" if i % 4 else "g2",
                f"old{i % 10}",
                f"big{rng.randrange(5000)}",
                sentence(rng),
                long_ago + timedelta(seconds=i * 30),
            )
            | {"archived_at": long_ago + timedelta(days=1)}
            for i in range(archive_size)
        ]
        async with store.engine.begin() as conn:
            await conn.execute(message_archive.insert(), archived)
        began = time.perf_counter()
        written = await memory.index_archive()
        rate = written / (time.perf_counter() - began)
        print(
            f"archive back-fill: {written:,} messages embedded at {rate:,.0f} msg/s "
            f"({archive_size:,} archived, 3/4 in the searched guild)"
        )

        samples: list[float] = []
        for _ in range(queries):
            query = sentence(rng)
            began = time.perf_counter()
            hits = await memory.search_archive(query, guild_id="g1", k=3)
            samples.append((time.perf_counter() - began) * 1000)
            assert hits and all(hit.message.guild_id == "g1" for hit in hits)
        print(
            f"search_archive (k=3, each query a new text, embedding included): "
            f"p50 {statistics.median(samples):.2f} ms, p95 {pct(samples, 0.95):.2f} ms"
        )

        # -- decide + assemble with memory on, as bench_engine.py ------------------------
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
        log_rows = [
            row(
                i,
                "g1",
                "big",
                f"big{rng.randrange(5000)}",
                sentence(rng),
                now - timedelta(hours=23) + timedelta(seconds=i * 4),
            )
            for i in range(20_000)
        ]
        async with store.engine.begin() as conn:
            await conn.execute(users.insert(), user_rows)
            await conn.execute(user_nicknames.insert(), nick_rows)
            await conn.execute(short_term_messages.insert(), log_rows)
        for u in range(0, 5000, 10):  # 500 people with three facts each
            for fact in (f"likes {rng.choice(WORDS)}", f"lives near the {rng.choice(WORDS)}"):
                await memory.add_fact(f"big{u}", fact, guild_id="g1")
        engine = build_engine_for(settings, store, "bot", rng=random.Random(1), memory=memory)
        samples = []
        with_memories = 0
        for i in range(queries):
            msg = IncomingMessage(
                channel_id="big",
                guild_id="g1",
                message_id=f"probe{i}",
                author_id=f"big{rng.randrange(0, 5000, 10)}",
                author_name="member",
                text=sentence(rng),
                created_at=datetime.now(UTC),
                mentions_bot=True,
            )
            await engine.record(msg)
            began = time.perf_counter()
            decided = await engine.decide(msg, msg.created_at)
            assembled = await engine.assemble(msg, decided.persona, None, msg.created_at)
            samples.append((time.perf_counter() - began) * 1000)
            assert decided.decision.respond and assembled.request.transcript
            with_memories += bool(assembled.request.memories)
        print(
            f"decide+assemble with memory (facts + {memory.archive_results} archive hits; "
            f"20,000-message channel, 5,000 users): p50 {statistics.median(samples):.2f} ms, "
            f"p95 {pct(samples, 0.95):.2f} ms, p99 {pct(samples, 0.99):.2f} ms; "
            f"{with_memories}/{queries} prompts got archived messages"
        )
        await engine.aclose()
        await memory.aclose()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--archive-results", type=int, default=3, help="memory.archive_results (0: facts only)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.archive, args.queries, args.archive_results))
