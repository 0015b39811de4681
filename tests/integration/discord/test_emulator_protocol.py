"""The Discord emulator, driven by unmodified discord.py clients with tiny inline handlers:
login and world, messages and replies, slash commands, permissions, resume, sharding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.ext import commands

from carrier.testing.discord_emulator import DiscordEmulator, Permission

TOKEN = "emulated-bot-token"


def intents() -> discord.Intents:
    chosen = discord.Intents.default()
    chosen.message_content = True
    chosen.members = True
    return chosen


class QuickBot(commands.Bot):
    """A plain commands.Bot without discord.py's 5 s wait before a repeated IDENTIFY."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


class QuickShardedBot(commands.AutoShardedBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


def make_bot(**options: Any) -> QuickBot:
    return QuickBot(command_prefix="!", intents=intents(), guild_ready_timeout=0.01, **options)


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(bot_name="Finnegan", token=TOKEN) as server:
        yield server


@contextlib.asynccontextmanager
async def running(
    emulator: DiscordEmulator, client: discord.Client, *, shards: int = 1
) -> AsyncIterator[discord.Client]:
    with emulator.patch_discord():
        task = asyncio.create_task(client.start(TOKEN))
        try:
            await emulator.wait_until_ready(shards=shards)
            await asyncio.wait_for(client.wait_until_ready(), timeout=10)
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(task, timeout=10)


async def test_client_logs_in_and_sees_guilds_channels_members(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice", global_name="Alice")
    mods = emulator.add_role(guild.id, "mods", permissions=int(Permission.KICK_MEMBERS))
    emulator.add_member(guild.id, alice.id, roles=[mods.id], nick="ally")
    emulator.add_emoji(guild.id, "pint")
    bot = make_bot()
    async with running(emulator, bot):
        assert bot.user is not None and bot.user.id == emulator.bot_user_id
        assert bot.application_id == emulator.application_id
        assert bot.user.name == "Finnegan"
        [seen] = bot.guilds
        assert seen.id == guild.id and seen.name == "The Pub"
        assert seen.get_channel(general.id) is not None
        assert seen.get_channel(general.id).name == "general"  # type: ignore[union-attr]
        member = seen.get_member(alice.id)
        assert member is not None and member.nick == "ally" and member.global_name == "Alice"
        assert [r.name for r in member.roles] == ["@everyone", "mods"]
        assert seen.me.top_role.id == guild.bot_role_id
        assert seen.member_count == 3  # owner, bot, alice
        assert [e.name for e in seen.emojis] == ["pint"]
        assert emulator.gateway.identifies == 1


async def test_message_is_delivered_and_reply_references_it(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    bot = make_bot()
    seen: list[discord.Message] = []
    own_message_seen = asyncio.Event()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message)
        if message.author.bot:
            own_message_seen.set()
            return
        await message.reply(f"pong: {message.content}", mention_author=False)

    async with running(emulator, bot):
        sent = await emulator.send_message(general.id, alice.id, f"ping <@{emulator.bot_user_id}>")
        reply = await emulator.wait_for_message(channel_id=general.id)
        assert reply["content"] == f"pong: ping <@{emulator.bot_user_id}>"
        assert reply["message_reference"]["message_id"] == sent["id"]
        assert reply["referenced_message"]["id"] == sent["id"]
        assert reply["allowed_mentions"]["replied_user"] is False
        assert reply["type"] == 19
        assert str(alice.id) not in [m["id"] for m in reply["mentions"]]  # mention_author=False
        request = await emulator.wait_for_request("POST", rf"/channels/{general.id}/messages")
        assert str(request.json["message_reference"]["message_id"]) == sent["id"]
        assert request.status == 200
        # The bot's own message comes back to it over the gateway, as on Discord.
        await asyncio.wait_for(own_message_seen.wait(), timeout=5)
        assert [m.author.id for m in seen] == [alice.id, emulator.bot_user_id]
        assert seen[0].mentions == [bot.user]
        assert emulator.messages[general.id] == [sent, reply]
