"""Messages in, replies out, through the real bot and the emulated Discord."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.discord.conftest import Harness, eventually

from carrier.clients.discord.cogs.events import EventsCog
from carrier.store.messages import LoggedMessage

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def logged(h: Harness, channel_id: int) -> list[LoggedMessage]:
    """The channel's log, oldest first."""
    await h.carrier.engine.drain()
    rows = await h.store.messages.recent(h.carrier.agent_id, str(channel_id), EPOCH, 500)
    return list(reversed(rows))


def bot_messages(h: Harness, channel_id: int) -> list[dict[str, object]]:
    bot = str(h.bot_id)
    return [m for m in h.emu.messages.get(channel_id, []) if m["author"]["id"] == bot]


async def test_mention_gets_a_reply_referencing_the_message(harness: Harness) -> None:
    h = harness
    sent = await h.say(h.alice, f"<@{h.bot_id}> how is the ocean today?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    assert reply["content"].strip()
    mentions = reply["allowed_mentions"]
    assert mentions.get("parse", []) == []
    assert mentions.get("users") == [str(h.alice.id)]
    assert mentions.get("roles", []) == []
    assert h.general.id not in h.emu.typing  # a fast reply needs no typing indicator

    # The reply is in the log under the id Discord gave it, as the bot's.
    async def noted() -> bool:
        return [m.message_id for m in await logged(h, h.general.id) if m.is_self] == [reply["id"]]

    assert await eventually(noted)
    log = await logged(h, h.general.id)
    assert log[0].author_name == "Ali"  # the member's nickname, for the nickname history


async def test_typing_indicator_while_a_reply_is_generated(harness: Harness) -> None:
    h = harness
    events = h.bot.get_cog("events")
    assert isinstance(events, EventsCog)
    events.typing_delay = 0.0
    await h.say(h.alice, f"<@{h.bot_id}> take your time")
    await h.bot_reply(channel_id=h.general.id)
    await h.emu.wait_for_request("POST", rf"/channels/{h.general.id}/typing")
    await h.say(h.alice, "no mention, no typing", channel=h.readonly)
    await h.quiet()
    assert h.readonly.id not in h.emu.typing


async def test_reply_to_the_bot_gets_a_reply(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, f"<@{h.bot_id}> tell me about the reef")
    first = await h.bot_reply(channel_id=h.general.id)
    sent = await h.say(h.bob, "and what about sharks then", reply_to=int(first["id"]), mentions=[])
    second = await h.bot_reply(channel_id=h.general.id)
    assert second["message_reference"]["message_id"] == sent["id"]


async def test_unaddressed_chatter_is_recorded_not_answered(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, "the weather is grim")
    await h.say(h.bob, "agreed, grey all day")
    await h.quiet()
    assert bot_messages(h, h.general.id) == []
    assert [m.text for m in await logged(h, h.general.id)] == [
        "the weather is grim",
        "agreed, grey all day",
    ]


async def test_ignored_kinds_of_message(harness: Harness) -> None:
    h = harness
    other_bot = h.emu.add_user("otherbot", bot=True)
    h.emu.add_member(h.guild.id, other_bot.id)
    mention = f"<@{h.bot_id}> hello"
    await h.say(h.alice, mention, webhook_id=424242)
    await h.say(h.alice, mention, type=7)  # a member-join system message
    await h.say(other_bot, mention)  # answer_bots is off by default
    await h.emu.send_message(None, h.alice.id, mention, dm=True)
    await h.say(h.alice, "", attachments=1)
    await h.say(h.bob, "", sticker=True)
    await h.quiet()
    assert bot_messages(h, h.general.id) == []
    assert all(m["author"]["id"] != str(h.bot_id) for ms in h.emu.messages.values() for m in ms)
    log = await logged(h, h.general.id)
    # The other bot and the attachment/sticker-only messages are recorded (activity);
    # webhook and system messages are not.
    assert [(m.author_id, m.text, m.author_is_bot) for m in log] == [
        (str(other_bot.id), "@Finnegan hello", True),
        (str(h.alice.id), "", False),
        (str(h.bob.id), "", False),
    ]
    # Still alive and answering.
    await h.say(h.alice, mention)
    await h.bot_reply(channel_id=h.general.id)


async def test_attachment_and_sticker_only_replies_to_the_bot_are_not_answered(
    harness: Harness,
) -> None:
    h = harness
    sent = await h.say(h.alice, f"<@{h.bot_id}> show me the reef")
    first = await h.bot_reply(channel_id=h.general.id)
    assert first["message_reference"]["message_id"] == sent["id"]
    to_bot = int(first["id"])
    picture = await h.say(h.alice, "", attachments=1, reply_to=to_bot, mentions=[])
    sticker = await h.say(h.bob, "", sticker=True, reply_to=to_bot, mentions=[])
    assert picture["message_reference"]["message_id"] == first["id"]
    assert sticker["message_reference"]["message_id"] == first["id"]
    await h.quiet()
    # Nothing to answer: no second reply, no typing, no error on either side.
    assert [m["id"] for m in bot_messages(h, h.general.id)] == [first["id"]]
    assert h.general.id not in h.emu.typing
    # Recorded as activity (empty text), like any attachment- or sticker-only message.
    by_id = {m.message_id: m for m in await logged(h, h.general.id)}
    assert (by_id[picture["id"]].author_id, by_id[picture["id"]].text) == (str(h.alice.id), "")
    assert (by_id[sticker["id"]].author_id, by_id[sticker["id"]].text) == (str(h.bob.id), "")
    assert len(by_id) == 4  # the question, the reply, the picture, the sticker
    # Still answering.
    again = await h.say(h.alice, "and the sharks?", reply_to=to_bot, mentions=[])
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == again["id"]


async def test_channel_without_send_permission_is_recorded_only(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, f"<@{h.bot_id}> are you there?", channel=h.readonly)
    await h.quiet()
    assert bot_messages(h, h.readonly.id) == []
    assert not any(r.method == "POST" and "/messages" in r.path for r in h.emu.rest_log)
    assert [m.text for m in await logged(h, h.readonly.id)] == ["@Finnegan are you there?"]


async def test_edit_and_delete_reach_the_log(harness: Harness) -> None:
    h = harness
    sent = await h.say(h.alice, "I like tuna")
    other = await h.say(h.bob, "I like cod")
    await h.quiet(0.1)
    await h.emu.edit_message(h.general.id, int(sent["id"]), "I like salmon")
    await h.emu.delete_message(h.general.id, int(other["id"]))

    async def settled() -> bool:
        return [m.text for m in await logged(h, h.general.id)] == ["I like salmon"]

    assert await eventually(settled)


async def test_replayed_events_after_a_resume_are_not_answered_twice(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, f"<@{h.bot_id}> first question")
    await h.bot_reply(channel_id=h.general.id)
    async with h.emu.disconnected():
        sent = await h.say(h.alice, f"<@{h.bot_id}> asked while you were away")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    # Even if the gateway sends the same event again, it is answered once.
    await h.emu.dispatch("MESSAGE_CREATE", sent, guild_id=h.guild.id)
    await h.emu.disconnect(resume=True)
    await h.quiet()
    answers = [
        m
        for m in bot_messages(h, h.general.id)
        if (m.get("message_reference") or {}).get("message_id") == sent["id"]
    ]
    assert len(answers) == 1


async def test_emotes_of_the_guild_are_stored(harness: Harness) -> None:
    h = harness
    emotes = await h.store.emotes.for_guild(h.carrier.agent_id, str(h.guild.id))
    assert set(emotes) == {"blobfish"}
    assert emotes["blobfish"].startswith("<:blobfish:")
    h.emu.add_emoji(h.guild.id, "crab")

    async def names() -> set[str]:
        return set(await h.store.emotes.for_guild(h.carrier.agent_id, str(h.guild.id)))

    async def has_crab() -> bool:
        return "crab" in await names()

    assert await eventually(has_crab)
    assert await names() == {"blobfish", "crab"}


async def test_a_new_session_after_an_invalidated_resume_still_answers_once(
    harness: Harness,
) -> None:
    h = harness
    await h.emu.disconnect(resume=False)
    sent = await h.say(h.alice, f"<@{h.bot_id}> back again?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    await h.emu.dispatch("MESSAGE_CREATE", sent, guild_id=h.guild.id)  # a duplicate
    await h.quiet()
    answers = [
        m
        for m in bot_messages(h, h.general.id)
        if (m.get("message_reference") or {}).get("message_id") == sent["id"]
    ]
    assert len(answers) == 1


async def test_nickname_changes_join_the_nickname_history(harness: Harness) -> None:
    h = harness
    agent = h.carrier.agent_id
    await h.say(h.alice, "hello all")
    await h.quiet(0.1)
    await h.emu.update_member(h.guild.id, h.alice.id, nick="Alicia")
    await h.emu.update_member(h.guild.id, h.bob.id, nick="Bobby")  # never spoke: not stored

    async def renamed() -> bool:
        names = [n.nickname for n in await h.store.users.nicknames(agent, str(h.alice.id))]
        return names == ["Ali", "Alicia"]

    assert await eventually(renamed)
    await h.quiet()
    assert await h.store.users.nicknames(agent, str(h.bob.id)) == []
