"""``carrier run`` and ``carrier chat``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from carrier import heap
from carrier.bootstrap import build_engine_for, prepare_store
from carrier.cli.common import ConfigOption, UserFacingError, console, run, settings_from
from carrier.logs import configure_logging
from carrier.settings import Settings
from carrier.store.store import Store

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
            heap.settle()
            await TerminalChat(engine, console).run()
        finally:
            await store.close()

    run(main)


def run_bot(config: ConfigOption = None) -> None:
    """Upgrade the database and start every configured client: the Discord bot when a token
    is set (DISCORD_TOKEN), the HTTP API and web console when ``api.enabled``; the terminal
    chat when neither is."""
    settings = settings_from(config)
    discord_on = settings.effective_discord_token is not None
    if not discord_on and not settings.api.enabled:
        chat(config)
        return
    configure_logging(settings, console=True, log_file=Path("data/carrier.log"))

    async def main() -> None:
        from discord import LoginFailure, PrivilegedIntentsRequired

        store = await prepare_store(settings)
        try:
            clients = []
            if discord_on:
                from carrier.clients.discord.runner import run_discord

                clients.append(run_discord(settings, store))
            if settings.api.enabled:
                console.print(
                    f"Carrier API on http://{settings.api.host}:{settings.api.port}/ "
                    "(console: /console/)",
                    highlight=False,
                )
                # Beside Discord, whose bot runs the scheduled jobs, the API only serves;
                # on its own it also runs the daily consolidation and status update.
                clients.append(_api(settings, store, run_jobs=not discord_on))
            await _until_first_fails(clients)
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


async def _api(settings: Settings, store: Store, *, run_jobs: bool) -> None:
    """The HTTP API on ``store``; with ``run_jobs``, also the daily jobs and the memory's
    background maintenance on the same engine and memory."""
    from carrier.clients.http.server import open_api_parts, serve
    from carrier.engine.schedule import Scheduler, run_daily_jobs

    async with open_api_parts(settings, store=store) as parts:
        background: list[asyncio.Task[None]] = []
        if run_jobs:
            scheduler = Scheduler(
                parts.engine,
                parts.memory,
                interval=timedelta(minutes=settings.discord.proactive_interval_minutes),
                chance=settings.discord.proactive_chance,
                consolidation_hour=settings.discord.consolidation_hour,
            )
            background.append(asyncio.create_task(run_daily_jobs(scheduler)))
            if parts.memory is not None:
                background.append(await parts.memory.start_background_maintenance())
        try:
            await serve(
                settings,
                store=parts.store,
                engine=parts.engine,
                memory=parts.memory,
                handle_signals=False,
            )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)


async def _until_first_fails(clients: list[Coroutine[Any, Any, None]]) -> None:
    """Run the clients together until one ends; its error (if any) is raised after the
    others have been stopped."""
    tasks = [asyncio.create_task(client) for client in clients]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error
    for result in results:
        if isinstance(result, Exception):
            raise result
