"""``carrier run``'s Discord client: build the bot and keep it connected until stopped."""

from __future__ import annotations

import logging

from carrier.clients.discord.bot import build_bot
from carrier.settings import Settings
from carrier.store.store import Store

log = logging.getLogger("carrier.discord")


async def run_discord(settings: Settings, store: Store) -> None:
    """Connect with the configured token and run until cancelled or closed (discord.py
    reconnects and resumes by itself).  The store stays the caller's."""
    token = settings.effective_discord_token
    if token is None:
        raise ValueError("no Discord token: set DISCORD_TOKEN or discord.token")
    bot = build_bot(settings, store)
    async with bot:
        await bot.start(token.get_secret_value())
