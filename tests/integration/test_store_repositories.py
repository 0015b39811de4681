"""The repositories over a real, migrated database: SQLite, then PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from carrier.store.channels import ChannelPolicy
from carrier.store.messages import LoggedMessage
from carrier.store.relationships import RelationshipRow
from carrier.store.schema import message_archive, short_term_messages
from carrier.store.store import Store

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
PARIS = timezone(timedelta(hours=2))


def assert_utc(value: datetime, expected: datetime) -> None:
    """The same instant, as an aware UTC datetime (microseconds kept)."""
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    assert value == expected


# --- agents ------------------------------------------------------------------------------


async def test_ensure_agent_is_idempotent_and_keeps_the_name(store: Store) -> None:
    await store.agents.ensure("salmon", "Salmon")
    await store.agents.ensure("salmon", "Another Name")
    await store.agents.ensure("fish", "Fish again")

    assert await store.agents.list() == [("fish", "Fish"), ("salmon", "Salmon")]
    await store.agents.rename("salmon", "Sal")
    assert await store.agents.name("salmon") == "Sal"
    assert await store.agents.name("nobody") is None


# --- users -------------------------------------------------------------------------------


async def touch(store: Store, user_id: str, name: str, at: datetime, agent: str = "fish") -> None:
    async with store.engine.begin() as conn:
        await store.users.touch_in(conn, agent, user_id, name, False, at)


async def test_touch_creates_then_refreshes_a_user(store: Store) -> None:
    await touch(store, "u1", "Alice", T0)
    user = await store.users.get("fish", "u1")
    assert user is not None
    assert (user.name, user.is_bot, user.message_count) == ("Alice", False, 1)
    assert_utc(user.first_seen, T0)
    assert_utc(user.last_seen, T0)

    later = T0 + timedelta(hours=3)
    await touch(store, "u1", "Alice", later)
    user = await store.users.get("fish", "u1")
    assert user is not None
    assert user.message_count == 2
    assert_utc(user.first_seen, T0)
    assert_utc(user.last_seen, later)


async def test_a_name_change_keeps_the_nickname_history(store: Store) -> None:
    await touch(store, "u1", "Alice", T0)
    await touch(store, "u1", "Alice", T0 + timedelta(minutes=5))
    await touch(store, "u1", "Ally", T0 + timedelta(days=1))

    user = await store.users.get("fish", "u1")
    assert user is not None and user.name == "Ally"
    history = await store.users.nicknames("fish", "u1")
    assert [n.nickname for n in history] == ["Alice", "Ally"]
    assert_utc(history[0].first_seen, T0)
    assert_utc(history[0].last_seen, T0 + timedelta(minutes=5))
    assert_utc(history[1].first_seen, T0 + timedelta(days=1))
    assert_utc(history[1].last_seen, T0 + timedelta(days=1))

    # Back to the old name: its last_seen moves, its first_seen stays.
    await touch(store, "u1", "Alice", T0 + timedelta(days=2))
    history = await store.users.nicknames("fish", "u1")
    assert [n.nickname for n in history] == ["Alice", "Ally"]
    assert_utc(history[0].first_seen, T0)
    assert_utc(history[0].last_seen, T0 + timedelta(days=2))


async def test_timestamps_in_another_zone_come_back_as_utc(store: Store) -> None:
    local = datetime(2026, 11, 20, 11, 30, 15, 123456, tzinfo=PARIS)
    await touch(store, "u1", "Alice", local)
    user = await store.users.get("fish", "u1")
    assert user is not None
    assert_utc(user.first_seen, T0)
    assert user.first_seen.hour == 9


async def test_a_naive_timestamp_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await touch(store, "u1", "Alice", datetime(2026, 11, 20, 9, 30))
    assert await store.users.get("fish", "u1") is None


async def test_find_a_user_by_id_name_or_old_nickname(store: Store) -> None:
    await touch(store, "u1", "Alice", T0)
    await touch(store, "u1", "Ally", T0 + timedelta(hours=1))
    await touch(store, "u2", "Bob", T0)

    for query in ("u1", "Ally", "ally", "ALICE"):
        found = await store.users.find("fish", query)
        assert found is not None and found.user_id == "u1", query
    found = await store.users.find("fish", "bob")
    assert found is not None and found.user_id == "u2"
    assert await store.users.find("fish", "Carol") is None


async def test_find_treats_wildcards_literally(store: Store) -> None:
    await touch(store, "u1", "a_b", T0)
    await touch(store, "u2", "axb", T0 + timedelta(hours=1))
    await touch(store, "u3", "100%", T0 + timedelta(hours=2))

    found = await store.users.find("fish", "a_b")
    assert found is not None and found.user_id == "u1"
    found = await store.users.find("fish", "100%")
    assert found is not None and found.user_id == "u3"
    assert await store.users.find("fish", "%") is None
    assert await store.users.find("fish", "a%") is None


async def test_users_are_scoped_by_agent(store: Store) -> None:
    await store.agents.ensure("salmon", "Salmon")
    await touch(store, "u1", "Alice", T0)
    assert await store.users.get("salmon", "u1") is None
    assert await store.users.find("salmon", "Alice") is None


async def test_forget_removes_user_and_history(store: Store) -> None:
    await touch(store, "u1", "Alice", T0)
    await touch(store, "u2", "Bob", T0)
    await store.users.forget("fish", "u1")
    assert await store.users.get("fish", "u1") is None
    assert await store.users.nicknames("fish", "u1") == []
    assert await store.users.get("fish", "u2") is not None


# --- relationships -----------------------------------------------------------------------


async def test_relationship_put_get_delete(store: Store) -> None:
    assert await store.relationships.get("fish", "u1") is None

    first = RelationshipRow(anger=1.5, rapport=6.0, trust=5.0, formality=-2.0, updated_at=T0)
    await store.relationships.put("fish", "u1", first)
    got = await store.relationships.get("fish", "u1")
    assert got is not None
    assert (got.anger, got.rapport, got.trust, got.formality) == (1.5, 6.0, 5.0, -2.0)
    assert_utc(got.updated_at, T0)

    second = RelationshipRow(
        anger=0.0, rapport=10.0, trust=9.5, formality=5.0, updated_at=T0 + timedelta(hours=1)
    )
    await store.relationships.put("fish", "u1", second)
    assert await store.relationships.get("fish", "u1") == second
    assert await store.relationships.get("fish", "u2") is None

    assert await store.relationships.delete("fish", "u1") is True
    assert await store.relationships.get("fish", "u1") is None
    assert await store.relationships.delete("fish", "u1") is False


# --- global state ------------------------------------------------------------------------


async def test_global_state_set_get_all_delete(store: Store) -> None:
    await store.agents.ensure("salmon", "Salmon")
    assert await store.state.get("fish", "status") is None

    await store.state.set("fish", "status", "swimming")
    await store.state.set("fish", "status", "napping")
    await store.state.set_many(
        "fish", {"daily_mood_value": "0.4", "daily_mood_date": "2026-11-20", "dailyXmood": "x"}
    )
    await store.state.set("salmon", "daily_mood_value", "-1")

    assert await store.state.get("fish", "status") == "napping"
    assert await store.state.all("fish", prefix="daily_mood_") == {
        "daily_mood_value": "0.4",
        "daily_mood_date": "2026-11-20",
    }
    assert set(await store.state.all("fish")) == {
        "status",
        "daily_mood_value",
        "daily_mood_date",
        "dailyXmood",
    }
    assert await store.state.get("salmon", "daily_mood_value") == "-1"

    assert await store.state.delete("fish", "status") is True
    assert await store.state.delete("fish", "status") is False
    assert await store.state.get("fish", "status") is None
    assert await store.state.get("salmon", "daily_mood_value") == "-1"


# --- the message log ---------------------------------------------------------------------


def message(
    message_id: str,
    at: datetime,
    text: str | None = None,
    channel_id: str = "c1",
    author_id: str = "u1",
) -> LoggedMessage:
    return LoggedMessage(
        agent_id="fish",
        guild_id="g1",
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        author_name="Alice",
        text=text or f"message {message_id}",
        created_at=at,
    )


async def log(store: Store, *messages: LoggedMessage) -> list[bool]:
    results = []
    async with store.engine.begin() as conn:
        for item in messages:
            results.append(await store.messages.insert_in(conn, item))
    return results


async def archive(store: Store, *messages: LoggedMessage) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            message_archive.insert(),
            [{**m.as_row(), "archived_at": m.created_at + timedelta(hours=1)} for m in messages],
        )


async def test_insert_returns_false_on_a_duplicate(store: Store) -> None:
    first = message("m1", T0)
    assert await log(store, first) == [True]
    assert await log(store, first) == [False]
    assert await log(store, message("m1", T0, text="replayed with other text")) == [False]
    # The same message id in another channel is another message.
    assert await log(store, message("m1", T0, channel_id="c2")) == [True]
    assert await store.messages.count("fish") == 2
    [kept] = await store.messages.recent("fish", "c1", T0 - timedelta(hours=1), 10)
    assert kept.text == "message m1"


async def test_insert_of_an_archived_message_is_a_duplicate(store: Store) -> None:
    archived = message("m1", T0)
    await archive(store, archived)
    assert await log(store, archived) == [False]
    assert await store.messages.count("fish") == 0
    recent = await store.messages.recent("fish", "c1", T0 - timedelta(hours=1), 10)
    assert [m.message_id for m in recent] == ["m1"]


async def test_recent_merges_log_and_archive_newest_first(store: Store) -> None:
    now = T0
    await archive(
        store,
        message("old", now - timedelta(hours=30)),  # outside the 24 h window
        message("a1", now - timedelta(hours=20)),
        message("a2", now - timedelta(hours=5)),
    )
    await log(
        store,
        message("l1", now - timedelta(hours=10)),
        message("l2", now - timedelta(minutes=1)),
        message("l3", now - timedelta(hours=2)),
        message("other", now - timedelta(minutes=2), channel_id="c2"),
    )
    since = now - timedelta(hours=24)
    recent = await store.messages.recent("fish", "c1", since, 50)
    assert [m.message_id for m in recent] == ["l2", "l3", "a2", "l1", "a1"]
    for item in recent:
        assert item.created_at.utcoffset() == timedelta(0)
    assert_utc(recent[0].created_at, now - timedelta(minutes=1))

    limited = await store.messages.recent("fish", "c1", since, 3)
    assert [m.message_id for m in limited] == ["l2", "l3", "a2"]

    before = await store.messages.recent("fish", "c1", since, 50, before=now - timedelta(hours=3))
    assert [m.message_id for m in before] == ["a2", "l1", "a1"]


async def test_recent_excludes_deleted_messages(store: Store) -> None:
    await archive(store, message("a1", T0 - timedelta(hours=2)))
    await log(store, message("l1", T0 - timedelta(hours=1)), message("l2", T0))

    assert await store.messages.mark_deleted("fish", "c1", "l1") is True
    assert await store.messages.mark_deleted("fish", "c1", "a1") is True
    assert await store.messages.mark_deleted("fish", "c1", "nope") is False

    recent = await store.messages.recent("fish", "c1", T0 - timedelta(days=1), 10)
    assert [m.message_id for m in recent] == ["l2"]
    # Deleted is a flag, not a loss: the rows are still stored.
    assert await store.messages.count("fish") == 2
    assert await store.messages.count("fish", archived=True) == 1


async def test_edit_changes_the_text_in_log_and_archive(store: Store) -> None:
    await archive(store, message("a1", T0 - timedelta(hours=2)))
    await log(store, message("l1", T0))

    assert await store.messages.edit("fish", "c1", "l1", "edited live") is True
    assert await store.messages.edit("fish", "c1", "a1", "edited archived") is True
    assert await store.messages.edit("fish", "c1", "nope", "x") is False

    recent = await store.messages.recent("fish", "c1", T0 - timedelta(days=1), 10)
    assert [(m.message_id, m.text) for m in recent] == [
        ("l1", "edited live"),
        ("a1", "edited archived"),
    ]


async def test_mark_answered_claims_a_message_once(store: Store) -> None:
    await log(store, message("m1", T0))
    assert await store.messages.mark_answered("fish", "c1", "m1", "mention") is True
    assert await store.messages.mark_answered("fish", "c1", "m1", "name_said") is False
    assert await store.messages.mark_answered("fish", "c1", "missing", "mention") is False

    [logged] = await store.messages.recent("fish", "c1", T0 - timedelta(hours=1), 10)
    assert logged.answered_reason == "mention"


async def test_is_known_sees_log_and_archive(store: Store) -> None:
    await archive(store, message("a1", T0))
    await log(store, message("l1", T0))
    async with store.engine.connect() as conn:
        assert await store.messages.is_known(conn, "fish", "c1", "a1") is True
        assert await store.messages.is_known(conn, "fish", "c1", "l1") is True
        assert await store.messages.is_known(conn, "fish", "c1", "x") is False
        assert await store.messages.is_known(conn, "fish", "c2", "l1") is False


async def test_by_author_reads_both_tables(store: Store) -> None:
    await archive(store, message("a1", T0 - timedelta(days=3), author_id="u2"))
    await log(
        store,
        message("l1", T0, author_id="u2"),
        message("l2", T0 + timedelta(seconds=1), author_id="u1"),
    )
    found = await store.messages.by_author("fish", "u2")
    assert [m.message_id for m in found] == ["l1", "a1"]


async def test_messages_are_scoped_by_agent(store: Store) -> None:
    await log(store, message("m1", T0))
    async with store.engine.connect() as conn:
        rows = await conn.scalar(
            select(func.count())
            .select_from(short_term_messages)
            .where(short_term_messages.c.agent_id == "fish")
        )
    assert rows == 1
    assert await store.messages.recent("salmon", "c1", T0 - timedelta(days=1), 10) == []
    assert await store.messages.mark_answered("salmon", "c1", "m1", "mention") is False


# --- channel settings --------------------------------------------------------------------


async def test_channel_policy_defaults(store: Store) -> None:
    assert await store.channels.policy("fish", "g1", "c1") == ChannelPolicy()
    assert await store.channels.policy("fish", None, "dm") == ChannelPolicy()


async def test_channel_policy_folds_guild_and_channel(store: Store) -> None:
    await store.channels.set_guild("fish", "g1", reply_chance=0.2)
    assert await store.channels.policy("fish", "g1", "c1") == ChannelPolicy(
        active=True, reply_mode="contextual", reply_chance=0.2
    )

    # The channel's own chance and mode win over the guild's.
    await store.channels.set_channel("fish", "c1", "g1", reply_mode="chance", reply_chance=0.5)
    assert await store.channels.policy("fish", "g1", "c1") == ChannelPolicy(
        active=True, reply_mode="chance", reply_chance=0.5
    )
    # Another channel of the guild still gets the guild's chance.
    assert (await store.channels.policy("fish", "g1", "c2")).reply_chance == 0.2

    # A deactivated guild silences every channel, even an active one.
    await store.channels.set_guild("fish", "g1", active=False)
    assert (await store.channels.policy("fish", "g1", "c1")).active is False
    assert (await store.channels.policy("fish", "g1", "c2")).active is False
    # Changing one field leaves the others as they were.
    assert (await store.channels.policy("fish", "g1", "c2")).reply_chance == 0.2

    await store.channels.set_guild("fish", "g1", active=True)
    await store.channels.set_channel("fish", "c1", "g1", active=False)
    assert (await store.channels.policy("fish", "g1", "c1")).active is False
    assert (await store.channels.policy("fish", "g1", "c2")).active is True
    policy = await store.channels.policy("fish", "g1", "c1")
    assert (policy.reply_mode, policy.reply_chance) == ("chance", 0.5)

    # Settings belong to one agent.
    await store.agents.ensure("salmon", "Salmon")
    assert await store.channels.policy("salmon", "g1", "c1") == ChannelPolicy()


async def test_emotes_replace_and_read(store: Store) -> None:
    await store.emotes.replace("fish", "g1", {"blub": "<:blub:1>", "fin": "<:fin:2>"})
    await store.emotes.replace("fish", "g1", {"blub": "<:blub:3>"})
    assert await store.emotes.for_guild("fish", "g1") == {"blub": "<:blub:3>"}
    assert await store.emotes.for_guild("fish", "g2") == {}
    assert await store.emotes.for_guild("fish", None) == {}
