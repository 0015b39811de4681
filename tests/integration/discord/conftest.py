"""A running Carrier bot connected to the local Discord emulator.

The bot is the real one (``carrier.clients.discord.bot.build_bot``), unmodified, on the
embedded SQLite default in a temp dir, with the emulator's REST base and gateway patched in
(``DiscordEmulator.patch_discord``).  Replies come from the Markov chain (no LLM); the
clock is injectable; the scheduler loop is off so tests fire it by hand.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # discord.py imports the stdlib's audioop (voice), deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from carrier.bootstrap import prepare_store
from carrier.clients.discord.bot import Carrier, CarrierBot, ShardedCarrierBot, build_bot
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import Settings, load_settings
from carrier.store.store import Store
from carrier.testing.discord_emulator.emulator import DiscordEmulator
from carrier.testing.discord_emulator.model import Channel, Guild, Permission, Role, User
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]
JSON = dict[str, Any]
T = TypeVar("T")


class Clock:
    """Real time plus an offset the test can move."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@dataclass
class Harness:
    emu: DiscordEmulator
    bot: CarrierBot | ShardedCarrierBot
    carrier: Carrier
    store: Store
    clock: Clock
    guild: Guild
    general: Channel
    readonly: Channel
    owner: User
    alice: User
    bob: User
    mod: User
    mod_role: Role
    admin_role: Role

    @property
    def bot_id(self) -> int:
        return self.emu.bot_user_id

    async def say(self, author: User, content: str, **kw: Any) -> JSON:
        channel = kw.pop("channel", self.general)
        return await self.emu.send_message(channel.id, author.id, content, **kw)

    async def bot_reply(self, **kw: Any) -> JSON:
        return await self.emu.wait_for_message(**kw)

    async def command(
        self, user: User, name: str, options: list[JSON] | None = None, **kw: Any
    ) -> Any:
        channel = kw.pop("channel", self.general)
        return await self.emu.invoke_command(
            self.guild.id, channel.id, user.id, name, options or [], **kw
        )

    async def quiet(self, seconds: float = 0.3) -> None:
        """Let the bot process what was sent (for asserting that nothing happened)."""
        await self.emu.settle()
        await asyncio.sleep(seconds)
        await self.carrier.engine.drain()


async def eventually(check: Callable[[], Awaitable[T]], *, tries: int = 100) -> T:
    """``check()``'s result once it is truthy: the bot acts on events asynchronously (a
    reply's id is noted after Discord answered the send).  Fails with the last value."""
    value = await check()
    for _ in range(tries):
        if value:
            return value
        await asyncio.sleep(0.05)
        value = await check()
    raise AssertionError(f"condition not met; last value {value!r}")


def discord_settings(tmp_path: Path, discord: dict[str, Any], **sections: Any) -> Settings:
    return load_settings(
        None,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}"},
        agent={"character_file": str(ROOT / "characters" / "fish.yaml")},
        markov={"persona_weight": 1.0},
        discord=discord,
        **sections,
    )


def scripted_llm_section(base_url: str) -> dict[str, Any]:
    """The ``llm`` settings section for the scripted server at ``base_url`` (llm mode)."""
    return {
        "mode": "llm",
        "providers": [
            {"kind": "openai", "model": "scripted", "base_url": base_url, "api_key_env": None}
        ],
    }


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra settings sections for the bot (a test module overrides this fixture)."""
    return {}


async def start_bot(
    emu: DiscordEmulator,
    settings: Settings,
    store: Store,
    clock: Clock,
    *,
    shards: int = 1,
) -> tuple[CarrierBot | ShardedCarrierBot, Memory, asyncio.Task[None]]:
    memory = Memory(
        store,
        HashingEmbedder(),
        create_vector_index(settings, store),
        agent_id=settings.agent.id,
        extractor=OfflineExtractor(),
    )
    bot = build_bot(
        settings, store, memory=memory, clock=clock, rng=random.Random(5), run_schedule=False
    )
    bot._connection.guild_ready_timeout = 0.05
    task = asyncio.create_task(bot.start("test-token"))
    await emu.wait_until_ready(shards=shards)
    await asyncio.wait_for(bot.wait_until_ready(), 10)
    return bot, memory, task


async def stop_bot(bot: CarrierBot | ShardedCarrierBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(bot_name="Finnegan") as emu:
        with emu.patch_discord():
            yield emu


@pytest.fixture
async def harness(
    emulator: DiscordEmulator, tmp_path: Path, settings_overrides: dict[str, Any]
) -> AsyncIterator[Harness]:
    emu = emulator
    owner = emu.add_user("owner")
    guild = emu.add_guild(
        "Reef",
        owner_id=owner.id,
        bot_permissions=int(
            Permission.VIEW_CHANNEL
            | Permission.SEND_MESSAGES
            | Permission.READ_MESSAGE_HISTORY
            | Permission.KICK_MEMBERS
            | Permission.BAN_MEMBERS
            | Permission.MODERATE_MEMBERS
            | Permission.CREATE_PRIVATE_THREADS
            | Permission.SEND_MESSAGES_IN_THREADS
            | Permission.MANAGE_THREADS
            | Permission.SEND_POLLS
            | Permission.EMBED_LINKS
        ),
        bot_role_position=5,
    )
    general = emu.add_channel(guild.id, "general")
    readonly = emu.add_channel(guild.id, "announcements", bot_can_send=False)
    mod_role = emu.add_role(
        guild.id,
        "moderator",
        permissions=int(
            Permission.KICK_MEMBERS | Permission.BAN_MEMBERS | Permission.MODERATE_MEMBERS
        ),
        position=3,
    )
    admin_role = emu.add_role(guild.id, "bot admins", permissions=0, position=2)
    alice = emu.add_user("alice")
    bob = emu.add_user("bob")
    mod = emu.add_user("mod")
    emu.add_member(guild.id, alice.id, nick="Ali")
    emu.add_member(guild.id, bob.id)
    emu.add_member(guild.id, mod.id, roles=[mod_role.id])
    emu.add_emoji(guild.id, "blobfish")

    overrides = dict(settings_overrides)
    discord = {"command_guild_ids": [str(guild.id)], **overrides.pop("discord", {})}
    settings = discord_settings(tmp_path, discord, **overrides)
    store = await prepare_store(settings)
    clock = Clock()
    # The shards this process runs: its shard_ids, else all shard_count of them.
    shards = len(settings.discord.shard_ids) or settings.discord.shard_count or 1
    bot, memory, task = await start_bot(emu, settings, store, clock, shards=shards)
    from carrier.clients.discord.bot import carrier_of

    try:
        yield Harness(
            emu=emu,
            bot=bot,
            carrier=carrier_of(bot),
            store=store,
            clock=clock,
            guild=guild,
            general=general,
            readonly=readonly,
            owner=owner,
            alice=alice,
            bob=bob,
            mod=mod,
            mod_role=mod_role,
            admin_role=admin_role,
        )
    finally:
        await stop_bot(bot, task)
        await memory.aclose()
        await store.close()
    # Every call the bot made was one the emulator understood (no silent 404 or 500).
    assert emu.server_errors == []
