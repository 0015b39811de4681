"""Embedding benchmark: the default embedder (all-MiniLM-L6-v2, ONNX int8) on this machine.

    python bench/bench_embeddings.py [--precision int8|fp32] [--messages 10000]
                                     [--cache-dir data/models] [--no-engine]

Prints, through the public async API (``await embedder.embed(...)``, inference in a worker
thread, as the bot calls it):

* single message latency p50 / p95 over 1,000 messages, one call each (target p95 <= 5 ms);
* batched throughput: ``--messages`` messages in calls of 64 (target >= 500 messages/s on
  2 cores);
* 128 texts of 100 kB each (cut to 256 wordpieces): time;
* resident memory (VmRSS from /proc/self/status): of the bot's own stack first (a migrated
  SQLite store and the engine recording 2,000 messages), after loading the embedder, and
  after embedding the messages and the long texts; plus the peak (VmHWM).  Target: the whole
  running bot with the model loaded <= 400 MB.  (A first start builds the ONNX model in a
  child process, so the build's memory is never the bot's.)

The messages are synthetic chat: 1-30 words (median ~8) of common English, from a fixed
seed, some with an emoji or a question mark; ~14 wordpieces each on average.  The first run
on a fresh cache also builds the ONNX model (timed separately as "load").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from percentiles import pct

from carrier.memory.embeddings.onnx_minilm import OnnxMiniLM

SINGLE_P95_TARGET_MS = 5.0
BATCH_TARGET_PER_S = 500.0
RSS_TARGET_MB = 400.0
ROOT = Path(__file__).resolve().parents[1]

_VOCABULARY = (
    "i you we they he she it the a an and or but so to of in on at for with about from my your "
    "our their this that is are was were be been have has had do does did can could will would "
    "should not no yes just really very too also still already never always maybe today "
    "tomorrow yesterday tonight now later soon again here there what when where why how who "
    "lol ok okay yeah nah omg haha thanks please sorry hello hi hey bye good great bad cool "
    "nice funny weird hard easy new old big small best worst love like hate want need think "
    "know feel see watch play game games music song movie show book read write work job "
    "school class exam homework friend friends family mom dad brother sister dog cat fish "
    "pizza coffee tea food dinner lunch breakfast sleep tired happy sad angry excited bored "
    "server channel discord message bot voice stream call weekend monday friday morning night "
    "city home house room car bus train trip travel beach mountain rain snow sun weather "
    "computer phone code bug python update patch release team match win lose score rank"
)
_WORDS = _VOCABULARY.split()
_EXTRAS = ("", "", "", "", "?", "!", "...", " 😂", " 🐟", " 👍")


def chat_messages(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    messages = []
    for _ in range(count):
        words = max(1, min(30, round(rng.lognormvariate(2.0, 0.7))))
        messages.append(" ".join(rng.choices(_WORDS, k=words)) + rng.choice(_EXTRAS))
    return messages


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run_engine(messages: list[str], folder: str) -> None:
    """The bot's own stack: a migrated SQLite store and the engine recording messages."""
    from carrier.bootstrap import build_engine_for
    from carrier.engine.messages import IncomingMessage
    from carrier.settings import load_settings
    from carrier.store.database import create_engine
    from carrier.store.migrate import upgrade
    from carrier.store.store import Store

    store = Store(create_engine(f"sqlite+aiosqlite:///{folder}/bench.db"))
    try:
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        settings = load_settings(None)
        engine = build_engine_for(settings, store, "bot", rng=random.Random(1))
        start = datetime.now(UTC) - timedelta(hours=1)
        for i, text in enumerate(messages):
            await engine.record(
                IncomingMessage(
                    channel_id=f"c{i % 10}",
                    guild_id="g1",
                    message_id=f"m{i}",
                    author_id=f"u{i % 200}",
                    author_name=f"user{i % 200}",
                    text=text,
                    created_at=start + timedelta(milliseconds=i),
                )
            )
    finally:
        await store.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--cache-dir", default=str(ROOT / "data" / "models"))
    parser.add_argument("--no-engine", action="store_true", help="skip the bot-stack phase")
    args = parser.parse_args()

    messages = chat_messages(args.messages)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"RSS at start: {rss_mb():.0f} MB")
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_engine:
            await run_engine(messages[:2000], folder)
            print(
                f"RSS with the bot's store and engine (2,000 messages recorded): {rss_mb():.0f} MB"
            )

        began = time.perf_counter()
        embedder = await asyncio.to_thread(
            OnnxMiniLM, cache_dir=args.cache_dir, precision=args.precision
        )
        loaded = time.perf_counter() - began
        built = " (built the ONNX model)" if embedder.built else " (cached ONNX model)"
        print(f"embedder: {embedder.model}, {embedder.dimensions} dims, load {loaded:.2f} s{built}")
        print(f"RSS after loading the embedder: {rss_mb():.0f} MB")

        for text in messages[:50]:  # warm-up
            await embedder.embed([text])

        latencies = []
        for text in messages[:1000]:
            began = time.perf_counter()
            await embedder.embed([text])
            latencies.append((time.perf_counter() - began) * 1000)
        p50, p95 = statistics.median(latencies), pct(latencies, 0.95)
        ok = "ok" if p95 <= SINGLE_P95_TARGET_MS else "MISSED"
        print(
            f"single message: p50 {p50:.2f} ms, p95 {p95:.2f} ms "
            f"(target p95 <= {SINGLE_P95_TARGET_MS:.0f} ms: {ok})"
        )

        cpu_began, began = time.process_time(), time.perf_counter()
        for start in range(0, len(messages), 64):
            await embedder.embed(messages[start : start + 64])
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        rate = len(messages) / elapsed
        ok = "ok" if rate >= BATCH_TARGET_PER_S else "MISSED"
        print(
            f"batched (64 per call): {rate:.0f} messages/s, {len(messages)} in {elapsed:.2f} s, "
            f"CPU {cpu / elapsed:.2f} cores busy (target >= {BATCH_TARGET_PER_S:.0f}/s: {ok})"
        )
        # What two free cores would do: the CPU time per message, which other processes on
        # a shared machine do not change (wall-clock figures above depend on them).
        print(
            f"CPU time per batched message: {cpu / len(messages) * 1000:.2f} ms "
            f"(= {2 * len(messages) / cpu:.0f} messages/s on 2 free cores)"
        )
        long_texts = [
            f"fact {i}: " + "a long remembered story about the sea " * 2800 for i in range(128)
        ]
        began = time.perf_counter()
        await embedder.embed(long_texts)
        print(
            f"long texts: {len(long_texts)} of 100 kB (cut to 256 wordpieces) in "
            f"{time.perf_counter() - began:.2f} s"
        )
        rss, peak = rss_mb(), rss_mb("VmHWM")
        ok = "ok" if peak <= RSS_TARGET_MB else "MISSED"
        print(
            f"RSS after embedding {len(messages)} messages and the long texts: {rss:.0f} MB, "
            f"peak {peak:.0f} MB "
            f"(target whole bot <= {RSS_TARGET_MB:.0f} MB: {ok})"
        )
        await embedder.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
