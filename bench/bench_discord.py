"""Discord client benchmark: the real bot against the local Discord emulator, on the
embedded default (SQLite, Markov replies).

    python bench/bench_discord.py [--seconds 60] [--latency-messages 200]

Targets (issue 5): from the emulator delivering MESSAGE_CREATE to the bot's reply arriving
at the emulator's REST, p95 <= 50 ms; 50 messages/s across 20 channels sustained for a
minute with none lost (every message is a mention, so every one must be answered).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports audioop
    import discord  # noqa: F401

import argparse
import asyncio
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from carrier.bootstrap import prepare_store
from carrier.clients.discord.bot import build_bot
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import load_settings
from carrier.testing.discord_emulator.emulator import DiscordEmulator
from carrier.testing.discord_emulator.model import Channel
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 20
RATE = 50.0
TEXT = (
    "the fish swims past the reef at night and the tide brings bubbles of salty water "
    "from the deep where sharks dream of lemon butter and coral gardens glow"
)
WORDS = TEXT.split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Timings:
    """When each reply reached the emulator's REST, by the id of the message it answers."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.arrived: dict[str, float] = {}
        self.replies: dict[str, int] = {}
        self.changed = asyncio.Event()
        bot = str(emu.bot_user_id)
        original = emu.publish_message

        async def timed(channel: Channel, message: dict[str, Any]) -> None:
            if message["author"]["id"] == bot:
                ref = (message.get("message_reference") or {}).get("message_id")
                if ref is not None:
                    self.arrived.setdefault(ref, time.perf_counter())
                    self.replies[ref] = self.replies.get(ref, 0) + 1
                    self.changed.set()
            await original(channel, message)

        emu.publish_message = timed  # type: ignore[method-assign]

    async def wait_for(self, ids: set[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while not ids <= self.arrived.keys():
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return


async def main(seconds: float, latency_messages: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            database={"url": f"sqlite+aiosqlite:///{tmp}/bench.db"},
            agent={"character_file": str(ROOT / "characters" / "fish.yaml")},
            rate_limits={"per_user": "1000000/minute", "global": "10000000/minute"},
            logging={"level": "WARNING"},
        )
        async with DiscordEmulator() as emu:
            with emu.patch_discord():
                guild = emu.add_guild("Bench")
                channels = [emu.add_channel(guild.id, f"c{i}") for i in range(CHANNELS)]
                users = [emu.add_user(f"user{i}") for i in range(CHANNELS)]
                for user in users:
                    emu.add_member(guild.id, user.id)
                timings = Timings(emu)
                store = await prepare_store(settings)
                memory = Memory(
                    store,
                    HashingEmbedder(),
                    create_vector_index(settings, store),
                    agent_id=settings.agent.id,
                    extractor=OfflineExtractor(),
                )
                bot = build_bot(settings, store, memory=memory, run_schedule=False)
                bot._connection.guild_ready_timeout = 0.05
                runner = asyncio.create_task(bot.start("bench-token"))
                try:
                    await emu.wait_until_ready()
                    await asyncio.wait_for(bot.wait_until_ready(), 10)
                    mention = f"<@{emu.bot_user_id}> "

                    # Warm-up: chains, caches, connections.
                    warm = []
                    for i in range(40):
                        sent = await emu.send_message(
                            channels[i % CHANNELS].id,
                            users[i % CHANNELS].id,
                            mention + sentence(rng),
                        )
                        warm.append(sent["id"])
                    await timings.wait_for(set(warm), 30)

                    # -- latency: one message at a time ----------------------------------
                    latencies = []
                    lost_latency = 0
                    for i in range(latency_messages):
                        channel = channels[i % CHANNELS]
                        started = time.perf_counter()
                        sent = await emu.send_message(
                            channel.id, users[i % CHANNELS].id, mention + sentence(rng)
                        )
                        await timings.wait_for({sent["id"]}, 5)
                        arrived = timings.arrived.get(sent["id"])
                        if arrived is None:
                            lost_latency += 1
                        else:
                            latencies.append((arrived - started) * 1000)
                    print(
                        f"MESSAGE_CREATE -> reply at REST, sequential, {len(latencies)} messages: "
                        f"p50 {statistics.median(latencies):.1f} ms, "
                        f"p95 {pct(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms "
                        f"(target p95 <= 50 ms); unanswered {lost_latency}"
                    )

                    # -- sustained load: 50 messages/s across 20 channels ----------------
                    total = int(seconds * RATE)
                    sent_at: dict[str, float] = {}
                    began = time.perf_counter()
                    for i in range(total):
                        due = began + i / RATE
                        delay = due - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        channel = channels[i % CHANNELS]
                        t0 = time.perf_counter()
                        sent = await emu.send_message(
                            channel.id, users[(i * 7) % CHANNELS].id, mention + sentence(rng)
                        )
                        sent_at[sent["id"]] = t0
                    send_seconds = time.perf_counter() - began
                    await timings.wait_for(set(sent_at), 120)
                    last_reply = max(timings.arrived.get(m, 0.0) for m in sent_at)
                    tail = max(0.0, last_reply - began - send_seconds)
                    await bot.carrier.engine.drain()
                    answered = [m for m in sent_at if m in timings.arrived]
                    doubled = sum(1 for m in sent_at if timings.replies.get(m, 0) > 1)
                    loaded = [(timings.arrived[m] - sent_at[m]) * 1000 for m in answered]
                    recorded = await store.messages.count(settings.agent.id)
                    print(
                        f"sustained {total} messages in {send_seconds:.1f} s "
                        f"({total / send_seconds:.1f} msg/s) across {CHANNELS} channels: "
                        f"answered {len(answered)}, lost {total - len(answered)}, "
                        f"answered twice {doubled}; latency under load p50 "
                        f"{statistics.median(loaded):.1f} ms, p95 {pct(loaded, 0.95):.1f} ms; "
                        f"last reply {tail:.1f} s after the last message"
                    )
                    print(f"messages in the log (incl. replies and warm-up): {recorded}")
                finally:
                    await bot.close()
                    runner.cancel()
                    await asyncio.gather(runner, return_exceptions=True)
                    await memory.aclose()
                    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained-load duration")
    parser.add_argument("--latency-messages", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.latency_messages))
