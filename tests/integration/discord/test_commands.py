"""Slash commands through the real bot and the emulated Discord: each group, the checks
made on every call, and their effect on the very next message."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from tests.integration.discord.conftest import Harness, eventually

from carrier.clients.discord.cogs.admin import TrainCog
from carrier.clients.discord.cogs.memory_tasks import MemoryTasksCog
from carrier.testing.discord_emulator.model import Permission, User

EPHEMERAL = 64


def opt(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": value}


async def run(
    h: Harness,
    user: User,
    name: str,
    *options: dict[str, Any],
    group: str | None = None,
    sub: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Invoke and return what the user saw: the response (or, when deferred, the first
    follow-up) as ``{"content", "flags", ...}``."""
    interaction = await h.command(
        user, name, list(options), subcommand_group=group, subcommand=sub, **kw
    )
    response = await interaction.response()
    if response["type"] == 5:  # deferred: the answer is a follow-up
        return dict((await interaction.followups(1))[0])
    return dict(response.get("data") or {})


def bot_messages(h: Harness) -> list[dict[str, Any]]:
    """What the bot posted in #general as messages (not as answers to slash commands)."""
    bot = str(h.bot_id)
    return [
        m
        for m in h.emu.messages.get(h.general.id, [])
        if m["author"]["id"] == bot and m["type"] in (0, 19)
    ]


def ephemeral(data: dict[str, Any]) -> bool:
    return bool(int(data.get("flags") or 0) & EPHEMERAL)


# -- admin ----------------------------------------------------------------------------------


async def test_admin_persona_changes_are_live_and_checked_on_every_call(harness: Harness) -> None:
    h = harness
    agent = h.carrier.agent_id
    seen = await run(
        h,
        h.owner,
        "admin",
        opt("kind", "trait"),
        opt("text", "hums sea shanties"),
        group="persona",
        sub="add",
    )
    assert ephemeral(seen) and "hums sea shanties" in seen["content"]
    traits = [i.text for i in await h.store.persona.items(agent, "trait")]
    assert "hums sea shanties" in traits

    refused = await run(
        h,
        h.bob,
        "admin",
        opt("kind", "trait"),
        opt("text", "is rude"),
        group="persona",
        sub="add",
    )
    assert ephemeral(refused) and "Manage Server" in refused["content"]
    assert "is rude" not in [i.text for i in await h.store.persona.items(agent, "trait")]

    listed = await run(h, h.owner, "admin", opt("kind", "trait"), group="persona", sub="list")
    item_id = next(
        line.split()[0].lstrip("#")
        for line in listed["content"].splitlines()
        if "sea shanties" in line
    )
    removed = await run(
        h, h.owner, "admin", opt("item_id", int(item_id)), group="persona", sub="remove"
    )
    assert removed["content"] == f"Removed #{item_id}."
    assert "hums sea shanties" not in [i.text for i in await h.store.persona.items(agent)]


async def test_guild_admin_role_grants_admin_commands(harness: Harness) -> None:
    h = harness
    refused = await run(
        h, h.bob, "admin", opt("key", "x"), opt("value", "1"), group="state", sub="set"
    )
    assert "Manage Server" in refused["content"]
    await run(h, h.owner, "settings", opt("role", h.admin_role.id), sub="adminrole")
    await h.emu.update_member(h.guild.id, h.bob.id, roles=[h.admin_role.id])
    done = await run(
        h, h.bob, "admin", opt("key", "x"), opt("value", "1"), group="state", sub="set"
    )
    assert done["content"] == "x = 1"
    assert await h.store.state.get(h.carrier.agent_id, "x") == "1"
    got = await run(h, h.bob, "admin", opt("key", "x"), group="state", sub="get")
    assert got["content"] == "x = 1"
    # Cleared again: refused on the very next call.
    await run(h, h.owner, "settings", sub="adminrole")
    again = await run(h, h.bob, "admin", opt("key", "x"), group="state", sub="get")
    assert "Manage Server" in again["content"]


async def test_admin_memories_of_a_user(harness: Harness) -> None:
    h = harness
    added = await run(
        h,
        h.owner,
        "admin",
        opt("user", h.alice.id),
        opt("fact", "likes kelp soup"),
        group="memory",
        sub="add",
    )
    assert "new" in added["content"]
    fact_id = int(added["content"].split("#")[1].split()[0])
    listed = await run(h, h.owner, "admin", opt("user", h.alice.id), group="memory", sub="list")
    assert "likes kelp soup" in listed["content"]
    edited = await run(
        h,
        h.owner,
        "admin",
        opt("fact_id", fact_id),
        opt("text", "likes miso soup"),
        group="memory",
        sub="edit",
    )
    assert edited["content"].endswith("likes miso soup")
    facts = await h.carrier.memory.what_i_know(str(h.alice.id))
    assert [f.fact for f in facts.facts] == ["likes miso soup"]
    assert facts.facts[0].embedding_model is not None  # re-embedded, still searchable
    deleted = await run(h, h.owner, "admin", opt("fact_id", fact_id), group="memory", sub="delete")
    assert deleted["content"] == f"Deleted fact #{fact_id}."
    assert (await h.carrier.memory.what_i_know(str(h.alice.id))).facts == []
    missing = await run(h, h.owner, "admin", opt("fact_id", 999999), group="memory", sub="delete")
    assert missing["content"] == "No fact #999999."


async def test_admin_relationship_and_consolidation(harness: Harness) -> None:
    h = harness
    shown = await run(
        h,
        h.owner,
        "admin",
        opt("user", h.alice.id),
        opt("metric", "rapport"),
        opt("value", 9.0),
        group="relationship",
        sub="set",
    )
    assert "rapport with" in shown["content"] and "is now 9" in shown["content"]
    row = await h.store.relationships.get(h.carrier.agent_id, str(h.alice.id))
    assert row is not None and row.rapport == 9.0
    bad = await run(
        h,
        h.owner,
        "admin",
        opt("user", h.alice.id),
        opt("metric", "anger"),
        opt("value", 99.0),
        group="relationship",
        sub="set",
    )
    assert "anger must be between" in bad["content"]
    await h.say(h.alice, "I love kelp and I live in Atlantis")
    await h.quiet(0.1)
    report = await run(h, h.owner, "admin", sub="consolidate")
    assert report["content"].startswith("Archived 1 messages")


async def test_train_learns_the_channel_history_reporting_progress(harness: Harness) -> None:
    h = harness
    train = h.bot.get_cog("train")
    assert isinstance(train, TrainCog)
    train.train_batch = 2  # several batches, so several progress edits
    # History from before the bot was there: in the channel, never delivered to the bot.
    history = h.emu.messages[h.general.id]
    for n in range(5):
        text = f"the coral garden number {n} glows at midnight"
        history.append(h.emu.factory.build(h.general, h.alice.id, text))
    history.append(h.emu.factory.build(h.general, h.bot_id, "my own words are not learned"))
    interaction = await h.command(h.owner, "train", [])
    response = await interaction.response()
    assert response["data"]["content"].startswith("Reading #general")
    done = await interaction.wait_for_edit(lambda e: e.get("content", "").startswith("Done"))
    # Read: the five, the bot's line and its own "Reading…" response; learned: the five.
    assert done["content"] == "Done: read 7 messages of #general, learned 5."
    edits = [e["content"] for e in interaction.edits]
    assert edits[-1] == done["content"]
    progress = edits[:-1]
    # Newest first (its own response, its line, then the five), two learned per batch: a
    # progress edit after each batch, all before "Done".
    assert progress == [
        "Training on #general: read 4, learned 2…",
        "Training on #general: read 6, learned 4…",
        "Training on #general: read 7, learned 5…",
    ]
    chain = await h.store.markov.find_chain(h.carrier.agent_id, str(h.guild.id))
    assert chain is not None and await h.store.markov.message_count(chain.id) == 5
    refused = await run(h, h.bob, "train")
    assert "Manage Server" in refused["content"]
    assert await h.store.markov.message_count(chain.id) == 5


async def test_train_is_its_own_command_not_an_admin_subcommand(harness: Harness) -> None:
    h = harness
    synced = {c["name"]: c for c in h.emu.commands[h.guild.id]}
    assert "train" in synced
    admin_subcommands = {o["name"] for o in synced["admin"].get("options", [])}
    assert "train" not in admin_subcommands
    assert "consolidate" in admin_subcommands


# -- settings -------------------------------------------------------------------------------


async def test_deactivate_and_reply_mode_apply_to_the_next_message(harness: Harness) -> None:
    h = harness
    seen = await run(h, h.owner, "settings", opt("scope", "channel"), sub="deactivate")
    assert ephemeral(seen) and "silent" in seen["content"]
    await h.say(h.alice, f"<@{h.bot_id}> hello?")
    await h.quiet()
    await run(h, h.owner, "settings", opt("scope", "channel"), sub="activate")
    sent = await h.say(h.alice, f"<@{h.bot_id}> hello again?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]

    await run(h, h.owner, "settings", opt("mode", "chance"), opt("percent", 100.0), sub="replymode")
    chatter = await h.say(h.bob, "nobody asked the fish")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == chatter["id"]
    refused = await run(h, h.bob, "settings", opt("scope", "server"), sub="deactivate")
    assert "Manage Server" in refused["content"]


async def test_quiet_hours_are_stored_and_shown(harness: Harness) -> None:
    h = harness
    set_ = await run(h, h.owner, "settings", opt("start", 22), opt("end", 6), sub="quiethours")
    assert "Quiet from 22:00 to 06:00" in set_["content"]
    shown = await run(h, h.owner, "settings", sub="show")
    assert "quiet hours: 22:00-06:00" in shown["content"]
    await run(h, h.owner, "settings", sub="quiethours")
    shown = await run(h, h.owner, "settings", sub="show")
    assert "quiet hours: none" in shown["content"]


async def test_server_deactivate_silences_every_channel_until_activated(harness: Harness) -> None:
    h = harness
    seen = await run(h, h.owner, "settings", opt("scope", "server"), sub="deactivate")
    assert seen["content"] == "I am now silent in this server."
    await h.say(h.alice, f"<@{h.bot_id}> hello?")
    await h.quiet()
    assert bot_messages(h) == []
    # The channel's own setting does not override the server's.
    await run(h, h.owner, "settings", opt("scope", "channel"), sub="activate")
    await h.say(h.alice, f"<@{h.bot_id}> still nothing?")
    await h.quiet()
    assert bot_messages(h) == []
    await run(h, h.owner, "settings", opt("scope", "server"), sub="activate")
    sent = await h.say(h.alice, f"<@{h.bot_id}> and now?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]


async def test_reply_mode_mention_ignores_the_name_and_contextual_answers_it(
    harness: Harness,
) -> None:
    h = harness
    seen = await run(h, h.owner, "settings", opt("mode", "mention"), sub="replymode")
    assert seen["content"] == "In this channel I reply only when mentioned or replied to."
    await h.say(h.alice, "Finnegan, what do you think of the tide?")
    await h.quiet()
    assert bot_messages(h) == []
    await run(h, h.owner, "settings", opt("mode", "contextual"), sub="replymode")
    sent = await h.say(h.alice, "Finnegan, what do you think of the tide now?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]


async def test_quiet_hours_apply_end_to_end(harness: Harness) -> None:
    h = harness
    day = h.clock().replace(minute=0, second=0, microsecond=0)
    h.clock.set(day.replace(hour=23))
    await run(h, h.owner, "settings", opt("start", 22), opt("end", 6), sub="quiethours")
    # Quiet: the name alone gets no answer, and the bot does not speak up on its own...
    await h.say(h.alice, "Finnegan, are you awake?")
    await h.quiet()
    assert bot_messages(h) == []
    h.carrier.scheduler.chance = 1.0
    tasks = h.bot.get_cog("memory_tasks")
    assert isinstance(tasks, MemoryTasksCog)
    posted, _ = await tasks.run_due()
    assert posted == []
    # ...but a mention is still answered.
    sent = await h.say(h.alice, f"<@{h.bot_id}> are you awake?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    # After the quiet hours the name is enough again.
    h.clock.set(day.replace(hour=12))
    sent = await h.say(h.alice, "Finnegan, good morning!")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]


# -- moderation -----------------------------------------------------------------------------


async def test_kick_reaches_rest_with_the_audit_reason(harness: Harness) -> None:
    h = harness
    seen = await run(h, h.mod, "kick", opt("member", h.bob.id), opt("reason", "spamming"))
    assert seen["content"].startswith("Kicked")
    request = await h.emu.wait_for_request("DELETE", rf"/guilds/{h.guild.id}/members/{h.bob.id}")
    assert request.reason is not None and request.reason.endswith(": spamming")
    assert str(h.mod.id) in request.reason


async def test_moderation_refusals_never_reach_rest(harness: Harness) -> None:
    h = harness
    no_permission = await run(h, h.bob, "kick", opt("member", h.alice.id))
    assert no_permission["content"] == "You need the Kick Members permission to kick members."
    above = await run(h, h.mod, "ban", opt("user", h.owner.id))
    assert above["content"] == "The server owner cannot be banned."
    h.emu.add_member(h.guild.id, (boss := h.emu.add_user("boss")).id, roles=[h.mod_role.id])
    equal = await run(h, h.mod, "timeout", opt("member", boss.id), opt("minutes", 10))
    assert "equal to or above yours" in equal["content"]
    await h.quiet(0.1)
    moderation_calls = [
        r
        for r in h.emu.rest_log
        if r.method in ("DELETE", "PUT", "PATCH") and r.path.startswith("/guilds/")
    ]
    assert moderation_calls == []


def moderation_calls(h: Harness) -> list[Any]:
    return [
        r
        for r in h.emu.rest_log
        if r.method in ("DELETE", "PUT", "PATCH") and r.path.startswith(f"/guilds/{h.guild.id}/")
    ]


async def test_bot_without_ban_members_refuses_and_calls_nothing(harness: Harness) -> None:
    h = harness
    without_ban = int(h.emu.world.roles[h.guild.bot_role_id].permissions) & ~int(
        Permission.BAN_MEMBERS
    )
    h.emu.update_role(h.guild.bot_role_id, permissions=without_ban)

    async def bot_lost_it() -> bool:
        guild = h.bot.get_guild(h.guild.id)
        return guild is not None and not guild.me.guild_permissions.ban_members

    assert await eventually(bot_lost_it)
    refused = await run(h, h.mod, "ban", opt("user", h.bob.id), opt("reason", "raid"))
    assert ephemeral(refused)
    assert refused["content"] == (
        "I need the Ban Members permission to ban members; ask an admin to grant it."
    )
    unban = await run(h, h.mod, "unban", opt("user_id", str(h.bob.id)))
    assert unban["content"] == (
        "I need the Ban Members permission to unban members; ask an admin to grant it."
    )
    # Kicking needs another permission, which the bot still has.
    kicked = await run(h, h.mod, "kick", opt("member", h.bob.id))
    assert kicked["content"].startswith("Kicked")
    await h.quiet(0.1)
    assert [(r.method, r.path) for r in moderation_calls(h)] == [
        ("DELETE", f"/guilds/{h.guild.id}/members/{h.bob.id}")
    ]


async def test_target_ranking_above_the_bot_is_refused(harness: Harness) -> None:
    h = harness
    high = h.emu.add_role(h.guild.id, "elders", position=7)  # the bot's role is at 5
    h.emu.add_member(h.guild.id, (elder := h.emu.add_user("elder")).id, roles=[high.id])

    async def bot_sees_the_elder() -> bool:
        guild = h.bot.get_guild(h.guild.id)
        member = guild.get_member(elder.id) if guild is not None else None
        return member is not None and member.top_role.position == 7

    assert await eventually(bot_sees_the_elder)
    # The owner outranks everyone, so only the bot's own rank stops these.
    for command, option in (("ban", "user"), ("kick", "member"), ("timeout", "member")):
        extra = [opt("minutes", 5)] if command == "timeout" else []
        refused = await run(h, h.owner, command, opt(option, elder.id), *extra)
        assert refused["content"] == (
            f"I cannot {command} someone whose highest role is equal to or above mine."
        )
    await h.quiet(0.1)
    assert moderation_calls(h) == []


async def test_timeout_ban_and_unban(harness: Harness) -> None:
    h = harness
    await run(
        h,
        h.mod,
        "timeout",
        opt("member", h.alice.id),
        opt("minutes", 10),
        opt("reason", "cool off"),
    )
    patch = await h.emu.wait_for_request("PATCH", rf"/guilds/{h.guild.id}/members/{h.alice.id}")
    assert patch.json.get("communication_disabled_until")
    assert patch.reason is not None and patch.reason.endswith("cool off")
    await run(h, h.mod, "ban", opt("user", h.bob.id), opt("reason", "raid"))
    ban = await h.emu.wait_for_request("PUT", rf"/guilds/{h.guild.id}/bans/{h.bob.id}")
    assert ban.reason == f"{h.mod.name} ({h.mod.id}): raid"
    unbanned = await run(
        h, h.mod, "unban", opt("user_id", str(h.bob.id)), opt("reason", "appeal  accepted")
    )
    assert unbanned["content"] == f"Unbanned {h.bob.id}."
    unban = await h.emu.wait_for_request("DELETE", rf"/guilds/{h.guild.id}/bans/{h.bob.id}")
    assert unban.reason == f"{h.mod.name} ({h.mod.id}): appeal accepted"
    not_banned = await run(h, h.mod, "unban", opt("user_id", str(h.alice.id)))
    assert not_banned["content"] == f"User {h.alice.id} is not banned here."
    not_an_id = await run(h, h.mod, "unban", opt("user_id", "bob"))
    assert "is not a user id" in not_an_id["content"]


# -- utility --------------------------------------------------------------------------------


async def test_poll_uses_native_polls(harness: Harness) -> None:
    h = harness
    interaction = await h.command(
        h.alice,
        "poll",
        [opt("question", "Best fish?"), opt("answers", "cod; tuna; eel"), opt("hours", 2)],
    )
    response = await interaction.response()
    poll = response["data"]["poll"]
    assert poll["question"]["text"] == "Best fish?"
    assert [a["poll_media"]["text"] for a in poll["answers"]] == ["cod", "tuna", "eel"]
    assert poll["duration"] == 2
    bad = await run(h, h.alice, "poll", opt("question", "?"), opt("answers", "only one"))
    assert "2 to 10 answers" in bad["content"]


async def test_userinfo_and_serverinfo(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, "hello")
    await h.quiet(0.1)
    info = await run(h, h.bob, "userinfo", opt("member", h.alice.id))
    fields = {f["name"]: f["value"] for f in info["embeds"][0]["fields"]}
    assert fields["id"] == str(h.alice.id) and fields["display name"] == "Ali"
    assert "Ali" in fields["names seen"]
    server = await run(h, h.bob, "serverinfo")
    fields = {f["name"]: f["value"] for f in server["embeds"][0]["fields"]}
    assert fields["id"] == str(h.guild.id) and fields["emotes"] == "1"


async def test_memory_me_and_forget_me(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, "I love sushi")
    await h.quiet(0.1)
    await h.carrier.memory.add_fact(str(h.alice.id), "loves sushi", "likes")
    mine = await run(h, h.alice, "memory", sub="me")
    assert ephemeral(mine) and "loves sushi" in mine["content"]
    assert "Messages of yours I keep: 1" in mine["content"]
    forgotten = await run(h, h.alice, "forget", sub="me")
    assert forgotten["content"].startswith("Forgotten: 1 facts, 1 messages")
    again = await run(h, h.alice, "memory", sub="me")
    assert "No facts about you." in again["content"]


async def test_support_ticket_open_list_close(harness: Harness) -> None:
    h = harness
    opened = await run(h, h.alice, "ticket", opt("subject", "my fins hurt"), sub="open")
    assert opened["content"].startswith("Ticket #1 opened")
    create = await h.emu.wait_for_request("POST", rf"/channels/{h.general.id}/threads")
    assert create.json["type"] == 12 and create.json["invitable"] is False
    ticket = (await h.store.tickets.listing(h.carrier.agent_id, str(h.guild.id)))[0]
    assert ticket.opener_id == str(h.alice.id) and ticket.subject == "my fins hurt"
    thread_id = int(ticket.thread_id)
    await h.emu.wait_for_request("PUT", rf"/channels/{thread_id}/thread-members/{h.alice.id}")

    listed = await run(h, h.bob, "ticket", sub="list")
    assert listed["content"] == "No open tickets."  # bob is not staff and opened none
    listed = await run(h, h.owner, "ticket", sub="list")
    assert "my fins hurt" in listed["content"]

    outside = await run(h, h.alice, "ticket", sub="close")
    assert "inside an open ticket" in outside["content"]
    thread = h.emu.world.channels[thread_id]
    not_theirs = await run(h, h.bob, "ticket", sub="close", channel=thread)
    assert not_theirs["content"] == "Only the person who opened the ticket or staff can close it."
    closed = await run(h, h.alice, "ticket", sub="close", channel=thread)
    assert closed["content"] == "Ticket #1 closed."
    assert await h.store.tickets.listing(h.carrier.agent_id, str(h.guild.id)) == []
    await h.emu.wait_for_request("PATCH", rf"/channels/{thread_id}")


async def test_unknown_user_option_gets_a_kind_answer(harness: Harness) -> None:
    h = harness
    stranger = h.emu.add_user("stranger")  # not a member of the guild
    seen = await run(h, h.mod, "kick", opt("member", stranger.id))
    assert ephemeral(seen) and seen["content"]
    assert "went wrong" not in seen["content"]


async def test_unexpected_failure_gets_a_kind_answer_and_a_logged_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    async with h.store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE global_state"))
    seen = await run(h, h.owner, "admin", opt("key", "x"), group="state", sub="get")
    assert ephemeral(seen)
    assert seen["content"] == "Sorry, something went wrong on my side; it has been logged."
    assert "command /admin state get failed" in caplog.text
    assert "global_state" in caplog.text  # the details are in the log, not in the answer
    assert "global_state" not in seen["content"]
