"""A long, slow LLM reply (from the scripted LLM server over real HTTP): typing while it is
generated, then several messages cut on sentence boundaries, only the first a reply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.discord.conftest import Harness, scripted_llm_section

from carrier.clients.discord.sending import DISCORD_LIMIT
from carrier.testing import llm_server as fake

SENTENCE = "The tide is turning and the reef is glowing softly tonight. "
LONG = SENTENCE * 70  # about 4,200 characters


@pytest.fixture
async def llm() -> AsyncIterator[fake.ScriptedLLMServer]:
    async with fake.ScriptedLLMServer(default=fake.answer(LONG, delay=0.6)) as server:
        yield server


@pytest.fixture
def settings_overrides(llm: fake.ScriptedLLMServer) -> dict[str, Any]:
    return {
        "engine": {"max_reply_chars": 10_000},
        "llm": scripted_llm_section(llm.openai_base_url),
    }


async def test_long_slow_reply_types_then_splits(harness: Harness) -> None:
    h = harness
    sent = await h.say(h.alice, f"<@{h.bot_id}> tell me everything about the tide")
    await h.emu.wait_for_request("POST", rf"/channels/{h.general.id}/typing", timeout=5)
    first = await h.bot_reply(channel_id=h.general.id, timeout=10)
    rest = [first]
    while sum(len(m["content"]) for m in rest) < len(LONG.strip()) - 10:
        rest.append(await h.bot_reply(channel_id=h.general.id, timeout=5))
    assert len(rest) >= 3
    assert all(len(m["content"]) < DISCORD_LIMIT for m in rest)
    assert all(m["content"].endswith(".") for m in rest)
    assert first["message_reference"]["message_id"] == sent["id"]
    assert all(m.get("message_reference") is None for m in rest[1:])
    # Follow-up pieces ping nobody.
    assert all(not m["allowed_mentions"].get("users") for m in rest[1:])
