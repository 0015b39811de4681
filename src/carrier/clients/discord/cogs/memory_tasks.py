"""Scheduled behaviour on Discord: proactive messages and the daily consolidation + status.

The rules live in :mod:`carrier.engine.schedule`; this cog runs its loop, hands it the
channels the bot can post in, posts what it returns and sets the status as the presence.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import discord
from discord.ext import commands

from carrier.clients.discord.bot import AnyBot, Carrier
from carrier.engine.initiative import Proactive
from carrier.engine.messages import Reply
from carrier.engine.schedule import ChannelRef, DailyRun
from carrier.store.database import DatabaseError

log = logging.getLogger("carrier.discord.memory_tasks")

CHECK_EVERY = timedelta(minutes=1)
"""The loop wakes at least this often (for the daily job), and at each proactive interval."""


class MemoryTasksCog(commands.Cog, name="memory_tasks"):
    def __init__(self, bot: AnyBot, carrier: Carrier) -> None:
        self.bot = bot
        self.carrier = carrier
        self.scheduler = carrier.scheduler
        self._loop: asyncio.Task[None] | None = None
        self._last_slot: int | None = None

    async def cog_load(self) -> None:
        if self.carrier.run_schedule:
            self._loop = asyncio.create_task(self._run(), name="carrier-memory-tasks")

    async def cog_unload(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            # wait, not suppress: the unloading task's own cancellation must not be swallowed
            await asyncio.wait([self._loop])

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        status = await self.scheduler.current_status()
        if status:
            await self.set_presence(status)

    async def _run(self) -> None:
        await self.bot.wait_until_ready()
        while not self.bot.is_closed():
            try:
                await self.run_due()
            except DatabaseError as exc:
                log.error("scheduled jobs could not run: %s", exc)
            except Exception:
                log.exception("scheduled jobs failed")
            now = self.carrier.clock()
            wake = min(self.scheduler.next_proactive_at(now), now + CHECK_EVERY)
            await asyncio.sleep(max(1.0, (wake - now).total_seconds()))

    async def run_due(self) -> tuple[list[Proactive], DailyRun | None]:
        """Run what is due now: the daily job once its hour has come, the proactive tick
        once per interval.  Returns what was posted and the daily run (for tests)."""
        daily = await self.scheduler.run_daily()
        if daily is not None:
            await self.set_presence(daily.status)
        posted: list[Proactive] = []
        slot = self.scheduler.slot(self.carrier.clock())
        if slot != self._last_slot:
            self._last_slot = slot
            for proactive in await self.scheduler.proactive_tick(self.postable_channels()):
                if await self.post(proactive):
                    posted.append(proactive)
        return posted, daily

    def postable_channels(self) -> list[ChannelRef]:
        """Text channels of every guild where the bot may send messages."""
        channels = []
        for guild in self.bot.guilds:
            me = guild.me
            for channel in guild.text_channels:
                if me is not None and channel.permissions_for(me).send_messages:
                    channels.append(ChannelRef(str(channel.id), str(guild.id)))
        return channels

    async def post(self, proactive: Proactive) -> bool:
        channel = self.bot.get_channel(int(proactive.channel_id))
        if not isinstance(channel, discord.TextChannel):
            log.warning("proactive message for unknown channel %s", proactive.channel_id)
            return False
        try:
            sent = await channel.send(proactive.text)
        except discord.HTTPException as exc:
            log.warning("could not post in channel %s: %s", channel.id, exc)
            return False
        reply = Reply(
            text=proactive.text,
            channel_id=proactive.channel_id,
            reply_to_message_id=None,
            reason=f"proactive:{proactive.kind}",
            message_id=proactive.message_id,
            source=proactive.source,
        )
        await self.carrier.engine.acknowledge(reply, str(sent.id))
        log.info("proactive %s message in channel %s", proactive.kind, channel.id)
        return True

    async def set_presence(self, status: str) -> None:
        await self.bot.change_presence(activity=discord.CustomActivity(name=status))
