"""The discord.py bot: built from settings, wired to the engine in ``setup_hook``.

The engine needs the bot's user id, known once discord.py has logged in, so the engine,
the scheduler and the cogs are built in ``setup_hook`` (after login, before the gateway
connects) from what :func:`build_bot` was given.  The bot owns what it built and releases
it in :meth:`close`; the store and an injected memory stay the caller's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from carrier import heap
from carrier.engine.pipeline import Engine
from carrier.engine.schedule import Scheduler
from carrier.generation.responder import Generator
from carrier.memory.api import Memory
from carrier.settings import Settings
from carrier.store.store import Store

log = logging.getLogger("carrier.discord")

AnyBot = commands.Bot | commands.AutoShardedBot

NO_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)
"""The bot's default: nobody is pinged unless a send says so."""


def reply_mentions(author: discord.abc.Snowflake) -> discord.AllowedMentions:
    """A reply pings only the person it answers: never everyone, here or a role."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[author], replied_user=True)


def bot_intents() -> discord.Intents:
    """Default intents plus message content (to read messages) and members (nicknames and
    the role hierarchy); both are privileged and must be enabled in the developer portal."""
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    return intents


@dataclass
class Carrier:
    """What the cogs share: settings, store, engine, memory, scheduler and the clock."""

    settings: Settings
    store: Store
    engine: Engine
    memory: Memory
    scheduler: Scheduler
    clock: Callable[[], datetime]
    rng: random.Random
    run_schedule: bool = True
    """False: the memory_tasks loop does not start (tests fire the scheduler by hand)."""
    owned: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def agent_id(self) -> str:
        return self.settings.agent.id


@dataclass(frozen=True, slots=True)
class BotOptions:
    """What :func:`build_bot` was given, kept for ``setup_hook``."""

    settings: Settings
    store: Store
    memory: Memory | None = None
    llm: Generator | None = None
    clock: Callable[[], datetime] | None = None
    rng: random.Random | None = None
    run_schedule: bool = True
    sync_commands: bool = True


class _CarrierBotMixin:
    """The set-up shared by the plain and the auto-sharded bot."""

    options: BotOptions
    carrier: Carrier

    async def _setup_carrier(self, bot: AnyBot) -> None:
        from carrier.bootstrap import build_engine_for, open_memory
        from carrier.clients.discord.cogs import ALL_COGS
        from carrier.engine.pipeline import utc_now

        assert bot.user is not None, "setup_hook runs after login"
        options = self.options
        settings = options.settings
        rng = options.rng or random.Random()
        clock = options.clock or utc_now
        owned: list[Callable[[], Any]] = []
        memory = options.memory
        if memory is None:
            memory = await open_memory(settings, options.store)
            owned.append(memory.aclose)  # also stops the maintenance below
            # Embeds archived messages for search and moves facts to a newly configured
            # embedding model, in the background (under a job lock: one process at a time).
            await memory.start_background_maintenance()
        engine = build_engine_for(
            settings,
            options.store,
            str(bot.user.id),
            clock=clock,
            rng=rng,
            llm=options.llm,
            memory=memory,
        )
        owned.insert(0, engine.aclose)
        discord_settings = settings.discord
        scheduler = Scheduler(
            engine,
            memory,
            interval=timedelta(minutes=discord_settings.proactive_interval_minutes),
            chance=discord_settings.proactive_chance,
            consolidation_hour=discord_settings.consolidation_hour,
            rng=rng,
        )
        self.carrier = Carrier(
            settings=settings,
            store=options.store,
            engine=engine,
            memory=memory,
            scheduler=scheduler,
            clock=clock,
            rng=rng,
            run_schedule=options.run_schedule,
            owned=owned,
        )
        for cog_class in ALL_COGS:
            await bot.add_cog(cog_class(bot, self.carrier))
        if options.sync_commands:
            await sync_commands(bot.tree, discord_settings.command_guild_ids)
        heap.settle()

    async def _release(self) -> None:
        carrier = getattr(self, "carrier", None)
        if carrier is None:
            return
        for close in carrier.owned:
            try:
                await close()
            except Exception:
                log.exception("closing %r failed", close)
        carrier.owned.clear()


async def sync_commands(tree: app_commands.CommandTree[Any], guild_ids: list[str]) -> None:
    """Register the slash commands: in the configured guilds (at once), else globally
    (Discord takes up to an hour to show global changes)."""
    if not guild_ids:
        synced = await tree.sync()
        log.info("synced %d global commands", len(synced))
        return
    for guild_id in guild_ids:
        guild = discord.Object(id=int(guild_id))
        tree.copy_global_to(guild=guild)
        synced = await tree.sync(guild=guild)
        log.info("synced %d commands to guild %s", len(synced), guild_id)


class CarrierBot(_CarrierBotMixin, commands.Bot):
    """One gateway connection (all guilds in this process)."""

    def __init__(self, options: BotOptions) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            allowed_mentions=NO_MENTIONS,
            help_command=None,
        )
        self.options = options

    async def setup_hook(self) -> None:
        await self._setup_carrier(self)

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages go to the engine (the events cog), never to prefix commands."""

    async def close(self) -> None:
        await super().close()
        await self._release()


class ShardedCarrierBot(_CarrierBotMixin, commands.AutoShardedBot):
    """Several shards in one process (``discord.shard_count``, ``discord.shard_ids``)."""

    def __init__(self, options: BotOptions) -> None:
        discord_settings = options.settings.discord
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            shard_count=discord_settings.shard_count,
            # None runs every shard; discord.py accepts it though its types say a list.
            shard_ids=list(discord_settings.shard_ids) or None,  # type: ignore[arg-type]
        )
        self.options = options

    async def setup_hook(self) -> None:
        await self._setup_carrier(self)

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages go to the engine (the events cog), never to prefix commands."""

    async def close(self) -> None:
        await super().close()
        await self._release()


def build_bot(
    settings: Settings,
    store: Store,
    *,
    memory: Memory | None = None,
    llm: Generator | None = None,
    clock: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
    run_schedule: bool = True,
    sync_commands: bool = True,
) -> CarrierBot | ShardedCarrierBot:
    """The bot for ``settings``: auto-sharded when ``discord.shard_count`` is set.

    ``memory`` (default: opened from settings and closed with the bot), ``llm`` (default:
    the configured providers), ``clock`` and ``rng`` are injectable for tests and
    benchmarks.  Start it with ``await bot.start(token)``; ``await bot.close()`` releases
    the engine.
    """
    options = BotOptions(
        settings=settings,
        store=store,
        memory=memory,
        llm=llm,
        clock=clock,
        rng=rng,
        run_schedule=run_schedule,
        sync_commands=sync_commands,
    )
    if settings.discord.shard_count is not None:
        return ShardedCarrierBot(options)
    return CarrierBot(options)


def carrier_of(bot: AnyBot) -> Carrier:
    """The services of a Carrier bot (for tests and tools)."""
    carrier = getattr(bot, "carrier", None)
    if not isinstance(carrier, Carrier):
        raise RuntimeError("not a Carrier bot, or not set up yet (setup_hook has not run)")
    return carrier
