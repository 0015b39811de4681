"""Alembic environment: runs on a connection handed over by carrier.store.migrate, or on
the URL from alembic.ini / DATABASE_URL when a developer calls the alembic CLI."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from carrier.store.archive import is_search_object
from carrier.store.schema import metadata

config = context.config
target_metadata = metadata


def include_object(
    _object: object, name: str | None, type_: str, _reflected: bool, _compare_to: object
) -> bool:
    # Migration 0006's full-text objects differ by database and are not in the metadata.
    return not is_search_object(name, type_)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def _offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online_from_url() -> None:
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_async_engine(str(url))
    async with engine.begin() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


if context.is_offline_mode():
    _offline()
elif (handed := config.attributes.get("connection")) is not None:
    _configure(handed)
else:
    asyncio.run(_online_from_url())
