"""`carrier memory` end to end on a real SQLite file: init (and --rebuild), consolidate,
list by user and agent, clear by user, and reembed after a change of embedding model (from
an OpenAI-compatible endpoint, the scripted server, to the local MiniLM)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import text
from typer.testing import CliRunner

from carrier.bootstrap import prepare_store
from carrier.cli.main import app
from carrier.settings import load_settings
from carrier.store.messages import LoggedMessage
from carrier.testing import llm_server as fake

HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
async def server() -> AsyncIterator[fake.ScriptedLLMServer]:
    async with fake.ScriptedLLMServer() as running:
        yield running


def said(agent: str, n: int, author: str, words: str) -> LoggedMessage:
    return LoggedMessage(
        agent_id=agent,
        guild_id="g1",
        channel_id="c1",
        message_id=f"{agent}-{n}",
        author_id=author,
        author_name=author.title(),
        text=words,
        created_at=HOUR_AGO + timedelta(minutes=n),
    )


async def carrier(*args: str) -> Result:
    """``carrier ARGS`` in-process (in a thread: the scripted server runs on this loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result


async def listed(*args: str) -> list[dict[str, object]]:
    return list(json.loads((await carrier("memory", "list", "--json", *args)).output))


async def test_memory_commands_end_to_end(
    server: fake.ScriptedLLMServer, tmp_path: Path, minilm_cache: Path
) -> None:
    database = tmp_path / "memory.db"
    remote = tmp_path / "remote.yaml"
    remote.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{database}\n"
        "embeddings:\n  provider: openai\n  model: scripted-embed\n  dimensions: 16\n"
        f"  api_key_env: null\n  base_url: {server.openai_base_url}\n",
        encoding="utf-8",
    )
    local = tmp_path / "local.yaml"
    local.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{database}\n"
        f"embeddings:\n  cache_dir: {minilm_cache}\n",
        encoding="utf-8",
    )
    first = await carrier("memory", "init", "-c", str(remote))
    assert "memory ready; 0 vectors written" in first.output

    store = await prepare_store(load_settings(remote))
    try:
        await store.agents.ensure("crab", "Crab")
        async with store.engine.begin() as conn:
            await store.messages.insert_many_in(
                conn,
                [
                    said("fish", 1, "ana", "I live in Lisbon"),
                    said("fish", 2, "ana", "I love sushi"),
                    said("fish", 3, "bo", "I have a dog named Rex"),
                    said("crab", 4, "ana", "I love tea"),
                ],
            )
    finally:
        await store.close()

    report = await carrier("memory", "consolidate", "-c", str(remote))
    assert "messages_archived=3" in report.output and "facts_new=3" in report.output
    await carrier("memory", "consolidate", "-c", str(remote), "--agent", "crab")

    ana = await listed("--user", "ana", "-c", str(remote))
    assert sorted(str(f["fact"]) for f in ana) == ["likes sushi", "lives in Lisbon"]
    assert {f["user_id"] for f in await listed("-c", str(remote))} == {"ana", "bo"}
    crab = await listed("--agent", "crab", "-c", str(remote))
    assert [(f["user_id"], f["fact"]) for f in crab] == [("ana", "likes tea")]

    async def vectors(config: Path, agent: str = "fish") -> int:
        out = await carrier("memory", "stats", "--json", "-c", str(config), "--agent", agent)
        return int(json.loads(out.output)["vectors"])

    assert await vectors(remote) == 3
    # The vector index is lost: --rebuild writes every vector again.
    store = await prepare_store(load_settings(remote))
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM fact_vectors"))
    finally:
        await store.close()
    assert await vectors(remote) == 0
    rebuilt = await carrier("memory", "init", "--rebuild", "-c", str(remote))
    assert "memory ready; 6 vectors" in rebuilt.output  # 3 facts, 3 archived messages
    assert await vectors(remote) == 3

    # A new embedding model: reembed moves every fact to it.
    moved = await carrier("memory", "reembed", "-c", str(local))
    assert "re-embedded 3 facts" in moved.output
    figures = json.loads((await carrier("memory", "stats", "--json", "-c", str(local))).output)
    assert figures["embedding_model"].startswith("all-MiniLM-L6-v2") and figures["vectors"] == 3
    found = await carrier("memory", "similar", "a pet", "-k", "1", "--json", "-c", str(local))
    assert json.loads(found.output)[0]["fact"] == "has a dog called Rex"

    cleared = await carrier("memory", "clear", "--user", "ana", "-y", "-c", str(local))
    assert "deleted 2 facts" in cleared.output
    assert [f["fact"] for f in await listed("-c", str(local))] == ["has a dog called Rex"]
    assert [f["fact"] for f in await listed("--agent", "crab", "-c", str(local))] == [
        "likes tea"
    ]  # another agent's facts are untouched
    refused = await asyncio.to_thread(
        CliRunner().invoke, app, ["memory", "clear", "--user", "bo", "-c", str(local)], "n\n"
    )
    assert refused.exit_code == 1 and len(await listed("-c", str(local))) == 1
