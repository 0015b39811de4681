"""The schema comes from the Alembic migrations, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.store.archive import is_search_object
from carrier.store.database import create_engine
from carrier.store.migrate import current_revision, downgrade, head_revision, upgrade
from carrier.store.schema import agents, metadata, relationships

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    """The tables, less migration 0006's full-text search table (SQLite FTS5)."""
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    return {name for name in names if not is_search_object(name, "table")}


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    def _compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_object": lambda _o, name, type_, _r, _c: not is_search_object(name, type_),
            },
        )
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(_compare)


async def test_upgrade_from_empty_creates_every_table(engine: AsyncEngine) -> None:
    assert await table_names(engine) == set()
    assert await current_revision(engine) is None

    await upgrade(engine)

    assert await table_names(engine) == set(metadata.tables) | {"alembic_version"}
    assert await current_revision(engine) == head_revision()
    assert head_revision() is not None


async def test_upgrade_is_idempotent_and_keeps_data(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(agents.insert().values(id="fish", name="Fish", created_at=NOW))

    await upgrade(engine)
    await upgrade(engine, "head")

    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(agents)) == 1
        assert await conn.scalar(select(agents.c.created_at)) == NOW


async def test_migrated_schema_matches_the_metadata(engine: AsyncEngine) -> None:
    """``alembic check``: autogenerate finds nothing left to migrate."""
    await upgrade(engine)
    assert await schema_differences(engine) == []


async def test_the_comparison_does_notice_a_difference(engine: AsyncEngine) -> None:
    """The check above can fail: a table the migrations did not create is reported."""
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.tables["job_locks"].drop(sync))
    differences = await schema_differences(engine)
    assert [d[0] for d in differences] == ["add_table"]
    assert differences[0][1].name == "job_locks"


async def test_hot_queries_have_their_indexes(engine: AsyncEngine) -> None:
    await upgrade(engine)

    def _indexes(connection: Connection) -> dict[str, dict[str, list[str]]]:
        inspector = inspect(connection)
        return {
            table: {ix["name"]: list(ix["column_names"]) for ix in inspector.get_indexes(table)}
            for table in ("short_term_messages", "message_archive", "memory_facts", "persona_items")
        }

    async with engine.connect() as conn:
        indexes = await conn.run_sync(_indexes)
    assert indexes["short_term_messages"]["ix_short_term_channel_time"] == [
        "agent_id",
        "channel_id",
        "created_at",
    ]
    assert indexes["short_term_messages"]["ix_short_term_agent_time"] == ["agent_id", "created_at"]
    assert indexes["message_archive"]["ix_archive_channel_time"] == [
        "agent_id",
        "channel_id",
        "created_at",
    ]
    assert indexes["memory_facts"]["ix_memory_facts_agent_user"] == [
        "agent_id",
        "user_id",
        "guild_id",
    ]
    assert indexes["persona_items"]["ix_persona_items_agent_kind"] == [
        "agent_id",
        "kind",
        "position",
    ]


async def test_downgrade_to_base_and_upgrade_again(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await downgrade(engine, "base")

    assert await table_names(engine) <= {"alembic_version"}
    assert await current_revision(engine) is None

    await upgrade(engine)
    assert await table_names(engine) == set(metadata.tables) | {"alembic_version"}
    assert await current_revision(engine) == head_revision()
    assert await schema_differences(engine) == []


# --- relationship ranges are checked by the database itself ------------------------------

NEUTRAL = {"anger": 0.0, "rapport": 5.0, "trust": 5.0, "formality": 0.0}


async def insert_relationship(engine: AsyncEngine, user_id: str, **metrics: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            relationships.insert().values(
                agent_id="fish", user_id=user_id, updated_at=NOW, **{**NEUTRAL, **metrics}
            )
        )


async def test_the_relationship_check_constraints_exist(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.connect() as conn:
        checks = await conn.run_sync(
            lambda sync: inspect(sync).get_check_constraints("relationships")
        )
    assert {check["name"] for check in checks} >= {
        "ck_relationships_anger_range",
        "ck_relationships_rapport_range",
        "ck_relationships_trust_range",
        "ck_relationships_formality_range",
    }


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("anger", 11.0),
        ("anger", -0.5),
        ("rapport", -1.0),
        ("rapport", 10.01),
        ("trust", 10.5),
        ("trust", -1.0),
        ("formality", 6.0),
        ("formality", -6.0),
    ],
)
async def test_out_of_range_relationships_are_rejected(
    engine: AsyncEngine, metric: str, value: float
) -> None:
    await upgrade(engine)
    with pytest.raises(IntegrityError) as caught:
        await insert_relationship(engine, "u1", **{metric: value})
    assert metric in str(caught.value.orig).lower() or "check" in str(caught.value.orig).lower()
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(relationships)) == 0


@pytest.mark.parametrize(
    "metrics",
    [
        {"anger": 0.0, "rapport": 0.0, "trust": 0.0, "formality": -5.0},
        {"anger": 10.0, "rapport": 10.0, "trust": 10.0, "formality": 5.0},
        {"anger": 9.99, "rapport": 0.01, "trust": 7.5, "formality": -4.5},
    ],
)
async def test_boundary_relationships_are_accepted(
    engine: AsyncEngine, metrics: dict[str, float]
) -> None:
    await upgrade(engine)
    await insert_relationship(engine, "u1", **metrics)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    relationships.c.anger,
                    relationships.c.rapport,
                    relationships.c.trust,
                    relationships.c.formality,
                )
            )
        ).one()
    assert row._asdict() == pytest.approx(metrics)


async def test_an_update_out_of_range_is_rejected_too(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await insert_relationship(engine, "u1", anger=10.0)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(relationships.update().values(anger=relationships.c.anger + 1))
    async with engine.connect() as conn:
        assert await conn.scalar(select(relationships.c.anger)) == 10.0
