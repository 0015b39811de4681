"""Resident memory of a running bot with the embedding model loaded (issue 3).

    .venv/bin/python bench/bench_bot_memory.py [--messages 300]

The real Discord bot runs against the local Discord emulator (in this process, as in
bench/bench_discord.py) on the embedded default: SQLite, the default memory (sqlite vector
index) and the REAL local all-MiniLM-L6-v2 on ONNX Runtime, opened by the bot itself as in
production (``build_bot`` without a memory).  Users mention the bot with self-statements,
so every message is answered after a fact search; then the day is consolidated (facts
derived, embedded and merged; the log archived) and the archive embedded.  Printed: the
process's resident memory now (VmRSS) and its peak (VmHWM) in MB, against the target of
at most 400 MB; the exit status is 1 when the peak is over it.

The figure is this process's: the bot, its model and database, plus the emulator (a small
aiohttp server) and the bench's own bookkeeping, so the bot alone uses a little less.
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from carrier.bootstrap import prepare_store
from carrier.clients.discord.bot import build_bot
from carrier.settings import load_settings
from carrier.testing.discord_emulator.emulator import DiscordEmulator
from carrier.testing.discord_emulator.model import Channel

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 400.0
USERS = 40
CHANNELS = 5
STATEMENTS = [
    "my name is {name} and I live in {city}",
    "I love {food}, honestly the best",
    "I have a dog named {pet}",
    "I work as a {job} these days",
    "I hate {dislike} so much",
    "I am {age} years old",
    "what do you think about {food}, fish?",
    "do you remember where I live?",
]
FILL = {
    "city": ["Lisbon", "Porto", "Oslo", "Lima", "Kyoto", "Accra"],
    "food": ["sushi", "tacos", "ramen", "pho", "paella", "dumplings"],
    "pet": ["Rex", "Bolt", "Mochi", "Pip"],
    "job": ["nurse", "baker", "pilot", "welder", "teacher"],
    "dislike": ["mondays", "rain", "traffic", "spiders"],
    "age": ["19", "27", "34", "51"],
}


def status_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB."""
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) / 1024
    return figures


def said(rng: random.Random, name: str) -> str:
    fill = {key: rng.choice(values) for key, values in FILL.items()}
    return rng.choice(STATEMENTS).format(name=name, **fill)


class Replies:
    """The ids of the messages the bot has answered (as its replies reach the emulator)."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.answered: set[str] = set()
        self._changed = asyncio.Event()
        bot_id = str(emu.bot_user_id)
        original = emu.publish_message

        async def note(channel: Channel, message: dict[str, Any]) -> None:
            if message["author"]["id"] == bot_id:
                ref = (message.get("message_reference") or {}).get("message_id")
                if ref is not None:
                    self.answered.add(ref)
                    self._changed.set()
            await original(channel, message)

        emu.publish_message = note  # type: ignore[method-assign]

    async def wait_for(self, wanted: set[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while not wanted <= self.answered:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return


async def main(messages: int) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    rng = random.Random(3)
    before = status_mb()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            database={"url": f"sqlite+aiosqlite:///{tmp}/bench.db"},
            agent={"character_file": str(ROOT / "characters" / "fish.yaml")},
            embeddings={"cache_dir": str(ROOT / "data" / "models")},
            logging={"level": "WARNING"},
            # Every mention must be answered (so searched): no user hits the limiter.
            rate_limits={"per_user": "1000/minute", "global": "100000/minute"},
        )
        async with DiscordEmulator() as emu:
            with emu.patch_discord():
                guild = emu.add_guild("Bench")
                channels: list[Channel] = [
                    emu.add_channel(guild.id, f"c{i}") for i in range(CHANNELS)
                ]
                users = [emu.add_user(f"user{i}") for i in range(USERS)]
                for user in users:
                    emu.add_member(guild.id, user.id)
                replies_seen = Replies(emu)
                store = await prepare_store(settings)
                bot = build_bot(settings, store, run_schedule=False)  # opens the real memory
                bot._connection.guild_ready_timeout = 0.05
                runner = asyncio.create_task(bot.start("bench-token"))
                try:
                    await emu.wait_until_ready()
                    await asyncio.wait_for(bot.wait_until_ready(), 60)
                    loaded = status_mb()
                    memory = bot.carrier.memory
                    print(
                        f"embedding model: {memory.embedder.model} ({memory.embedder.dimensions} d)"
                    )
                    mention = f"<@{emu.bot_user_id}> "
                    began = time.perf_counter()
                    sent = []
                    for i in range(messages):
                        user = users[i % USERS]
                        message = await emu.send_message(
                            channels[i % CHANNELS].id, user.id, mention + said(rng, user.name)
                        )
                        sent.append(message["id"])
                        if len(sent) % 20 == 0:  # keep a modest backlog, like a busy server
                            await replies_seen.wait_for(set(sent), 60)
                    await replies_seen.wait_for(set(sent), 120)
                    await bot.carrier.engine.drain()
                    chatted = time.perf_counter() - began
                    replies = len(replies_seen.answered & set(sent))
                    print(
                        f"{messages} mentions from {USERS} users in {CHANNELS} channels: "
                        f"{replies} answered in {chatted:.1f} s"
                    )
                    report = await memory.consolidate()
                    archived = await memory.index_archive()
                    facts = await store.facts.count(settings.agent.id, include_history=False)
                    print(
                        f"consolidation: {report.messages_archived} messages archived, "
                        f"{report.facts_new} new facts, {report.facts_reinforced} reinforced, "
                        f"{report.facts_superseded} superseded ({facts} current facts); "
                        f"{archived} archived messages embedded"
                    )
                    # A last round of searches after consolidation (facts now in the index).
                    more = []
                    for i in range(USERS):
                        message = await emu.send_message(
                            channels[i % CHANNELS].id, users[i].id, mention + "what do you know?"
                        )
                        more.append(message["id"])
                    await replies_seen.wait_for(set(more), 60)
                    after = status_mb()
                finally:
                    await bot.close()
                    runner.cancel()
                    await asyncio.gather(runner, return_exceptions=True)
                    await store.close()
    if replies < messages:
        print(f"warning: {messages - replies} mentions were not answered")
    peak, now = after["VmHWM"], after["VmRSS"]
    ok = peak <= TARGET_MB
    print(
        f"resident memory: at start {before['VmRSS']:.0f} MB, bot ready with the model "
        f"{loaded['VmRSS']:.0f} MB, after chat and consolidation {now:.0f} MB"
    )
    print(
        f"[{'PASS' if ok else 'FAIL'}] bot process resident memory (target <= {TARGET_MB:g} "
        f"MB): current {now:.0f} MB, peak (VmHWM) {peak:.0f} MB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="mentions sent to the bot")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.messages)))
