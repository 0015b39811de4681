"""``discord.shard_ids`` runs only the named shards of ``shard_count``: here shard 1 of 2,
as the second of two processes would."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.discord.conftest import Harness, eventually

from carrier.clients.discord.bot import ShardedCarrierBot
from carrier.testing.discord_emulator.model import Guild


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"discord": {"shard_count": 2, "shard_ids": [1]}}


def shard_of(guild_id: int, count: int = 2) -> int:
    return (guild_id >> 22) % count


async def test_only_the_configured_shard_identifies_and_serves_its_guilds(
    harness: Harness,
) -> None:
    h = harness
    assert isinstance(h.bot, ShardedCarrierBot)
    assert sorted(h.bot.shards) == [1]
    sessions = h.emu.gateway.sessions
    assert [(s.shard_id, s.shard_count) for s in sessions] == [(1, 2)]
    assert h.emu.gateway.identifies == 1
    # Only shard 1's guilds reach the bot.
    expected = {g for g in h.emu.world.guilds if shard_of(g) == 1}
    assert {g.id for g in h.bot.guilds} == expected

    # Guilds joined now: one on each shard.
    by_shard: dict[int, Guild] = {}
    while len(by_shard) < 2:
        guild = h.emu.add_guild(f"Lagoon {len(h.emu.world.guilds)}")
        by_shard.setdefault(shard_of(guild.id), guild)
    channels = {shard: h.emu.add_channel(g.id, "chat") for shard, g in by_shard.items()}
    for guild in by_shard.values():
        h.emu.add_member(guild.id, h.alice.id)

    async def joined() -> bool:
        return h.bot.get_guild(by_shard[1].id) is not None

    assert await eventually(joined)
    sent = await h.say(h.alice, f"<@{h.bot_id}> hello shard one", channel=channels[1])
    reply = await h.bot_reply(channel_id=channels[1].id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    await h.say(h.alice, f"<@{h.bot_id}> hello shard zero", channel=channels[0])
    await h.quiet()
    assert h.bot.get_guild(by_shard[0].id) is None
    bot = str(h.bot_id)
    assert [m for m in h.emu.messages.get(channels[0].id, []) if m["author"]["id"] == bot] == []
    assert h.emu.gateway.identifies == 1  # nobody identified as shard 0 meanwhile
