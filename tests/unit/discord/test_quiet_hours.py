"""Quiet hours as the settings command sets them and the triggers honour them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from carrier.engine.messages import IncomingMessage
from carrier.engine.triggers import TriggerInputs, should_respond
from carrier.settings import EngineSettings
from carrier.store.channels import ChannelPolicy

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_is_quiet_within_and_across_midnight() -> None:
    day = ChannelPolicy(quiet_hours=(9, 17))
    assert day.is_quiet(9) and day.is_quiet(16)
    assert not day.is_quiet(17) and not day.is_quiet(8)
    night = ChannelPolicy(quiet_hours=(22, 6))
    assert night.is_quiet(23) and night.is_quiet(0) and night.is_quiet(5)
    assert not night.is_quiet(6) and not night.is_quiet(21)
    assert not ChannelPolicy().is_quiet(3)
    assert not ChannelPolicy(quiet_hours=(4, 4)).is_quiet(4)


def decide(text: str, hour: int | None, **kw: object) -> str:
    msg = IncomingMessage(
        channel_id="c",
        message_id="m",
        author_id="u",
        author_name="alice",
        text=text,
        created_at=NOW,
        guild_id="g",
        **kw,  # type: ignore[arg-type]
    )
    policy = ChannelPolicy(reply_mode="chance", reply_chance=1.0, quiet_hours=(22, 6))
    inputs = TriggerInputs(msg, "bot", ["Finnegan"], [], policy, NOW, local_hour=hour)
    return should_respond(inputs, EngineSettings(), random.Random(1)).reason


def test_quiet_hours_silence_everything_but_mentions_and_replies() -> None:
    assert decide("anyone around?", 23) == "quiet_hours"
    assert decide("anyone around?", 12) == "random_chance"
    assert decide("hey you", 23, mentions_bot=True) == "mention"
    assert decide("hey you", 2, reply_to_bot=True) == "reply_to_bot"
    # Without a local hour (a client that does not know it) nothing is checked.
    assert decide("anyone around?", None) == "random_chance"
