from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carrier.engine.messages import IncomingMessage
from carrier.engine.triggers import (
    TriggerInputs,
    looks_like_question,
    needs_recent,
    said_name,
    should_respond,
)
from carrier.settings import EngineSettings
from carrier.store.channels import ChannelPolicy
from carrier.store.messages import LoggedMessage

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
BOT = "bot"


def msg(text: str = "hello", author: str = "alice", **kw: object) -> IncomingMessage:
    return IncomingMessage(
        channel_id="c",
        message_id="m",
        author_id=author,
        author_name=author,
        text=text,
        created_at=NOW,
        guild_id="g",
        **kw,
    )  # type: ignore[arg-type]


def logged(
    author: str,
    seconds_ago: float,
    *,
    is_self: bool = False,
    to: str | None = None,
    bot: bool = False,
) -> LoggedMessage:
    return LoggedMessage(
        agent_id="fish",
        channel_id="c",
        message_id=f"x{seconds_ago}",
        author_id=BOT if is_self else author,
        author_name=author,
        text="hi",
        created_at=NOW - timedelta(seconds=seconds_ago),
        is_self=is_self,
        author_is_bot=bot or is_self,
        reply_to_author_id=to,
    )


def decide(
    message: IncomingMessage,
    recent: list[LoggedMessage] | None = None,
    policy: ChannelPolicy | None = None,
    settings: EngineSettings | None = None,
    seed: int = 1,
):  # type: ignore[no-untyped-def]
    inputs = TriggerInputs(
        message=message,
        bot_user_id=BOT,
        names=("Finnegan", "fish"),
        recent=recent or [],
        policy=policy or ChannelPolicy(),
        now=NOW,
    )
    return should_respond(inputs, settings or EngineSettings(), random.Random(seed))


def test_mention_and_reply_trigger() -> None:
    assert decide(msg(mentions_bot=True)).reason == "mention"
    assert decide(msg(reply_to_bot=True)).reason == "reply_to_bot"
    assert decide(msg(mentions_bot=True)).respond


def test_never_answers_itself_or_other_bots_by_default() -> None:
    assert decide(msg(author=BOT, mentions_bot=True)).reason == "own_message"
    other = decide(msg(author="otherbot", author_is_bot=True, mentions_bot=True))
    assert (other.respond, other.reason) == (False, "other_bot")


def test_bot_to_bot_loops_are_cut_when_bots_allowed() -> None:
    settings = EngineSettings(answer_bots=True, max_bot_exchanges=2)
    bot_msg = msg(author="otherbot", author_is_bot=True, mentions_bot=True)
    assert decide(bot_msg, [logged("otherbot", 5, bot=True)], settings=settings).respond
    loop = [
        logged("me", 1, is_self=True),
        logged("otherbot", 2, bot=True),
        logged("me", 3, is_self=True),
        logged("otherbot", 4, bot=True),
    ]
    assert decide(bot_msg, loop, settings=settings).reason == "bot_loop_guard"


@pytest.mark.parametrize(
    "text", ["hey Finnegan, how are you", "FISH are you there", "i asked fish."]
)
def test_name_or_nickname_said(text: str) -> None:
    decision = decide(msg(text))
    assert decision.respond and decision.reason == "name_said"


@pytest.mark.parametrize("text", ["fishing trip tomorrow", "selfish move", "email@fish"])
def test_name_inside_other_words_is_not_a_trigger(text: str) -> None:
    assert said_name(text, ("Finnegan", "fish")) is None
    assert not decide(msg(text)).respond


def test_question_right_after_its_own_message() -> None:
    recent = [logged("me", 30, is_self=True)]
    assert decide(msg("what do you mean?"), recent).reason == "question_after_bot"
    assert not decide(
        msg("nice weather"), recent, settings=EngineSettings(conversation_window_seconds=0)
    ).respond
    stale = [logged("me", 3600, is_self=True)]
    assert not decide(msg("what do you mean?"), stale).respond


def test_ongoing_exchange_with_the_same_user() -> None:
    recent = [logged("alice", 20), logged("me", 40, is_self=True, to="alice")]
    decision = decide(msg("and another thing"), recent)
    assert decision.reason == "ongoing_exchange"
    crowded = [logged("bob", 5), logged("carol", 10), logged("me", 40, is_self=True, to="alice")]
    assert not decide(msg("and another thing"), crowded).respond
    to_someone_else = [logged("me", 40, is_self=True, to="bob")]
    assert not decide(msg("and another thing"), to_someone_else).respond


def test_channel_policy_modes_and_activation() -> None:
    assert (
        decide(msg(mentions_bot=True), policy=ChannelPolicy(active=False)).reason == "inactive_here"
    )
    mention_only = ChannelPolicy(reply_mode="mention")
    assert not decide(msg("hey fish"), policy=mention_only).respond
    assert decide(msg(mentions_bot=True), policy=mention_only).respond
    always = ChannelPolicy(reply_mode="chance", reply_chance=1.0)
    assert decide(msg("anything"), policy=always).reason == "random_chance"
    never = ChannelPolicy(reply_mode="chance", reply_chance=0.0)
    assert not decide(msg("hey fish"), policy=never).respond


def test_empty_and_whitespace_messages_are_not_answered() -> None:
    assert decide(msg("   \n\t ", mentions_bot=True)).reason == "empty_message"


def test_question_detection() -> None:
    assert looks_like_question("is it raining")
    assert looks_like_question("really?")
    assert not looks_like_question("this is fine")


@settings(max_examples=300, deadline=None)
@given(
    text=st.sampled_from(["hello", "Finnegan?", "what now?", "", "fish, you there"]),
    author_is_bot=st.booleans(),
    mentions_bot=st.booleans(),
    reply_to_bot=st.booleans(),
    is_direct=st.booleans(),
    active=st.booleans(),
    mode=st.sampled_from(["mention", "contextual", "chance"]),
    history=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "other-bot"]),
            st.floats(0, 600),
            st.booleans(),
        ),
        max_size=6,
    ),
    seed=st.integers(0, 100),
)
def test_needs_recent_is_false_only_where_recent_cannot_change_the_decision(
    text: str,
    author_is_bot: bool,
    mentions_bot: bool,
    reply_to_bot: bool,
    is_direct: bool,
    active: bool,
    mode: str,
    history: list[tuple[str, float, bool]],
    seed: int,
) -> None:
    message = msg(
        text,
        author_is_bot=author_is_bot,
        mentions_bot=mentions_bot,
        reply_to_bot=reply_to_bot,
        is_direct=is_direct,
    )
    recent = [
        logged(who, ago, is_self=mine, to="alice", bot=who == "other-bot")
        for who, ago, mine in sorted(history, key=lambda h: h[1])
    ]
    policy = ChannelPolicy(active=active, reply_mode=mode)
    engine_settings = EngineSettings(answer_bots=True, max_bot_exchanges=1)
    if not needs_recent(message):
        assert decide(message, recent, policy, engine_settings, seed) == decide(
            message, [], policy, engine_settings, seed
        )
