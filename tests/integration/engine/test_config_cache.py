"""What the engine reads every turn and rarely changes (persona, mood, channel policy, guild
emotes) is reused while the database's config revision holds, and an edit made by any
writer - another connection, another process, plain SQL - bumps it (migration 0007), so
the very next message still sees the edit."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, text, update

from carrier.bootstrap import build_engine_for
from carrier.engine.messages import IncomingMessage
from carrier.engine.pipeline import Engine
from carrier.persona.character import load_character
from carrier.persona.service import import_character
from carrier.settings import load_settings
from carrier.store.database import create_engine
from carrier.store.schema import (
    agents,
    channel_settings,
    global_state,
    guild_emotes,
    guild_settings,
    persona_items,
    relationships,
)
from carrier.store.store import Store
from carrier.testing.statements import statements_on

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.postgres


async def _write(store: Store, statement: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(statement)  # type: ignore[arg-type]


async def test_every_write_to_a_watched_table_bumps_the_revision(store: Store) -> None:
    revision = store.config_revision
    writes = [
        insert(agents).values(id="eel", name="Eel", created_at=NOW),
        update(agents).where(agents.c.id == "eel").values(name="Eel II"),
        insert(persona_items).values(
            agent_id="fish", kind="lore", text="A new line.", position=99, created_at=NOW
        ),
        update(persona_items).where(persona_items.c.position == 99).values(text="Changed."),
        delete(persona_items).where(persona_items.c.position == 99),
        insert(global_state).values(agent_id="fish", key="mood.x", value="1", updated_at=NOW),
        delete(global_state).where(global_state.c.key == "mood.x"),
        insert(guild_settings).values(agent_id="fish", guild_id="g", active=True, updated_at=NOW),
        insert(channel_settings).values(
            agent_id="fish", channel_id="c", active=False, reply_mode="mention", updated_at=NOW
        ),
        insert(guild_emotes).values(agent_id="fish", guild_id="g", name="blub", markup="<:b:1>"),
        delete(agents).where(agents.c.id == "eel"),
    ]
    seen = [await revision.current()]
    assert seen[0] is not None
    for statement in writes:
        await _write(store, statement)
        seen.append(await revision.current())
        assert seen[-1] > seen[-2], statement  # type: ignore[operator]


async def test_the_writes_of_every_message_leave_it_alone(store: Store) -> None:
    """Recording messages (the log, users, relationships) must not defeat the reuse."""
    before = await store.config_revision.current()
    await _write(
        store,
        insert(relationships).values(
            agent_id="fish",
            user_id="u1",
            anger=0,
            rapport=0,
            trust=0,
            formality=0,
            updated_at=NOW,
        ),
    )
    assert await store.config_revision.current() == before


@pytest.fixture
async def fish(store: Store, tmp_path: Path) -> AsyncIterator[Engine]:
    await import_character(store, "fish", load_character(ROOT / "characters" / "fish.yaml"))
    engine = build_engine_for(
        load_settings(None), store, "bot", clock=lambda: NOW, rng=random.Random(3)
    )
    yield engine
    await engine.aclose()  # the replies are logged in the background: done before the store closes


_count = iter(range(1, 10_000))


def mention(text_: str, channel: str = "chan") -> IncomingMessage:
    return IncomingMessage(
        channel_id=channel,
        guild_id="guild",
        message_id=f"m{next(_count)}",
        author_id="u-alice",
        author_name="alice",
        text=text_,
        created_at=NOW - timedelta(seconds=1),
        mentions_bot=True,
    )


async def test_unchanged_settings_are_not_read_again(fish: Engine, store: Store) -> None:
    await fish.handle(mention("hello fish"))  # rolls today's mood: a write, a new revision
    await fish.handle(mention("hello again"))
    with (
        statements_on(store, "persona_items") as persona,
        statements_on(store, "channel_settings") as policy,
        statements_on(store, "guild_emotes") as emotes,
        statements_on(store, "config_revision") as revision,
    ):
        for _ in range(3):
            outcome = await fish.handle(mention("how is the water?"))
            assert outcome.reply is not None
    assert persona == [] and policy == [] and emotes == []
    assert len(revision) == 3  # one cheap read per message instead


async def test_an_edit_from_another_connection_shapes_the_very_next_reply(
    fish: Engine, store: Store, database_url: str
) -> None:
    first = await fish.handle(mention("hello fish"))
    assert first.reply is not None and first.context["persona"] == "Finnegan"

    # Another process's store (its own engine and connections), writing plain SQL.
    other = Store(create_engine(database_url))
    try:
        async with other.engine.begin() as conn:
            await conn.execute(text("UPDATE agents SET name = 'Gill' WHERE id = 'fish'"))
        renamed = await fish.handle(mention("who are you?"))
        assert renamed.context["persona"] == "Gill"

        async with other.engine.begin() as conn:
            await conn.execute(
                insert(channel_settings).values(
                    agent_id="fish",
                    channel_id="chan",
                    guild_id="guild",
                    active=False,
                    reply_mode="contextual",
                    updated_at=NOW,
                )
            )
        silenced = await fish.handle(mention("still there?"))
        assert not silenced.decision.respond and silenced.reply is None

        async with other.engine.begin() as conn:
            await conn.execute(
                insert(guild_emotes).values(
                    agent_id="fish", guild_id="guild", name="blub", markup="<:blub:42>"
                )
            )
        elsewhere = await fish.handle(mention("and here?", channel="other"))
        assert elsewhere.context["emotes"] == ["blub"]
    finally:
        await other.close()


async def test_without_the_revision_row_nothing_is_reused(fish: Engine, store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM config_revision"))
    assert await store.config_revision.current() is None
    await fish.handle(mention("hello fish"))
    with statements_on(store, "persona_items") as persona:
        await fish.handle(mention("again"))
        await fish.handle(mention("and again"))
    assert len(persona) == 2
