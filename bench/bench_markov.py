"""Markov benchmark: train 200,000 chat messages, then time 1,000 seeded generations.

    python bench/bench_markov.py [--messages 200000] [--generations 1000] [--keep DIR]

Runs on a temporary SQLite database migrated like any other, and trains through the code
``carrier train`` runs (a plain-text export read by ``ChatExport`` into ``learn_export``).
The messages are synthetic: 3-20 words drawn from a 30,000-word vocabulary with Zipf-like
frequencies (common English words first), from a fixed seed.  Independent draws repeat word
pairs less than real chat does, so the chain is larger than a real one of the same size: a
pessimistic case.  It also times the per-message learning the engine does while recording.

Targets (from the issue): training <= 60 s, generation p95 <= 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from carrier.cli.train import learn_export
from carrier.generation.chat_export import ChatExport
from carrier.generation.markov import STOPWORDS, MarkovGenerator
from carrier.settings import DatabaseSettings, Settings
from carrier.store.database import create_engine
from carrier.store.markov import MarkovRepository
from carrier.store.migrate import upgrade
from carrier.store.store import Store

TRAIN_TARGET_S = 60.0
GENERATE_P95_TARGET_MS = 10.0
GUILD = "bench-guild"
_SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Common English words first (the Zipf head), then made-up words of 1-4 syllables."""
    words = sorted(STOPWORDS)
    rng.shuffle(words)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choices(_SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def synthetic_messages(count: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    words = vocabulary(30_000, rng)
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(len(words))))
    punctuation = ["", "", "", "", "", "!", "?", "...", "."]
    messages = []
    for _ in range(count):
        picked = rng.choices(words, cum_weights=cumulative, k=rng.randint(3, 20))
        if rng.random() < 0.3:
            picked[0] = picked[0].capitalize()
        picked[-1] += rng.choice(punctuation)
        messages.append(" ".join(picked))
    return messages


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def main(messages_count: int, generations: int, keep: Path | None) -> int:
    workdir = keep or Path(tempfile.mkdtemp(prefix="carrier-bench-markov-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "markov.db"
    database.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{database}"
    settings = Settings(database=DatabaseSettings(url=url))

    print(f"workdir {workdir}")
    started = time.perf_counter()
    messages = synthetic_messages(messages_count)
    export_file = workdir / "export.txt"
    export_file.write_text("\n".join(messages) + "\n", encoding="utf-8")
    print(
        f"made {len(messages):,} synthetic messages "
        f"({export_file.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"
    )

    engine = create_engine(url)
    await upgrade(engine)
    store = Store(engine)
    try:
        report = await learn_export(store, settings, ChatExport(export_file), GUILD)
        chain = await store.markov.find_chain(settings.agent.id, GUILD)
        assert chain is not None
        rows = await _count_rows(store, chain.id)
        print(
            f"training: {report.learned:,} messages learned ({report.too_short:,} skipped) "
            f"in {report.seconds:.2f} s = {report.learned / report.seconds:,.0f} messages/s; "
            f"{rows:,} transition rows; database {database.stat().st_size / 1e6:.0f} MB"
        )

        # First with every state read from the database on every call (what a bot that
        # rarely falls back to Markov sees), then as configured (long-tailed states reused
        # for a minute).
        cold = MarkovGenerator(MarkovRepository(store.engine, wide_state_ttl=0), settings.markov)
        generator = MarkovGenerator(store.markov, settings.markov)
        p95s = []
        for label, gen in (("generation, no cache", cold), ("generation", generator)):
            timings, outputs = await _time_generate(gen, settings, messages, generations)
            p50, p95, p99 = (percentile(timings, f) for f in (0.50, 0.95, 0.99))
            p95s.append(p95)
            print(
                f"{label}: {generations:,} calls, {outputs:,} produced text; "
                f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {timings[-1]:.2f} ms"
            )

        per_message_ms, with_commit_ms = await _time_learn_in(store, generator, settings, messages)
        print(
            f"learning while recording: median {per_message_ms:.3f} ms/message for the Markov "
            f"update inside the transaction, {with_commit_ms:.3f} ms with its own commit"
        )
    finally:
        await store.close()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    train_ok = report.seconds <= TRAIN_TARGET_S
    generate_ok = max(p95s) <= GENERATE_P95_TARGET_MS
    print(
        f"targets: training {report.seconds:.1f} s <= {TRAIN_TARGET_S:.0f} s "
        f"{'PASS' if train_ok else 'FAIL'}; generation p95 {p95s[0]:.2f} ms (no cache), "
        f"{p95s[1]:.2f} ms <= {GENERATE_P95_TARGET_MS:.0f} ms {'PASS' if generate_ok else 'FAIL'}"
    )
    return 0 if train_ok and generate_ok else 1


async def _time_generate(
    generator: MarkovGenerator, settings: Settings, messages: list[str], generations: int
) -> tuple[list[float], int]:
    """Sorted ms of ``generations`` calls seeded by random messages; how many gave text."""
    rng = random.Random(99)
    timings: list[float] = []
    outputs = 0
    for i in range(generations):
        seed_text = rng.choice(messages)
        t0 = time.perf_counter()
        text = await generator.generate(settings.agent.id, GUILD, seed_text, random.Random(i))
        timings.append((time.perf_counter() - t0) * 1000)
        outputs += text is not None
    timings.sort()
    return timings, outputs


async def _count_rows(store: Store, chain_id: int) -> int:
    from sqlalchemy import func, select

    from carrier.store.schema import markov_transitions

    async with store.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).where(markov_transitions.c.chain_id == chain_id)
        )
    return int(count or 0)


async def _time_learn_in(
    store: Store, generator: MarkovGenerator, settings: Settings, messages: list[str]
) -> tuple[float, float]:
    """Median ms of ``MarkovGenerator.learn_in`` alone and with its transaction, per message."""
    inside: list[float] = []
    total: list[float] = []
    for text in messages[:2000]:
        t0 = time.perf_counter()
        async with store.engine.begin() as conn:
            t1 = time.perf_counter()
            await generator.learn_in(conn, settings.agent.id, "bench-live", text)
            inside.append((time.perf_counter() - t1) * 1000)
        total.append((time.perf_counter() - t0) * 1000)
    return statistics.median(inside), statistics.median(total)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep the files")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.messages, args.generations, args.keep)))
