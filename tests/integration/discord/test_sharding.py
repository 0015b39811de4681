"""``discord.shard_count`` runs the auto-sharded bot: every shard connects and the bot
answers in its guilds."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.discord.conftest import Harness

from carrier.clients.discord.bot import ShardedCarrierBot


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"discord": {"shard_count": 2}}


async def test_sharded_bot_connects_every_shard_and_replies(harness: Harness) -> None:
    h = harness
    assert isinstance(h.bot, ShardedCarrierBot)
    assert sorted(h.bot.shards) == [0, 1]
    sent = await h.say(h.alice, f"<@{h.bot_id}> are all your shards awake?")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
