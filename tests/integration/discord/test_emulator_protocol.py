"""The Discord emulator, driven by unmodified discord.py clients with tiny inline handlers:
login and world, messages and replies, slash commands, permissions, resume, sharding."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
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
        assert server.server_errors == []  # no request the emulator failed to read


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


async def test_slash_command_is_synced_and_answered(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    bot = make_bot()

    @bot.tree.command(name="echo", description="Say it back")
    async def echo(
        interaction: discord.Interaction, text: str, who: discord.Member | None = None
    ) -> None:
        name = who.display_name if who else "nobody"
        await interaction.response.send_message(f"{text} for {name}")

    permissions_seen: asyncio.Queue[tuple[int, bool, str]] = asyncio.Queue()
    settings = app_commands.Group(name="settings", description="Settings")
    limits = app_commands.Group(name="limits", description="Limits", parent=settings)

    @limits.command(name="set", description="Set a limit")
    async def set_limit(interaction: discord.Interaction, value: int) -> None:
        await interaction.response.send_message(f"limit {value}", ephemeral=True)
        fetched = await interaction.original_response()  # GET .../messages/@original
        permissions_seen.put_nowait((value, interaction.permissions.administrator, fetched.content))

    bot.tree.add_command(settings, guild=discord.Object(guild.id))

    @bot.tree.command(name="train", description="Learn from the channel")
    async def train(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="reading 1/2")
        await interaction.edit_original_response(content="reading 2/2")
        await interaction.followup.send("trained", ephemeral=True)

    async with running(emulator, bot):
        synced = await bot.tree.sync()
        assert sorted(c.name for c in synced) == ["echo", "train"]
        assert sorted(c["name"] for c in emulator.commands[None]) == ["echo", "train"]
        assert guild.id not in emulator.commands
        bot.tree.copy_global_to(guild=discord.Object(guild.id))
        await bot.tree.sync(guild=discord.Object(guild.id))
        assert sorted(c["name"] for c in emulator.commands[guild.id]) == [
            "echo",
            "settings",
            "train",
        ]

        echo_call = await emulator.invoke_command(
            guild.id,
            general.id,
            alice.id,
            "echo",
            [{"name": "text", "value": "hello"}, {"name": "who", "value": alice.id}],
        )
        answer = await echo_call.response()
        assert answer["type"] == 4
        assert answer["data"]["content"] == "hello for alice"
        posted = await emulator.wait_for_message(channel_id=general.id)
        assert posted["interaction_metadata"]["id"] == str(echo_call.id)

        train_call = await emulator.invoke_command(guild.id, general.id, alice.id, "train")
        assert (await train_call.response())["type"] == 5
        [followup] = await train_call.followups(1)
        assert followup["content"] == "trained" and followup["flags"] & 64
        assert [e["content"] for e in train_call.edits] == ["reading 1/2", "reading 2/2"]
        assert train_call.original is not None
        assert train_call.original["content"] == "reading 2/2"

        with pytest.raises(LookupError):
            await emulator.invoke_command(guild.id, general.id, alice.id, "unsynced")

        # Subcommand groups; the invoker's permissions as Discord computes them.
        for who, is_owner in ((alice.id, False), (guild.owner_id, True)):
            call = await emulator.invoke_command(
                guild.id,
                general.id,
                who,
                "settings",
                [{"name": "value", "value": 3}],
                subcommand_group="limits",
                subcommand="set",
            )
            assert (await call.response())["data"]["flags"] & 64  # ephemeral
            assert call.ephemeral and call.original is not None
            seen = await asyncio.wait_for(permissions_seen.get(), 5)
            assert seen == (3, is_owner, "limit 3")


async def test_moderation_follows_permissions_and_role_hierarchy(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    boss = emulator.add_user("boss")
    emulator.add_member(guild.id, alice.id)
    seniors = emulator.add_role(guild.id, "seniors", position=5)
    emulator.add_member(guild.id, boss.id, roles=[seniors.id])
    bot = make_bot()
    removed: asyncio.Queue[int] = asyncio.Queue()

    @bot.event
    async def on_member_remove(member: discord.Member) -> None:
        removed.put_nowait(member.id)

    async with running(emulator, bot):
        pub = bot.get_guild(guild.id)
        assert pub is not None
        with pytest.raises(discord.Forbidden) as no_permission:
            await pub.kick(discord.Object(alice.id), reason="spam")
        assert no_permission.value.status == 403 and no_permission.value.code == 50013
        assert (guild.id, alice.id) in emulator.world.members

        emulator.update_role(
            guild.bot_role_id,
            permissions=int(Permission.KICK_MEMBERS | Permission.MODERATE_MEMBERS),
        )
        with pytest.raises(discord.Forbidden):  # boss's top role is above the bot's
            await pub.kick(discord.Object(boss.id))
        with pytest.raises(discord.Forbidden):  # nobody outranks the owner
            await pub.kick(discord.Object(guild.owner_id))

        member = pub.get_member(alice.id)
        assert member is not None
        await member.timeout(datetime.timedelta(minutes=5), reason="cool down, ünïcode")
        timeout_call = await emulator.wait_for_request("PATCH", rf"/guilds/{guild.id}/members/\d+")
        assert timeout_call.reason == "cool down, ünïcode"
        assert emulator.world.members[(guild.id, alice.id)].communication_disabled_until

        await pub.kick(discord.Object(alice.id), reason="spam")
        assert await asyncio.wait_for(removed.get(), timeout=5) == alice.id
        kick = await emulator.wait_for_request(
            "DELETE", rf"/guilds/{guild.id}/members/{alice.id}", status=204
        )
        assert kick.reason == "spam"
        assert (guild.id, alice.id) not in emulator.world.members

        with pytest.raises(discord.Forbidden):  # no BAN_MEMBERS
            await pub.ban(discord.Object(alice.id))
        emulator.update_role(guild.bot_role_id, permissions=int(Permission.BAN_MEMBERS))
        await pub.ban(discord.Object(alice.id), reason="again", delete_message_seconds=0)
        assert emulator.world.bans[guild.id] == {alice.id: "again"}
        bans = [entry async for entry in pub.bans()]
        assert [(b.user.id, b.reason) for b in bans] == [(alice.id, "again")]
        await pub.unban(discord.Object(alice.id))
        with pytest.raises(discord.NotFound) as unknown_ban:
            await pub.unban(discord.Object(alice.id))
        assert unknown_ban.value.code == 10026


async def test_channel_without_send_permission_answers_403(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub")
    quiet = emulator.add_channel(guild.id, "quiet", bot_can_send=False)
    bot = make_bot()
    async with running(emulator, bot):
        channel = bot.get_channel(quiet.id)
        assert isinstance(channel, discord.TextChannel)
        assert not channel.permissions_for(channel.guild.me).send_messages
        with pytest.raises(discord.Forbidden) as refused:
            await channel.send("hello?")
        assert refused.value.code == 50013
        assert emulator.messages[quiet.id] == []


async def test_disconnect_and_resume_replays_missed_events_exactly_once(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    bot = make_bot()
    received: asyncio.Queue[str] = asyncio.Queue()
    resumed = asyncio.Event()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.put_nowait(message.content)

    @bot.event
    async def on_resumed() -> None:
        resumed.set()

    async def next_contents(count: int) -> list[str]:
        return [await asyncio.wait_for(received.get(), timeout=5) for _ in range(count)]

    async with running(emulator, bot):
        await emulator.send_message(general.id, alice.id, "before")
        assert await next_contents(1) == ["before"]

        async with emulator.disconnected():
            await emulator.send_message(general.id, alice.id, "while away 1")
            await emulator.send_message(general.id, alice.id, "while away 2")
        await asyncio.wait_for(resumed.wait(), timeout=5)
        await emulator.send_message(general.id, alice.id, "after")
        assert await next_contents(3) == ["while away 1", "while away 2", "after"]

        # Dropped right after sending: the event is either delivered or replayed, once.
        await emulator.send_message(general.id, alice.id, "racing the drop")
        await emulator.disconnect(abrupt=True)
        await emulator.send_message(general.id, alice.id, "after the drop")
        assert await next_contents(2) == ["racing the drop", "after the drop"]
        assert received.empty()
        assert emulator.gateway.identifies == 1 and emulator.gateway.resumes == 2
        assert emulator.gateway.connections[1:] == ["/resume-gateway", "/resume-gateway"]

        # A session the server forgot: INVALID_SESSION, then a fresh IDENTIFY.
        await emulator.disconnect(resume=False)
        assert emulator.gateway.invalidated == 1 and emulator.gateway.identifies == 2
        await asyncio.wait_for(bot.wait_until_ready(), timeout=5)
        await emulator.send_message(general.id, alice.id, "new session")
        assert await next_contents(1) == ["new session"]

        # Away longer than the backlog Discord keeps: the RESUME is refused, events are lost.
        for session in emulator.gateway.sessions:
            session.replay_limit = 2
        async with emulator.disconnected():
            for n in range(3):
                await emulator.send_message(general.id, alice.id, f"lost {n}")
        assert emulator.gateway.invalidated == 2 and emulator.gateway.identifies == 3
        await emulator.send_message(general.id, alice.id, "back again")
        assert await next_contents(1) == ["back again"]


async def test_auto_sharded_client_gets_each_guild_once(emulator: DiscordEmulator) -> None:
    emulator.recommended_shards = 2
    guilds = [emulator.add_guild(f"guild {i}") for i in range(4)]
    channels = [emulator.add_channel(g.id, "general") for g in guilds]
    alice = emulator.add_user("alice")
    for g in guilds:
        emulator.add_member(g.id, alice.id)
    bot = QuickShardedBot(command_prefix="!", intents=intents(), guild_ready_timeout=0.01)
    shard_of_message: asyncio.Queue[tuple[int, int | None]] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        assert message.guild is not None
        shard_of_message.put_nowait((message.guild.id, message.guild.shard_id))

    async with running(emulator, bot, shards=2):
        assert bot.shard_count == 2
        assert sorted(g.id for g in bot.guilds) == sorted(g.id for g in guilds)
        created: list[int] = []
        for session in emulator.gateway.sessions:
            frames = [json.loads(frame) for frame in session.buffer]
            ids = [int(f["d"]["id"]) for f in frames if f["t"] == "GUILD_CREATE"]
            assert ids and all((i >> 22) % 2 == session.shard_id for i in ids)
            created += ids
        assert sorted(created) == sorted(g.id for g in guilds)  # each guild once
        for g, channel in zip(guilds, channels, strict=True):
            await emulator.send_message(channel.id, alice.id, "hi")
            assert await asyncio.wait_for(shard_of_message.get(), 5) == (g.id, (g.id >> 22) % 2)


async def test_history_typing_reactions_presence_edits_and_deletes(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    pint = emulator.add_emoji(guild.id, "pint")
    bot = make_bot()
    edits: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    deletions: asyncio.Queue[int] = asyncio.Queue()

    @bot.event
    async def on_message_edit(before: discord.Message, after: discord.Message) -> None:
        edits.put_nowait((before.content, after.content))

    @bot.event
    async def on_raw_message_delete(event: discord.RawMessageDeleteEvent) -> None:
        deletions.put_nowait(event.message_id)

    async with running(emulator, bot):
        posted = [await emulator.send_message(general.id, alice.id, f"m{i}") for i in range(120)]
        channel = bot.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)

        everything = [m.content async for m in channel.history(limit=None, oldest_first=True)]
        assert everything == [f"m{i}" for i in range(120)]
        pages = [r for r in emulator.rest_log if r.path == f"/channels/{general.id}/messages"]
        assert [r.query.get("limit") for r in pages] == ["100", "100"]
        after = [
            m.content
            async for m in channel.history(after=discord.Object(int(posted[9]["id"])), limit=3)
        ]
        assert after == ["m10", "m11", "m12"]
        before = [
            m.content async for m in channel.history(before=discord.Object(int(posted[5]["id"])))
        ]
        assert before == ["m4", "m3", "m2", "m1", "m0"]

        async with channel.typing():
            sent = await channel.send("typing done")
        assert emulator.typing == [general.id]

        target = channel.get_partial_message(int(posted[0]["id"]))
        await target.add_reaction("🐟")
        await target.add_reaction(f"<:pint:{pint.id}>")
        assert emulator.reactions == [
            (general.id, int(posted[0]["id"]), "🐟"),
            (general.id, int(posted[0]["id"]), f"pint:{pint.id}"),
        ]
        assert [r["emoji"]["name"] for r in posted[0]["reactions"]] == ["🐟", "pint"]

        await bot.change_presence(status=discord.Status.idle, activity=discord.Game("darts"))
        presence = await emulator.wait_for_presence(lambda p: p["status"] == "idle")
        assert presence["activities"][0]["name"] == "darts"

        await sent.edit(content="typing done, edited")
        assert emulator.messages[general.id][-1]["content"] == "typing done, edited"
        assert await asyncio.wait_for(edits.get(), 5) == ("typing done", "typing done, edited")
        await emulator.edit_message(general.id, int(posted[119]["id"]), "m119 (edited)")
        assert await asyncio.wait_for(edits.get(), 5) == ("m119", "m119 (edited)")
        with pytest.raises(discord.Forbidden) as not_yours:
            await target.edit(content="hijack")
        assert not_yours.value.code == 50005

        await emulator.delete_message(general.id, int(posted[1]["id"]))
        assert await asyncio.wait_for(deletions.get(), 5) == int(posted[1]["id"])
        await sent.delete()
        assert await asyncio.wait_for(deletions.get(), 5) == sent.id
        assert [m["id"] for m in emulator.deleted_messages] == [posted[1]["id"], str(sent.id)]
        with pytest.raises(discord.Forbidden):  # no MANAGE_MESSAGES
            await target.delete()


async def test_without_message_content_intent_content_is_empty_unless_mentioned_or_dm(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    chosen = discord.Intents.default()  # no message_content, no members
    bot = QuickBot(command_prefix="!", intents=chosen, guild_ready_timeout=0.01)
    contents: asyncio.Queue[str] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        contents.put_nowait(message.content)

    async with running(emulator, bot):
        pub = bot.get_guild(guild.id)
        assert pub is not None
        assert [m.id for m in pub.members] == [emulator.bot_user_id]  # no GUILD_MEMBERS intent
        assert pub.member_count == 3
        await emulator.send_message(general.id, alice.id, "secret plans")
        await emulator.send_message(general.id, alice.id, f"<@{emulator.bot_user_id}> hello")
        await emulator.send_message(None, alice.id, "a direct word", dm=True)
        got = [await asyncio.wait_for(contents.get(), 5) for _ in range(3)]
        assert got == ["", f"<@{emulator.bot_user_id}> hello", "a direct word"]
        assert emulator.messages[general.id][0]["content"] == "secret plans"  # stored whole


async def test_threads_polls_and_direct_messages(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub", bot_permissions=int(Permission.SEND_POLLS) | 0)
    emulator.update_role(
        guild.bot_role_id,
        permissions=int(Permission.MANAGE_THREADS | Permission.SEND_POLLS),
    )
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    emulator.add_member(guild.id, alice.id)
    bot = make_bot()
    dms: asyncio.Queue[discord.Message] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.guild is None and not message.author.bot:
            dms.put_nowait(message)

    async with running(emulator, bot):
        channel = bot.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        thread = await channel.create_thread(name="ticket", type=discord.ChannelType.private_thread)
        stored = emulator.world.channels[thread.id]
        assert stored.kind == "private_thread" and stored.parent_id == general.id
        await thread.add_user(discord.Object(alice.id))
        assert stored.thread_members == {emulator.bot_user_id, alice.id}
        await thread.send("welcome")
        assert [m["content"] for m in emulator.messages[thread.id]] == ["welcome"]
        await thread.edit(archived=True, locked=True)
        assert stored.archived and stored.locked
        with pytest.raises(discord.HTTPException) as archived:
            await thread.send("too late")
        assert archived.value.code == 50083

        poll = discord.Poll(question="Tea?", duration=datetime.timedelta(hours=1))
        poll.add_answer(text="yes").add_answer(text="no")
        message = await channel.send(poll=poll)
        assert message.poll is not None and message.poll.question == "Tea?"
        assert [a.text for a in message.poll.answers] == ["yes", "no"]
        stored_poll = emulator.messages[general.id][-1]["poll"]
        assert [a["answer_id"] for a in stored_poll["answers"]] == [1, 2]

        await emulator.send_message(None, alice.id, "psst", dm=True)
        dm = await asyncio.wait_for(dms.get(), 5)
        assert isinstance(dm.channel, discord.DMChannel) and dm.content == "psst"
        await dm.channel.send("hello you")
        user = await bot.fetch_user(alice.id)
        await user.send("and again")
        assert [m["content"] for m in emulator.messages[emulator.dm_channel(alice.id).id]] == [
            "psst",
            "hello you",
            "and again",
        ]
        emulator.closed_dms.add(alice.id)
        with pytest.raises(discord.Forbidden) as closed:
            await user.send("anyone?")
        assert closed.value.code == 50007


async def test_world_changes_after_ready_reach_the_client(emulator: DiscordEmulator) -> None:
    first = emulator.add_guild("First")
    bot = make_bot()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    @bot.event
    async def on_guild_join(guild: discord.Guild) -> None:
        events.put_nowait(("join", guild.id))

    @bot.event
    async def on_member_join(member: discord.Member) -> None:
        events.put_nowait(("member", member.id))

    @bot.event
    async def on_member_update(before: discord.Member, after: discord.Member) -> None:
        events.put_nowait(("nick", after.nick))

    @bot.event
    async def on_guild_emojis_update(guild: discord.Guild, before: Any, after: Any) -> None:
        events.put_nowait(("emojis", [e.name for e in after]))

    @bot.event
    async def on_guild_channel_create(channel: discord.abc.GuildChannel) -> None:
        events.put_nowait(("channel", channel.name))

    @bot.event
    async def on_reaction_add(reaction: discord.Reaction, user: discord.Member) -> None:
        events.put_nowait(("reaction", (str(reaction.emoji), user.id, reaction.count)))

    @bot.event
    async def on_guild_remove(guild: discord.Guild) -> None:
        events.put_nowait(("left", guild.id))

    async def next_event() -> tuple[str, Any]:
        return await asyncio.wait_for(events.get(), 5)

    async with running(emulator, bot):
        second = emulator.add_guild("Second")
        assert await next_event() == ("join", second.id)
        emulator.add_channel(first.id, "late")
        assert await next_event() == ("channel", "late")
        bob = emulator.add_user("bob")
        emulator.add_member(first.id, bob.id)
        assert await next_event() == ("member", bob.id)
        await emulator.update_member(first.id, bob.id, nick="Bobby")
        assert await next_event() == ("nick", "Bobby")
        emulator.add_emoji(first.id, "wave")
        assert await next_event() == ("emojis", ["wave"])
        assert {g.id for g in bot.guilds} == {first.id, second.id}
        member = await bot.get_guild(first.id).fetch_member(bob.id)  # type: ignore[union-attr]
        assert member.nick == "Bobby"
        fetched = await bot.fetch_guild(second.id, with_counts=True)
        assert fetched.name == "Second" and fetched.approximate_member_count == 2

        late = next(c for c in emulator.world.channels.values() if c.name == "late")
        posted = await emulator.send_message(late.id, bob.id, "react to me")
        await emulator.add_reaction(late.id, int(posted["id"]), bob.id, "🦀")
        assert await next_event() == ("reaction", ("🦀", bob.id, 1))
        await emulator.remove_guild(second.id)
        assert await next_event() == ("left", second.id)
        assert {g.id for g in bot.guilds} == {first.id}


async def test_rest_errors_rate_limits_and_bad_tokens(emulator: DiscordEmulator) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    bot = make_bot()
    async with running(emulator, bot):
        channel = bot.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        emulator.fail_next("POST", rf"/channels/{general.id}/messages", 429, retry_after=0.01)
        await channel.send("after a rate limit")  # discord.py waits and retries
        statuses = [r.status for r in emulator.rest_log if r.method == "POST"]
        assert statuses == [429, 200]

        emulator.fail_next("POST", r"/channels/\d+/messages", 403, 50001, "Missing Access")
        with pytest.raises(discord.Forbidden) as injected:
            await channel.send("refused")
        assert injected.value.code == 50001

        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.status == 400 and too_long.value.code == 50035
        with pytest.raises(discord.NotFound) as unknown_channel:
            route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=123)
            await bot.http.request(route, json={"content": "lost"})
        assert unknown_channel.value.code == 10003
        assert [m["content"] for m in emulator.messages[general.id]] == ["after a rate limit"]

    wrong = make_bot()
    with emulator.patch_discord(), pytest.raises(discord.LoginFailure):
        await wrong.login("not-the-token")
    await wrong.close()


async def test_message_variants_reach_the_client_as_discord_sends_them(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    alice = emulator.add_user("alice")
    bob = emulator.add_user("bob")
    for user in (alice, bob):
        emulator.add_member(guild.id, user.id)
    bot = make_bot()
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.put_nowait(message)

    async def next_message() -> discord.Message:
        return await asyncio.wait_for(received.get(), 5)

    async with running(emulator, bot):
        first = await emulator.send_message(general.id, alice.id, "look", attachments=2)
        message = await next_message()
        assert [a.filename for a in message.attachments] == ["file0.png", "file1.png"]

        await emulator.send_message(
            general.id, bob.id, "yes?", reply_to=int(first["id"]), mentions=[alice.id]
        )
        message = await next_message()
        assert message.reference is not None and message.reference.message_id == int(first["id"])
        assert message.type is discord.MessageType.reply
        assert [m.id for m in message.mentions] == [alice.id]

        await emulator.send_message(general.id, alice.id, "", sticker=True)
        assert [s.name for s in (await next_message()).stickers] == ["wave"]

        await emulator.send_message(general.id, alice.id, "hooked", webhook_id=4242)
        message = await next_message()
        assert message.webhook_id == 4242 and message.author.bot

        await emulator.send_message(general.id, bob.id, "", type=7)
        assert (await next_message()).type is discord.MessageType.new_member

        thread_parent = bot.get_channel(general.id)
        assert isinstance(thread_parent, discord.TextChannel)
        starter = thread_parent.get_partial_message(int(first["id"]))
        thread = await starter.create_thread(name="about that")
        assert thread.id == int(first["id"])  # Discord reuses the message id
        assert emulator.world.channels[thread.id].kind == "thread"
        emojis = await bot.get_guild(guild.id).fetch_emojis()  # type: ignore[union-attr]
        assert emojis == []


async def test_everyone_pings_need_permission_and_allowed_mentions(
    emulator: DiscordEmulator,
) -> None:
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    bot = make_bot()
    async with running(emulator, bot):
        channel = bot.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        everyone = discord.AllowedMentions(everyone=True)
        await channel.send("@everyone no permission", allowed_mentions=everyone)
        emulator.update_role(guild.bot_role_id, permissions=int(Permission.MENTION_EVERYONE))
        await channel.send("@everyone muted", allowed_mentions=discord.AllowedMentions.none())
        await channel.send("@everyone listen", allowed_mentions=everyone)
        sent = emulator.messages[general.id]
        assert [m["mention_everyone"] for m in sent] == [False, False, True]
        assert sent[1]["allowed_mentions"]["parse"] == []


async def test_privileged_intents_must_be_enabled(emulator: DiscordEmulator) -> None:
    emulator.gateway.privileged_intents_enabled = 0
    bot = make_bot()  # asks for members and message_content
    with emulator.patch_discord(), pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(bot.start(TOKEN), timeout=10)
    await bot.close()


async def test_channel_permissions_agree_with_discord_py(emulator: DiscordEmulator) -> None:
    """The emulator's permission arithmetic (which decides its 403s) and discord.py's own
    ``permissions_for`` are separate implementations of Discord's rules: they must agree."""
    guild = emulator.add_guild("The Pub")
    general = emulator.add_channel(guild.id, "general")
    staff = emulator.add_channel(guild.id, "staff")
    helpers = emulator.add_role(guild.id, "helpers", permissions=int(Permission.MANAGE_MESSAGES))
    admins = emulator.add_role(guild.id, "admins", permissions=int(Permission.ADMINISTRATOR))
    alice, bob, carol = (emulator.add_user(n) for n in ("alice", "bob", "carol"))
    emulator.add_member(guild.id, alice.id)
    emulator.add_member(guild.id, bob.id, roles=[helpers.id])
    emulator.add_member(guild.id, carol.id, roles=[admins.id])
    send, view = int(Permission.SEND_MESSAGES), int(Permission.VIEW_CHANNEL)
    emulator.add_overwrite(general.id, guild.id, deny=send)  # @everyone may not talk...
    emulator.add_overwrite(general.id, helpers.id, allow=send)  # ...but helpers may
    emulator.add_overwrite(general.id, bob.id, deny=int(Permission.ADD_REACTIONS))
    emulator.add_overwrite(staff.id, guild.id, deny=view)
    emulator.add_overwrite(staff.id, emulator.bot_user_id, allow=view)
    bot = make_bot()
    updated: asyncio.Queue[int] = asyncio.Queue()

    @bot.event
    async def on_member_update(before: discord.Member, after: discord.Member) -> None:
        updated.put_nowait(after.id)

    async with running(emulator, bot):
        pub = bot.get_guild(guild.id)
        assert pub is not None

        def assert_agree() -> None:
            for channel_id in (general.id, staff.id):
                channel = pub.get_channel(channel_id)
                assert isinstance(channel, discord.TextChannel)
                users = (alice.id, bob.id, carol.id, guild.owner_id, emulator.bot_user_id)
                for user_id in users:
                    member = pub.get_member(user_id)
                    assert member is not None
                    expected = channel.permissions_for(member).value
                    assert emulator.world.channel_permissions(channel_id, user_id) == expected

        assert_agree()
        assert not emulator.world.channel_permissions(general.id, alice.id) & send
        assert emulator.world.channel_permissions(general.id, bob.id) & send
        assert emulator.world.channel_permissions(staff.id, emulator.bot_user_id) & view

        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
        await emulator.update_member(
            guild.id, bob.id, communication_disabled_until=later.isoformat()
        )
        assert await asyncio.wait_for(updated.get(), 5) == bob.id
        assert_agree()  # a timeout leaves only VIEW_CHANNEL and READ_MESSAGE_HISTORY
        assert not emulator.world.channel_permissions(general.id, bob.id) & send
