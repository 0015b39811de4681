"""Admin and settings changes reach the very next message: the bot answers with the scripted
LLM server over real HTTP, whose recorded requests show what the engine put in the prompt
(the persona, the relationship, the user's facts) and whether the model was asked at all
(the channel's generation mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.discord.conftest import Harness, scripted_llm_section
from tests.integration.discord.test_commands import opt, run

from carrier.testing import llm_server as fake

MODEL_SAYS = "Blub, says the model."


@pytest.fixture
async def llm() -> AsyncIterator[fake.ScriptedLLMServer]:
    async with fake.ScriptedLLMServer(default=fake.answer(MODEL_SAYS)) as server:
        yield server


@pytest.fixture
def settings_overrides(llm: fake.ScriptedLLMServer) -> dict[str, Any]:
    return {"llm": scripted_llm_section(llm.openai_base_url)}


async def ask(h: Harness, text: str) -> dict[str, Any]:
    """Mention the bot as alice; the reply, checked to answer that message."""
    sent = await h.say(h.alice, f"<@{h.bot_id}> {text}")
    reply = await h.bot_reply(channel_id=h.general.id)
    assert reply["message_reference"]["message_id"] == sent["id"]
    return reply


async def test_persona_lore_and_fact_reach_the_next_prompt(
    harness: Harness, llm: fake.ScriptedLLMServer
) -> None:
    h = harness
    lore = "Was once the harbour master of a sunken city"
    fact = "Cannot stand the taste of anchovies"
    await ask(h, "who are you?")
    before = llm.requests[-1].system
    assert lore not in before and fact not in before

    added = await run(
        h, h.owner, "admin", opt("kind", "lore"), opt("text", lore), group="persona", sub="add"
    )
    assert added["content"].startswith("Added lore #")
    reply = await ask(h, "tell me about yourself")
    assert reply["content"] == MODEL_SAYS
    prompt = llm.requests[-1].system
    lore_part = prompt.split("Your lore:", 1)[1].split("\n\n", 1)[0]
    assert f"- {lore}" in lore_part.splitlines()
    assert fact not in prompt

    await run(
        h, h.owner, "admin", opt("kind", "fact"), opt("text", fact), group="persona", sub="add"
    )
    await ask(h, "anything else?")
    prompt = llm.requests[-1].system
    facts_part = prompt.split("Facts and quirks about you:", 1)[1]
    assert f"- {fact}" in facts_part.splitlines()

    # Removed: gone from the very next prompt too.
    listed = await run(h, h.owner, "admin", opt("kind", "lore"), group="persona", sub="list")
    item_id = next(
        int(line.split()[0].lstrip("#")) for line in listed["content"].splitlines() if lore in line
    )
    await run(h, h.owner, "admin", opt("item_id", item_id), group="persona", sub="remove")
    await ask(h, "and now?")
    assert lore not in llm.requests[-1].system


async def test_relationship_set_is_shown_and_reaches_the_next_prompt(
    harness: Harness, llm: fake.ScriptedLLMServer
) -> None:
    h = harness
    await ask(h, "hello there")
    assert "furious" not in llm.requests[-1].system
    await run(
        h,
        h.owner,
        "admin",
        opt("user", h.alice.id),
        opt("metric", "anger"),
        opt("value", 9.0),
        group="relationship",
        sub="set",
    )
    shown = await run(
        h, h.owner, "admin", opt("user", h.alice.id), group="relationship", sub="show"
    )
    values, words = shown["content"].split("\n", 1)
    assert "anger 9" in values.split(", ")
    assert words.startswith("you are furious with")
    await ask(h, "are we good?")
    # The member's nickname (Ali) is the name the prompt uses.
    assert "How things stand between you: you are furious with Ali" in llm.requests[-1].system


async def test_a_users_fact_added_by_an_admin_reaches_the_next_prompt(
    harness: Harness, llm: fake.ScriptedLLMServer
) -> None:
    h = harness
    await run(
        h,
        h.owner,
        "admin",
        opt("user", h.alice.id),
        opt("fact", "keeps a pet seahorse named Gus"),
        group="memory",
        sub="add",
    )
    await ask(h, "what do you know about my pet seahorse?")
    assert "- keeps a pet seahorse named Gus" in llm.requests[-1].system.splitlines()


async def test_generation_mode_per_channel_applies_to_the_next_message(
    harness: Harness, llm: fake.ScriptedLLMServer
) -> None:
    h = harness
    agent, channel = h.carrier.agent_id, str(h.general.id)
    await ask(h, "model or chain?")
    asked = len(llm.requests)
    assert asked == 1

    seen = await run(h, h.owner, "settings", opt("mode", "markov"), sub="mode")
    assert seen["content"] == "In this channel I write from this server's Markov chain only."
    policy = await h.store.channels.policy(agent, str(h.guild.id), channel)
    assert policy.generation_mode == "markov"
    reply = await ask(h, "model or chain now?")
    assert reply["content"] != MODEL_SAYS
    await h.quiet(0.1)
    assert len(llm.requests) == asked  # the model was not asked
    shown = await run(h, h.owner, "settings", sub="show")
    assert "generation mode: markov" in shown["content"]

    # A non-admin is refused and changes nothing.
    refused = await run(h, h.bob, "settings", opt("mode", "llm"), sub="mode")
    assert "Manage Server" in refused["content"]
    policy = await h.store.channels.policy(agent, str(h.guild.id), channel)
    assert policy.generation_mode == "markov"

    # Back to the bot's default (llm here): the column is cleared, other settings stay.
    await run(h, h.owner, "settings", opt("mode", "mention"), sub="replymode")
    cleared = await run(h, h.owner, "settings", opt("mode", "default"), sub="mode")
    assert cleared["content"] == "In this channel I use my default mode (llm)."
    policy = await h.store.channels.policy(agent, str(h.guild.id), channel)
    assert policy.generation_mode is None and policy.reply_mode == "mention"
    reply = await ask(h, "and now?")
    assert reply["content"] == MODEL_SAYS
    assert len(llm.requests) == asked + 1

    hybrid = await run(h, h.owner, "settings", opt("mode", "hybrid"), sub="mode")
    assert "samples of this server's voice" in hybrid["content"]
    assert (
        await h.store.channels.policy(agent, str(h.guild.id), channel)
    ).generation_mode == "hybrid"
