"""``carrier run`` and ``carrier chat``."""

from __future__ import annotations

from pathlib import Path

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.cli.common import ConfigOption, console, run, settings_from
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
    """Upgrade the database and start every configured client (the terminal chat when none
    is configured)."""
    settings = settings_from(config)
    if settings.effective_discord_token is not None:
        console.print(
            "[yellow]A Discord token is configured, but the Discord client is not "
            "part of this release yet; starting the terminal chat.[/yellow]"
        )
    chat(config)
