"""Related archived messages in the prompt of a reply, a reply that never waits on a broken
archive search, and `carrier memory search-archive` / `index-archive`."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from carrier.bootstrap import build_engine_for, open_memory, prepare_store
from carrier.cli.main import app
from carrier.engine.messages import IncomingMessage
from carrier.generation.llm.generator import ChainProvider, LLMGenerator
from carrier.generation.llm.openai_chat import OpenAIChat
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.vectors.base import VectorIndex
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.testing import llm_server as fake
from carrier.testing.embeddings import HashingEmbedder

ROOT = Path(__file__).resolve().parents[3]
LONG_AGO = datetime.now(UTC) - timedelta(days=30)

OLD_CHAT = [
    ("g", "c", "u-ana", "Ana", "we caught a huge pike on the fishing trip at lake Tahoe"),
    ("g", "c", "u-bo", "Bo", "my sourdough starter finally bubbled today"),
    ("other", "x", "u-ana", "Ana", "in the other server: the fishing trip secret spot"),
]


def old_lines() -> list[LoggedMessage]:
    return [
        LoggedMessage(
            agent_id="fish",
            guild_id=guild,
            channel_id=channel,
            message_id=f"old-{i}",
            author_id=author,
            author_name=name,
            text=said,
            created_at=LONG_AGO + timedelta(minutes=i),
        )
        for i, (guild, channel, author, name, said) in enumerate(OLD_CHAT)
    ]


@pytest.fixture
async def memory(store: Store, vector_index: VectorIndex) -> AsyncIterator[Memory]:
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    opened = Memory(
        store,
        HashingEmbedder(),
        vector_index,
        agent_id="fish",
        extractor=OfflineExtractor(),
        archive_results=2,
    )
    await opened.add_messages(old_lines())
    await opened.consolidate(now=LONG_AGO + timedelta(days=1))
    await opened.index_archive()
    yield opened
    await opened.aclose()


def question(text_: str, n: int = 1) -> IncomingMessage:
    return IncomingMessage(
        channel_id="c",
        guild_id="g",
        message_id=f"q{n}",
        author_id="u-cy",
        author_name="Cy",
        text=text_,
        created_at=datetime.now(UTC),
        mentions_bot=True,
    )


@pytest.mark.postgres
async def test_related_archived_messages_reach_the_prompt_of_this_guild_only(
    store: Store, memory: Memory
) -> None:
    settings = load_settings(None)
    async with fake.ScriptedLLMServer(default=fake.answer("Blub.")) as server:
        llm = LLMGenerator(
            [
                ChainProvider(
                    OpenAIChat(
                        name="openai",
                        model="gpt-4o-mini",
                        api_key="k",
                        base_url=server.openai_base_url,
                    )
                )
            ]
        )
        engine = build_engine_for(
            settings, store, "bot", rng=random.Random(1), llm=llm, memory=memory
        )
        try:
            outcome = await engine.handle(question("fish, remember the fishing trip pike?"))
            assert outcome.reply is not None
            memories = outcome.context["memories"]
            assert len(memories) == 1 and "huge pike on the fishing trip" in memories[0]
            assert memories[0].startswith("Ana on ")
            sent = server.requests[-1]
            # Chat-derived text goes in the conversation's context message, never in system.
            assert "huge pike on the fishing trip" not in sent.system
            assert "huge pike on the fishing trip" in sent.messages[0]["content"]
            assert all("secret spot" not in m["content"] for m in sent.messages)  # other guild
        finally:
            await engine.aclose()


async def test_a_broken_archive_search_never_stops_the_reply(
    store: Store, memory: Memory, caplog: pytest.LogCaptureFixture
) -> None:
    # A real failure: the full-text table is gone (SQLite), so the lexical query errors.
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE message_archive_fts"))
    engine = build_engine_for(
        load_settings(None), store, "bot", rng=random.Random(1), memory=memory
    )
    try:
        with caplog.at_level(logging.WARNING, logger="carrier.memory.api"):
            outcome = await engine.handle(question("fish, remember the fishing trip pike?"))
        assert outcome.reply is not None and outcome.reply.text
        assert outcome.context["memories"] == []
        assert "archive search failed" in caplog.text
    finally:
        await engine.aclose()


async def test_cli_searches_and_indexes_the_archive(tmp_path: Path, minilm_cache: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'cli.db'}\n"
        f"embeddings:\n  cache_dir: {minilm_cache}\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    store = await prepare_store(settings)
    try:
        memory = await open_memory(settings, store)
        try:
            await memory.add_messages(old_lines())
            await memory.consolidate(now=LONG_AGO + timedelta(days=1))
        finally:
            await memory.aclose()
    finally:
        await store.close()
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, ["memory", *args, "-c", str(config)])
        assert result.exit_code == 0, result.output
        return result.output

    indexed = await asyncio.to_thread(invoke, "index-archive")
    assert "embedded 3 archived messages" in indexed
    found = json.loads(
        await asyncio.to_thread(
            invoke, "search-archive", "my bread yeast culture", "--guild", "g", "--json"
        )
    )
    assert found[0]["text"] == OLD_CHAT[1][4] and found[0]["vector_rank"] == 1
    assert {hit["guild_id"] for hit in found} == {"g"}
    stats = json.loads(await asyncio.to_thread(invoke, "stats", "--json"))
    assert stats["archive_vectors"] == 3 and stats["archived_messages"] == 3
    refused = await asyncio.to_thread(
        runner.invoke, app, ["memory", "search-archive", "x", "-c", str(config)]
    )
    assert refused.exit_code == 2 and "--guild" in refused.output
