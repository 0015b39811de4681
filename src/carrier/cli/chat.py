"""``carrier run`` and ``carrier chat``."""

from __future__ import annotations

from pathlib import Path

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.cli.common import ConfigOption, UserFacingError, console, run, settings_from
from carrier.logs import configure_logging

TERMINAL_BOT_ID = "carrier-bot"


def chat(config: ConfigOption = None) -> None:
    """Talk to the bot in the terminal, in a simulated channel."""
    settings = settings_from(config)
    configure_logging(settings, console=False, log_file=Path("data/carrier.log"))

    async def main() -> None:
        from carrier.clients.terminal import TerminalChat

        store = await prepare_store(settings)
        try:
            engine = build_engine_for(settings, store, TERMINAL_BOT_ID)
            await TerminalChat(engine, console).run()
        finally:
            await store.close()

    run(main)


def run_bot(config: ConfigOption = None) -> None:
    """Upgrade the database and start every configured client: the Discord bot when a token
    is set (DISCORD_TOKEN), else the terminal chat."""
    settings = settings_from(config)
    if settings.effective_discord_token is None:
        chat(config)
        return
    configure_logging(settings, console=True)

    async def main() -> None:
        from discord import LoginFailure, PrivilegedIntentsRequired

        from carrier.clients.discord.runner import run_discord

        store = await prepare_store(settings)
        try:
            await run_discord(settings, store)
        except LoginFailure:
            raise UserFacingError("Discord refused the token; check DISCORD_TOKEN") from None
        except PrivilegedIntentsRequired:
            raise UserFacingError(
                "enable the Message Content and Server Members intents for the bot in the "
                "Discord developer portal"
            ) from None
        finally:
            await store.close()

    try:
        run(main)
    except KeyboardInterrupt:
        console.print("stopped")
