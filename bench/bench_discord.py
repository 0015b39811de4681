"""Discord client benchmark: the real bot against the local Discord emulator, on the
embedded default (SQLite, Markov replies).

    python bench/bench_discord.py [--seconds 60] [--latency-messages 200]

Targets (issue 5), each printed as PASS or FAIL (the exit status is 1 when one is missed):
- latency: from the emulator delivering MESSAGE_CREATE to the bot's reply arriving at the
  emulator's REST, p95 <= 50 ms, on the embedded default (default settings, rate limits
  included);
- load: 50 messages/s across 20 channels sustained for a minute with none lost (every
  message is a mention, so every one must be answered once).  This phase runs a second bot
  on the same database with the rate limits raised: 50 mentions/s from 20 users is 150 per
  user per minute, five times the default per-user limit (30/minute), and a rate-limited
  mention gets no reply, so it would count as lost.  ``--seconds`` below 60 is a smoke run:
  the load target is then reported SHORT, neither passed nor failed.
"""

from __future__ import annotations

import warnings

from percentiles import pct

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports audioop
    import discord  # noqa: F401

import argparse
import asyncio
import contextlib
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from carrier.bootstrap import prepare_store
from carrier.clients.discord.bot import build_bot
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import Settings, load_settings
from carrier.store.store import Store
from carrier.testing.discord_emulator.emulator import DiscordEmulator
from carrier.testing.discord_emulator.model import Channel, User
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


LOAD_RATE_LIMITS = {"per_user": "1000000/minute", "global": "10000000/minute"}
LATENCY_TARGET_MS = 50.0
LOAD_SECONDS_TARGET = 60.0
PER_USER_BUDGET = 25
"""Mentions per user in the latency phase: under the default limit of 30 a minute."""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.1f} ms, p95 {pct(values, 0.95):.1f} ms, "
        f"max {max(values):.1f} ms"
    )


@contextlib.asynccontextmanager
async def running_bot(
    emu: DiscordEmulator, settings: Settings, store: Store, memory: Memory
) -> AsyncIterator[None]:
    bot = build_bot(settings, store, memory=memory, run_schedule=False)
    bot._connection.guild_ready_timeout = 0.05
    runner = asyncio.create_task(bot.start("bench-token"))
    try:
        await emu.wait_until_ready()
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        yield
        await bot.carrier.engine.drain()
    finally:
        await bot.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def warm_up(
    emu: DiscordEmulator,
    timings: Timings,
    channels: list[Channel],
    users: list[User],
    rng: random.Random,
) -> None:
    """Chains, caches, connections; one mention per user, so no per-user limit is near."""
    mention = f"<@{emu.bot_user_id}> "
    warm = []
    for i, user in enumerate(users[:40]):
        sent = await emu.send_message(channels[i % CHANNELS].id, user.id, mention + sentence(rng))
        warm.append(sent["id"])
    await timings.wait_for(set(warm), 30)


async def latency_phase(
    emu: DiscordEmulator,
    timings: Timings,
    channels: list[Channel],
    users: list[User],
    rng: random.Random,
    count: int,
) -> bool:
    mention = f"<@{emu.bot_user_id}> "
    latencies = []
    lost = 0
    for i in range(count):
        started = time.perf_counter()
        sent = await emu.send_message(
            channels[i % CHANNELS].id, users[i % len(users)].id, mention + sentence(rng)
        )
        await timings.wait_for({sent["id"]}, 5)
        arrived = timings.arrived.get(sent["id"])
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - started) * 1000)
    ok = bool(latencies) and lost == 0 and pct(latencies, 0.95) <= LATENCY_TARGET_MS
    print(
        f"[{verdict(ok)}] latency (target p95 <= {LATENCY_TARGET_MS:g} ms, none unanswered): "
        f"MESSAGE_CREATE -> reply at REST, sequential, {count} messages: "
        f"{summary(latencies)}; unanswered {lost}"
    )
    return ok


async def load_phase(
    emu: DiscordEmulator,
    timings: Timings,
    channels: list[Channel],
    users: list[User],
    rng: random.Random,
    seconds: float,
) -> bool | None:
    """True/False: the target met or missed; None: a short (smoke) run, not judged."""
    mention = f"<@{emu.bot_user_id}> "
    total = max(1, int(seconds * RATE))
    sent_at: dict[str, float] = {}
    began = time.perf_counter()
    for i in range(total):
        delay = began + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        sent = await emu.send_message(
            channels[i % CHANNELS].id, users[(i * 7) % CHANNELS].id, mention + sentence(rng)
        )
        sent_at[sent["id"]] = t0
    send_seconds = max(time.perf_counter() - began, 1e-9)
    await timings.wait_for(set(sent_at), 120)
    answered = [m for m in sent_at if m in timings.arrived]
    lost = total - len(answered)
    doubled = sum(1 for m in sent_at if timings.replies.get(m, 0) > 1)
    loaded = [(timings.arrived[m] - sent_at[m]) * 1000 for m in answered]
    last_reply = max((timings.arrived[m] for m in answered), default=began)
    tail = max(0.0, last_reply - began - send_seconds)
    achieved = total / send_seconds
    # "Sustained": the sender kept the pace (within 2%), and every reply came (once).
    met = lost == 0 and doubled == 0 and achieved >= RATE * 0.98
    short = seconds < LOAD_SECONDS_TARGET
    label = "SHORT" if short and met else verdict(met)
    print(
        f"[{label}] load (target {RATE:g} msg/s across {CHANNELS} channels for "
        f"{LOAD_SECONDS_TARGET:g} s, none lost): {total} messages in {send_seconds:.1f} s "
        f"({achieved:.1f} msg/s): answered {len(answered)}, lost {lost}, answered twice "
        f"{doubled}; latency under load {summary(loaded)}; last reply {tail:.1f} s after "
        f"the last message" + (f" (a {seconds:g} s smoke run: not judged)" if short and met else "")
    )
    if short and met:
        return None
    return met


async def main(seconds: float, latency_messages: int) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        base: dict[str, Any] = {
            "database": {"url": f"sqlite+aiosqlite:///{tmp}/bench.db"},
            "agent": {"character_file": str(ROOT / "characters" / "fish.yaml")},
            "logging": {"level": "WARNING"},
        }
        default_settings = load_settings(None, **base)
        load_settings_ = load_settings(None, **base, rate_limits=LOAD_RATE_LIMITS)
        async with DiscordEmulator() as emu:
            with emu.patch_discord():
                guild = emu.add_guild("Bench")
                channels = [emu.add_channel(guild.id, f"c{i}") for i in range(CHANNELS)]
                # Enough users that the latency phase stays under the default per-user limit.
                needed = max(CHANNELS, 40, -(-latency_messages // PER_USER_BUDGET))
                users = [emu.add_user(f"user{i}") for i in range(needed)]
                for user in users:
                    emu.add_member(guild.id, user.id)
                timings = Timings(emu)
                store = await prepare_store(default_settings)
                memory = Memory(
                    store,
                    HashingEmbedder(),
                    create_vector_index(default_settings, store),
                    agent_id=default_settings.agent.id,
                    extractor=OfflineExtractor(),
                )
                try:
                    limits = default_settings.rate_limits
                    print(
                        f"latency phase: default settings (rate limits per user "
                        f"{limits.per_user}, global {limits.global_})"
                    )
                    async with running_bot(emu, default_settings, store, memory):
                        await warm_up(emu, timings, channels, users, rng)
                        latency_ok = await latency_phase(
                            emu, timings, channels, users, rng, latency_messages
                        )
                    print(
                        f"load phase: a new bot on the same database with the rate limits "
                        f"RAISED to per user {LOAD_RATE_LIMITS['per_user']}, global "
                        f"{LOAD_RATE_LIMITS['global']}: {RATE:g} mentions/s from {CHANNELS} "
                        f"users is {RATE * 60 / CHANNELS:g} per user per minute, above the "
                        f"default {limits.per_user}, and a rate-limited mention is not "
                        "answered (it would count as lost). This measures the bot's "
                        "throughput, not the limiter."
                    )
                    async with running_bot(emu, load_settings_, store, memory):
                        await warm_up(emu, timings, channels, users[:CHANNELS], rng)
                        load_ok = await load_phase(emu, timings, channels, users, rng, seconds)
                    recorded = await store.messages.count(default_settings.agent.id)
                    print(f"messages in the log (incl. replies and warm-ups): {recorded}")
                finally:
                    await memory.aclose()
                    await store.close()
    missed = [name for name, ok in (("latency", latency_ok), ("load", load_ok)) if ok is False]
    print("all targets met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained-load duration")
    parser.add_argument("--latency-messages", type=int, default=200)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.latency_messages)))
