"""``run_discord`` (what ``carrier run`` starts with a token): the bot as deployed, with its
memory opened from settings (embeddings from the scripted server over HTTP) and the
scheduler loop running on the real clock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from tests.integration.discord.conftest import ROOT, discord_settings
from typer.testing import CliRunner

from carrier.bootstrap import prepare_store
from carrier.cli.main import app
from carrier.clients.discord.runner import run_discord
from carrier.testing import llm_server as fake
from carrier.testing.discord_emulator.emulator import DiscordEmulator


async def test_run_discord_answers_and_runs_the_daily_job(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    emu = emulator
    guild = emu.add_guild("Reef")
    general = emu.add_channel(guild.id, "general")
    alice = emu.add_user("alice")
    emu.add_member(guild.id, alice.id)
    async with fake.ScriptedLLMServer() as llm:
        settings = discord_settings(
            tmp_path,
            # Hour 0: the daily job is due whenever the test runs.
            {"token": "secret-token", "consolidation_hour": 0},
            embeddings={
                "provider": "openai",
                "base_url": llm.openai_base_url,
                "api_key_env": None,
                "model": "scripted-embeddings",
                "dimensions": 16,
            },
        )
        store = await prepare_store(settings)
        task = asyncio.create_task(run_discord(settings, store))
        try:
            await emu.wait_until_ready()
            presence = await emu.wait_for_presence(lambda p: bool(p.get("activities")), timeout=10)
            status = await store.state.get(settings.agent.id, "status_text")
            assert presence["activities"][0]["state"] == status
            sent = await emu.send_message(general.id, alice.id, f"<@{emu.bot_user_id}> hi!")
            reply = await emu.wait_for_message(channel_id=general.id, timeout=10)
            assert reply["message_reference"]["message_id"] == sent["id"]
            # Commands were synced globally (no command guilds configured).
            assert None in emu.commands
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()


async def test_run_discord_without_a_token_says_so(tmp_path: Path) -> None:
    settings = discord_settings(tmp_path, {})
    with pytest.raises(ValueError, match="no Discord token"):
        await run_discord(settings, None)  # type: ignore[arg-type]


async def test_the_token_never_reaches_the_log(
    emulator: DiscordEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.add_guild("Reef")
    settings = discord_settings(tmp_path, {"token": "very-secret-token-123"})
    store = await prepare_store(settings)
    task = asyncio.create_task(run_discord(settings, store))
    try:
        await emulator.wait_until_ready()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    assert "very-secret-token-123" not in caplog.text


async def test_carrier_run_with_a_refused_token_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'carrier.db'}\n"
        f"agent:\n  character_file: {ROOT / 'characters' / 'fish.yaml'}\n",
        encoding="utf-8",
    )
    async with DiscordEmulator(token="the-right-token") as emu:
        with emu.patch_discord():
            result = await asyncio.to_thread(
                CliRunner().invoke,
                app,
                ["run", "--config", str(config)],
                env={"DISCORD_TOKEN": "a-wrong-token-456", "NO_COLOR": "1"},
            )
    assert result.exit_code == 1, result.output
    assert "Discord refused the token; check DISCORD_TOKEN" in result.output
    assert "a-wrong-token-456" not in result.output
