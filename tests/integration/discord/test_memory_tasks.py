"""Scheduled behaviour on Discord: the status becomes the presence, proactive messages are
posted when the scheduler fires (the clock is the test's)."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.discord.conftest import Harness

from carrier.clients.discord.cogs.memory_tasks import MemoryTasksCog


def tasks_cog(h: Harness) -> MemoryTasksCog:
    cog = h.bot.get_cog("memory_tasks")
    assert isinstance(cog, MemoryTasksCog)
    return cog


async def test_daily_job_sets_the_new_status_as_presence(harness: Harness) -> None:
    h = harness
    await h.say(h.alice, "I live in a shipwreck")
    await h.quiet(0.1)
    # Tomorrow, after the consolidation hour (UTC by default, 04:00).
    tomorrow = (h.clock() + timedelta(days=1)).replace(hour=5, minute=0)
    h.clock.set(tomorrow)
    _, daily = await tasks_cog(h).run_due()
    assert daily is not None and daily.report is not None
    assert daily.report.messages_archived == 1
    presence = await h.emu.wait_for_presence(
        lambda p: any(a.get("state") == daily.status for a in p.get("activities", []))
    )
    assert presence["activities"][0]["type"] == 4  # custom status
    # Once a day: firing again does nothing.
    _, again = await tasks_cog(h).run_due()
    assert again is None


async def test_proactive_message_posted_when_the_scheduler_fires(harness: Harness) -> None:
    h = harness
    # The bot's defaults: every 30 minutes per active channel, with a 10% chance.
    assert h.carrier.scheduler.interval == timedelta(minutes=30)
    assert h.carrier.scheduler.chance == 0.1
    h.carrier.scheduler.chance = 1.0
    await h.say(h.alice, "the current is strong today")
    await h.quiet(0.1)
    posted, _ = await tasks_cog(h).run_due()
    assert [p.channel_id for p in posted] == [str(h.general.id)]
    message = await h.bot_reply(channel_id=h.general.id)
    assert message["content"] == posted[0].text
    assert message.get("message_reference") is None
    # Same interval: nothing more; next interval: the bot spoke last, so it waits.
    assert (await tasks_cog(h).run_due())[0] == []
    h.clock.set(h.clock() + timedelta(minutes=30))
    assert (await tasks_cog(h).run_due())[0] == []
    # The read-only channel is never a candidate.
    assert str(h.readonly.id) not in [c.channel_id for c in tasks_cog(h).postable_channels()]
