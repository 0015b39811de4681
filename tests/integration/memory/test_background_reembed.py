"""A running bot whose configured embedding model changed: search keeps answering on the old
vectors, a background task re-embeds facts and archived messages with progress logged, then
switches to the new model alone.  The old model is an OpenAI-compatible endpoint (the
scripted server over real HTTP), the new one the local MiniLM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carrier.bootstrap import open_memory
from carrier.memory.archive import archive_model
from carrier.memory.consolidation import LOCK_TTL, acquire_job_lock, release_job_lock
from carrier.memory.maintenance import embedder_key, maintain_once
from carrier.settings import Settings, load_settings
from carrier.store.messages import LoggedMessage
from carrier.store.store import Store
from carrier.testing import llm_server as fake

pytestmark = pytest.mark.postgres

DAY = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
FACTS = ["likes sushi", "lives in Lisbon", "has a dog called Rex"]


def settings_for(store: Store, tmp_path: Path, **embeddings: object) -> Settings:
    return load_settings(
        None,
        database={"url": store.engine.url.render_as_string(hide_password=False)},
        embeddings=embeddings,
        vectors={"chroma_path": str(tmp_path / "chroma")},
    )


@pytest.fixture
async def server() -> AsyncIterator[fake.ScriptedLLMServer]:
    async with fake.ScriptedLLMServer() as running:
        yield running


async def written_with_the_old_model(
    store: Store, tmp_path: Path, server: fake.ScriptedLLMServer
) -> str:
    old = await open_memory(
        settings_for(
            store,
            tmp_path,
            provider="openai",
            model="scripted-embed",
            base_url=server.openai_base_url,
            api_key_env=None,
            dimensions=16,
        ),
        store,
    )
    try:
        for fact in FACTS:
            await old.add_fact("ana", fact, guild_id="g1")
        await old.add_messages(
            [
                LoggedMessage(
                    agent_id="fish",
                    guild_id="g1",
                    channel_id="c1",
                    message_id=f"m{i}",
                    author_id="ana",
                    author_name="Ana",
                    text=text,
                    created_at=DAY + timedelta(minutes=i),
                )
                for i, text in enumerate(
                    ["we caught a pike on the lake", "my sourdough bread rose overnight"]
                )
            ]
        )
        await old.consolidate(now=DAY + timedelta(days=1))
        assert await old.index_archive() == 2
        return old.embedder.model
    finally:
        await old.aclose()


async def test_a_new_model_is_moved_to_in_the_background_while_search_answers(
    store: Store,
    tmp_path: Path,
    server: fake.ScriptedLLMServer,
    minilm_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old_model = await written_with_the_old_model(store, tmp_path, server)
    memory = await open_memory(settings_for(store, tmp_path, cache_dir=str(minilm_cache)), store)
    try:
        new_model = memory.embedder.model
        assert memory.previous_embedder is not None
        assert memory.previous_embedder.model == old_model
        assert [e.model for e in memory.search_embedders()] == [new_model, old_model]

        # Before any re-embedding: the old vectors answer (the scripted model gives the
        # same text the same vector, so the exact text is the best match).
        ranked = await memory.search_facts("ana", "lives in Lisbon", guild_id="g1")
        assert ranked[0].fact.fact == "lives in Lisbon" and ranked[0].similarity > 0.99
        hits = await memory.search_archive("the pike we caught", guild_id="g1")
        assert hits and hits[0].message.text == "we caught a pike on the lake"

        # Half-way (one fact moved): every fact is still compared, each by its own model.
        moved = next(f for f in await memory.store.facts.for_user("fish", "ana") if "dog" in f.fact)
        vector = (await memory.embedder.embed([moved.fact]))[0]
        async with memory.store.engine.begin() as conn:
            await memory.store.facts.set_embedding_in(conn, moved.id, vector, new_model)
        ranked = await memory.search_facts("ana", "what is the name of her puppy?", guild_id="g1")
        dog = next(r for r in ranked if r.fact.id == moved.id)
        assert dog.similarity > 0.4  # by meaning, with the new model
        exact_old = await memory.search_facts("ana", "likes sushi", guild_id="g1")
        assert exact_old[0].fact.fact == "likes sushi" and exact_old[0].similarity > 0.99

        with caplog.at_level(logging.INFO, logger="carrier.memory.maintenance"):
            task = await memory.start_background_maintenance(interval=3600)
            assert await memory.start_background_maintenance() is task  # started once
            # Bounded wait for the first round (nothing about its speed is asserted).
            await asyncio.wait_for(memory.model_changed.wait(), timeout=120)
        assert not task.done(), "the maintenance task must keep running"
        assert memory.previous_embedder is None  # switched
        assert "re-embedding 2 facts" in caplog.text
        assert "re-embedding facts with" in caplog.text and ": 2 of 2" in caplog.text
        assert "embedding archived messages with" in caplog.text

        facts = await memory.store.facts.for_user("fish", "ana")
        assert {f.embedding_model for f in facts} == {new_model}
        assert await memory.index.count("fish", old_model) == 0
        assert await memory.index.count("fish", archive_model(old_model)) == 0
        assert await memory.index.count("fish", archive_model(new_model)) == 2
        by_meaning = await memory.search_archive("baking a loaf", guild_id="g1")
        assert by_meaning[0].message.text == "my sourdough bread rose overnight"
        assert by_meaning[0].vector_rank == 1
        top = (await memory.search_facts("ana", "favourite food?", guild_id="g1"))[0]
        assert top.fact.fact == "likes sushi"
    finally:
        await memory.aclose()
    assert task.cancelled()  # aclose stopped it


async def test_without_a_record_of_the_old_model_search_degrades_but_works(
    store: Store, tmp_path: Path, server: fake.ScriptedLLMServer, minilm_cache: Path
) -> None:
    old_model = await written_with_the_old_model(store, tmp_path, server)
    await store.state.delete("fish", embedder_key(old_model))
    memory = await open_memory(settings_for(store, tmp_path, cache_dir=str(minilm_cache)), store)
    try:
        assert memory.previous_embedder is None
        ranked = await memory.search_facts("ana", "lives in Lisbon", guild_id="g1")
        assert {r.fact.fact for r in ranked} == set(FACTS)  # by references and recency
        await maintain_once(memory)
        ranked = await memory.search_facts("ana", "where does she live?", guild_id="g1")
        assert ranked[0].fact.fact == "lives in Lisbon"
    finally:
        await memory.aclose()


async def test_one_process_at_a_time_does_the_maintenance(
    store: Store, tmp_path: Path, server: fake.ScriptedLLMServer, minilm_cache: Path
) -> None:
    await written_with_the_old_model(store, tmp_path, server)
    memory = await open_memory(settings_for(store, tmp_path, cache_dir=str(minilm_cache)), store)
    lock = "memory-maintenance:fish"
    try:
        assert await acquire_job_lock(store, lock, "other-host:1", datetime.now(UTC), LOCK_TTL)
        assert await maintain_once(memory) is False  # the other process is at it
        assert await memory.needs_reembedding() == len(FACTS)
        await release_job_lock(store, lock, "other-host:1")
        assert await maintain_once(memory) is True
        assert await memory.needs_reembedding() == 0 and memory.model_changed.is_set()
    finally:
        await memory.aclose()
